//! What a device is made of and how it lives: the state every call shares, the recipe a lost
//! device is built again from, starting (control probe, then the crate's device), the runtime
//! watch that notices a loss, and stopping. The calls themselves are in `device.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tailscale::Config;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use ts_netstack_smoltcp::netcore::Channel;

use crate::control_link::{self, ControlLink};
use crate::control_probe::{connect_timed_out, probe_control, within};
use crate::error::{Failure, Result, from_device};
use crate::exit_node::{Choice, ExitNode};
use crate::health::{self, Health};
use crate::limits::DEFAULT_SHUTDOWN;
use crate::logging;
use crate::logout;
use crate::ports::PortTable;
use crate::redact::SecretsGuard;
use crate::sync::Recover;
use crate::udp::UdpPool;

pub(crate) struct Shared {
    pub(crate) device: Mutex<Option<Arc<tailscale::Device>>>,
    /// The device's netstack, for dials from a local port we choose (`ports.rs`).
    pub(crate) netstack: Channel,
    pub(crate) token: CancellationToken,
    pub(crate) ports: Arc<PortTable>,
    pub(crate) udp: UdpPool,
    pub(crate) shutdown_result: tokio::sync::OnceCell<bool>,
    /// A watch of the runtime's peer table (users and app grants for lookups), once asked for.
    pub(crate) table: tokio::sync::OnceCell<tokio::sync::watch::Receiver<ts_runtime::peer_tracker::PeerTable>>,
    /// Set once control has given the device an address.
    pub(crate) registered: AtomicBool,
    /// Set once a dial has made sure the netstack has the device's addresses (`tcp_connect`).
    pub(crate) netstack_addressed: AtomicBool,
    pub(crate) health: Health,
    /// Whether the device has a live session with control (false while control is away).
    pub(crate) control: ControlLink,
    /// Which peer carries traffic to addresses outside the tailnet.
    pub(crate) exit: Arc<ExitNode>,
    /// What `respawn` builds a new device from: the same options and key state.
    pub(crate) recipe: Recipe,
    /// Everything this device does runs in it, so its log records reach its own sink.
    pub(crate) span: tracing::Span,
    /// The auth key and private keys, redacted from every log record while the device lives.
    _secrets: SecretsGuard,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Shared {
    /// An ephemeral device that control registered logs out when it shuts down; a lost one does
    /// not, as a device built again from its keys (`respawn`) may be using the node.
    pub(crate) fn logs_out(&self) -> bool {
        self.recipe.config.ephemeral && self.registered.load(Ordering::Acquire) && self.health.cause().is_none()
    }

    /// `DEVICE_LOST` when the runtime is gone, otherwise `DEVICE_CLOSED`.
    pub(crate) fn closed_failure(&self) -> Failure {
        self.health.failure("device").unwrap_or_else(|| Failure::device_closed("device"))
    }

    /// Marks the device lost and ends its pending calls and sockets. Ignored once shut down.
    pub(crate) fn lose(&self, cause: String) {
        if self.token.is_cancelled() {
            return;
        }
        if self.health.mark_lost(cause) {
            tracing::warn!(
                cause = self.health.cause().unwrap_or_default(),
                "device lost: the crate's runtime has stopped"
            );
        }
        self.token.cancel();
    }
}

/// Everything `Device::new` needs, kept so a lost device can be built again.
pub(crate) struct Recipe {
    pub(crate) config: Config,
    pub(crate) auth_key: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) log_sink: Option<u32>,
}

impl Recipe {
    pub(crate) fn duplicate(&self) -> Recipe {
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
        let bare =
            keys.iter().filter_map(|key| key.split_once(':').map(|(_, hex)| hex.to_string())).collect::<Vec<_>>();
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
                device.shutdown(Some(DEFAULT_SHUTDOWN)).await;
                if let Some(recipe) = logout {
                    logout::log_out(&recipe.config, recipe.auth_key.as_deref(), LOGOUT_MIN).await;
                }
            }
            .instrument(self.span.clone()),
        );
    }
}

/// How long logging out may take when the shutdown timeout has no time left.
pub(crate) const LOGOUT_MIN: Duration = Duration::from_secs(2);

/// A new device's span, its records going to `log_sink` (nowhere when `None`). After the
/// subscriber is installed: a span made before would belong to no subscriber.
pub(crate) fn new_span(log_sink: Option<u32>) -> tracing::Span {
    logging::install();
    logging::device_span(log_sink)
}

