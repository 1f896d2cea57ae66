//! The device: connect, addresses, lookups, auth state, sockets and shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use napi_derive::napi;
use tailscale::{AuthState as CrateAuthState, Config};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::address::{self, parse_ip, socket_addr};
use crate::error::{Code, Failure, Result, SocketOp, from_device, from_netstack};
use crate::health::{self, Health};
use crate::keys::{self, OnBadFormat};
use crate::logging::{self, SecretsGuard};
use crate::logout;
use crate::node_info::NodeInfo;
use crate::ports::{PortTable, Protocol};
use crate::tcp::{TcpListener, TcpStream};
use crate::trust;
use crate::udp::{UdpPool, UdpSocket};
use crate::sync::Recover;

/// How to join the tailnet. Every field is optional.
#[napi(object)]
#[derive(Default)]
pub struct ConnectOptions {
    /// Key file: created with mode 0600 when missing; never overwritten unless
    /// `overwriteBadKeyFile` is set (the invalid bytes are then kept beside it, mode 0600, as
    /// `<name>.invalid`, or `<name>.invalid.N` when that exists). A file in the format before
    /// tailscale-rs 0.5 is rewritten in the current one, with the same keys.
    pub key_file: Option<String>,
    pub overwrite_bad_key_file: Option<bool>,
    /// In-memory key state, as the JSON a key file holds (see `generateKeyState`). Without a key
    /// file or key state the device gets a fresh identity that is not saved.
    pub key_state: Option<String>,
    pub auth_key: Option<String>,
    /// Control server URL; default `https://controlplane.tailscale.com/`.
    pub control_url: Option<String>,
    /// Requested hostname; default: the OS hostname.
    pub hostname: Option<String>,
    /// ACL tags to request, each `tag:<name>`.
    pub tags: Option<Vec<String>>,
    /// Remove the node from the tailnet soon after it goes offline.
    pub ephemeral: Option<bool>,
    /// Sent to control as `Hostinfo.App` ("tailscale-rs (<clientName>)").
    pub client_name: Option<String>,
    /// Give up with `TIMEOUT` when control has not completed the handshake within this many
    /// milliseconds. Default: wait as long as the crate does (forever).
    pub connect_timeout_ms: Option<f64>,
    /// A sink from `subscribeLogs`: this device's log records go there only.
    pub log_sink: Option<u32>,
    /// A PEM file of CA certificates to trust beside the public web roots, for a control server
    /// (or DERP relay) with a private CA. Trusted by every device in this process from then on.
    pub ca_file: Option<String>,
}

/// Whether this device may join the tailnet.
#[napi(object)]
pub struct AuthState {
    pub authorized: bool,
    /// When not authorized: the URL where a person can approve this device.
    pub login_url: Option<String>,
}

struct Shared {
    device: Mutex<Option<Arc<tailscale::Device>>>,
    token: CancellationToken,
    ports: Arc<PortTable>,
    udp: UdpPool,
    shutdown_result: tokio::sync::OnceCell<bool>,
    /// Set once control has given the device an address.
    registered: AtomicBool,
    health: Health,
    /// What `respawn` builds a new device from: the same options and key state.
    recipe: Recipe,
    /// Everything this device does runs in it, so its log records reach its own sink.
    span: tracing::Span,
    /// The auth key and private keys, redacted from every log record while the device lives.
    _secrets: SecretsGuard,
    runtime: tokio::runtime::Handle,
}

impl Shared {
    /// An ephemeral device that control registered logs out when it shuts down; a lost one does
    /// not, as a device built again from its keys (`respawn`) may be using the node.
    fn logs_out(&self) -> bool {
        self.recipe.config.ephemeral && self.registered.load(Ordering::Acquire) && self.health.cause().is_none()
    }

    /// `DEVICE_LOST` when the runtime is gone, otherwise `DEVICE_CLOSED`.
    fn closed_failure(&self) -> Failure {
        self.health.failure("device").unwrap_or_else(|| Failure::device_closed("device"))
    }

