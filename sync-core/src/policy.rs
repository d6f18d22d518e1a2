//! Acceptance: which events the engine stores (SPEC §4).
//!
//! The server (GRASP) policy accepts repositories that list this service; the
//! client policy accepts an interest set. Either way, everything tagging an
//! accepted repository or root event is accepted too. The policy only
//! classifies; the repository index holds what has been accepted so far.
//!
//! Front ends build the policy with [`AcceptancePolicy::server`] or
//! [`AcceptancePolicy::client`], so the daemon's flags and the browser's
//! config normalise relay URLs, domains, addresses and pubkeys the same way;
//! a [`PolicyError`] names the bad value and each front end adds the option
//! or field it came from.

use std::collections::BTreeSet;

use nostr::{Event, EventId, PublicKey};
use serde::{Deserialize, Serialize};

use crate::nip34::{self, REPO_ANNOUNCEMENT, REPO_STATE};
use crate::relay_url::{RelayUrl, RelayUrlError};
use crate::repo_index::{ListedRelays, RepoSyncIndex};

/// Which repositories are wanted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptancePolicy {
    /// GRASP server: repositories whose announcement lists one of our relay
    /// URLs in `relays` or a clone URL on one of our domains.
    Server {
        /// Our relay URLs (normalised).
        relay_urls: BTreeSet<RelayUrl>,
        /// Our domains (lowercase hostnames) for `clone` URLs.
        domains: BTreeSet<String>,
    },
    /// Client: an interest set.
    Client(InterestSet),
}

/// A client's interest: explicit repositories, maintainers, or everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterestSet {
    /// Explicit `30617:<pubkey>:<d>` addresses.
    pub repositories: BTreeSet<String>,
    /// Every repository announced by, or listing as maintainer, one of these pubkeys (hex).
    pub maintainers: BTreeSet<String>,
    /// Every announcement seen.
    pub all: bool,
}

/// Why an event was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Can never become acceptable (e.g. an announcement that does not list us).
    Permanent,
    /// Might become acceptable once more repositories/roots are accepted.
    Conditional,
}

/// What accepting an event means for the repository index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A wanted repository announcement, with its relays parsed once.
    Announcement(ListedRelays),
    /// A repository state event of an accepted repository.
    State,
    /// A patch, PR or issue of these accepted repositories: a new L3 root.
    Root(Vec<String>),
    /// Any other event tagging an accepted repository or root event.
    Related,
    /// A version of an accepted repository's announcement that no longer
    /// names us: if it is the newest, the repository stops being synced.
    Delisting,
    /// Not wanted.
    Reject(Rejection),
}

