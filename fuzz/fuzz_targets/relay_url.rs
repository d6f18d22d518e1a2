//! Relay URL normalisation and the safety rule (`sync_core::relay_url`).
//!
//! The input as lossy UTF-8 is the URL; its first 4 and 16 bytes are also
//! checked as IPv4/IPv6 addresses. Properties:
//! - `parse` is idempotent: `parse(parse(x).as_str()) == parse(x)`;
//! - `parse_safe(x, true) == parse(x)`, and `parse_safe(x, false)` accepts
//!   only what `parse` accepts, normalised the same way;
//! - a literal-IP host accepted by `parse_safe(x, false)` is public per
//!   `is_public_ip`, and `host()` of a parsed URL is what the URL says.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use sync_core::relay_url::is_public_ip;
use sync_core::RelayUrl;

fuzz_target!(|data: &[u8]| {
    let mut v4 = [0u8; 4];
    let mut v6 = [0u8; 16];
    for (i, b) in data.iter().take(16).enumerate() {
        if i < 4 {
            v4[i] = *b;
        }
        v6[i] = *b;
    }
    let _ = is_public_ip(IpAddr::V4(Ipv4Addr::from(v4)));
    let _ = is_public_ip(IpAddr::V6(Ipv6Addr::from(v6)));
    // an IPv4-mapped IPv6 address is judged like the IPv4 address
    let mapped = Ipv4Addr::from(v4).to_ipv6_mapped();
    assert_eq!(
        is_public_ip(IpAddr::V6(mapped)),
        is_public_ip(IpAddr::V4(Ipv4Addr::from(v4))),
        "{mapped} judged unlike {}",
        Ipv4Addr::from(v4)
    );

    let input = String::from_utf8_lossy(data);
    let parsed = RelayUrl::parse(&input);
    assert_eq!(RelayUrl::parse_safe(&input, true), parsed, "parse_safe(_, true) differs from parse for {input:?}");
    let safe = RelayUrl::parse_safe(&input, false);
    if let Ok(s) = &safe {
        assert_eq!(parsed.as_ref(), Ok(s), "parse_safe(_, false) accepted {input:?} but parse did not agree");
    }
    let Ok(url) = parsed else { return };
    let again = RelayUrl::parse(url.as_str());
    assert_eq!(again.as_ref(), Ok(&url), "parse is not idempotent for {input:?}: {url} -> {again:?}");
    let host = url.host();
    assert!(!host.is_empty(), "parsed URL {url} (from {input:?}) has an empty host");
    assert!(url.as_str().contains(host), "host {host:?} is not part of {url}");
    assert_eq!(
        RelayUrl::parse_safe(url.as_str(), false).is_ok(),
        safe.is_ok(),
        "the safety rule judges {input:?} and its normal form {url} differently"
    );
    if safe.is_ok() {
        if let Ok(ip) = host.parse::<IpAddr>() {
            assert!(is_public_ip(ip), "parse_safe(_, false) accepted {url} with non-public IP {ip}");
        }
    }
});
