//! An ephemeral device logs out when it shuts down, as Go's client does: a registration whose
//! key expiry is in the past, sent over a fresh control connection once the crate's device has
//! stopped. Control then deletes the node at once instead of after its inactivity timeout. The
//! crate sends nothing when it shuts down; `ts_control::logout` is our patch (docs/upstream.md).

use std::time::Duration;

/// Logs the device out within `limit`. Failures are logged, never raised: shutdown goes on.
pub async fn log_out(config: &tailscale::Config, auth_key: Option<&str>, limit: Duration) {
    let url = &config.control_server_url;
    let keys = ts_keys::NodeState::from(&config.key_state);
    let control = ts_control::Config::from(config);
    let attempt = async {
        let connection = ts_control::connect(url, &keys.machine_keys).await.map_err(|e| e.to_string())?;
        ts_control::logout(&control, url, auth_key, &keys, &connection).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(Ok(())) => tracing::debug!("logged out of control"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not log out of control; control removes this ephemeral node after its inactivity timeout")
        }
        Err(_) => tracing::warn!(
            limit_ms = limit.as_millis() as u64,
            "logging out of control timed out; control removes this ephemeral node after its inactivity timeout"
        ),
    }
}