/// Why a policy could not be built. Each names the value given, so the
/// front end can say which option or field held it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A server relay URL that is not a usable `ws://`/`wss://` URL.
    #[error("`{url}`: {error}")]
    RelayUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        error: RelayUrlError,
    },
    /// A server domain that is not a bare host name.
    #[error("`{0}` is not a bare domain name (e.g. git.example.com)")]
    Domain(String),
    /// A server policy with neither relay URLs nor domains.
    #[error("the server policy needs at least one relay URL or domain")]
    EmptyServer,
    /// Not a `30617:<pubkey-hex>:<d>` repository address.
    #[error("invalid repository address `{0}` (expected 30617:<pubkey-hex>:<d>)")]
    RepoAddress(String),
    /// Not a hex public key.
    #[error("invalid maintainer pubkey `{hex}`: {reason}")]
    Maintainer {
        /// The pubkey as given.
        hex: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AcceptancePolicy {
    /// The server (GRASP) policy: repositories whose announcement lists one
    /// of `relay_urls` or has a `clone` URL on one of `domains`. URLs are
    /// normalised like every relay URL ([`RelayUrl::parse`]: lowercase host,
    /// no trailing dot, default port or trailing slash), domains by
    /// [`normalise_domain`]. At least one of the two must be given.
    pub fn server<U: AsRef<str>, D: AsRef<str>>(
        relay_urls: impl IntoIterator<Item = U>,
        domains: impl IntoIterator<Item = D>,
    ) -> Result<Self, PolicyError> {
        let relay_urls = relay_urls
            .into_iter()
            .map(|u| RelayUrl::parse(u.as_ref()).map_err(|error| PolicyError::RelayUrl { url: u.as_ref().to_string(), error }))
            .collect::<Result<BTreeSet<_>, _>>()?;
        let domains = domains.into_iter().map(|d| normalise_domain(d.as_ref())).collect::<Result<BTreeSet<_>, _>>()?;
        if relay_urls.is_empty() && domains.is_empty() {
            return Err(PolicyError::EmptyServer);
        }
        Ok(AcceptancePolicy::Server { relay_urls, domains })
    }

    /// The client policy of an interest set: `repositories` (`30617:<pubkey-hex>:<d>`,
    /// see [`parse_repo_address`]), every repository of `maintainers` (hex
    /// pubkeys, see [`parse_maintainer`]), or `all` of them. An empty set is
    /// allowed (it accepts nothing).
    pub fn client<R: AsRef<str>, M: AsRef<str>>(
        repositories: impl IntoIterator<Item = R>,
        maintainers: impl IntoIterator<Item = M>,
        all: bool,
    ) -> Result<Self, PolicyError> {
        let repositories = repositories.into_iter().map(|a| parse_repo_address(a.as_ref())).collect::<Result<_, _>>()?;
        let maintainers = maintainers.into_iter().map(|m| parse_maintainer(m.as_ref())).collect::<Result<_, _>>()?;
        Ok(AcceptancePolicy::Client(InterestSet { repositories, maintainers, all }))
    }

    /// Classifies `event` against the policy and what is accepted so far.
    pub fn classify(&self, event: &Event, index: &RepoSyncIndex) -> Verdict {
        match event.kind.as_u16() {
            REPO_ANNOUNCEMENT => {
                let listed = ListedRelays::of(event);
                if self.wants_listed(event, &listed) {
                    Verdict::Announcement(listed)
                } else if index.contains_repo(&nip34::repo_address(event)) {
                    Verdict::Delisting
                } else {
                    Verdict::Reject(Rejection::Permanent)
                }
            }
            REPO_STATE => {
                let d = nip34::d_tag(event);
                if index.is_repo_controller(&event.pubkey, d) {
                    Verdict::State
                } else {
                    Verdict::Reject(Rejection::Conditional)
                }
            }
            _ => classify_related(event, index),
        }
    }

    /// True when this announcement names a repository we serve / are interested in.
    pub fn wants_announcement(&self, event: &Event) -> bool {
        self.wants_listed(event, &ListedRelays::of(event))
    }

    /// [`Self::wants_announcement`] over its relays, already parsed.
    fn wants_listed(&self, event: &Event, listed: &ListedRelays) -> bool {
        match self {
            AcceptancePolicy::Server { relay_urls, domains } => {
                let lists_relay = listed.parsed().any(|u| relay_urls.contains(u));
                lists_relay || nip34::tag_values(event, "clone").any(|u| clone_on_domain(u, domains))
            }
            AcceptancePolicy::Client(interest) => {
                if interest.all || interest.repositories.contains(&nip34::repo_address(event)) {
                    return true;
                }
                interest.maintainers.contains(&event.pubkey.to_hex())
                    || nip34::tag_values(event, "maintainers").any(|m| interest.maintainers.contains(m))
            }
        }
    }
}

fn classify_related(event: &Event, index: &RepoSyncIndex) -> Verdict {
    let mut repos: Vec<String> = Vec::new();
    for name in ["a", "A", "q"] {
        for value in nip34::tag_refs(event, name) {
            if index.contains_repo(value) && !repos.iter().any(|r| r == value) {
                repos.push(value.to_string());
            }
        }
    }
    if !repos.is_empty() {
        if nip34::is_root_kind(event.kind) {
            return Verdict::Root(repos);
        }
        return Verdict::Related;
    }
    let tags_root = ["e", "E", "q"]
        .iter()
        .any(|name| nip34::tag_refs(event, name).filter_map(nip34::parse_event_id).any(|id| index.contains_root(&id)));
    if tags_root {
        Verdict::Related
    } else {
        Verdict::Reject(Rejection::Conditional)
    }
}

fn clone_on_domain(url: &str, domains: &BTreeSet<String>) -> bool {
    match url::Url::parse(url) {
        Ok(u) => u.host_str().map(|h| domains.contains(&h.to_ascii_lowercase())).unwrap_or(false),
        Err(_) => false,
    }
}

/// The ids a root-tagging event refers to (used to index roots).
pub fn referenced_ids(event: &Event) -> BTreeSet<EventId> {
    ["e", "E", "q"].iter().flat_map(|n| nip34::tag_refs(event, n).filter_map(nip34::parse_event_id)).collect()
}

/// A server domain as `clone` URLs are matched against it: surrounding
/// whitespace and trailing dots removed (`git.example.com.` is the same
/// host), lowercase. Anything with a `/` or `:` (a URL, a port) is refused.
pub fn normalise_domain(input: &str) -> Result<String, PolicyError> {
    let domain = input.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.contains(['/', ':']) {
        return Err(PolicyError::Domain(input.to_string()));
    }
    Ok(domain)
}

/// Parses a hex pubkey for the interest set (lowercase hex).
pub fn parse_maintainer(hex: &str) -> Result<String, PolicyError> {
    PublicKey::from_hex(hex).map(|p| p.to_hex()).map_err(|e| PolicyError::Maintainer { hex: hex.to_string(), reason: e.to_string() })
}

/// Parses a `30617:<pubkey>:<d>` address (pubkey in lowercase hex).
pub fn parse_repo_address(addr: &str) -> Result<String, PolicyError> {
    let mut parts = addr.splitn(3, ':');
    let (kind, pk, d) = (parts.next(), parts.next(), parts.next());
    match (kind, pk, d) {
        (Some("30617"), Some(pk), Some(d)) if PublicKey::from_hex(pk).is_ok() => Ok(format!("30617:{}:{d}", pk.to_ascii_lowercase())),
        _ => Err(PolicyError::RepoAddress(addr.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use nostr::Keys;

    fn server() -> AcceptancePolicy {
        AcceptancePolicy::server(["wss://grasp.example.com"], ["grasp.example.com"]).unwrap()
    }

    #[test]
    fn server_accepts_announcement_listing_our_relay_after_normalisation() {
        let k = Keys::generate();
        let ev = announcement(&k, "repo", &["WSS://GRASP.example.com/"], &[]);
        assert_eq!(server().classify(&ev, &RepoSyncIndex::default()), Verdict::Announcement(ListedRelays::of(&ev)));
    }

    #[test]
    fn server_accepts_announcement_with_clone_on_our_domain() {
        let k = Keys::generate();
        let ev = announcement_with_clone(&k, "repo", &["wss://other.example.org"], "https://grasp.example.com/npub/repo.git");
        assert_eq!(server().classify(&ev, &RepoSyncIndex::default()), Verdict::Announcement(ListedRelays::of(&ev)));
    }

    #[test]
    fn server_rejects_announcement_not_listing_us_permanently() {
        let k = Keys::generate();
        let ev = announcement(&k, "repo", &["wss://elsewhere.example.org"], &[]);
        assert_eq!(server().classify(&ev, &RepoSyncIndex::default()), Verdict::Reject(Rejection::Permanent));
    }

    #[test]
    fn state_accepted_from_author_or_maintainer_only() {
        let owner = Keys::generate();
        let maint = Keys::generate();
        let stranger = Keys::generate();
        let ann = announcement(&owner, "repo", &["wss://grasp.example.com"], &[&maint.public_key().to_hex()]);
        let mut index = RepoSyncIndex::default();
        index.add_announcement(&ann, &ListedRelays::of(&ann), crate::repo_index::UrlRules::default());
        let p = server();
        assert_eq!(p.classify(&repo_state(&owner, "repo"), &index), Verdict::State);
        assert_eq!(p.classify(&repo_state(&maint, "repo"), &index), Verdict::State);
        assert_eq!(p.classify(&repo_state(&stranger, "repo"), &index), Verdict::Reject(Rejection::Conditional));
    }

    #[test]
    fn related_events_via_a_and_e_tags() {
        let owner = Keys::generate();
        let ann = announcement(&owner, "repo", &["wss://grasp.example.com"], &[]);
        let mut index = RepoSyncIndex::default();
        index.add_announcement(&ann, &ListedRelays::of(&ann), crate::repo_index::UrlRules::default());
        let addr = nip34::repo_address(&ann);
        let p = server();
        let patch = tagged(&owner, 1617, "a", &addr);
        assert_eq!(p.classify(&patch, &index), Verdict::Root(vec![addr.clone()]));
        index.add_root(&addr, patch.id);
        let comment = tagged(&owner, 1111, "E", &patch.id.to_hex());
        assert_eq!(p.classify(&comment, &index), Verdict::Related);
        let status = tagged(&owner, 1631, "e", &patch.id.to_hex());
        assert_eq!(p.classify(&status, &index), Verdict::Related);
        let quote = tagged(&owner, 1, "q", &addr);
        assert_eq!(p.classify(&quote, &index), Verdict::Related);
        let noise = tagged(&owner, 1111, "e", &EventId::all_zeros().to_hex());
        assert_eq!(p.classify(&noise, &index), Verdict::Reject(Rejection::Conditional));
    }

    #[test]
    fn client_interest_set_by_address_maintainer_or_all() {
        let owner = Keys::generate();
        let other = Keys::generate();
        let ann = announcement(&owner, "repo", &["wss://x.example.org"], &[&other.public_key().to_hex()]);
        let by_addr = AcceptancePolicy::Client(InterestSet { repositories: [nip34::repo_address(&ann)].into(), ..Default::default() });
        let by_maint = AcceptancePolicy::Client(InterestSet { maintainers: [other.public_key().to_hex()].into(), ..Default::default() });
        let all = AcceptancePolicy::Client(InterestSet { all: true, ..Default::default() });
        let none = AcceptancePolicy::Client(InterestSet::default());
        let idx = RepoSyncIndex::default();
        assert_eq!(by_addr.classify(&ann, &idx), Verdict::Announcement(ListedRelays::of(&ann)));
        assert_eq!(by_maint.classify(&ann, &idx), Verdict::Announcement(ListedRelays::of(&ann)));
        assert_eq!(all.classify(&ann, &idx), Verdict::Announcement(ListedRelays::of(&ann)));
        assert_eq!(none.classify(&ann, &idx), Verdict::Reject(Rejection::Permanent));
    }

    /// Both front ends build the policy here, so `git.example.com.` (a
    /// trailing dot), `GIT.Example.com` and ` git.example.com ` mean the same
    /// service whether they come from a daemon flag or the browser config.
    #[test]
    fn server_policy_normalises_urls_and_domains() {
        let want = AcceptancePolicy::Server {
            relay_urls: [RelayUrl::parse("wss://git.example.com").unwrap()].into(),
            domains: ["git.example.com".to_string()].into(),
        };
        for (url, domain) in [
            ("wss://git.example.com", "git.example.com"),
            ("wss://git.example.com.", "git.example.com."),
            ("WSS://GIT.Example.com:443/", "GIT.Example.com"),
            (" wss://git.example.com ", " git.example.com.. "),
        ] {
            assert_eq!(AcceptancePolicy::server([url], [domain]), Ok(want.clone()), "{url} {domain}");
        }
        let only_domain = AcceptancePolicy::server::<&str, _>([], ["Git.Example.COM."]).unwrap();
        assert_eq!(only_domain, AcceptancePolicy::Server { relay_urls: BTreeSet::new(), domains: ["git.example.com".to_string()].into() });
        let k = Keys::generate();
        let ev = announcement_with_clone(&k, "repo", &[], "https://git.example.com/npub/repo.git");
        assert!(only_domain.wants_announcement(&ev), "a trailing dot in the configured domain still matches clone URLs");
    }

    #[test]
    fn server_policy_errors_name_the_bad_value() {
        let e = AcceptancePolicy::server(["http://git.example.com"], ["git.example.com"]).unwrap_err();
        assert!(matches!(&e, PolicyError::RelayUrl { url, error: RelayUrlError::Scheme(_) } if url == "http://git.example.com"), "{e:?}");
        assert!(e.to_string().contains("`http://git.example.com`"), "{e}");
        assert!(matches!(AcceptancePolicy::server(["not a url"], ["x.org"]), Err(PolicyError::RelayUrl { .. })));
        for bad in ["", ".", "  ", "git.example.com/", "https://git.example.com", "git.example.com:8080"] {
            let e = AcceptancePolicy::server(["wss://git.example.com"], [bad]).unwrap_err();
            assert_eq!(e, PolicyError::Domain(bad.to_string()));
            assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
        }
        assert_eq!(AcceptancePolicy::server::<&str, &str>([], []), Err(PolicyError::EmptyServer));
    }

    #[test]
    fn client_policy_normalises_pubkeys_and_names_the_bad_value() {
        let k = Keys::generate();
        let hex = k.public_key().to_hex();
        let upper = hex.to_ascii_uppercase();
        let p = AcceptancePolicy::client([format!("30617:{upper}:my-repo")], [upper.as_str()], false).unwrap();
        let want = InterestSet { repositories: [format!("30617:{hex}:my-repo")].into(), maintainers: [hex.clone()].into(), all: false };
        assert_eq!(p, AcceptancePolicy::Client(want));
        assert_eq!(
            AcceptancePolicy::client::<&str, &str>([], [], true),
            Ok(AcceptancePolicy::Client(InterestSet { all: true, ..Default::default() }))
        );
        assert_eq!(AcceptancePolicy::client(["30617:zz:x"], [hex.as_str()], false), Err(PolicyError::RepoAddress("30617:zz:x".into())));
        let e = AcceptancePolicy::client::<&str, _>([], ["zz"], false).unwrap_err();
        assert!(matches!(&e, PolicyError::Maintainer { hex, .. } if hex == "zz") && e.to_string().contains("`zz`"), "{e}");
    }

    #[test]
    fn address_and_maintainer_parsing_give_clear_errors() {
        assert!(parse_repo_address("30617:abc:d").unwrap_err().to_string().contains("invalid repository address"));
        let k = Keys::generate();
        let a = format!("30617:{}:my-repo", k.public_key().to_hex());
        assert_eq!(parse_repo_address(&a).unwrap(), a);
        assert!(parse_maintainer("zz").is_err());
    }
}
