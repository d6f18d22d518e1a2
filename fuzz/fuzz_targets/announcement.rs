//! Kind-30617 repository announcements with arbitrary tags.
//!
//! The event is built with a correct id and a dummy signature (parsing and
//! indexing do not verify; signing every input would halve the speed), then
//! goes through the NIP-34 tag helpers, every acceptance policy, the
//! repository index, and the start-up indexing of an engine (as if it had
//! been found in the store), whose health tick then tries to connect to the
//! relays it listed. With `via_engine` it is also signed and delivered as an
//! EVENT frame to a connected engine.
//!
//! How many relays one announcement may add is bounded by sync-core's
//! configuration and checked by its unit tests; this target asserts only that
//! nothing panics, plus the cheap properties below.

#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sync_core::nostr::filter::MatchEventOptions;
use sync_core::nostr::{Event, Filter, JsonUtil, Tag};
use sync_core::policy::{parse_maintainer, parse_repo_address, referenced_ids, InterestSet, Verdict};
use sync_core::repo_index::{ListedRelays, RepoSyncIndex, UrlRules};
use sync_core::state::SyncState;
use sync_core::testkit::{run_until_idle, Platform};
use sync_core::{nip34, AcceptancePolicy, Engine, Input as EngineInput, NegentropyItem, RelayUrl, SaveOutcome, SyncConfig};
use sync_core_fuzz::{frame_json, server_policy, tag, url, Rig, Signer, R1, T0};

#[derive(Arbitrary, Debug)]
struct Input {
    author: u8,
    created_at: u32,
    content: String,
    tags: Vec<TagIn>,
    allow_private: bool,
    /// A second version of the same repository (addressable replacement).
    second: Option<(u32, Vec<TagIn>)>,
    via_engine: bool,
}

#[derive(Arbitrary, Debug)]
struct TagIn {
    name: Name,
    values: Vec<Val>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    D,
    Relays,
    Maintainers,
    Clone,
    Name,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Val {
    Str(String),
    /// A URL-ish prefix and an arbitrary rest.
    Url(u8, String),
    /// A signer's public key (hex).
    Key(u8),
}

const URL_PREFIXES: &[&str] = &[
    "wss://",
    "ws://",
    "wss://grasp.example.com",
    "WSS://GRASP.example.com/",
    "https://grasp.example.com/",
    "wss://r1.example.com",
    "ws://10.0.0.",
    "ws://127.0.0.1:",
    "ws://localhost",
    "wss://[",
    "wss://[::ffff:",
    "wss://[fe80::",
    "wss://0x7f.",
    "wss://xn--",
    "wss://relay.",
    "wss://a.b.",
    "wss://.",
];

fn signer(n: u8) -> Signer {
    Signer::new(n % 4)
}

fn tags(list: &[TagIn]) -> Vec<Tag> {
    list.iter()
        .take(64)
        .filter_map(|t| {
            let name = match &t.name {
                Name::D => "d".to_string(),
                Name::Relays => "relays".to_string(),
                Name::Maintainers => "maintainers".to_string(),
                Name::Clone => "clone".to_string(),
                Name::Name => "name".to_string(),
                Name::Other(s) => s.clone(),
            };
            let mut parts = vec![name];
            parts.extend(t.values.iter().take(64).map(|v| match v {
                Val::Str(s) => s.clone(),
                Val::Url(p, rest) => format!("{}{rest}", URL_PREFIXES[*p as usize % URL_PREFIXES.len()]),
                Val::Key(k) => signer(*k).pubkey.to_hex(),
            }));
            tag(&parts)
        })
        .collect()
}

fn policies(author: &Signer) -> Vec<AcceptancePolicy> {
    vec![
        server_policy(),
        AcceptancePolicy::Client(InterestSet { all: true, ..Default::default() }),
        AcceptancePolicy::Client(InterestSet { maintainers: [author.pubkey.to_hex()].into(), ..Default::default() }),
        AcceptancePolicy::Client(InterestSet { maintainers: [signer(1).pubkey.to_hex()].into(), ..Default::default() }),
    ]
}

fn check_event(ev: &Event, author: &Signer, allow_private: bool, index: &mut RepoSyncIndex) {
    let address = nip34::repo_address(ev);
    assert_eq!(parse_repo_address(&address).as_deref(), Ok(address.as_str()), "repo_address does not parse back");
    let _ = nip34::d_tag(ev);
    for name in ["d", "relays", "maintainers", "clone", "name", "a", "e"] {
        let _ = nip34::first_tag_value(ev, name);
        let _ = nip34::tag_values(ev, name).count();
        let _ = nip34::tag_refs(ev, name).count();
    }
    for m in nip34::tag_values(ev, "maintainers") {
        let _ = parse_maintainer(m);
    }
    let _ = referenced_ids(ev);
    for p in policies(author) {
        let wants = p.wants_announcement(ev);
        let verdict = p.classify(ev, index);
        assert_eq!(wants, matches!(verdict, Verdict::Announcement(_)), "classify disagrees with wants_announcement");
        if matches!(&p, AcceptancePolicy::Client(i) if i.all) {
            assert!(wants, "an all-repositories client must want every announcement");
        }
    }
    let before: BTreeSet<RelayUrl> = index.repos().find(|(a, _)| **a == address).map(|(_, r)| r.relays.clone()).unwrap_or_default();
    let change = index.add_announcement(ev, &ListedRelays::of(ev), UrlRules { allow_private, ..UrlRules::default() });
    let entry = index.repos().find(|(a, _)| **a == address).map(|(_, r)| r.clone()).expect("indexed");
    if change.updated {
        for r in &entry.relays {
            assert!(RelayUrl::parse_safe(r.as_str(), allow_private).is_ok(), "indexed relay {r} fails the safety rule");
            assert!(index.repos_for_relay(r).contains(&address));
        }
    } else {
        assert_eq!(entry.relays, before, "an older announcement changed the relays");
    }
    let _ = (index.all_relays(), index.repo_count(), index.root_count());
}

/// Start-up over a store holding `events`; every relay refuses connections.
struct StartWorld<'a> {
    events: &'a [Event],
}

