//! Validation of the addresses, ports and names JavaScript hands us.

use std::net::{IpAddr, SocketAddr};

use napi_derive::napi;

use crate::error::{Failure, Result};

/// An `ip` (IPv4 dotted quad or IPv6 without brackets) and a port.
#[napi(object)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketAddress {
    pub ip: String,
    pub port: u32,
}

impl From<SocketAddr> for SocketAddress {
    fn from(addr: SocketAddr) -> Self {
        SocketAddress { ip: addr.ip().to_string(), port: u32::from(addr.port()) }
    }
}

pub fn parse_ip(field: &str, text: &str) -> Result<IpAddr> {
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map_err(|_| Failure::invalid(field, text, "not an IPv4 or IPv6 address"))
}

/// JavaScript numbers arrive as f64: reject fractions, negatives and out-of-range values.
pub fn parse_port(field: &str, port: f64, allow_zero: bool) -> Result<u16> {
    let low = if allow_zero { 0.0 } else { 1.0 };
    if port.fract() != 0.0 || !(low..=65535.0).contains(&port) {
        let range = if allow_zero { "0..65535" } else { "1..65535" };
        return Err(Failure::invalid(field, port, &format!("must be an integer in {range}")));
    }
    Ok(port as u16)
}

pub fn socket_addr(ip_field: &str, ip: &str, port_field: &str, port: f64, allow_zero_port: bool) -> Result<SocketAddr> {
    Ok(SocketAddr::new(parse_ip(ip_field, ip)?, parse_port(port_field, port, allow_zero_port)?))
}

/// A hostname Tailscale accepts: one DNS label of letters, digits and hyphens.
pub fn validate_hostname(field: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Failure::invalid(
            field,
            name,
            "must be a single DNS label: 1 to 63 letters, digits or hyphens, not starting or ending with a hyphen",
        ))
    }
}

/// An ACL tag: `tag:` then a letter, then letters, digits or hyphens.
pub fn validate_tag(field: &str, tag: &str) -> Result<()> {
    let valid = tag.strip_prefix("tag:").is_some_and(|name| {
        name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if valid {
        Ok(())
    } else {
        Err(Failure::invalid(field, tag, "must look like tag:name (a letter, then letters, digits or hyphens)"))
    }
}

/// The OS hostname reduced to a valid label, the crate's documented default.
pub fn os_hostname() -> String {
    let raw = gethostname::gethostname().to_string_lossy().into_owned();
    let label: String = raw
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(63)
        .collect();
    let label = label.trim_matches('-').to_string();
    if label.is_empty() { "node".to_string() } else { label }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn ips_parse_with_or_without_brackets() {
        assert_eq!(parse_ip("ip", "100.64.0.1").unwrap().to_string(), "100.64.0.1");
        assert_eq!(parse_ip("ip", "[fd7a:115c:a1e0::1]").unwrap().to_string(), "fd7a:115c:a1e0::1");
        let failure = parse_ip("ip", "100.64.0.300").unwrap_err();
        assert_eq!(failure.code, Code::InvalidArgument);
        assert_eq!(failure.subject, "ip");
    }

    #[test]
    fn ports_are_checked() {
        assert_eq!(parse_port("port", 7001.0, false).unwrap(), 7001);
        assert!(parse_port("port", 0.0, false).is_err());
        assert_eq!(parse_port("port", 0.0, true).unwrap(), 0);
        assert!(parse_port("port", 65536.0, true).is_err());
        assert!(parse_port("port", -1.0, true).is_err());
        assert!(parse_port("port", 80.5, true).is_err());
        assert!(parse_port("port", f64::NAN, true).is_err());
    }

    #[test]
    fn hostnames_are_labels() {
        assert!(validate_hostname("hostname", "demo-1").is_ok());
        for bad in ["", "-a", "a-", "has space", "a.b", &"x".repeat(64)] {
            let failure = validate_hostname("hostname", bad).unwrap_err();
            assert_eq!(failure.subject, "hostname", "{failure}");
        }
    }

    #[test]
    fn tags_need_prefix() {
        assert!(validate_tag("tags[0]", "tag:server").is_ok());
        for bad in ["server", "tag:", "tag:1x", "tag:a b"] {
            assert!(validate_tag("tags[0]", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn os_hostname_is_a_valid_label() {
        validate_hostname("hostname", &os_hostname()).unwrap();
    }
}
