//! Rust `tracing` events delivered to JavaScript, each to the device that produced it.
//!
//! tracing allows one subscriber per process, so there is one, with many sinks: JavaScript
//! subscribes a handler and a `RUST_LOG`-style filter (`subscribeLogs`), and connects a device
//! with that sink's id. A record belongs to a device when it happens inside the device's span:
//! the addon runs the device's own work inside it (its calls, socket pumps and drops), and the
//! crate's actors and tasks (kameo and the `ts_*` crates, patched in `native/patches/`) inherit
//! the span of whoever spawned them, so a device's whole actor tree logs inside it. A device's
//! record goes to its own sink only, or nowhere when it was connected without one. Some crates
//! open root spans of their own (h2's `Connection` has `parent: None`), so a record whose spans
//! name no device belongs to the device whose span is entered on its thread, if any: the task it
//! runs in was spawned in that span. A record of no device (loading a key file, a process-wide
//! setting, a task nobody could trace) goes to the process sinks (`subscribeProcessLogs`) only,
//! never to a device's. Each sink's filter applies to what reaches it, and unsubscribing one
//! never affects another.
//!
//! Before any record leaves Rust, secrets are redacted: every auth key and private key a live
//! device holds, anything shaped like one (`tskey-…`, `privkey:…`, `nlpriv:…`), and fields whose
//! name says they hold one. Nothing is printed anywhere unless a handler is subscribed.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use napi::Status;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use tracing::Level;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::error::{Failure, Result, Settled};
use crate::redact::{REDACTED, redact, secret_by_name};
use crate::sync::{Recover, RecoverRw};

/// A log record's level, as `tracing` names it.
#[napi(string_enum = "UPPERCASE")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        }
    }
}

#[napi(object)]
#[derive(Clone)]
pub struct LogRecord {
    pub level: LogLevel,
    /// The Rust module that logged, e.g. `ts_runtime::control_runner`.
    pub target: String,
    pub message: String,
    pub fields: std::collections::HashMap<String, String>,
}

/// Weak: a log handler never keeps the process alive. Records beyond the queue are dropped.
type Handler = ThreadsafeFunction<LogRecord, (), LogRecord, Status, false, true, 1024>;

struct Sink {
    filter: EnvFilter,
    handler: Handler,
    /// A process sink takes the records that belong to no device, and only those.
    process: bool,
    /// Notices the crate repeats for as long as a device runs, already delivered once.
    said_once: Mutex<HashSet<&'static str>>,
}

static SINKS: RwLock<BTreeMap<u32, Arc<Sink>>> = RwLock::new(BTreeMap::new());
static NEXT_SINK: AtomicU32 = AtomicU32::new(1);
static LEVEL: OnceLock<std::result::Result<reload::Handle<LevelFilter, Registry>, String>> = OnceLock::new();

/// The span every device's work runs in; `sink` names where its records go.
pub const DEVICE_SPAN: &str = "tailscale_device";

/// Runs inside a device span: `closing` is recorded when the device shuts down, after which its
/// crate's routine complaints about actors and sockets going away are only `DEBUG`. At `ERROR`
/// level, so the span exists whenever any sink takes records at all (a span below the global
/// level would be disabled, and its device's records would belong to nobody).
pub fn device_span(sink: Option<u32>) -> tracing::Span {
    tracing::error_span!(target: "effect_tailscale_native", DEVICE_SPAN, sink = sink, closing = false)
}

#[derive(Clone, Copy)]
struct Owner {
    sink: Option<u32>,
    closing: bool,
}

/// The device span a span belongs to (itself or its nearest device ancestor), kept on every span
/// under a device's when it is made, so a record or an enter finds its device in one look-up.
#[derive(Clone, PartialEq)]
struct DeviceOf(Id);

thread_local! {
    /// The device spans entered on this thread (through spans that belong to them), innermost last.
    static ENTERED: RefCell<Vec<Id>> = const { RefCell::new(Vec::new()) };
}

fn device_of<'a, S: LookupSpan<'a>>(span: &tracing_subscriber::registry::SpanRef<'a, S>) -> Option<Id> {
    span.extensions().get::<DeviceOf>().map(|device| device.0.clone())
}

/// The device span a record belongs to: its parent span's device, else the innermost device
/// span entered on this thread (a record under a crate's root span, in a device's task).
fn device_of_event<S>(event: &tracing::Event<'_>, ctx: &Context<'_, S>) -> Option<Id>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.event_span(event)
        .and_then(|span| device_of(&span))
        .or_else(|| ENTERED.with_borrow(|entered| entered.last().cloned()))
}