    /// Marks the device lost and ends its pending calls and sockets. Ignored once shut down.
    fn lose(&self, cause: String) {
        if self.token.is_cancelled() {
            return;
        }
        if self.health.mark_lost(cause) {
            tracing::warn!(cause = self.health.cause().unwrap_or_default(), "device lost: the crate's runtime has stopped");
        }
        self.token.cancel();
    }
}

/// Everything `Device::new` needs, kept so a lost device can be built again.
struct Recipe {
    config: Config,
    auth_key: Option<String>,
    connect_timeout: Option<Duration>,
    log_sink: Option<u32>,
}

impl Recipe {
    fn duplicate(&self) -> Recipe {
        let config = &self.config;
        Recipe {
            config: Config {
                key_state: config.key_state.clone(),
                client_name: config.client_name.clone(),
                control_server_url: config.control_server_url.clone(),
                requested_hostname: config.requested_hostname.clone(),
                requested_tags: config.requested_tags.clone(),
                ephemeral: config.ephemeral,
            },
            auth_key: self.auth_key.clone(),
            connect_timeout: self.connect_timeout,
            log_sink: self.log_sink,
        }
    }

    /// What must never reach a log: the auth key and the private keys, with and without their
    /// `privkey:`-style prefix.
    fn secrets(&self) -> Vec<String> {
        let state = &self.config.key_state;
        let keys = [state.node_key.to_string(), state.machine_key.to_string(), state.network_lock_key.to_string()];
        let bare = keys.iter().filter_map(|key| key.split_once(':').map(|(_, hex)| hex.to_string())).collect::<Vec<_>>();
        self.auth_key.iter().cloned().chain(keys).chain(bare).collect()
    }
}

impl Drop for Shared {
    /// A safety net for a device that was garbage-collected without `shutdown()`: stop it in
    /// the background so an ephemeral node still leaves the tailnet. Never blocks.
    fn drop(&mut self) {
        let taken = self.device.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        let Some(device) = taken.and_then(|device| Arc::try_unwrap(device).ok()) else { return };
        let logout = self.logs_out().then(|| self.recipe.duplicate());
        self.runtime.spawn(
            async move {
                device.shutdown(Some(Duration::from_secs(5))).await;
                if let Some(recipe) = logout {
                    logout::log_out(&recipe.config, recipe.auth_key.as_deref(), LOGOUT_MIN).await;
                }
            }
            .instrument(self.span.clone()),
        );
    }
}

/// How long logging out may take when the shutdown timeout has no time left.
const LOGOUT_MIN: Duration = Duration::from_secs(2);

/// A Tailscale device inside this process.
#[napi]
pub struct Device {
    shared: Arc<Shared>,
}

struct Prepared {
    /// Everything but the key state, which `KeySource::load` fills in.
    config: Config,
    keys: KeySource,
    auth_key: Option<String>,
    connect_timeout: Option<Duration>,
    log_sink: Option<u32>,
    ca_file: Option<String>,
}

/// Where the device's identity comes from. Loading a key file can create it, so it happens only
/// once every option is valid: a refused connect leaves no file.
enum KeySource {
    File(PathBuf, OnBadFormat),
    State(tailscale::keys::PersistState),
    Fresh,
}

impl KeySource {
    fn load(self) -> Result<tailscale::keys::PersistState> {
        match self {
            KeySource::File(path, on_bad_format) => keys::load_or_create(&path, on_bad_format),
            KeySource::State(state) => Ok(state),
            KeySource::Fresh => Ok(keys::generate()),
        }
    }
}

