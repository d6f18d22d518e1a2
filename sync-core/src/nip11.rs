//! NIP-11 relay information: the three facts the engine uses (SPEC §2).
//!
//! Fetched once per connection by the driver (`Command::FetchRelayInfo`,
//! [`crate::Connector::fetch_info`]); anything missing or malformed simply
//! leaves the engine on its defaults — NIP-11 documents are often wrong or
//! absent, so they may tighten our behaviour but never block sync.

use serde::Deserialize;

/// What the engine takes from a relay's NIP-11 document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayInfo {
    /// `supported_nips` contains 77 (`Some(false)`: a list without 77).
    pub negentropy: Option<bool>,
    /// `limitation.max_subscriptions`: caps live + historic subscriptions.
    pub max_subscriptions: Option<usize>,
    /// `limitation.max_limit`: caps our page size.
    pub max_limit: Option<usize>,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    supported_nips: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    limitation: Option<Limitation>,
}

#[derive(Deserialize)]
struct Limitation {
    #[serde(default)]
    max_subscriptions: Option<serde_json::Value>,
    #[serde(default)]
    max_limit: Option<serde_json::Value>,
}

/// A positive integer (relays write numbers, strings of numbers, or garbage).
fn positive(v: &serde_json::Value) -> Option<usize> {
    let n = v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))?;
    (n > 0).then(|| n.min(usize::MAX as u64) as usize)
}

impl RelayInfo {
    /// Parses a NIP-11 document; `None` when it is not a JSON object.
    pub fn parse(text: &str) -> Option<Self> {
        let doc: Doc = serde_json::from_str(text).ok()?;
        let negentropy = doc.supported_nips.map(|nips| nips.iter().any(|n| positive(n) == Some(77)));
        let (max_subscriptions, max_limit) = match &doc.limitation {
            Some(l) => (l.max_subscriptions.as_ref().and_then(positive), l.max_limit.as_ref().and_then(positive)),
            None => (None, None),
        };
        Some(Self { negentropy, max_subscriptions, max_limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nips_and_limits() {
        let info = RelayInfo::parse(r#"{"name":"x","supported_nips":[1,11,"77"],"limitation":{"max_subscriptions":20,"max_limit":"500"}}"#)
            .unwrap();
        assert_eq!(info, RelayInfo { negentropy: Some(true), max_subscriptions: Some(20), max_limit: Some(500) });
        let info = RelayInfo::parse(r#"{"supported_nips":[1,2,9]}"#).unwrap();
        assert_eq!(info.negentropy, Some(false));
        assert_eq!(info.max_subscriptions, None);
    }

    #[test]
    fn missing_or_odd_fields_are_unknown_not_errors() {
        assert_eq!(RelayInfo::parse("{}").unwrap(), RelayInfo::default());
        let info = RelayInfo::parse(r#"{"supported_nips":"all","limitation":{"max_subscriptions":0,"max_limit":-5}}"#);
        assert_eq!(info, None, "a wrongly typed supported_nips makes the document unusable");
        let info = RelayInfo::parse(r#"{"limitation":{"max_subscriptions":0,"max_limit":"lots"}}"#).unwrap();
        assert_eq!(info, RelayInfo::default());
        assert_eq!(RelayInfo::parse("<html>"), None);
        assert_eq!(RelayInfo::parse("[1,2]"), None);
    }
}