struct OwnerVisitor<'a>(&'a mut Owner);

impl Visit for OwnerVisitor<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "sink" {
            self.0.sink = u32::try_from(value).ok();
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "closing" {
            self.0.closing = value;
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// Keeps track of which device every span belongs to, and which device spans each thread is in.
struct DeviceSpans;

impl<S> Layer<S> for DeviceSpans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if attrs.metadata().name() == DEVICE_SPAN {
            let mut owner = Owner { sink: None, closing: false };
            attrs.record(&mut OwnerVisitor(&mut owner));
            let mut extensions = span.extensions_mut();
            extensions.insert(owner);
            extensions.insert(DeviceOf(id.clone()));
        } else if let Some(device) = span.parent().and_then(|parent| device_of(&parent)) {
            span.extensions_mut().insert(DeviceOf(device));
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(device) = ctx.span(id).and_then(|span| device_of(&span)) {
            ENTERED.with_borrow_mut(|entered| entered.push(device));
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(device) = ctx.span(id).and_then(|span| device_of(&span)) {
            ENTERED.with_borrow_mut(|entered| {
                if let Some(at) = entered.iter().rposition(|entered| *entered == device) {
                    entered.remove(at);
                }
            });
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(owner) = span.extensions_mut().get_mut::<Owner>()
        {
            values.record(&mut OwnerVisitor(owner));
        }
    }
}

/// Delivers each record to the sinks that take it (after `DeviceSpans` has seen its spans).
struct ToJavaScript;

impl<S> Layer<S> for ToJavaScript
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        keep_registration_refusal(event, &ctx);
        let sinks = SINKS.read_recover();
        if sinks.is_empty() {
            return;
        }
        let owner = device_of_event(event, &ctx)
            .and_then(|device| ctx.span(&device))
            .and_then(|device| device.extensions().get::<Owner>().copied());
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = effective_level(meta, &fields.message, owner);
        let once = said_once(&fields.message);
        // Which sinks take it first: redacting is the costly part, and most records go nowhere.
        // A device's record goes to its own sink (none when connected without one), never to
        // another device's or a process sink; a record of no device goes to process sinks only.
        let takers: Vec<&Arc<Sink>> = sinks
            .iter()
            .filter(|(id, sink)| routed_to(owner, **id, sink.process))
            .map(|(_, sink)| sink)
            .filter(|sink| {
                sink.filter.enabled(meta, ctx.clone())
                    && (level == *meta.level() || sink.filter.max_level_hint().is_some_and(|max| max >= level))
            })
            .filter(|sink| once.is_none_or(|notice| sink.said_once.recover().insert(notice)))
            .collect();
        if takers.is_empty() {
            return;
        }
        let record = LogRecord {
            level: LogLevel::from(level),
            target: meta.target().to_string(),
            message: redact(&fields.message),
            fields: fields
                .others
                .into_iter()
                .map(|(name, value)| {
                    let value = if secret_by_name(&name) { REDACTED.to_string() } else { redact(&value) };
                    (name, value)
                })
                .collect(),
        };
        for sink in takers {
            // A full queue means JavaScript is not keeping up: drop the record rather than block.
            let _ = sink.handler.call(record.clone(), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// Whether the sink `id` takes a record whose device is `owner`: a device's record goes to its
/// own sink only (nowhere when it has none), a record of no device to the process sinks only.
fn routed_to(owner: Option<Owner>, id: u32, process: bool) -> bool {
    match owner {
        Some(device) => !process && device.sink == Some(id),
        None => process,
    }
}

/// Why control refused a device's registration, kept on the device's span.
struct Refusal(String);

/// What the crate's error says before control's own reason (`ts_control`'s `Refused`, our patch).
const REFUSED: &str = "control refused the registration: ";

/// The crate stops a device whose registration control refused and only logs why, as an
/// `ERROR` from its control runner: keep the reason so the device's `NOT_AUTHORIZED` can say it.
fn keep_registration_refusal<S>(event: &tracing::Event<'_>, ctx: &Context<'_, S>)
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let meta = event.metadata();
    if *meta.level() != Level::ERROR || meta.target() != "ts_runtime::control_runner" {
        return;
    }
    let mut fields = Fields::default();
    event.record(&mut fields);
    let Some(reason) = fields.others.get("error").and_then(|error| error.split_once(REFUSED)).map(|(_, why)| why)
    else {
        return;
    };
    let device = device_of_event(event, ctx).and_then(|device| ctx.span(&device));
    if let Some(device) = device {
        // Control's words, bounded and with anything shaped like a key removed.
        let reason: String = redact(reason).chars().take(200).collect();
        device.extensions_mut().replace(Refusal(reason));
    }
}

/// Why control refused the registration of the device running in `span`, if it said.
pub fn registration_refusal(span: &tracing::Span) -> Option<String> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let span = registry.span(id)?;
        span.extensions().get::<Refusal>().map(|refusal| refusal.0.clone())
    })
    .flatten()
}

/// The level a record is delivered at. A closed listener's parked accept, and the complaints of
/// actors and sockets going away once the device is shutting down, are routine. (A network monitor error is not: it used to be, at every
/// start, until our `ts_netmon` patch; now it means the device may not advertise its endpoints.)
fn effective_level(meta: &tracing::Metadata<'_>, message: &str, owner: Option<Owner>) -> Level {
    let level = *meta.level();
    if level > Level::WARN {
        return level;
    }
    // A listener's pump always has an accept waiting (tcp.rs). Closing the listener drops that
    // future, but its request stays parked in the netstack, which retries it after the close
    // and finds the listener gone: once per closed listener, two for a dual-stack `listen`.
    let closed_listener =
        meta.target() == "ts_netstack_smoltcp_core::socket_impl::tcp::listener" && message == "listener does not exist";
    // Our own records while closing (e.g. a failed logout) keep their level.
    let closing = owner.is_some_and(|o| o.closing) && !meta.target().starts_with("effect_tailscale_native");
    if closed_listener || closing { Level::DEBUG } else { level }
}

/// Test-build notices the crate repeats on every DERP reconnect (several a second on the
/// loopback tailnet): each sink gets them once.
fn said_once(message: &str) -> Option<&'static str> {
    ["using insecure TLS for tests", "connecting insecure TLS", "fetching control key over insecure http"]
        .into_iter()
        .find(|notice| message.starts_with(notice))
}