fn prepare(options: ConnectOptions) -> Result<Prepared> {
    let mut config = Config::default();

    if let Some(url) = &options.control_url {
        config.control_server_url = parse_control_url(url)?;
    }

    let hostname = match options.hostname {
        Some(name) => {
            address::validate_hostname("hostname", &name)?;
            name
        }
        None => address::os_hostname(),
    };
    config.requested_hostname = Some(hostname);

    let tags = options.tags.unwrap_or_default();
    for (index, tag) in tags.iter().enumerate() {
        address::validate_tag(&format!("tags[{index}]"), tag)?;
    }
    config.requested_tags = tags;
    config.ephemeral = options.ephemeral.unwrap_or(false);

    if let Some(name) = options.client_name {
        if name.trim().is_empty() || name.chars().any(char::is_control) {
            return Err(Failure::invalid("clientName", name, "must be non-empty printable text"));
        }
        config.client_name = Some(name);
    }

    let auth_key = match options.auth_key {
        Some(key) if key.trim().is_empty() => {
            return Err(Failure::invalid_secret("authKey", "must not be empty (omit it to log in interactively)"));
        }
        Some(key) if key.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(Failure::invalid_secret("authKey", "must not contain whitespace"));
        }
        other => other,
    };

    let keys = match (options.key_file, options.key_state) {
        (Some(_), Some(_)) => {
            return Err(Failure::invalid_secret("keyState", "give either keyFile or keyState, not both"));
        }
        (Some(path), None) => {
            if path.is_empty() {
                return Err(Failure::invalid("keyFile", path, "must be a file path"));
            }
            let on_bad = if options.overwrite_bad_key_file.unwrap_or(false) {
                OnBadFormat::Overwrite
            } else {
                OnBadFormat::Error
            };
            KeySource::File(PathBuf::from(path), on_bad)
        }
        (None, Some(json)) => KeySource::State(keys::from_json(&json)?),
        (None, None) => KeySource::Fresh,
    };

    let ca_file = match options.ca_file {
        Some(path) if path.is_empty() => return Err(Failure::invalid("caFile", path, "must be a file path")),
        other => other,
    };

    let connect_timeout = match options.connect_timeout_ms {
        None => None,
        Some(ms) if ms.is_finite() && ms > 0.0 => Some(Duration::from_millis(ms as u64)),
        Some(ms) => return Err(Failure::invalid("connectTimeoutMs", ms, "must be a positive number of milliseconds")),
    };

    Ok(Prepared {
        config,
        keys,
        auth_key,
        connect_timeout,
        log_sink: options.log_sink,
        ca_file,
    })
}

fn parse_control_url(text: &str) -> Result<url::Url> {
    // Whatever stands before an `@` may be a password: never echo it.
    let shown = match text.split_once('@') {
        Some((before, after)) if before.contains("//") => format!("{}//…@{after}", before.split("//").next().unwrap_or("")),
        _ => text.to_string(),
    };
    let url = url::Url::parse(text).map_err(|e| Failure::invalid("controlUrl", &shown, &format!("not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Failure::invalid_secret("controlUrl", "must not carry a user name or password"));
    }
    let text = shown.as_str();
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Failure::invalid("controlUrl", text, "needs a host"));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" => Err(Failure::invalid(
            "controlUrl",
            text,
            "plain http is not supported: use https (trust a private CA with caFile)",
        )),
        _ => Err(Failure::invalid("controlUrl", text, "must be an http or https URL")),
    }
}

impl Device {
    fn device(&self) -> Result<Arc<tailscale::Device>> {
        if let Some(lost) = self.shared.health.failure("device") {
            return Err(lost);
        }
        self.shared
            .device
            .recover()
            .clone()
            .ok_or_else(|| Failure::device_closed("device"))
    }

    /// Runs one crate call, failing fast with `DEVICE_CLOSED` if the device closes meanwhile.
    async fn call<T, Fut>(&self, what: &str, call: impl FnOnce(Arc<tailscale::Device>) -> Fut) -> Result<T>
    where
        Fut: Future<Output = std::result::Result<T, tailscale::Error>>,
    {
        let device = self.device()?;
        let token = self.shared.token.clone();
        let result = tokio::select! {
            biased;
            () = token.cancelled() => return Err(self.shared.closed_failure()),
            result = call(Arc::clone(&device)).instrument(self.shared.span.clone()) => result,
        };
        match result {
            Ok(value) => Ok(value),
            Err(error) => Err(self.checked_failure(&device, error, what).await),
        }
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
            let message = match logging::registration_refusal(&self.shared.span) {
                Some(reason) => format!("{what}: control refused this device's registration: {reason}"),
                None => format!("{what}: control rejected this device's registration (is the auth key valid?)"),
            };
            return Failure::new(Code::NotAuthorized, message);
        }
        from_device(error, what)
    }

    fn mark_registered(&self) {
        self.shared.registered.store(true, Ordering::Release);
    }
}

