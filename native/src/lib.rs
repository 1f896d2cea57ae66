//! napi-rs addon over the `tailscale` crate: a tailnet device inside Node.js.
//!
//! Thin by design: it maps calls and errors, and owns the Rust tasks that make cancellation
//! safe. Timeouts, scopes and every other policy live in `@effect-tailscale/core`.

mod address;
mod completion;
mod control_link;
mod control_probe;
mod device;
mod error;
mod exit_node;
mod health;
mod keys;
mod lifecycle;
mod limits;
mod logging;
mod logout;
mod node_info;
mod options;
mod peer_paths;
mod peer_table;
mod ports;
mod pump;
mod redact;
mod sync;
mod tcp;
mod trust;
mod udp;
#[cfg(test)]
mod upstream_tests;
mod who_is;

use napi_derive::napi;

use crate::error::Settled;

#[napi_derive::module_init]
fn init() {
    logging::route_worker_panics_to_log();
}

pub use device::{AuthState, Device};
pub use error::Code as ErrorCode;
pub use logging::{LogLevel, LogRecord, subscribe_logs, subscribe_process_logs, unsubscribe_logs};
pub use node_info::{NodeInfo, NodeStatus};
pub use options::ConnectOptions;
pub use tcp::{TcpListener, TcpStream};
pub use udp::{Datagram, UdpSocket};

/// Fresh random key state, as the JSON a key file holds. Contains private keys: store it like a
/// password.
#[napi]
pub fn generate_key_state() -> String {
    keys::to_json(&keys::generate())
}

/// Loads the key file at `path` and returns its key state as JSON, creating the file (mode 0600)
/// with fresh keys when missing. An invalid file is an error (`KEY_FILE`) and is left untouched
/// unless `overwriteBadFormat` is true.
#[napi(ts_return_type = "Promise<string>")]
pub async fn load_key_file(path: String, overwrite_bad_format: Option<bool>) -> Settled<String> {
    Settled::of(async {
        let on_bad =
            if overwrite_bad_format.unwrap_or(false) { keys::OnBadFormat::Overwrite } else { keys::OnBadFormat::Error };
        let state = tokio::task::spawn_blocking(move || keys::load_or_create(std::path::Path::new(&path), on_bad))
            .await
            .map_err(|e| error::Failure::internal("loadKeyFile", e.to_string()))??;
        Ok(keys::to_json(&state))
    })
    .await
}

/// The public halves of a key state: safe to log or show.
#[napi(object)]
pub struct PublicKeys {
    /// `mkey:<hex>`
    pub machine_key: String,
    /// `nodekey:<hex>`
    pub node_key: String,
    /// `nlpub:<hex>`
    pub network_lock_key: String,
}

#[napi(ts_return_type = "PublicKeys")]
pub fn public_keys(key_state: String) -> Settled<PublicKeys> {
    Settled(keys::from_json(&key_state).map(|state| {
        let keys = keys::public_keys(&state);
        PublicKeys { machine_key: keys.machine_key, node_key: keys.node_key, network_lock_key: keys.network_lock_key }
    }))
}

/// How this binary was built.
#[napi(object)]
pub struct BuildInfo {
    /// Version of the `tailscale` crate inside.
    pub tailscale_crate: String,
    /// The version of this addon.
    pub version: String,
    /// `"release"` (what the npm packages ship) or `"debug"` (a development build).
    #[napi(ts_type = "'release' | 'debug'")]
    pub profile: String,
}

#[napi]
pub fn build_info() -> BuildInfo {
    BuildInfo {
        tailscale_crate: env!("TAILSCALE_CRATE_VERSION").to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        profile: env!("ADDON_PROFILE").to_string(),
    }
}

/// Tasks alive in the addon's async runtime, where every device's actors, sockets and pending
/// calls run (this call counts as one). Once every device has shut down it is back where it was
/// before them: a leak check.
#[napi]
pub async fn runtime_tasks() -> u32 {
    let alive = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    u32::try_from(alive).unwrap_or(u32::MAX)
}
