//! Relay URL normalisation and the relay-URL safety rule (SPEC §4).
//!
//! Announcements are attacker-controlled: a hostile `relays` tag must not make
//! a server open connections inside its own network, so only `ws://`/`wss://`
//! URLs to public hosts are accepted unless private addresses are allowed.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use url::Url;

/// A normalised `ws://` or `wss://` relay URL: lowercase host, no default
/// port, no trailing slash, no fragment or credentials.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelayUrl(String);

// In TypeScript a plain `string` (serde writes the normalised URL).
#[cfg(feature = "typescript")]
ts_as_primitive!(RelayUrl, "string");

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
        let trimmed = host.trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(RelayUrlError::NoHost);
        }
        let host = trimmed.to_ascii_lowercase();
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
        if trimmed.len() != url.host_str().map_or(0, str::len) {
            // Without its trailing dots the host may read differently (`0..`
            // becomes `0`, an IPv4 address): normalise once more, so that
            // parsing a normalised URL gives it back unchanged.
            return Self::parse(&out);
        }
        Ok(RelayUrl(out))
    }

    /// Parses, normalises and applies the safety rule: refuses non-public hosts
    /// unless `allow_private`.
    pub fn parse_safe(input: &str, allow_private: bool) -> Result<Self, RelayUrlError> {
        let relay = Self::parse(input)?;
        relay.check_safe(allow_private)?;
        Ok(relay)
    }

    /// The safety rule on a URL already parsed: refuses non-public hosts
    /// unless `allow_private` (only the host is looked at again).
    pub fn check_safe(&self, allow_private: bool) -> Result<(), RelayUrlError> {
        if allow_private {
            return Ok(());
        }
        // the host of a normalised URL: an IP literal in canonical form
        // (brackets stripped), or a lowercase ASCII domain
        let host = self.host();
        let private = match host.parse::<IpAddr>() {
            Ok(ip) => !is_public_ip(ip),
            Err(_) => host.is_empty() || is_local_name(host),
        };
        if private {
            return Err(RelayUrlError::Private(host.to_string()));
        }
        Ok(())
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

/// What a special-purpose block means for the relay-URL rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialRule {
    /// Never a relay address.
    Refuse,
    /// IPv4-mapped IPv6: decided by the embedded IPv4 address.
    EmbeddedV4,
}

/// One row of [`SPECIAL_PURPOSE`]: a CIDR block that is not a public relay address.
#[derive(Debug, Clone, Copy)]
pub struct SpecialBlock {
    /// First address of the block (no host bits set).
    pub prefix: IpAddr,
    /// Prefix length in bits.
    pub len: u8,
    /// Registry name and source.
    pub name: &'static str,
    /// How addresses in it are treated.
    pub rule: SpecialRule,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str) -> SpecialBlock {
    SpecialBlock { prefix: IpAddr::V4(Ipv4Addr::new(a, b, c, d)), len, name, rule: SpecialRule::Refuse }
}

const fn v6(s: [u16; 8], len: u8, name: &'static str, rule: SpecialRule) -> SpecialBlock {
    let ip = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    SpecialBlock { prefix: IpAddr::V6(ip), len, name, rule }
}

const R: SpecialRule = SpecialRule::Refuse;

