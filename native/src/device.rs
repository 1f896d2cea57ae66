//! The device's calls as JavaScript sees them: connect, addresses, lookups, auth state, sockets
//! and shutdown. Each goes through the shared state in `lifecycle.rs`; options, the control
//! probe, sockets, health and logout live in their own modules.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use napi::Env;
use napi::bindgen_prelude::PromiseRaw;
use napi_derive::napi;
use tailscale::AuthState as CrateAuthState;
use tracing::Instrument;
use ts_netstack_smoltcp::CreateSocket;

use crate::address::{parse_ip, socket_addr};
use crate::control_link;
use crate::error::{Code, Failure, Result, Settled, SocketOp, from_device, from_netstack};
use crate::exit_node::{self, Choice};
use crate::health;
use crate::lifecycle::{
    LOGOUT_MIN, Recipe, Shared, new_span, release_free_memory, release_free_memory_later, shrink_js_heap, start, stop,
};
use crate::limits::DEFAULT_SHUTDOWN;
use crate::logging;
use crate::logout;
use crate::node_info::NodeInfo;
use crate::options::{ConnectOptions, prepare};
use crate::peer_paths::{self, DirectPaths, Pong};
use crate::peer_table::{self, PeerTable};
use crate::ports::Protocol;
use crate::sync::Recover;
use crate::tcp::{TcpListener, TcpStream};
use crate::trust;
use crate::udp::UdpSocket;
use crate::who_is::{self, WhoIs};

/// Whether this device may join the tailnet, tagged as core's `AuthState` is (`_tag`).
#[napi(discriminant = "_tag")]
pub enum AuthState {
    Authorized,
    /// A person can approve this device at `url`.
    NeedsLogin {
        url: String,
    },
}

/// A Tailscale device inside this process.
#[napi]
pub struct Device {
    shared: Arc<Shared>,
}

/// This device's own address of the family a dial goes to.
async fn own_address(device: &tailscale::Device, ipv4: bool) -> std::result::Result<IpAddr, tailscale::Error> {
    Ok(if ipv4 { device.ipv4_addr().await?.into() } else { device.ipv6_addr().await?.into() })
}

impl Device {
    fn device(&self) -> Result<Arc<tailscale::Device>> {
        if let Some(lost) = self.shared.health.failure("device") {
            return Err(lost);
        }
        self.shared.device.recover().clone().ok_or_else(|| Failure::device_closed("device"))
    }

    /// `future`'s output, unless the device is shut down (or lost) first: then that failure.
    async fn unless_closed<T>(&self, future: impl Future<Output = T>) -> Result<T> {
        tokio::select! {
            biased;
            () = self.shared.token.cancelled() => Err(self.shared.closed_failure()),
            output = future => Ok(output),
        }
    }

    /// Runs one crate call in the device's span, failing fast with `DEVICE_CLOSED` if the device
    /// closes meanwhile. The failure check runs in the span too: it asks the runtime, and may
    /// log that the device is lost.
    async fn call<T, Fut>(&self, what: &str, call: impl FnOnce(Arc<tailscale::Device>) -> Fut) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, tailscale::Error>>,
    {
        let in_span = async {
            let device = self.device()?;
            let result = self.unless_closed(call(Arc::clone(&device))).await?;
            match result {
                Ok(value) => Ok(value),
                Err(error) => Err(self.checked_failure(&device, error, what).await),
            }
        };
        in_span.instrument(self.shared.span.clone()).await
    }

    /// Maps a crate error, first checking whether it means the runtime is gone: then the
    /// device is marked lost and the error is `DEVICE_LOST`.
    async fn checked_failure(&self, device: &tailscale::Device, error: tailscale::Error, what: &str) -> Failure {
        use tailscale::InternalErrorKind as K;
        if matches!(error, tailscale::Error::Internal(K::Actor | K::InternalChannelClosed))
            && self.shared.registered.load(Ordering::Acquire)
            && let Some(cause) = health::runtime_gone(device).await
        {
            self.shared.lose(cause);
        }
        self.device_failure(error, what)
    }