/// Connects a device from `recipe` in `span` (`new_span`), with `exit` as its exit node, and
/// starts watching its runtime.
pub(crate) async fn start(recipe: Recipe, registered: bool, span: tracing::Span, exit: Choice) -> Result<Arc<Shared>> {
    let secrets = SecretsGuard::register(recipe.secrets());
    let control = recipe.config.control_server_url.clone();
    let deadline = recipe.connect_timeout.map(|t| tokio::time::Instant::now() + t);
    // The probe is this device's too: what it logs reaches its sink.
    probe_control(&control, deadline, recipe.connect_timeout).instrument(span.clone()).await?;
    // The crate spawns the device's actors here: they log inside `span` from now on.
    let create = tailscale::Device::new(&recipe.config, recipe.auth_key.clone()).instrument(span.clone());
    let created = within(deadline, create).await.ok_or_else(|| {
        connect_timed_out(
            recipe.connect_timeout,
            &format!("the control server at {control} did not complete the handshake"),
        )
    })?;
    let device = created.map_err(|e| from_device(e, "connect"))?;
    let (netstack,) = device
        .runtime()
        .ask(ts_runtime::GetChannel)
        .await
        .map_err(|e| from_device(tailscale::Error::from(ts_runtime::Error::from(e)), "connect"))?;
    let shared = Arc::new(Shared {
        device: Mutex::new(Some(Arc::new(device))),
        netstack,
        token: CancellationToken::new(),
        ports: Arc::new(PortTable::default()),
        udp: UdpPool::default(),
        shutdown_result: tokio::sync::OnceCell::new(),
        table: tokio::sync::OnceCell::new(),
        registered: AtomicBool::new(registered),
        netstack_addressed: AtomicBool::new(false),
        health: Health::default(),
        control: ControlLink::default(),
        exit: Arc::new(ExitNode::new(exit)),
        recipe,
        span,
        _secrets: secrets,
        runtime: tokio::runtime::Handle::current(),
    });
    watch_runtime(Arc::downgrade(&shared));
    follow_exit_node(&shared);
    Ok(shared)
}

/// Tells the new runtime the exit node once it is known (`ExitNode::follow`), until the device
/// ends. Holds neither the device nor the shared state, so a shutdown never waits for it.
fn follow_exit_node(shared: &Arc<Shared>) {
    if shared.exit.choice() == Choice::Nobody {
        return;
    }
    let Some(device) = shared.device.recover().clone() else { return };
    let weak = device.runtime().downgrade();
    drop(device);
    let runtime = move || weak.upgrade();
    let exit = Arc::clone(&shared.exit);
    let token = shared.token.clone();
    let follow = async move {
        let Some(strong) = runtime() else { return };
        let asked = strong.ask(ts_runtime::WatchPeers).await;
        drop(strong);
        let Ok(ts_runtime::peer_tracker::PeerTableWatch(table)) = asked else { return };
        tokio::select! {
            () = token.cancelled() => {}
            () = exit.follow(&runtime, table) => {}
        }
    };
    tokio::spawn(follow.instrument(shared.span.clone()));
}

/// Probes the runtime once a second until the device is shut down, dropped or found lost, so
/// a lost device ends its pending reads and accepts even when nobody calls it; and publishes
/// whether control is connected.
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
            if let Some(connected) = control_link::connected(&device).await {
                shared.control.set(connected);
            }
        }
    };
    tokio::spawn(watch.instrument(span));
}

