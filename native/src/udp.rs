//! UDP sockets.
//!
//! tailscale-rs 0.5.0 panics inside the netstack when a UDP socket is closed while a receive on
//! it is pending (the close removes the socket; the queued receive then looks it up), and a
//! pending receive is exactly what every socket here has. So closing a `UdpSocket` only detaches
//! it: the bound netstack socket stays in the device's pool with its receive pending, binding the
//! same endpoint again reuses it, and the device's shutdown takes everything down without
//! ever sending that close.

use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use napi::Env;
use napi::bindgen_prelude::{Buffer, This, Uint8Array};
use napi_derive::napi;
use tailscale::netstack;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::address::{SocketAddress, socket_addr};
use crate::completion::{self, Promise};
use crate::error::{Code, Failure, Result, Settled, SocketOp, from_netstack};
use crate::ports::PortLease;
use crate::pump::{self, Inbox, Step};
use crate::sync::Recover;

pub use crate::limits::MAX_DATAGRAM;
/// Datagrams received but not yet taken by JavaScript.
const RECEIVE_QUEUE: usize = 64;

/// A bound netstack socket and the pump that receives on it.
pub(crate) struct BoundUdp {
    /// Never dropped: dropping sends the close that crashes a netstack with a receive pending,
    /// even during the device's shutdown. It lives as long as its device's netstack does.
    socket: ManuallyDrop<netstack::UdpSocket>,
    inbox: Inbox<(SocketAddr, bytes::Bytes)>,
    /// Its device's: sends run in it (JavaScript calls them in no span).
    span: tracing::Span,
}

#[derive(Default)]
pub(crate) struct UdpPool {
    bound: Mutex<HashMap<SocketAddr, Arc<BoundUdp>>>,
}

impl UdpPool {
    pub(crate) fn get(&self, addr: SocketAddr) -> Option<Arc<BoundUdp>> {
        self.bound.recover().get(&addr).cloned()
    }

    /// Keeps a newly bound socket for the device's lifetime; its pump stops with `device_token`
    /// and runs in `span`, the device's.
    pub(crate) fn insert(
        &self,
        socket: netstack::UdpSocket,
        device_token: &CancellationToken,
        span: &tracing::Span,
    ) -> Arc<BoundUdp> {
        let addr = socket.local_addr();
        let bound = Arc::new_cyclic(|weak: &std::sync::Weak<BoundUdp>| {
            let weak = weak.clone();
            BoundUdp {
                socket: ManuallyDrop::new(socket),
                span: span.clone(),
                inbox: pump::spawn("UDP socket", span.clone(), device_token.clone(), RECEIVE_QUEUE, move || {
                    let bound = weak.upgrade();
                    async move {
                        let Some(bound) = bound else { return Step::End };
                        match bound.socket.recv_from_bytes().await {
                            Ok(datagram) => Step::Item(datagram),
                            Err(e) => Step::Fail(from_netstack(e, SocketOp::UdpRecv)),
                        }
                    }
                }),
            }
        });
        self.bound.recover().insert(addr, Arc::clone(&bound));
        bound
    }

    pub(crate) fn clear(&self) {
        self.bound.recover().clear();
    }
}

#[napi(object)]
pub struct Datagram {
    pub data: Buffer,
    pub ip: String,
    pub port: u32,
}

#[napi]
pub struct UdpSocket {
    bound: Mutex<Option<Arc<BoundUdp>>>,
    token: CancellationToken,
    lease: Mutex<Option<PortLease>>,
    local: SocketAddress,
}

impl UdpSocket {
    pub(crate) async fn attach(bound: Arc<BoundUdp>, device_token: &CancellationToken, lease: PortLease) -> Self {
        // Datagrams that reached an earlier owner of this endpoint are not for this one.
        bound.inbox.discard_queued().await;
        UdpSocket {
            local: bound.socket.local_addr().into(),
            bound: Mutex::new(Some(bound)),
            token: device_token.child_token(),
            lease: Mutex::new(Some(lease)),
        }
    }

    fn bound(&self) -> Result<Arc<BoundUdp>> {
        self.bound.recover().clone().ok_or_else(|| Failure::device_closed("UDP socket"))
    }
}

async fn send_to(bound: Result<Arc<BoundUdp>>, token: CancellationToken, to: SocketAddr, data: &[u8]) -> Result<()> {
    if data.len() > MAX_DATAGRAM {
        return Err(Failure::new(
            Code::MessageTooLarge,
            "UDP send",
            format!("{} bytes is more than the {MAX_DATAGRAM} a datagram can hold", data.len()),
        ));
    }
    let bound = bound?;
    let send = bound.socket.send_to(to, data).instrument(bound.span.clone());
    tokio::select! {
        biased;
        () = token.cancelled() => Err(Failure::device_closed("UDP socket")),
        sent = send => sent.map_err(|e| from_netstack(e, SocketOp::UdpSend)),
    }
}

#[napi]
impl UdpSocket {
    /// The next datagram and its sender.
    #[napi(ts_args_type = "", ts_return_type = "Promise<Datagram>")]
    pub fn recv(&self, env: Env, this: This) -> napi::Result<Promise> {
        let (bound, token) = (self.bound(), self.token.clone());
        completion::promise(&env, &this, async move {
            let received = Settled::of(async {
                match bound?.inbox.next(&token).await? {
                    Some((from, bytes)) => Ok(Datagram {
                        // The netstack made these bytes for this datagram: taken over, not copied.
                        data: Buffer::from(Vec::from(bytes)),
                        ip: from.ip().to_string(),
                        port: u32::from(from.port()),
                    }),
                    None => Err(Failure::device_closed("UDP socket")),
                }
            });
            (received.await, ())
        })
    }

    /// Sends one datagram of at most 4096 bytes.
    #[napi(ts_args_type = "ip: string, port: number, data: Uint8Array", ts_return_type = "Promise<void>")]
    pub fn send(&self, env: Env, this: This, ip: String, port: f64, data: Uint8Array) -> napi::Result<Promise> {
        let (bound, token) = (self.bound(), self.token.clone());
        completion::promise(&env, &this, async move {
            let sent = async { send_to(bound, token, socket_addr("ip", &ip, "port", port, false)?, &data).await };
            // The caller's buffer goes back to be released on the JavaScript thread.
            (Settled(sent.await), data)
        })
    }

    #[napi(getter)]
    pub fn local_address(&self) -> SocketAddress {
        self.local.clone()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Closes the socket; pending and later calls fail with `DEVICE_CLOSED`. Idempotent.
    #[napi]
    pub fn close(&self) {
        self.token.cancel();
        self.bound.recover().take();
        self.lease.recover().take();
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.close();
    }
}