    fn device_failure(&self, error: tailscale::Error, what: &str) -> Failure {
        if let Some(lost) = self.shared.health.failure(what) {
            return lost;
        }
        if self.shared.token.is_cancelled() {
            return Failure::device_closed("device");
        }
        // The crate stops its control actor when registration is rejected and only logs why;
        // callers then see the actor gone. Before any address was assigned that means control
        // turned the device away.
        if error == tailscale::Error::Internal(tailscale::InternalErrorKind::Actor)
            && !self.shared.registered.load(Ordering::Acquire)
        {
            let detail = match logging::registration_refusal(&self.shared.span) {
                Some(reason) => format!("control refused this device's registration: {reason}"),
                None => "control rejected this device's registration (is the auth key valid?)".to_string(),
            };
            return Failure::new(Code::NotAuthorized, what, detail);
        }
        from_device(error, what)
    }

    /// The runtime's peer table (users and app grants beside the peers) as of the first network
    /// map or a later one: the self node can be answered before the peer tracker has the map.
    async fn table(
        &self,
        device: &tailscale::Device,
    ) -> std::result::Result<ts_runtime::peer_tracker::PeerTable, tailscale::Error> {
        let mut receiver = self.shared.table.get_or_try_init(|| peer_table::watch(device)).await?.clone();
        let table = receiver.wait_for(|table| table.version != 0).await.map(|table| table.clone());
        table.map_err(|_| tailscale::Error::Internal(tailscale::InternalErrorKind::Actor))
    }

    fn mark_registered(&self) {
        self.shared.registered.store(true, Ordering::Release);
    }
}

#[napi]
impl Device {
    /// Joins the tailnet. Resolves once the control server has been reached (not once the device
    /// has an address: await `ipv4()` for that).
    // Not a `factory`: napi-rs makes a factory's return value the instance, and here that value
    // is a `Settled`. A static method's value converts like any other, a `Device` to an instance.
    #[napi(ts_return_type = "Promise<Device>")]
    pub async fn connect(options: Option<ConnectOptions>) -> Settled<Device> {
        Settled::of(async {
            let mut prepared = prepare(options.unwrap_or_default())?;
            if let Some(path) = &prepared.ca_file {
                trust::trust_ca_file("caFile", path)?;
            }
            // The device's span exists from here: what loading its key file logs is its own.
            let span = new_span(prepared.log_sink);
            prepared.config.key_state = span.in_scope(|| prepared.keys.load())?;
            let recipe = Recipe {
                config: prepared.config,
                auth_key: prepared.auth_key,
                connect_timeout: prepared.connect_timeout,
                log_sink: prepared.log_sink,
            };
            let exit = prepared.exit_node.map_or(Choice::Nobody, Choice::Wanted);
            Ok(Device { shared: start(recipe, false, span, exit).await? })
        })
        .await
    }

    /// A new device built like this one (same options, same key state, so the same node and
    /// addresses), for when this one is lost. Connects like `connect`.
    #[napi(ts_return_type = "Promise<Device>")]
    pub async fn respawn(&self) -> Settled<Device> {
        Settled::of(async {
            // Control accepted this identity before: a runtime that stops from now on is a loss, not
            // a refused registration.
            let registered = self.shared.registered.load(Ordering::Acquire);
            let span = new_span(self.shared.recipe.log_sink);
            let exit = self.shared.exit.choice();
            Ok(Device { shared: start(self.shared.recipe.duplicate(), registered, span, exit).await? })
        })
        .await
    }

    /// Resolves with the cause once the crate's runtime behind this device is gone (every call
    /// then fails with `DEVICE_LOST`), or with `null` once the device is shut down.
    #[napi]
    pub async fn wait_lost(&self) -> Option<String> {
        let health = &self.shared.health;
        tokio::select! {
            biased;
            () = health.lost() => {}
            () = self.shared.token.cancelled() => {}
        }
        health.cause().map(str::to_owned)
    }

    /// Resolves with whether the device has a live session with control once that differs from
    /// `known`, or with `null` once the device is shut down or lost. While control is away the
    /// device keeps working with what control gave it; only new peers and keys wait.
    #[napi]
    pub async fn watch_control(&self, known: bool) -> Option<bool> {
        // Ask now: the runtime watch only probes once a second.
        if let Ok(device) = self.device()
            && let Some(connected) = control_link::connected(&device).instrument(self.shared.span.clone()).await
        {
            self.shared.control.set(connected);
        }
        self.shared.control.changed_from(known, &self.shared.token).await
    }