/// Hands the C allocator's free pages back to the system. glibc keeps what a burst freed (10,000
/// concurrent lookups: some 70 MiB over its per-thread arenas, 11 MiB still in use) for reuse,
/// and gives back only the free top of each arena, so a device's peak stayed resident after it
/// closed. `malloc_trim(0)` also returns the free pages inside each arena. A few milliseconds;
/// called once a device has shut down, and again a little later (`release_free_memory_later`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: glibc's malloc_trim takes no pointers and is thread-safe; it only releases free memory.
    unsafe {
        malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

/// How long after a shutdown the second trim waits. The collection `shrink_js_heap` starts ran
/// within some 50 ms of it after 10,000 lookups in an idle process (a trim 100 ms later caught
/// what it freed; one right after the notification, nothing); a busy thread takes longer.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SECOND_TRIM_AFTER: Duration = Duration::from_secs(1);

/// Trims the C allocator once more, `SECOND_TRIM_AFTER` from now, on a thread of its own. What
/// V8 frees through malloc in the collection `shrink_js_heap` starts comes after the first trim,
/// and stayed resident: after 2 x 10,000 lookups, 6-10 MiB of free pages, most in the JavaScript
/// thread's arena (`[heap]`). Shutdowns close together share one trim, due after the last.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release_free_memory_later() {
    static DUE: Mutex<Option<Instant>> = Mutex::new(None);
    let mut due = DUE.recover();
    let pending = due.is_some();
    *due = Some(Instant::now() + SECOND_TRIM_AFTER);
    drop(due);
    if pending {
        return;
    }
    let trim = || {
        loop {
            let mut due = DUE.recover();
            let left = due.map_or(Duration::ZERO, |at| at.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                *due = None;
                break;
            }
            drop(due);
            std::thread::sleep(left);
        }
        release_free_memory();
    };
    if std::thread::Builder::new().name("trim-free-memory".into()).spawn(trim).is_err() {
        *DUE.recover() = None;
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory_later() {}

/// Tells the JavaScript engine of the calling thread that memory is short, so it gives back the
/// pages its heap grew into. After a burst (10,000 concurrent lookups: some 12 KiB of fibers,
/// spans and promises each) V8 keeps the freed old-space pages pooled and its new space at full
/// size until its memory reducer runs, some 25 s later: 140 MiB resident after the device closed,
/// with 25 MiB of heap in use. A moderate notification starts an incremental collection that
/// shrinks the heap and unmaps the pool, without blocking the thread for a full collection. Node
/// exports V8's API only as C++ symbols, resolved here at run time: an engine without them (not
/// V8) is left alone. Must run on a JavaScript thread; called once a device has shut down.
#[cfg(any(target_os = "linux", target_os = "macos"))]
#[allow(unsafe_code)]
pub(crate) fn shrink_js_heap() {
    use std::ffi::{c_char, c_int, c_void};
    use std::sync::OnceLock;

    type GetCurrent = unsafe extern "C" fn() -> *mut c_void;
    // A non-virtual member function: `this` first (Itanium C++ ABI).
    type Notify = unsafe extern "C" fn(*mut c_void, c_int);
    unsafe extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    // RTLD_DEFAULT: every object the process loaded, the node binary first.
    #[cfg(target_os = "linux")]
    const EVERYWHERE: *mut c_void = std::ptr::null_mut();
    #[cfg(target_os = "macos")]
    const EVERYWHERE: *mut c_void = -2isize as *mut c_void;
    // v8::MemoryPressureLevel::kModerate
    const MODERATE: c_int = 1;

    static API: OnceLock<Option<(GetCurrent, Notify)>> = OnceLock::new();
    let api = API.get_or_init(|| {
        // SAFETY: dlsym reads the NUL-terminated names only; a found symbol is the V8 function
        // with the signature its mangled name spells (v8::Isolate::GetCurrent() and
        // v8::Isolate::MemoryPressureNotification(v8::MemoryPressureLevel), stable since V8 5).
        unsafe {
            let current = dlsym(EVERYWHERE, c"_ZN2v87Isolate10GetCurrentEv".as_ptr());
            let notify =
                dlsym(EVERYWHERE, c"_ZN2v87Isolate26MemoryPressureNotificationENS_19MemoryPressureLevelE".as_ptr());
            (!current.is_null() && !notify.is_null()).then(|| {
                (
                    std::mem::transmute::<*mut c_void, GetCurrent>(current),
                    std::mem::transmute::<*mut c_void, Notify>(notify),
                )
            })
        }
    });
    if let Some((current, notify)) = *api {
        // SAFETY: on a JavaScript thread GetCurrent is that thread's entered isolate, which the
        // notification may be sent to; null (no isolate entered) is skipped.
        unsafe {
            let isolate = current();
            if !isolate.is_null() {
                notify(isolate, MODERATE);
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(crate) fn shrink_js_heap() {}

/// Waits (within the timeout) for calls that still hold the device to let go, then shuts it down.
pub(crate) async fn stop(mut device: Arc<tailscale::Device>, timeout: Duration) -> bool {
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
