//! Rust `tracing` events delivered to one JavaScript callback, filtered by a `RUST_LOG`-style
//! directive string. Nothing is printed anywhere unless a handler is set.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{OnceLock, RwLock};

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

use crate::error::{Failure, Result};

#[napi(object)]
pub struct LogRecord {
    #[napi(ts_type = "'ERROR' | 'WARN' | 'INFO' | 'DEBUG' | 'TRACE'")]
    pub level: String,
    /// The Rust module that logged, e.g. `ts_runtime::control_runner`.
    pub target: String,
    pub message: String,
    pub fields: HashMap<String, String>,
}

/// Weak: a log handler never keeps the process alive. Records beyond the queue are dropped.
type Handler = ThreadsafeFunction<LogRecord, (), LogRecord, Status, false, true, 1024>;

static HANDLER: RwLock<Option<Handler>> = RwLock::new(None);
static FILTER: OnceLock<std::result::Result<reload::Handle<EnvFilter, Registry>, String>> = OnceLock::new();

struct ToJavaScript;

impl<S: tracing::Subscriber> Layer<S> for ToJavaScript {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let guard = HANDLER.read().unwrap_or_else(|p| p.into_inner());
        let Some(handler) = guard.as_ref() else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let record = LogRecord {
            level: meta.level().to_string(),
            target: meta.target().to_string(),
            message: fields.message,
            fields: fields.others,
        };
        // A full queue means JavaScript is not keeping up: drop the record rather than block.
        let _ = handler.call(record, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: HashMap<String, String>,
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

fn filter_handle() -> Result<&'static reload::Handle<EnvFilter, Registry>> {
    let installed = FILTER.get_or_init(|| {
        let (filter, handle) = reload::Layer::new(EnvFilter::new("off"));
        tracing_subscriber::registry()
            .with(filter)
            .with(ToJavaScript)
            .try_init()
            .map(|()| handle)
            .map_err(|e| format!("another tracing subscriber is installed in this process ({e})"))
    });
    installed.as_ref().map_err(|reason| Failure::internal(reason.clone()))
}

pub fn parse_filter(directives: &str) -> Result<EnvFilter> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| Failure::invalid("filter", directives, &format!("not a RUST_LOG-style filter ({e})")))
}

/// Sends the addon's log records to `handler`, filtered by `filter` (`RUST_LOG` syntax, e.g.
/// `"warn"` or `"info,ts_runtime=debug"`). Replaces any earlier handler: one per process.
#[napi(ts_args_type = "filter: string, handler: (record: LogRecord) => void")]
pub fn set_log_handler(filter: String, handler: Handler) -> napi::Result<()> {
    let parsed = parse_filter(&filter)?;
    let reload = filter_handle()?;
    *HANDLER.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    reload
        .reload(parsed)
        .map_err(|e| Failure::internal(format!("could not apply the log filter ({e})")))?;
    Ok(())
}

/// Stops delivering log records.
#[napi]
pub fn clear_log_handler() -> napi::Result<()> {
    HANDLER.write().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(Ok(reload)) = FILTER.get() {
        let _ = reload.reload(EnvFilter::new("off"));
    }
    Ok(())
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

/// The crate's actors run on napi's Tokio workers and catch their own panics, but the default
/// hook still prints each one (with a backtrace when `RUST_BACKTRACE` is set) to the host's
/// stderr, e.g. during a normal shutdown in tailscale-rs 0.5.0. Panics on those workers become
/// `WARN` log records (target `panic`) instead; every other thread keeps the previous hook.
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