    /// Stops the crate's runtime behind this device at once, as a crash inside it would: the
    /// runtime watch then reports the device lost (`waitLost`), its calls and sockets fail, and
    /// `respawn` builds it again. For testing code that must survive a lost device.
    #[napi(ts_return_type = "void")]
    pub fn abort_runtime(&self) -> Settled<()> {
        let _device = self.shared.span.enter();
        Settled(self.device().map(|device| device.runtime().kill()))
    }

    /// This device's IPv4 tailnet address. Waits for the first network map.
    #[napi(ts_return_type = "Promise<string>")]
    pub async fn ipv4(&self) -> Settled<String> {
        Settled::of(async {
            let ip = self.call("ipv4", |d| async move { d.ipv4_addr().await }).await?;
            self.mark_registered();
            Ok(ip.to_string())
        })
        .await
    }

    /// This device's IPv6 tailnet address. Waits for the first network map.
    #[napi(ts_return_type = "Promise<string>")]
    pub async fn ipv6(&self) -> Settled<String> {
        Settled::of(async {
            let ip = self.call("ipv6", |d| async move { d.ipv6_addr().await }).await?;
            self.mark_registered();
            Ok(ip.to_string())
        })
        .await
    }

    /// This device's own node. Waits for the first network map.
    #[napi(ts_return_type = "Promise<NodeInfo>")]
    pub async fn self_node(&self) -> Settled<NodeInfo> {
        Settled::of(async {
            let (node, table) =
                self.call("selfNode", |d| async move { Ok((d.self_node().await?, self.table(&d).await?)) }).await?;
            self.mark_registered();
            Ok(NodeInfo::new(&node, &table.users))
        })
        .await
    }

    /// Whether control has authorized this device, or where a person can log it in.
    /// Waits until control has answered the registration.
    #[napi(ts_return_type = "Promise<AuthState>")]
    pub async fn auth_state(&self) -> Settled<AuthState> {
        Settled::of(async {
            let state = self.call("authState", |d| async move { d.is_authorized().await }).await?;
            Ok(match state {
                CrateAuthState::Authorized => {
                    self.mark_registered();
                    AuthState::Authorized
                }
                CrateAuthState::NotAuthorized(url) => AuthState::NeedsLogin { url: url.to_string() },
            })
        })
        .await
    }

    /// A peer by bare hostname or fully qualified name (a trailing dot is allowed).
    #[napi(ts_return_type = "Promise<NodeInfo | null>")]
    pub async fn peer_by_name(&self, name: String) -> Settled<Option<NodeInfo>> {
        Settled::of(async {
            if name.trim_end_matches('.').is_empty() {
                return Err(Failure::invalid("name", name, "must be a hostname or FQDN"));
            }
            let (peer, table) = self
                .call("peerByName", |d| async move { Ok((d.peer_by_name(&name).await?, self.table(&d).await?)) })
                .await?;
            Ok(peer.as_ref().map(|node| NodeInfo::new(node, &table.users)))
        })
        .await
    }

    /// Every peer, as of the latest network map. Waits for the first.
    #[napi(ts_return_type = "Promise<Array<NodeInfo>>")]
    pub async fn peers(&self) -> Settled<Vec<NodeInfo>> {
        Settled::of(async {
            match self.watch_peers(0.0).await.0? {
                Some(table) => Ok(table.peers),
                None => Err(self.shared.closed_failure()),
            }
        })
        .await
    }

    /// Resolves with the peer table once its version differs from `known` (0 before the first
    /// network map), or with `null` once the device is shut down or lost.
    #[napi(ts_return_type = "Promise<PeerTable | null>")]
    pub async fn watch_peers(&self, known: f64) -> Settled<Option<PeerTable>> {
        Settled::of(async {
            let receiver = self.call("watchPeers", |d| async move { peer_table::watch(&d).await }).await?;
            Ok(self.unless_closed(peer_table::changed_from(receiver, known as u64)).await.ok().flatten())
        })
        .await
    }

    /// Resolves with the direct paths once their version differs from `known` (without it: as
    /// they are now), or with `null` once the device is shut down or lost.
    #[napi(ts_return_type = "Promise<DirectPaths | null>")]
    pub async fn watch_paths(&self, known: Option<f64>) -> Settled<Option<DirectPaths>> {
        Settled::of(async {
            let receiver = self.call("watchPaths", |d| async move { peer_paths::watch(&d).await }).await?;
            let known = known.map(|version| version as u64);
            Ok(self.unless_closed(peer_paths::changed_from(receiver, known)).await.ok().flatten())
        })
        .await
    }