#[derive(Default)]
struct Fields {
    message: String,
    others: std::collections::HashMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.others.insert(field.name().to_string(), value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.others.insert(field.name().to_string(), text);
        }
    }
}

/// Installs the subscriber, if nobody has yet. Devices call it so that their span and the
/// crate's `ERROR` records exist even when no sink is subscribed (`keep_registration_refusal`).
pub fn install() {
    if let Err(failure) = level_handle() {
        tracing::debug!(reason = failure.detail, "device logs are not available");
    }
}

fn level_handle() -> Result<&'static reload::Handle<LevelFilter, Registry>> {
    let installed = LEVEL.get_or_init(|| {
        // ERROR at least: device spans are `ERROR` spans, and refusals are `ERROR` records.
        let (level, handle) = reload::Layer::new(LevelFilter::ERROR);
        tracing_subscriber::registry()
            .with(level)
            .with(DeviceSpans)
            .with(ToJavaScript)
            .try_init()
            .map(|()| handle)
            .map_err(|e| format!("another tracing subscriber is installed in this process ({e})"))
    });
    installed.as_ref().map_err(|reason| Failure::internal("subscribeLogs", reason.clone()))
}

/// The most verbose level any sink asks for: the crate only builds records someone may take.
fn update_level(sinks: &BTreeMap<u32, Arc<Sink>>) -> Result<()> {
    let most = sinks
        .values()
        .filter_map(|sink| sink.filter.max_level_hint())
        .max()
        .unwrap_or(LevelFilter::OFF)
        .max(LevelFilter::ERROR);
    level_handle()?
        .reload(most)
        .map_err(|e| Failure::internal("subscribeLogs", format!("could not apply the log filter ({e})")))
}

pub fn parse_filter(directives: &str) -> Result<EnvFilter> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| Failure::invalid("filter", directives, &format!("not a RUST_LOG-style filter ({e})")))
}

/// Subscribes `handler` to a device's log records, filtered by `filter` (`RUST_LOG` syntax, e.g.
/// `"warn"` or `"info,ts_runtime=debug"`). Returns the sink's id: a device connected with it as
/// `logSink` sends its records there only. Records that belong to no device never come here
/// (`subscribeProcessLogs`).
#[napi(ts_args_type = "filter: string, handler: (record: LogRecord) => void", ts_return_type = "number")]
pub fn subscribe_logs(filter: String, handler: Handler) -> Settled<u32> {
    Settled(subscribe(&filter, handler, false))
}