/// Every block that is not a public relay address: the IANA IPv4 and IPv6
/// Special-Purpose Address Registries (rows not globally reachable), plus
/// IPv6 space outside 2000::/3 (nothing else is allocated for global
/// unicast). One table so the rule can be audited and tested row by row.
///
/// Deliberately broader than the registry, for simplicity: all of
/// 192.0.0.0/24 and 2001::/23 (a few anycast sub-blocks in them are globally
/// reachable, none hosts a relay); NAT64 and 6to4 (2002::/16) entirely, since
/// they can carry a private IPv4 destination; IPv4-compatible ::/96 entirely.
pub const SPECIAL_PURPOSE: &[SpecialBlock] = &[
    // IANA IPv4 Special-Purpose Address Registry
    v4(0, 0, 0, 0, 8, "this network (RFC 791)"),
    v4(10, 0, 0, 0, 8, "private use (RFC 1918)"),
    v4(100, 64, 0, 0, 10, "shared address space / CGN (RFC 6598)"),
    v4(127, 0, 0, 0, 8, "loopback (RFC 1122)"),
    v4(169, 254, 0, 0, 16, "link-local (RFC 3927)"),
    v4(172, 16, 0, 0, 12, "private use (RFC 1918)"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments (RFC 6890)"),
    v4(192, 0, 2, 0, 24, "documentation TEST-NET-1 (RFC 5737)"),
    v4(192, 88, 99, 0, 24, "6to4 relay anycast (RFC 7526)"),
    v4(192, 168, 0, 0, 16, "private use (RFC 1918)"),
    v4(198, 18, 0, 0, 15, "benchmarking (RFC 2544)"),
    v4(198, 51, 100, 0, 24, "documentation TEST-NET-2 (RFC 5737)"),
    v4(203, 0, 113, 0, 24, "documentation TEST-NET-3 (RFC 5737)"),
    v4(224, 0, 0, 0, 4, "multicast (RFC 5771)"),
    v4(240, 0, 0, 0, 4, "reserved (RFC 1112)"),
    v4(255, 255, 255, 255, 32, "limited broadcast (RFC 919)"),
    // IANA IPv6 Special-Purpose Address Registry
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified (RFC 4291)", R),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback (RFC 4291)", R),
    v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "IPv4-mapped (RFC 4291)", SpecialRule::EmbeddedV4),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible, deprecated (RFC 4291)", R),
    v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64 well-known prefix (RFC 6052)", R),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "NAT64 local-use (RFC 8215)", R),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (RFC 6666)", R),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments (RFC 2928)", R),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation (RFC 3849)", R),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4 (RFC 3056)", R),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation (RFC 9637)", R),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing SRv6 SIDs (RFC 9602)", R),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local (RFC 4193)", R),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local unicast (RFC 4291)", R),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local, deprecated (RFC 3879)", R),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (RFC 4291)", R),
    // IANA IPv6 Address Space: only 2000::/3 is global unicast
    v6([0, 0, 0, 0, 0, 0, 0, 0], 3, "outside global unicast 2000::/3", R),
    v6([0x4000, 0, 0, 0, 0, 0, 0, 0], 2, "outside global unicast 2000::/3", R),
    v6([0x8000, 0, 0, 0, 0, 0, 0, 0], 1, "outside global unicast 2000::/3", R),
];

impl SpecialBlock {
    /// True when `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.prefix, ip) {
            (IpAddr::V4(p), IpAddr::V4(a)) => same_prefix(u32::from(p).into(), u32::from(a).into(), 32, self.len),
            (IpAddr::V6(p), IpAddr::V6(a)) => same_prefix(u128::from(p), u128::from(a), 128, self.len),
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, bits: u32, len: u8) -> bool {
    let len = u32::from(len).min(bits);
    len == 0 || (a ^ b) >> (bits - len) == 0
}