    /// Disco-pings the peer that owns tailnet address `ip`, as `tailscale ping` does: through
    /// its direct path if it has one, else to every UDP address control gave and through DERP
    /// at once. Resolves with the first pong; fails `TIMEOUT` after `timeoutMs`.
    #[napi(ts_return_type = "Promise<Pong>")]
    pub async fn ping(&self, ip: String, timeout_ms: f64) -> Settled<Pong> {
        Settled::of(async {
            let addr = parse_ip("ip", &ip)?;
            if !(timeout_ms.is_finite() && timeout_ms > 0.0) {
                return Err(Failure::invalid("timeoutMs", timeout_ms, "must be a positive number of milliseconds"));
            }
            let timeout = Duration::from_millis(timeout_ms as u64);
            let peer = self.call("ping", |d| async move { d.peer_by_tailnet_ip(addr).await }).await?;
            let Some(peer) = peer else {
                return Err(Failure::invalid("ip", &ip, "is not the tailnet address of a peer"));
            };
            let device = self.device()?;
            let pinging = peer_paths::ping(&device, &peer, &ip, timeout).instrument(self.shared.span.clone());
            let pong = self.unless_closed(pinging).await??;
            pong.ok_or_else(|| {
                self.device_failure(tailscale::Error::Internal(tailscale::InternalErrorKind::Actor), "ping")
            })
        })
        .await
    }

    /// The peer that owns a tailnet IP.
    #[napi(ts_return_type = "Promise<NodeInfo | null>")]
    pub async fn peer_by_ip(&self, ip: String) -> Settled<Option<NodeInfo>> {
        Settled::of(async {
            let ip = parse_ip("ip", &ip)?;
            let (peer, table) = self
                .call("peerByIp", |d| async move { Ok((d.peer_by_tailnet_ip(ip).await?, self.table(&d).await?)) })
                .await?;
            Ok(peer.as_ref().map(|node| NodeInfo::new(node, &table.users)))
        })
        .await
    }

    /// The peer that owns a tailnet IP, with the app capabilities the policy grants it toward
    /// this device (Go's `WhoIs`); `null` when no peer has the address.
    #[napi(ts_return_type = "Promise<WhoIs | null>")]
    pub async fn who_is(&self, ip: String) -> Settled<Option<WhoIs>> {
        Settled::of(async {
            let ip = parse_ip("ip", &ip)?;
            let (peer, own, table) = self
                .call("whoIs", |d| async move {
                    let peer = d.peer_by_tailnet_ip(ip).await?;
                    Ok((peer, d.self_node().await?, self.table(&d).await?))
                })
                .await?;
            Ok(peer.map(|peer| {
                let granted =
                    who_is::app_capabilities(&table.app_grants, ip, &peer.node_capabilities, &own.tailnet_address);
                WhoIs { node: NodeInfo::new(&peer, &table.users), app_capabilities: granted.into_iter().collect() }
            }))
        })
        .await
    }

    /// The peers whose accepted routes are the most specific match for `ip`, as this device
    /// routes it: a default route (`0.0.0.0/0`, `::/0`) counts only for the chosen exit node.
    #[napi(ts_return_type = "Promise<Array<NodeInfo>>")]
    pub async fn peers_with_route(&self, ip: String) -> Settled<Vec<NodeInfo>> {
        Settled::of(async {
            let ip = parse_ip("ip", &ip)?;
            let (peers, table) = self
                .call("peersWithRoute", |d| async move { Ok((d.peers_with_route(ip).await?, self.table(&d).await?)) })
                .await?;
            let chosen = self.shared.exit.chosen();
            Ok(peers
                .iter()
                .filter(|node| exit_node::routes(node, ip, chosen.as_ref()))
                .map(|node| NodeInfo::new(node, &table.users))
                .collect())
        })
        .await
    }

