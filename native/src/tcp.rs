//! TCP streams and listeners.

use std::sync::{Arc, Mutex};

use napi::Env;
use napi::bindgen_prelude::{Buffer, This, Uint8Array};
use napi_derive::napi;
use tailscale::netstack;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::address::SocketAddress;
use crate::completion::{self, Promise};
use crate::error::{Failure, Result, Settled, SocketOp, from_netstack};
use crate::ports::PortLease;
use crate::pump::{self, Inbox, Step};
use crate::sync::Recover;

/// Chunks read ahead of JavaScript. Each is what the netstack's receive buffer held in one piece
/// (at most the buffer: 16 KiB on a relayed path, up to 256 KiB on a direct one); one `read()`
/// takes all that are queued, so a busy stream needs fewer calls.
const READ_AHEAD: usize = 8;
/// Connections accepted but not yet taken by JavaScript.
const ACCEPT_BACKLOG: usize = 16;
/// The most of a write offered to the netstack at once. The crate copies the whole slice it is
/// given on every `send` (`Bytes::copy_from_slice`, ts_netstack_smoltcp_socket `tcp/stream.rs:94`)
/// and the netstack takes only what fits its send buffer (16 KiB, often a few KiB), so offering
/// the whole remainder of a large write copies it again for every few KiB sent: quadratic (a
/// 64 MiB write made ~5,000 copies of its remainder, ~165 GiB, those above 32 MiB each a fresh mmap).
/// 64 KiB per call is what a caller writing 64 KiB at a time already gets.
const SEND_CHUNK: usize = 64 * 1024;

/// The chunks as one buffer: a lone chunk as it is (the netstack made it for this read alone,
/// so its allocation is taken over, not copied), several copied together.
fn joined(mut chunks: Vec<bytes::Bytes>) -> Vec<u8> {
    if chunks.len() == 1 { Vec::from(chunks.swap_remove(0)) } else { chunks.concat() }
}

/// A connected TCP stream on the tailnet. There is no half-close: `close()` sends FIN after the
/// queued data and ends both directions.
#[napi]
pub struct TcpStream {
    shared: Arc<Shared>,
    local: SocketAddress,
    remote: SocketAddress,
    /// A dialed stream's local endpoint, held until the stream closes.
    lease: Mutex<Option<PortLease>>,
}

/// What a stream's calls share with the tasks that run them.
struct Shared {
    stream: Mutex<Option<Arc<netstack::TcpStream>>>,
    inbox: Inbox<bytes::Bytes>,
    token: CancellationToken,
    write_lock: tokio::sync::Mutex<()>,
    /// Its device's: writes and the close run in it (JavaScript calls them in no span).
    span: tracing::Span,
}

impl TcpStream {
    pub(crate) fn new(
        stream: netstack::TcpStream,
        token: CancellationToken,
        lease: Option<PortLease>,
        span: tracing::Span,
    ) -> Self {
        let local = stream.local_addr().into();
        let remote = stream.remote_addr().into();
        let stream = Arc::new(stream);
        let reader = Arc::clone(&stream);
        let inbox = pump::spawn("TCP stream", span.clone(), token.clone(), READ_AHEAD, move || {
            let reader = Arc::clone(&reader);
            async move {
                match reader.recv_bytes().await {
                    Ok(bytes) if bytes.is_empty() => Step::End,
                    Ok(bytes) => Step::Item(bytes),
                    Err(e) => Step::Fail(from_netstack(e, SocketOp::Recv)),
                }
            }
        });
        let shared =
            Shared { stream: Mutex::new(Some(stream)), inbox, token, write_lock: tokio::sync::Mutex::new(()), span };
        TcpStream { shared: Arc::new(shared), local, remote, lease: Mutex::new(lease) }
    }
}

impl Shared {
    fn stream(&self) -> Result<Arc<netstack::TcpStream>> {
        self.stream.recover().clone().ok_or_else(|| Failure::device_closed("TCP stream"))
    }

    async fn write_all(&self, data: &[u8]) -> Result<()> {
        let stream = self.stream()?;
        // Concurrent writes must not interleave their chunks.
        let _turn = tokio::select! {
            biased;
            () = self.token.cancelled() => return Err(Failure::device_closed("TCP stream")),
            turn = self.write_lock.lock() => turn,
        };
        let mut offset = 0;
        while offset < data.len() {
            let chunk = &data[offset..data.len().min(offset + SEND_CHUNK)];
            let sent = tokio::select! {
                biased;
                () = self.token.cancelled() => return Err(Failure::device_closed("TCP stream")),
                sent = stream.send(chunk) => sent.map_err(|e| from_netstack(e, SocketOp::Send))?,
            };
            offset += sent;
        }
        Ok(())
    }
}