/// True when `ip` is a public unicast address, i.e. in no row of
/// [`SPECIAL_PURPOSE`] (the first matching row decides). Used by the URL
/// check and by the native connector on resolved addresses.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match SPECIAL_PURPOSE.iter().find(|row| row.contains(ip)) {
        None => true,
        Some(row) => match (row.rule, ip) {
            (SpecialRule::EmbeddedV4, IpAddr::V6(v6)) => v6.to_ipv4_mapped().is_some_and(|v4| is_public_ip(IpAddr::V4(v4))),
            _ => false,
        },
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

    fn addr(prefix: IpAddr, n: u128) -> IpAddr {
        match prefix {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
        }
    }

    /// Per row: the first, a middle and the last address are refused, and a
    /// neighbour just outside the block is public unless another row covers it.
    #[test]
    fn every_special_purpose_row_is_enforced() {
        for row in SPECIAL_PURPOSE {
            let (bits, first) = match row.prefix {
                IpAddr::V4(p) => (32u32, u128::from(u32::from(p))),
                IpAddr::V6(p) => (128u32, u128::from(p)),
            };
            assert!(u32::from(row.len) <= bits, "{}", row.name);
            let host_bits = bits - u32::from(row.len);
            let mask = if host_bits == 0 { 0 } else { u128::MAX >> (128 - host_bits) };
            assert_eq!(first & mask, 0, "{}: prefix has host bits set", row.name);
            let last = first | mask;
            let inside = [first, first + mask / 2, last].map(|n| addr(row.prefix, n));
            for ip in inside {
                assert!(row.contains(ip), "{}: {ip}", row.name);
                match row.rule {
                    SpecialRule::Refuse => assert!(!is_public_ip(ip), "{}: {ip} must be refused", row.name),
                    // the middle (::ffff:128.0.0.0) is public; first and last follow their IPv4
                    SpecialRule::EmbeddedV4 => assert_eq!(
                        is_public_ip(ip),
                        is_public_ip(IpAddr::V4(match ip {
                            IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap(),
                            IpAddr::V4(v4) => v4,
                        })),
                        "{}: {ip}",
                        row.name
                    ),
                }
            }
            let max = if bits == 32 { u128::from(u32::MAX) } else { u128::MAX };
            let outside = [first.checked_sub(1), (last < max).then(|| last + 1)];
            for ip in outside.into_iter().flatten().map(|n| addr(row.prefix, n)) {
                assert!(!row.contains(ip), "{}: {ip}", row.name);
                if !SPECIAL_PURPOSE.iter().any(|r| r.contains(ip)) {
                    assert!(is_public_ip(ip), "{}: neighbour {ip} must be public", row.name);
                }
            }
        }
    }

    #[test]
    fn embedded_and_translated_addresses() {
        let p = |s: &str| is_public_ip(s.parse().unwrap());
        // IPv4-mapped follows the embedded address
        assert!(!p("::ffff:127.0.0.1") && !p("::ffff:10.0.0.1") && !p("::ffff:192.0.0.9"));
        assert!(p("::ffff:8.8.8.8"));
        // IPv4-compatible, NAT64 and 6to4 are refused whatever they embed
        for bad in ["::127.0.0.1", "::8.8.8.8", "64:ff9b::a00:1", "64:ff9b::808:808", "64:ff9b:1::1", "2002:7f00:1::", "2002:808:808::"] {
            assert!(!p(bad), "{bad}");
        }
        // named blocks inside 2001::/23 and the rest of the registry
        for bad in ["2001:db8::1", "2001:10::1", "2001:20::1", "2001:1::1", "3fff::1", "5f00::1", "fec0::1", "100::1", "4000::1"] {
            assert!(!p(bad), "{bad}");
        }
        for good in ["8.8.8.8", "1.1.1.1", "192.0.1.1", "192.31.196.1", "223.255.255.255", "2606:4700::1111", "2001:200::1", "2a00:1450::1"]
        {
            assert!(p(good), "{good}");
        }
    }

    #[test]
    fn safety_rule_uses_the_table_for_literal_hosts() {
        for bad in [
            "ws://[::127.0.0.1]",
            "ws://[64:ff9b::7f00:1]",
            "ws://192.88.99.1",
            "ws://192.0.0.170",
            "ws://[2002:a00:1::]",
            "ws://255.255.255.255",
            "ws://198.19.0.1",
        ] {
            assert!(matches!(RelayUrl::parse_safe(bad, false), Err(RelayUrlError::Private(_))), "{bad}");
            assert!(RelayUrl::parse_safe(bad, true).is_ok(), "{bad} allowed");
        }
    }

    #[test]
    fn normalising_is_idempotent_for_fuzzer_findings() {
        // fuzz/regressions/relay_url/*
        assert!(matches!(RelayUrl::parse("ws:."), Err(RelayUrlError::NoHost)));
        // fuzz/regressions/announcement/*: indexed as `wss://`, which then failed to restore
        assert!(matches!(RelayUrl::parse_safe("wss://.", true), Err(RelayUrlError::NoHost)));
        assert!(matches!(RelayUrl::parse_safe("wss://...", true), Err(RelayUrlError::NoHost)));
        let once = RelayUrl::parse("WS:0..").unwrap();
        assert_eq!(RelayUrl::parse(once.as_str()).unwrap(), once);
        assert_eq!(once.as_str(), "ws://0.0.0.0");
    }

    #[test]
    fn ipv6_host_extraction() {
        let r = RelayUrl::parse("ws://[2606:4700::1111]:7000/x").unwrap();
        assert_eq!(r.host(), "2606:4700::1111");
    }
}