impl Platform for StartWorld<'_> {
    fn connect(&mut self, _relay: &RelayUrl) -> Result<(), String> {
        Err("fuzz: refused".into())
    }
    fn disconnect(&mut self, _relay: &RelayUrl) {}
    fn send(&mut self, _relay: &RelayUrl, _text: &str) -> Vec<String> {
        vec![]
    }
    fn relay_info(&mut self, _relay: &RelayUrl) -> Option<String> {
        None
    }
    fn save(&mut self, events: &[Event]) -> Result<Vec<SaveOutcome>, String> {
        Ok(events.iter().map(|_| SaveOutcome::Saved).collect())
    }
    fn negentropy_items(&mut self, _filter: &Filter) -> Result<Vec<NegentropyItem>, String> {
        Ok(vec![])
    }
    // Start-up asks for stored announcements and roots: `events` are "stored".
    fn query(&mut self, filter: &Filter) -> Result<Vec<Event>, String> {
        Ok(self.events.iter().filter(|e| filter.match_event(e, MatchEventOptions::new())).cloned().collect())
    }
    fn load_state(&mut self) -> Result<Option<Vec<u8>>, String> {
        Ok(None)
    }
    fn persist_state(&mut self, _state: Vec<u8>) {}
}

fn engine_start(events: &[Event], allow_private: bool) {
    let config = SyncConfig { allow_private_relays: allow_private, ..SyncConfig::default() };
    let mut engine = Engine::new(config, server_policy(), &[url(R1)], 1, T0).expect("valid config");
    let mut world = StartWorld { events };
    let mut reported = Vec::new();
    run_until_idle(&mut engine, &mut world, T0, &mut reported);
    assert!(engine.is_started());
    engine.handle_input(EngineInput::Timeout, T0);
    run_until_idle(&mut engine, &mut world, T0, &mut reported);
    let _ = engine.status(T0);
    SyncState::from_bytes(&engine.state_bytes()).expect("state restores");
}

fuzz_target!(|input: Input| {
    let author = signer(input.author);
    let first = author.unsigned(30617, tags(&input.tags), &input.content, input.created_at as u64);
    let mut events = vec![first.clone()];
    let mut index = RepoSyncIndex::default();
    check_event(&first, &author, input.allow_private, &mut index);
    if let Some((at, second_tags)) = &input.second {
        // same author and `d`, other tags and time
        let mut t = tags(second_tags);
        t.retain(|t| t.as_slice()[0] != "d");
        t.insert(0, tag(&["d", nip34::d_tag(&first)]).expect("non-empty"));
        let second = author.unsigned(30617, t, "", *at as u64);
        assert_eq!(nip34::repo_address(&second), nip34::repo_address(&first));
        check_event(&second, &author, input.allow_private, &mut index);
        events.push(second);
    }
    engine_start(&events, input.allow_private);
    if input.via_engine {
        let signed = author.sign(30617, first.tags.to_vec(), &first.content, first.created_at.as_secs());
        let r1 = url(R1);
        let mut rig = Rig::new(SyncConfig::default(), None);
        let sub = rig.sub(&r1, 0, false);
        let frame = frame_json(vec![json!("EVENT"), json!(sub), serde_json::from_str(&signed.as_json()).expect("event JSON")]);
        rig.frame(&r1, &frame);
        rig.advance(std::time::Duration::from_secs(10));
        rig.finish();
    }
});