#[napi]
impl TcpStream {
    /// The bytes that have arrived (waiting for at least one), or `null` once the peer has
    /// finished sending.
    #[napi(ts_args_type = "", ts_return_type = "Promise<Buffer | null>")]
    pub fn read(&self, env: Env, this: This) -> napi::Result<Promise> {
        let shared = Arc::clone(&self.shared);
        completion::promise(&env, &this, async move {
            let read = shared.inbox.next_batch(&shared.token, READ_AHEAD).await;
            (Settled(read.map(|chunks| chunks.map(|chunks| Buffer::from(joined(chunks))))), ())
        })
    }

    /// Resolves once every byte has been accepted by the network stack.
    #[napi(ts_args_type = "data: Uint8Array", ts_return_type = "Promise<void>")]
    pub fn write(&self, env: Env, this: This, data: Uint8Array) -> napi::Result<Promise> {
        let shared = Arc::clone(&self.shared);
        completion::promise(&env, &this, async move {
            let written = shared.write_all(&data).instrument(shared.span.clone()).await;
            // The caller's buffer goes back to be released on the JavaScript thread.
            (Settled(written), data)
        })
    }

    #[napi(getter)]
    pub fn local_address(&self) -> SocketAddress {
        self.local.clone()
    }

    #[napi(getter)]
    pub fn remote_address(&self) -> SocketAddress {
        self.remote.clone()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Closes the stream: pending and later calls fail with `DEVICE_CLOSED`; data already
    /// written is still delivered before the FIN. Idempotent.
    #[napi]
    pub fn close(&self) {
        // Dropping the last handle sends the netstack its close, which may log.
        let _device = self.shared.span.enter();
        self.shared.token.cancel();
        self.shared.stream.recover().take();
        self.lease.recover().take();
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.close();
    }
}

/// A TCP listener on the tailnet.
#[napi]
pub struct TcpListener {
    inbox: Inbox<netstack::TcpStream>,
    token: CancellationToken,
    /// Accepted streams belong to the device, not to the listener.
    device_token: CancellationToken,
    lease: Mutex<Option<PortLease>>,
    local: SocketAddress,
    /// Its device's, given to every stream it accepts.
    span: tracing::Span,
}

impl TcpListener {
    pub(crate) fn new(
        listener: netstack::TcpListener,
        device_token: &CancellationToken,
        lease: PortLease,
        span: tracing::Span,
    ) -> Self {
        let token = device_token.child_token();
        let local = listener.local_addr().into();
        let listener = Arc::new(listener);
        let inbox = pump::spawn("TCP listener", span.clone(), token.clone(), ACCEPT_BACKLOG, move || {
            let listener = Arc::clone(&listener);
            async move {
                match listener.accept().await {
                    Ok(stream) => Step::Item(stream),
                    Err(e) => Step::Fail(from_netstack(e, SocketOp::Accept)),
                }
            }
        });
        TcpListener { inbox, token, device_token: device_token.clone(), lease: Mutex::new(Some(lease)), local, span }
    }
}

#[napi]
impl TcpListener {
    /// The next incoming connection.
    #[napi(ts_return_type = "Promise<TcpStream>")]
    pub async fn accept(&self) -> Settled<TcpStream> {
        Settled::of(async {
            match self.inbox.next(&self.token).await? {
                // In the device's span, not `accept`'s (none): the stream's pump starts here.
                Some(stream) => Ok(TcpStream::new(stream, self.device_token.child_token(), None, self.span.clone())),
                None => Err(Failure::device_closed("TCP listener")),
            }
        })
        .await
    }

    #[napi(getter)]
    pub fn local_address(&self) -> SocketAddress {
        self.local.clone()
    }

    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Stops listening. Connections already accepted stay open. Idempotent.
    #[napi]
    pub fn close(&self) {
        let _device = self.span.enter();
        self.token.cancel();
        self.lease.recover().take();
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::joined;

    #[test]
    fn a_lone_chunk_is_handed_over_without_a_copy() {
        let chunk = Bytes::from(vec![7u8; 4096]);
        let at = chunk.as_ptr();
        let buffer = joined(vec![chunk]);
        assert_eq!(buffer.as_ptr(), at);
        assert_eq!(buffer, vec![7u8; 4096]);
    }

    #[test]
    fn several_chunks_are_joined_in_order() {
        let chunks = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c"), Bytes::from(vec![b'd'; 3])];
        assert_eq!(joined(chunks), b"abcddd");
    }
}