/// Subscribes `handler` to the log records that belong to no device (e.g. loading a key file),
/// filtered like `subscribeLogs`. A device's records never come here. `unsubscribeLogs` ends it.
#[napi(ts_args_type = "filter: string, handler: (record: LogRecord) => void", ts_return_type = "number")]
pub fn subscribe_process_logs(filter: String, handler: Handler) -> Settled<u32> {
    Settled(subscribe(&filter, handler, true))
}

fn subscribe(filter: &str, handler: Handler, process: bool) -> Result<u32> {
    let parsed = parse_filter(filter)?;
    let id = NEXT_SINK.fetch_add(1, Ordering::Relaxed);
    let mut sinks = SINKS.write_recover();
    sinks.insert(id, Arc::new(Sink { filter: parsed, handler, process, said_once: Mutex::new(HashSet::new()) }));
    update_level(&sinks)?;
    Ok(id)
}

/// Stops delivering records to the sink `id`; the others keep theirs. Unknown ids are ignored.
#[napi(ts_return_type = "void")]
pub fn unsubscribe_logs(id: u32) -> Settled<()> {
    let mut sinks = SINKS.write_recover();
    Settled(if sinks.remove(&id).is_some() { update_level(&sinks) } else { Ok(()) })
}

/// The crate's actors run on napi's Tokio workers and catch their own panics, but the default
/// hook still prints each one (with a backtrace when `RUST_BACKTRACE` is set) to the host's
/// stderr, e.g. during a normal shutdown. Panics on those workers become `WARN` log records
/// (target `panic`) instead; every other thread keeps the previous hook.
pub fn route_worker_panics_to_log() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_worker = std::thread::current().name() == Some("tokio-rt-worker");
            if !on_worker {
                return previous(info);
            }
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            tracing::warn!(target: "panic", %location, "{message}");
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reaches_its_own_devices_sink_or_the_process_sinks_only() {
        let a = Some(Owner { sink: Some(1), closing: false });
        let silent = Some(Owner { sink: None, closing: false });
        // Sink 1 is device A's, sink 2 device B's, sink 3 a process sink.
        assert!(routed_to(a, 1, false));
        assert!(!routed_to(a, 2, false));
        assert!(!routed_to(a, 3, true));
        // A device connected without a sink is heard by nobody, not by everybody.
        assert!(!routed_to(silent, 1, false) && !routed_to(silent, 3, true));
        assert!(!routed_to(None, 1, false) && !routed_to(None, 2, false));
        assert!(routed_to(None, 3, true));
    }

    /// Each record's message and the sink of its device, as `ToJavaScript` finds it.
    type Found = Arc<Mutex<Vec<(String, Option<u32>)>>>;

    struct Probe(Found);

    impl<S> Layer<S> for Probe
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let sink = device_of_event(event, &ctx)
                .and_then(|device| ctx.span(&device))
                .and_then(|device| device.extensions().get::<Owner>().and_then(|owner| owner.sink));
            self.0.recover().push((fields.message, sink));
        }
    }

    #[test]
    fn a_record_under_a_crates_root_span_belongs_to_the_device_its_task_runs_in() {
        let found = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(DeviceSpans).with(Probe(Arc::clone(&found)));
        tracing::subscriber::with_default(subscriber, || {
            let device = device_span(Some(7));
            // A task spawned in a child of the device's span (e.g. `ts_control`'s `connect`).
            let task = tracing::error_span!(parent: &device, "connect");
            // h2 opens its connection's span with `parent: None`.
            let root = tracing::error_span!(parent: None, "Connection");
            task.in_scope(|| {
                tracing::error!("in the device");
                root.in_scope(|| tracing::error!("under a root span"));
            });
            root.in_scope(|| tracing::error!("in no device"));
        });
        let found = found.recover().clone();
        let expected = [("in the device", Some(7)), ("under a root span", Some(7)), ("in no device", None)];
        assert_eq!(found, expected.map(|(message, sink)| (message.to_string(), sink)));
    }

    #[test]
    fn filters_parse_or_name_the_field() {
        assert!(parse_filter("info,ts_runtime=debug").is_ok());
        let failure = parse_filter("info,=[bad").unwrap_err();
        assert_eq!(failure.subject, "filter");
    }
}
