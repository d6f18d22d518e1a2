//! Relay URL normalisation and the relay-URL safety rule (SPEC §4).
//!
//! Announcements are attacker-controlled: a hostile `relays` tag must not make
//! a server open connections inside its own network, so only `ws://`/`wss://`
//! URLs to public hosts are accepted unless private addresses are allowed.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// A normalised `ws://` or `wss://` relay URL: lowercase host, no default
/// port, no trailing slash, no fragment or credentials.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelayUrl(String);

/// Why a relay URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayUrlError {
    /// Not parseable as a URL.
    #[error("not a valid URL: {0}")]
    Invalid(String),
    /// Scheme other than ws/wss.
    #[error("scheme `{0}` is not ws or wss")]
    Scheme(String),
    /// No host.
    #[error("URL has no host")]
    NoHost,
    /// Embedded user name or password.
    #[error("URL carries credentials")]
    Credentials,
    /// Loopback, private, link-local, multicast or otherwise non-public address.
    #[error("host `{0}` is a loopback/private/link-local/multicast address")]
    Private(String),
}

impl RelayUrl {
    /// Parses and normalises without the safety rule (used for our own
    /// configured URLs, which the operator chose).
    pub fn parse(input: &str) -> Result<Self, RelayUrlError> {
        let url = Url::parse(input.trim()).map_err(|e| RelayUrlError::Invalid(format!("{input}: {e}")))?;
        let scheme = url.scheme().to_ascii_lowercase();
        if scheme != "ws" && scheme != "wss" {
            return Err(RelayUrlError::Scheme(scheme));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RelayUrlError::Credentials);
        }
        let host = url.host_str().ok_or(RelayUrlError::NoHost)?;
        if host.is_empty() {
            return Err(RelayUrlError::NoHost);
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut out = format!("{scheme}://{host}");
        if let Some(port) = url.port() {
            // `url` already drops the scheme's default port.
            out.push_str(&format!(":{port}"));
        }
        let path = url.path().trim_end_matches('/');
        out.push_str(path);
        if let Some(q) = url.query() {
            out.push('?');
            out.push_str(q);
        }
        Ok(RelayUrl(out))
    }

    /// Parses, normalises and applies the safety rule: refuses non-public hosts
    /// unless `allow_private`.
    pub fn parse_safe(input: &str, allow_private: bool) -> Result<Self, RelayUrlError> {
        let relay = Self::parse(input)?;
        if !allow_private {
            let url = Url::parse(&relay.0).map_err(|e| RelayUrlError::Invalid(e.to_string()))?;
            let private = match url.host() {
                Some(Host::Ipv4(ip)) => !is_public_v4(ip),
                Some(Host::Ipv6(ip)) => !is_public_v6(ip),
                Some(Host::Domain(d)) => is_local_name(d),
                None => true,
            };
            if private {
                return Err(RelayUrlError::Private(url.host_str().unwrap_or_default().to_string()));
            }
        }
        Ok(relay)
    }

    /// The normalised URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part (lowercase), for domain matching.
    pub fn host(&self) -> &str {
        let rest = self.0.split_once("://").map(|(_, r)| r).unwrap_or(&self.0);
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let hostport = &rest[..end];
        if hostport.starts_with('[') {
            return hostport.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(hostport);
        }
        hostport.rsplit_once(':').map(|(h, _)| h).unwrap_or(hostport)
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RelayUrl {
    type Error = RelayUrlError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RelayUrl::parse(&s)
    }
}

impl From<RelayUrl> for String {
    fn from(r: RelayUrl) -> String {
        r.0
    }
}

fn is_local_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || host.ends_with(".local") || host.ends_with(".internal") || !host.contains('.')
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || o[0] >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
}

/// True when `ip` is a public unicast address (exposed for the native
/// connector, which re-checks resolved addresses).
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_default_port_and_trailing_slash() {
        let a = RelayUrl::parse("WSS://Relay.Example.COM:443/").unwrap();
        assert_eq!(a.as_str(), "wss://relay.example.com");
        let b = RelayUrl::parse("ws://relay.example.com:80").unwrap();
        assert_eq!(b.as_str(), "ws://relay.example.com");
        let c = RelayUrl::parse("wss://relay.example.com:4443/nostr/").unwrap();
        assert_eq!(c.as_str(), "wss://relay.example.com:4443/nostr");
        assert_eq!(c.host(), "relay.example.com");
        assert_eq!(RelayUrl::parse("wss://relay.example.com#frag").unwrap().as_str(), "wss://relay.example.com");
    }

    #[test]
    fn only_ws_and_wss_are_relays() {
        assert!(matches!(RelayUrl::parse("http://relay.example.com"), Err(RelayUrlError::Scheme(_))));
        assert!(matches!(RelayUrl::parse("https://relay.example.com"), Err(RelayUrlError::Scheme(_))));
        assert!(matches!(RelayUrl::parse("not a url"), Err(RelayUrlError::Invalid(_))));
        assert!(matches!(RelayUrl::parse("wss://u:p@relay.example.com"), Err(RelayUrlError::Credentials)));
    }

    #[test]
    fn safety_rule_refuses_private_addresses_unless_allowed() {
        for bad in [
            "ws://127.0.0.1:7777",
            "ws://10.0.0.1",
            "ws://172.16.3.4",
            "ws://192.168.1.1",
            "ws://169.254.169.254",
            "ws://224.0.0.1",
            "ws://0.0.0.0",
            "ws://[::1]:8080",
            "ws://[fe80::1]",
            "ws://[fd00::1]",
            "ws://[::ffff:127.0.0.1]",
            "ws://localhost:8080",
            "ws://printer.local",
            "ws://intranet",
            "ws://100.64.0.1",
        ] {
            assert!(matches!(RelayUrl::parse_safe(bad, false), Err(RelayUrlError::Private(_))), "{bad}");
            assert!(RelayUrl::parse_safe(bad, true).is_ok(), "{bad} allowed");
        }
        assert!(RelayUrl::parse_safe("wss://relay.damus.io", false).is_ok());
        assert!(RelayUrl::parse_safe("wss://8.8.8.8", false).is_ok());
        assert!(RelayUrl::parse_safe("wss://[2606:4700::1111]", false).is_ok());
    }

    #[test]
    fn ipv6_host_extraction() {
        let r = RelayUrl::parse("ws://[2606:4700::1111]:7000/x").unwrap();
        assert_eq!(r.host(), "2606:4700::1111");
    }
}