#[napi]
impl Device {
    /// Joins the tailnet. Resolves once the control server has been reached (not once the device
    /// has an address: await `ipv4()` for that).
    #[napi(factory)]
    pub async fn connect(options: Option<ConnectOptions>) -> napi::Result<Device> {
        let mut prepared = prepare(options.unwrap_or_default())?;
        if let Some(path) = &prepared.ca_file {
            trust::trust_ca_file("caFile", path)?;
        }
        prepared.config.key_state = prepared.keys.load()?;
        let recipe = Recipe {
            config: prepared.config,
            auth_key: prepared.auth_key,
            connect_timeout: prepared.connect_timeout,
            log_sink: prepared.log_sink,
        };
        Ok(start(recipe, false).await?)
    }

    /// A new device built like this one (same options, same key state, so the same node and
    /// addresses), for when this one is lost. Connects like `connect`.
    #[napi]
    pub async fn respawn(&self) -> napi::Result<Device> {
        // Control accepted this identity before: a runtime that stops from now on is a loss, not
        // a refused registration.
        let registered = self.shared.registered.load(Ordering::Acquire);
        Ok(start(self.shared.recipe.duplicate(), registered).await?)
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

    /// This device's IPv4 tailnet address. Waits for the first network map.
    #[napi]
    pub async fn ipv4(&self) -> napi::Result<String> {
        let ip = self.call("ipv4", |d| async move { d.ipv4_addr().await }).await?;
        self.mark_registered();
        Ok(ip.to_string())
    }

    /// This device's IPv6 tailnet address. Waits for the first network map.
    #[napi]
    pub async fn ipv6(&self) -> napi::Result<String> {
        let ip = self.call("ipv6", |d| async move { d.ipv6_addr().await }).await?;
        self.mark_registered();
        Ok(ip.to_string())
    }

    /// This device's own node. Waits for the first network map.
    #[napi]
    pub async fn self_node(&self) -> napi::Result<NodeInfo> {
        let node = self.call("selfNode", |d| async move { d.self_node().await }).await?;
        self.mark_registered();
        Ok(NodeInfo::from(&node))
    }

    /// Whether control has authorized this device, or where a person can log it in.
    /// Waits until control has answered the registration.
    #[napi]
    pub async fn auth_state(&self) -> napi::Result<AuthState> {
        let state = self.call("authState", |d| async move { d.is_authorized().await }).await?;
        Ok(match state {
            CrateAuthState::Authorized => {
                self.mark_registered();
                AuthState {
                    authorized: true,
                    login_url: None,
                }
            }
            CrateAuthState::NotAuthorized(url) => AuthState {
                authorized: false,
                login_url: Some(url.to_string()),
            },
        })
    }

    /// A peer by bare hostname or fully qualified name (a trailing dot is allowed).
    #[napi]
    pub async fn peer_by_name(&self, name: String) -> napi::Result<Option<NodeInfo>> {
        if name.trim_end_matches('.').is_empty() {
            return Err(Failure::invalid("name", name, "must be a hostname or FQDN").into());
        }
        let peer = self
            .call("peerByName", |d| async move { d.peer_by_name(&name).await })
            .await?;
        Ok(peer.as_ref().map(NodeInfo::from))
    }

    /// The peer that owns a tailnet IP.
    #[napi]
    pub async fn peer_by_ip(&self, ip: String) -> napi::Result<Option<NodeInfo>> {
        let ip = parse_ip("ip", &ip)?;
        let peer = self
            .call("peerByIp", |d| async move { d.peer_by_tailnet_ip(ip).await })
            .await?;
        Ok(peer.as_ref().map(NodeInfo::from))
    }

    /// The peers whose accepted routes are the most specific match for `ip`.
    #[napi]
    pub async fn peers_with_route(&self, ip: String) -> napi::Result<Vec<NodeInfo>> {
        let ip = parse_ip("ip", &ip)?;
        let peers = self
            .call("peersWithRoute", |d| async move { d.peers_with_route(ip).await })
            .await?;
        Ok(peers.iter().map(NodeInfo::from).collect())
    }

    /// Listens for TCP connections on one of this device's tailnet addresses.
    #[napi]
    pub async fn tcp_listen(&self, ip: String, port: f64) -> napi::Result<TcpListener> {
        let span = self.shared.span.clone();
        self.tcp_listen_in_span(ip, port).instrument(span).await
    }

    async fn tcp_listen_in_span(&self, ip: String, port: f64) -> napi::Result<TcpListener> {
        let addr = socket_addr("ip", &ip, "port", port, false)?;
        let lease = self.shared.ports.claim(Protocol::Tcp, addr)?;
        let device = self.device()?;
        let listener = tokio::select! {
            biased;
            () = self.shared.token.cancelled() => return Err(self.shared.closed_failure().into()),
            listener = device.tcp_listen(addr) => listener,
        };
        let listener = match listener {
            Ok(listener) => listener,
            Err(error) => return Err(self.checked_failure(&device, error, "tcpListen").await.into()),
        };
        Ok(TcpListener::new(listener, &self.shared.token, lease))
    }

    /// Opens a TCP connection to a tailnet address. Waits for this device's own address first.
    #[napi]
    pub async fn tcp_connect(&self, ip: String, port: f64) -> napi::Result<TcpStream> {
        let span = self.shared.span.clone();
        self.tcp_connect_in_span(ip, port).instrument(span).await
    }

    async fn tcp_connect_in_span(&self, ip: String, port: f64) -> napi::Result<TcpStream> {
        let remote = socket_addr("ip", &ip, "port", port, false)?;
        let device = self.device()?;
        let stream = tokio::select! {
            biased;
            () = self.shared.token.cancelled() => return Err(self.shared.closed_failure().into()),
            stream = device.tcp_connect(remote) => stream,
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(tailscale::Error::ConnectionReset) => {
                return Err(from_netstack(tailscale::netstack::Error::ConnectionReset, SocketOp::Connect).into());
            }
            Err(error) => return Err(self.checked_failure(&device, error, "tcpConnect").await.into()),
        };
        self.mark_registered();
        Ok(TcpStream::new(stream, self.shared.token.child_token()))
    }

    /// Binds a UDP socket on one of this device's tailnet addresses (port 1..65535).
    #[napi]
    pub async fn udp_bind(&self, ip: String, port: f64) -> napi::Result<UdpSocket> {
        let span = self.shared.span.clone();
        self.udp_bind_in_span(ip, port).instrument(span).await
    }

    async fn udp_bind_in_span(&self, ip: String, port: f64) -> napi::Result<UdpSocket> {
        let addr = socket_addr("ip", &ip, "port", port, false)?;
        let lease = self.shared.ports.claim(Protocol::Udp, addr)?;
        let bound = match self.shared.udp.get(addr) {
            Some(bound) => bound,
            None => {
                let device = self.device()?;
                let socket = tokio::select! {
                    biased;
                    () = self.shared.token.cancelled() => return Err(self.shared.closed_failure().into()),
                    socket = device.udp_bind(addr) => socket,
                };
                let socket = match socket {
                    Ok(socket) => socket,
                    Err(error) => return Err(self.checked_failure(&device, error, "udpBind").await.into()),
                };
                self.shared.udp.insert(socket, &self.shared.token)
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
    /// Calling it again returns the first result.
    #[napi]
    pub async fn shutdown(&self, timeout_ms: Option<f64>) -> napi::Result<bool> {
        let timeout = match timeout_ms {
            None => Duration::from_secs(5),
            Some(ms) if ms.is_finite() && ms >= 0.0 => Duration::from_millis(ms as u64),
            Some(ms) => return Err(Failure::invalid("timeoutMs", ms, "must be a finite number of milliseconds >= 0").into()),
        };
        let shared = Arc::clone(&self.shared);
        let graceful = self
            .shared
            .shutdown_result
            .get_or_init(|| async move {
                shared.span.record("closing", true);
                shared.token.cancel();
                shared.ports.clear();
                let taken = shared.device.recover().take();
                let deadline = Instant::now() + timeout;
                let graceful = match taken {
                    Some(device) => stop(device, timeout).instrument(shared.span.clone()).await,
                    None => true,
                };
                if shared.logs_out() {
                    let left = deadline.saturating_duration_since(Instant::now()).max(LOGOUT_MIN);
                    logout::log_out(&shared.recipe.config, shared.recipe.auth_key.as_deref(), left).instrument(shared.span.clone()).await;
                }
                // Only now: closing a UDP socket while the netstack runs can crash it (udp.rs).
                shared.udp.clear();
                graceful
            })
            .await;
        Ok(*graceful)
    }
}

/// Connects a device from `recipe` and starts watching its runtime.
async fn start(recipe: Recipe, registered: bool) -> Result<Device> {
    logging::install();
    let secrets = SecretsGuard::register(recipe.secrets());
    let span = logging::device_span(recipe.log_sink);
    let control = recipe.config.control_server_url.clone();
    let deadline = recipe.connect_timeout.map(|t| tokio::time::Instant::now() + t);
    probe_control(&control, deadline, recipe.connect_timeout).await?;
    // The crate spawns the device's actors here: they log inside `span` from now on.
    let create = tailscale::Device::new(&recipe.config, recipe.auth_key.clone()).instrument(span.clone());
    let created = within(deadline, create)
        .await
        .ok_or_else(|| connect_timed_out(recipe.connect_timeout, &format!("the control server at {control} did not complete the handshake")))?;
    let device = created.map_err(|e| from_device(e, "connect"))?;
    let shared = Arc::new(Shared {
        device: Mutex::new(Some(Arc::new(device))),
        token: CancellationToken::new(),
        ports: Arc::new(PortTable::default()),
        udp: UdpPool::default(),
        shutdown_result: tokio::sync::OnceCell::new(),
        registered: AtomicBool::new(registered),
        health: Health::default(),
        recipe,
        span,
        _secrets: secrets,
        runtime: tokio::runtime::Handle::current(),
    });
    watch_runtime(Arc::downgrade(&shared));
    Ok(Device { shared })
}

/// Probes the runtime once a second until the device is shut down, dropped or found lost, so
/// a lost device ends its pending reads and accepts even when nobody calls it.
fn watch_runtime(shared: Weak<Shared>) {
    let span = shared.upgrade().map(|s| s.span.clone()).unwrap_or_else(tracing::Span::none);
    let watch = async move {
        loop {
            let Some(token) = shared.upgrade().map(|s| s.token.clone()) else { return };
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(health::PROBE_INTERVAL) => {}
            }
            let Some(shared) = shared.upgrade() else { return };
            // Before control has assigned an address, a stopped runtime means a rejected
            // registration, which `device_failure` reports as NOT_AUTHORIZED.
            if !shared.registered.load(Ordering::Acquire) {
                continue;
            }
            let device = shared.device.recover().clone();
            let Some(device) = device else { return };
            if let Some(cause) = health::runtime_gone(&device).await {
                shared.lose(cause);
                return;
            }
        }
    };
    tokio::spawn(watch.instrument(span));
}

/// The crate's first control dial happens inside an actor whose failure is only logged, after
/// which `Device::new` never returns. A TCP connection (and, for https, a TLS handshake) first
/// turns the common cases (nobody listening, no route, unknown host, an untrusted certificate)
/// into an immediate, typed error.
async fn probe_control(url: &url::Url, deadline: Option<tokio::time::Instant>, limit: Option<Duration>) -> Result<()> {
    let unreachable = |why: String| {
        Failure::new(Code::ControlUnreachable, format!("connect: cannot reach the control server at {url}: {why}"))
    };
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let dial = tokio::net::TcpStream::connect((host.clone(), port));
    let stream = within(deadline, dial)
        .await
        .ok_or_else(|| connect_timed_out(limit, &format!("no TCP connection to the control server at {url}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    if url.scheme() != "https" {
        return Ok(());
    }
    // The crate's own TLS check (its roots, its verifier): a certificate control's clients will
    // not trust fails here at once with the reason, instead of the crate retrying in silence.
    let name = ts_tls_util::ServerName::try_from(host.clone())
        .map_err(|e| unreachable(format!("{host} is not a name TLS can verify ({e})")))?;
    within(deadline, ts_tls_util::connect(name, stream))
        .await
        .ok_or_else(|| connect_timed_out(limit, &format!("the TLS handshake with the control server at {url} did not finish")))?
        .map(drop)
        .map_err(|e| unreachable(format!("TLS handshake failed: {e}")))
}

/// `connectTimeoutMs` passed: the one limit on connecting (core passes its own through).
fn connect_timed_out(limit: Option<Duration>, pending: &str) -> Failure {
    let ms = limit.map_or(0, |limit| limit.as_millis());
    Failure::new(Code::Timeout, format!("connect: timed out after {ms} ms: {pending}"))
}

/// `future`, bounded by `deadline` when there is one; `None` when the deadline passed first.
async fn within<T>(deadline: Option<tokio::time::Instant>, future: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

/// Waits (within the timeout) for calls that still hold the device to let go, then shuts it down.
async fn stop(mut device: Arc<tailscale::Device>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match Arc::try_unwrap(device) {
            Ok(owned) => {
                let left = deadline.saturating_duration_since(Instant::now());
                return owned.shutdown(Some(left)).await;
            }
            Err(shared) if Instant::now() < deadline => {
                device = shared;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ConnectOptions {
        ConnectOptions::default()
    }

    fn failure(options: ConnectOptions) -> Failure {
        match prepare(options) {
            Err(failure) => failure,
            Ok(_) => panic!("options should have been rejected"),
        }
    }

    #[test]
    fn defaults_use_os_hostname_and_fresh_keys() {
        let prepared = prepare(options()).unwrap();
        assert_eq!(prepared.config.requested_hostname, Some(address::os_hostname()));
        assert!(!prepared.config.ephemeral);
        assert!(prepared.auth_key.is_none());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let cases = [
            (ConnectOptions { control_url: Some("not a url".into()), ..options() }, "controlUrl:"),
            (ConnectOptions { control_url: Some("ftp://x".into()), ..options() }, "controlUrl:"),
            (ConnectOptions { hostname: Some("bad host".into()), ..options() }, "hostname:"),
            (ConnectOptions { tags: Some(vec!["tag:ok".into(), "nope".into()]), ..options() }, "tags[1]:"),
            (ConnectOptions { auth_key: Some(" ".into()), ..options() }, "authKey:"),
            (ConnectOptions { client_name: Some("".into()), ..options() }, "clientName:"),
            (ConnectOptions { key_state: Some("{}".into()), ..options() }, "keyState:"),
            (
                ConnectOptions { key_file: Some("/tmp/x".into()), key_state: Some("{}".into()), ..options() },
                "keyState:",
            ),
        ];
        for (options, prefix) in cases {
            let failure = failure(options);
            assert_eq!(failure.code, Code::InvalidArgument);
            assert!(failure.message.starts_with(prefix), "{} should start with {prefix}", failure.message);
        }
    }

    #[test]
    fn auth_key_is_never_echoed() {
        let failure = failure(ConnectOptions { auth_key: Some("tskey-secret value".into()), ..options() });
        assert!(!failure.message.contains("tskey-secret"), "{}", failure.message);
    }

    #[test]
    fn control_url_credentials_are_never_echoed() {
        for url in ["https://admin:hunter2@control.example/", "ftp://admin:hunter2@control.example/", "https://admin:hunter2@"] {
            let message = parse_control_url(url).unwrap_err().message;
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn control_is_https_only() {
        let message = parse_control_url("http://127.0.0.1:9911").unwrap_err().message;
        assert!(message.contains("plain http is not supported"), "{message}");
        assert!(parse_control_url("https://controlplane.example/").is_ok());
    }
}
