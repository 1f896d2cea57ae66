//! The options a device connects with: validated (each failure names its field) before anything
//! is created, so a refused connect leaves no key file and no device.

use std::path::PathBuf;
use std::time::Duration;

use napi_derive::napi;
use tailscale::Config;

use crate::address;
use crate::error::{Failure, Result};
use crate::exit_node;
use crate::keys::{self, OnBadFormat};

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
    /// The peer (hostname, FQDN or tailnet address) that, as exit node, carries traffic to addresses
    /// outside the tailnet, as Go's `ExitNodeIP` pref: looked up in each network map until a
    /// peer has it; until then such addresses have no route. Change it with `setExitNode`.
    pub exit_node: Option<String>,
}

pub(crate) struct Prepared {
    /// Everything but the key state, which `KeySource::load` fills in.
    pub(crate) config: Config,
    pub(crate) keys: KeySource,
    pub(crate) auth_key: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) log_sink: Option<u32>,
    pub(crate) ca_file: Option<String>,
    pub(crate) exit_node: Option<String>,
}

/// Where the device's identity comes from. Loading a key file can create it, so it happens only
/// once every option is valid: a refused connect leaves no file.
pub(crate) enum KeySource {
    File(PathBuf, OnBadFormat),
    State(tailscale::keys::PersistState),
    Fresh,
}

impl KeySource {
    pub(crate) fn load(self) -> Result<tailscale::keys::PersistState> {
        match self {
            KeySource::File(path, on_bad_format) => keys::load_or_create(&path, on_bad_format),
            KeySource::State(state) => Ok(state),
            KeySource::Fresh => Ok(keys::generate()),
        }
    }
}

pub(crate) fn prepare(options: ConnectOptions) -> Result<Prepared> {
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

    if let Some(peer) = &options.exit_node {
        exit_node::validate("exitNode", peer)?;
    }

    Ok(Prepared {
        config,
        keys,
        auth_key,
        connect_timeout,
        log_sink: options.log_sink,
        ca_file,
        exit_node: options.exit_node,
    })
}

fn parse_control_url(text: &str) -> Result<url::Url> {
    // Whatever stands before an `@` may be a password: never echo it.
    let shown = match text.split_once('@') {
        Some((before, after)) if before.contains("//") => {
            format!("{}//…@{after}", before.split("//").next().unwrap_or(""))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

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
            (ConnectOptions { control_url: Some("not a url".into()), ..options() }, "controlUrl"),
            (ConnectOptions { control_url: Some("ftp://x".into()), ..options() }, "controlUrl"),
            (ConnectOptions { hostname: Some("bad host".into()), ..options() }, "hostname"),
            (ConnectOptions { tags: Some(vec!["tag:ok".into(), "nope".into()]), ..options() }, "tags[1]"),
            (ConnectOptions { auth_key: Some(" ".into()), ..options() }, "authKey"),
            (ConnectOptions { client_name: Some("".into()), ..options() }, "clientName"),
            (ConnectOptions { key_state: Some("{}".into()), ..options() }, "keyState"),
            (ConnectOptions { exit_node: Some("no such name".into()), ..options() }, "exitNode"),
            (ConnectOptions { key_file: Some("/tmp/x".into()), key_state: Some("{}".into()), ..options() }, "keyState"),
        ];
        for (options, field) in cases {
            let failure = failure(options);
            assert_eq!(failure.code, Code::InvalidArgument);
            assert_eq!(failure.subject, field, "{failure}");
        }
    }

    #[test]
    fn auth_key_is_never_echoed() {
        let failure = failure(ConnectOptions { auth_key: Some("tskey-secret value".into()), ..options() });
        assert!(!failure.to_string().contains("tskey-secret"), "{failure}");
    }

    #[test]
    fn control_url_credentials_are_never_echoed() {
        for url in
            ["https://admin:hunter2@control.example/", "ftp://admin:hunter2@control.example/", "https://admin:hunter2@"]
        {
            let message = parse_control_url(url).unwrap_err().to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn control_is_https_only() {
        let message = parse_control_url("http://127.0.0.1:9911").unwrap_err().detail;
        assert!(message.contains("plain http is not supported"), "{message}");
        assert!(parse_control_url("https://controlplane.example/").is_ok());
    }
}
