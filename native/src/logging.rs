//! Rust `tracing` events delivered to JavaScript, each to the device that produced it.
//!
//! tracing allows one subscriber per process, so there is one, with many sinks: JavaScript
//! subscribes a handler and a `RUST_LOG`-style filter (`subscribeLogs`), and connects a device
//! with that sink's id. A record belongs to a device when it happens inside the device's span:
//! the addon runs the device's own work inside it, and the crate's actors (kameo, patched in
//! `native/patches/kameo-*`) inherit the span of whoever spawned them, so a device's whole actor
//! tree logs inside it. A record in no device's span (a task the crate spawned on its own) goes
//! to every sink whose filter takes it. Each sink's filter applies to what reaches it, and
//! unsubscribing one never affects another.
//!
//! Before any record leaves Rust, secrets are redacted: every auth key and private key a live
//! device holds, anything shaped like one (`tskey-…`, `privkey:…`, `nlpriv:…`), and fields whose
//! name says they hold one. Nothing is printed anywhere unless a handler is subscribed.

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

use crate::error::{Failure, Result};
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

struct ToJavaScript;

impl<S> Layer<S> for ToJavaScript
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != DEVICE_SPAN {
            return;
        }
        let mut owner = Owner { sink: None, closing: false };
        attrs.record(&mut OwnerVisitor(&mut owner));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(owner);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(owner) = span.extensions_mut().get_mut::<Owner>()
        {
            values.record(&mut OwnerVisitor(owner));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        keep_registration_refusal(event, &ctx);
        let sinks = SINKS.read_recover();
        if sinks.is_empty() {
            return;
        }
        let owner = ctx
            .event_scope(event)
            .and_then(|scope| scope.into_iter().find_map(|span| span.extensions().get::<Owner>().copied()));
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = effective_level(meta, &fields.message, owner);
        let once = said_once(&fields.message);
        let owned_by = owner.and_then(|o| o.sink);
        // Which sinks take it first: redacting is the costly part, and most records go nowhere.
        let takers: Vec<&Arc<Sink>> = sinks
            .iter()
            .filter(|(id, _)| owned_by.is_none_or(|owner| owner == **id))
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
    let device = ctx.event_scope(event).and_then(|scope| scope.into_iter().find(|span| span.name() == DEVICE_SPAN));
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
        tracing::debug!(reason = failure.message, "device logs are not available");
    }
}

fn level_handle() -> Result<&'static reload::Handle<LevelFilter, Registry>> {
    let installed = LEVEL.get_or_init(|| {
        // ERROR at least: device spans are `ERROR` spans, and refusals are `ERROR` records.
        let (level, handle) = reload::Layer::new(LevelFilter::ERROR);
        tracing_subscriber::registry()
            .with(level)
            .with(ToJavaScript)
            .try_init()
            .map(|()| handle)
            .map_err(|e| format!("another tracing subscriber is installed in this process ({e})"))
    });
    installed.as_ref().map_err(|reason| Failure::internal(reason.clone()))
}

/// The most verbose level any sink asks for: the crate only builds records someone may take.
fn update_level(sinks: &BTreeMap<u32, Arc<Sink>>) -> Result<()> {
    let most = sinks
        .values()
        .filter_map(|sink| sink.filter.max_level_hint())
        .max()
        .unwrap_or(LevelFilter::OFF)
        .max(LevelFilter::ERROR);
    level_handle()?.reload(most).map_err(|e| Failure::internal(format!("could not apply the log filter ({e})")))
}

pub fn parse_filter(directives: &str) -> Result<EnvFilter> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| Failure::invalid("filter", directives, &format!("not a RUST_LOG-style filter ({e})")))
}

/// Subscribes `handler` to log records, filtered by `filter` (`RUST_LOG` syntax, e.g. `"warn"`
/// or `"info,ts_runtime=debug"`). Returns the sink's id: a device connected with it as
/// `logSink` sends its records there only; records that belong to no device go to every sink.
#[napi(ts_args_type = "filter: string, handler: (record: LogRecord) => void")]
pub fn subscribe_logs(filter: String, handler: Handler) -> napi::Result<u32> {
    let parsed = parse_filter(&filter)?;
    let id = NEXT_SINK.fetch_add(1, Ordering::Relaxed);
    let mut sinks = SINKS.write_recover();
    sinks.insert(id, Arc::new(Sink { filter: parsed, handler, said_once: Mutex::new(HashSet::new()) }));
    update_level(&sinks)?;
    Ok(id)
}

/// Stops delivering records to the sink `id`; the others keep theirs. Unknown ids are ignored.
#[napi]
pub fn unsubscribe_logs(id: u32) -> napi::Result<()> {
    let mut sinks = SINKS.write_recover();
    if sinks.remove(&id).is_some() {
        update_level(&sinks)?;
    }
    Ok(())
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
    fn filters_parse_or_name_the_field() {
        assert!(parse_filter("info,ts_runtime=debug").is_ok());
        let failure = parse_filter("info,=[bad").unwrap_err();
        assert!(failure.message.starts_with("filter:"), "{}", failure.message);
    }
}