    /// Sends traffic to addresses outside the tailnet through `peer` (hostname, FQDN or tailnet
    /// address), which must offer itself as an exit node (both default routes approved), as
    /// tsnet's `EditPrefs` with `ExitNodeID`; `null` for none (such addresses then have no
    /// route). Resolves with the exit node. Waits for the first network map.
    #[napi(ts_return_type = "Promise<NodeInfo | null>")]
    pub async fn set_exit_node(&self, peer: Option<String>) -> Settled<Option<NodeInfo>> {
        Settled::of(async {
            let Some(wanted) = peer else {
                self.call("setExitNode", |d| async move { self.shared.exit.set(&d, Choice::Nobody).await }).await?;
                return Ok(None);
            };
            exit_node::validate("peer", &wanted)?;
            let table = self.call("setExitNode", |d| async move { self.table(&d).await }).await?;
            let Some(node) = exit_node::find(&table.peers, &wanted) else {
                return Err(Failure::invalid("peer", &wanted, "no peer has that name or tailnet address"));
            };
            if !exit_node::offers_exit(node) {
                return Err(Failure::invalid(
                    "peer",
                    &wanted,
                    "does not offer itself as an exit node (control has approved no 0.0.0.0/0 and ::/0 routes for it)",
                ));
            }
            let chosen = Choice::Chosen(node.stable_id.clone());
            self.call("setExitNode", |d| async move { self.shared.exit.set(&d, chosen).await }).await?;
            Ok(Some(NodeInfo::new(node, &table.users)))
        })
        .await
    }

    /// Listens for TCP connections on one of this device's tailnet addresses.
    #[napi(ts_return_type = "Promise<TcpListener>")]
    pub async fn tcp_listen(&self, ip: String, port: f64) -> Settled<TcpListener> {
        let span = self.shared.span.clone();
        Settled(self.tcp_listen_in_span(ip, port).instrument(span).await)
    }

    async fn tcp_listen_in_span(&self, ip: String, port: f64) -> Result<TcpListener> {
        let addr = socket_addr("ip", &ip, "port", port, false)?;
        let lease = self.shared.ports.claim(Protocol::Tcp, addr)?;
        let device = self.device()?;
        let listener = self.unless_closed(device.tcp_listen(addr)).await?;
        let listener = match listener {
            Ok(listener) => listener,
            Err(error) => return Err(self.checked_failure(&device, error, "tcpListen").await),
        };
        Ok(TcpListener::new(listener, &self.shared.token, lease, self.shared.span.clone()))
    }

    /// Opens a TCP connection to a tailnet address. Waits for this device's own address first.
    #[napi(ts_return_type = "Promise<TcpStream>")]
    pub async fn tcp_connect(&self, ip: String, port: f64) -> Settled<TcpStream> {
        let span = self.shared.span.clone();
        Settled(self.tcp_connect_in_span(ip, port).instrument(span).await)
    }

    async fn tcp_connect_in_span(&self, ip: String, port: f64) -> Result<TcpStream> {
        let remote = socket_addr("ip", &ip, "port", port, false)?;
        // An exit node named in the options is looked up in the first network map: until then an
        // address outside the tailnet has no route.
        self.unless_closed(self.shared.exit.settled()).await?;
        let device = self.device()?;
        let local_ip = self.unless_closed(own_address(&device, remote.is_ipv4())).await?;
        let local_ip = match local_ip {
            Ok(ip) => ip,
            Err(error) => return Err(self.checked_failure(&device, error, "tcpConnect").await),
        };
        // The netstack learns the device's addresses from the same network map that answered
        // `own_address`, in its own actor: a dial that overtakes it is refused at once. A message
        // to that actor is handled after the map already in its mailbox.
        if !self.shared.netstack_addressed.load(Ordering::Acquire) {
            let _ = self.unless_closed(device.runtime().ask(ts_runtime::GetChannel).into_future()).await?;
            self.shared.netstack_addressed.store(true, Ordering::Release);
        }
        // An address outside the tailnet that no peer routes (no subnet route covers it, and no
        // exit node is set) would see its SYNs dropped until the caller's limit: say so at once.
        if !exit_node::in_tailnet(remote.ip()) {
            let peers = match self.unless_closed(device.peers_with_route(remote.ip())).await? {
                Ok(peers) => peers,
                Err(error) => return Err(self.checked_failure(&device, error, "tcpConnect").await),
            };
            let chosen = self.shared.exit.chosen();
            if !peers.iter().any(|peer| exit_node::routes(peer, remote.ip(), chosen.as_ref())) {
                let unless = if chosen.is_some() { "" } else { ", and no exit node is set" };
                return Err(Failure::new(
                    Code::ConnectionRefused,
                    "TCP connect",
                    format!(
                        "no route to {remote}: the address is outside the tailnet, no peer's subnet route covers it{unless}"
                    ),
                ));
            }
        }
        // The crate's `tcp_connect` picks its local port at random without checking it is free.
        let lease = self.shared.ports.claim_ephemeral(Protocol::Tcp, local_ip)?;
        let stream = self.unless_closed(self.shared.netstack.tcp_connect(lease.addr(), remote)).await?;
        let stream = match stream {
            Ok(stream) => stream,
            Err(tailscale::netstack::Error::ConnectionReset) => {
                return Err(from_netstack(tailscale::netstack::Error::ConnectionReset, SocketOp::Connect));
            }
            Err(error) => return Err(self.checked_failure(&device, error.into(), "tcpConnect").await),
        };
        self.mark_registered();
        Ok(TcpStream::new(stream, self.shared.token.child_token(), Some(lease), self.shared.span.clone()))
    }

