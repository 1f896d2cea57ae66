//! UDP sockets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{Buffer, Uint8Array};
use napi_derive::napi;
use tailscale::netstack;
use tokio_util::sync::CancellationToken;

use crate::address::{SocketAddress, socket_addr};
use crate::error::{Code, Failure, Result, SocketOp, from_netstack};
use crate::ports::PortLease;
use crate::pump::{self, Inbox, Step};

/// The netstack's UDP buffer: a larger datagram can never be sent.
pub const MAX_DATAGRAM: usize = 4096;
/// Datagrams received but not yet taken by JavaScript.
const RECEIVE_QUEUE: usize = 64;

#[napi(object)]
pub struct Datagram {
    pub data: Buffer,
    pub ip: String,
    pub port: u32,
}

#[napi]
pub struct UdpSocket {
    socket: Mutex<Option<Arc<netstack::UdpSocket>>>,
    inbox: Inbox<(SocketAddr, bytes::Bytes)>,
    token: CancellationToken,
    lease: Mutex<Option<PortLease>>,
    local: SocketAddress,
}

impl UdpSocket {
    pub(crate) fn new(socket: netstack::UdpSocket, device_token: &CancellationToken, lease: PortLease) -> Self {
        let token = device_token.child_token();
        let local = socket.local_addr().into();
        let socket = Arc::new(socket);
        let receiver = Arc::clone(&socket);
        let inbox = pump::spawn("UDP socket", token.clone(), RECEIVE_QUEUE, move || {
            let receiver = Arc::clone(&receiver);
            async move {
                match receiver.recv_from_bytes().await {
                    Ok(datagram) => Step::Item(datagram),
                    Err(e) => Step::Fail(from_netstack(e, SocketOp::UdpRecv)),
                }
            }
        });
        UdpSocket {
            socket: Mutex::new(Some(socket)),
            inbox,
            token,
            lease: Mutex::new(Some(lease)),
            local,
        }
    }

    fn socket(&self) -> Result<Arc<netstack::UdpSocket>> {
        self.socket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Failure::device_closed("UDP socket"))
    }

    async fn send_to(&self, to: SocketAddr, data: &[u8]) -> Result<()> {
        if data.len() > MAX_DATAGRAM {
            return Err(Failure::new(
                Code::MessageTooLarge,
                format!("UDP send: {} bytes is more than the {MAX_DATAGRAM} a datagram can hold", data.len()),
            ));
        }
        let socket = self.socket()?;
        tokio::select! {
            biased;
            () = self.token.cancelled() => Err(Failure::device_closed("UDP socket")),
            sent = socket.send_to(to, data) => sent.map_err(|e| from_netstack(e, SocketOp::UdpSend)),
        }
    }
}

#[napi]
impl UdpSocket {
    /// The next datagram and its sender.
    #[napi]
    pub async fn recv(&self) -> napi::Result<Datagram> {
        match self.inbox.next().await? {
            Some((from, bytes)) => Ok(Datagram {
                data: Buffer::from(bytes.to_vec()),
                ip: from.ip().to_string(),
                port: u32::from(from.port()),
            }),
            None => Err(Failure::device_closed("UDP socket").into()),
        }
    }

    /// Sends one datagram of at most 4096 bytes.
    #[napi]
    pub async fn send(&self, ip: String, port: f64, data: Uint8Array) -> napi::Result<()> {
        let to = socket_addr("ip", &ip, "port", port, false)?;
        Ok(self.send_to(to, &data).await?)
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
        self.socket.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        self.close();
    }
}