    /// Binds a UDP socket on one of this device's tailnet addresses (port 1..65535).
    #[napi(ts_return_type = "Promise<UdpSocket>")]
    pub async fn udp_bind(&self, ip: String, port: f64) -> Settled<UdpSocket> {
        let span = self.shared.span.clone();
        Settled(self.udp_bind_in_span(ip, port).instrument(span).await)
    }

    async fn udp_bind_in_span(&self, ip: String, port: f64) -> Result<UdpSocket> {
        let addr = socket_addr("ip", &ip, "port", port, false)?;
        let lease = self.shared.ports.claim(Protocol::Udp, addr)?;
        let bound = match self.shared.udp.get(addr) {
            Some(bound) => bound,
            None => {
                let device = self.device()?;
                let socket = self.unless_closed(device.udp_bind(addr)).await?;
                let socket = match socket {
                    Ok(socket) => socket,
                    Err(error) => return Err(self.checked_failure(&device, error, "udpBind").await),
                };
                self.shared.udp.insert(socket, &self.shared.token, &self.shared.span)
            }
        };
        Ok(UdpSocket::attach(bound, &self.shared.token, lease).await)
    }

    /// Whether `shutdown()` has been called.
    #[napi(getter)]
    pub fn closed(&self) -> bool {
        self.shared.token.is_cancelled()
    }

    /// Stops the device and closes its sockets. Resolves `true` when it stopped gracefully within
    /// `timeoutMs` (default 5000); otherwise it is stopped forcibly and resolves `false`.
    /// Calling it again returns the first result. Once stopped, the JavaScript heap is asked to
    /// give back the pages it no longer uses (`shrink_js_heap`), and what that frees in the C
    /// allocator goes back a second later (`release_free_memory_later`).
    #[napi(ts_return_type = "Promise<boolean>")]
    pub fn shutdown<'env>(
        &self,
        env: &'env Env,
        timeout_ms: Option<f64>,
    ) -> napi::Result<PromiseRaw<'env, Settled<bool>>> {
        let shared = Arc::clone(&self.shared);
        let stopped = async move {
            let timeout = match timeout_ms {
                None => DEFAULT_SHUTDOWN,
                Some(ms) if ms.is_finite() && ms >= 0.0 => Duration::from_millis(ms as u64),
                Some(ms) => {
                    return Err(Failure::invalid("timeoutMs", ms, "must be a finite number of milliseconds >= 0"));
                }
            };
            let span = shared.span.clone();
            let graceful = shared
                .shutdown_result
                .get_or_init(|| async {
                    shared.span.record("closing", true);
                    shared.token.cancel();
                    shared.ports.clear();
                    let taken = shared.device.recover().take();
                    let deadline = Instant::now() + timeout;
                    let graceful = match taken {
                        Some(device) => stop(device, timeout).await,
                        None => true,
                    };
                    if shared.logs_out() {
                        let left = deadline.saturating_duration_since(Instant::now()).max(LOGOUT_MIN);
                        logout::log_out(&shared.recipe.config, shared.recipe.auth_key.as_deref(), left).await;
                    }
                    // Only now: closing a UDP socket while the netstack runs can crash it (udp.rs).
                    shared.udp.clear();
                    release_free_memory();
                    graceful
                })
                // All of it in the device's span: the sockets and pumps it ends log as the device.
                .instrument(span)
                .await;
            Ok(*graceful)
        };
        // The callback runs on the JavaScript thread, whose engine is the one to tell; a failure
        // settles there as the same `Error` every other call rejects with.
        env.spawn_future_with_callback(async move { Ok::<_, napi::Error>(Settled(stopped.await)) }, |_, outcome| {
            shrink_js_heap();
            release_free_memory_later();
            Ok(outcome)
        })
    }
}
