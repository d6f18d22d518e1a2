//! Engine tests for hostile input (issue "hostile world"): every bound on
//! what strangers can make the engine track, hold or retry, and the
//! silent-loss corners. Each test failed on the engine before its fix.

use std::time::Duration;

use nostr::{EventId, Keys, Timestamp};

use crate::config::SyncConfig;
use crate::io::Input;
use crate::nip34;
use crate::policy::AcceptancePolicy;
use crate::relay_url::RelayUrl;
use crate::status::ConnectionStatus;
use crate::testkit::{Executed, Harness, Mode, ScriptRelay};
use crate::testutil::*;

const OURS: &str = "wss://grasp.example.com";
const R1: &str = "wss://r1.example.com";

fn url(s: &str) -> RelayUrl {
    RelayUrl::parse(s).unwrap()
}

fn server_policy() -> AcceptancePolicy {
    AcceptancePolicy::Server { relay_urls: [url(OURS)].into(), domains: Default::default() }
}

fn cfg() -> SyncConfig {
    SyncConfig { backoff_jitter: 0.0, ..Default::default() }
}

fn tracked_count(h: &Harness) -> usize {
    h.engine.status(h.now).relays.len()
}

#[test]
fn one_announcement_listing_5000_relays_tracks_20_and_dials_a_bounded_number_per_tick() {
    let k = Keys::generate();
    let many: Vec<String> = (0..5000).map(|i| format!("wss://r{i}.example.net")).collect();
    let mut listed: Vec<&str> = vec![OURS];
    listed.extend(many.iter().map(String::as_str));
    let ann = announcement(&k, "amp", &listed, &[]);
    let config = SyncConfig { max_connects_per_tick: 5, ..cfg() };
    let mut h = Harness::new(config, server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, vec![ann]))]);
    h.advance(Duration::from_secs(3));
    // R1 + the first 20 listed, ours among them (excluded: never dialled)
    assert_eq!(tracked_count(&h), 1 + 19);
    let st = h.engine.status(h.now);
    assert_eq!(st.totals.relay_urls_refused.get("per_announcement"), Some(&(5001 - 20)));
    // connections start at most 5 per 2 s tick
    let mut per_tick = std::collections::BTreeMap::new();
    for (at, _) in &h.connects {
        *per_tick.entry(at.0 / 2000).or_insert(0) += 1;
    }
    assert!(per_tick.values().all(|n| *n <= 5), "{per_tick:?}");
    h.advance(Duration::from_secs(30));
    assert_eq!(h.connects.iter().map(|(_, u)| u.clone()).collect::<std::collections::BTreeSet<_>>().len(), 20);
    assert!(h.engine.state_bytes().len() < 64 * 1024, "state stays small: {}", h.engine.state_bytes().len());
}

#[test]
fn relays_per_host_and_in_total_are_bounded_and_counted() {
    let k = Keys::generate();
    let same_host: Vec<String> = (0..10).map(|i| format!("wss://one.example.net/{i}")).collect();
    let mut listed: Vec<&str> = vec![OURS];
    listed.extend(same_host.iter().map(String::as_str));
    let a1 = announcement(&k, "a1", &listed, &[]);
    let others: Vec<Event> = (0..6)
        .map(|i| {
            let relays: Vec<String> = (0..3).map(|j| format!("wss://h{i}-{j}.example.net")).collect();
            let mut l: Vec<&str> = vec![OURS];
            l.extend(relays.iter().map(String::as_str));
            announcement(&k, &format!("r{i}"), &l, &[])
        })
        .collect();
    let mut events = vec![a1];
    events.extend(others);
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events.clone()))]);
    h.advance(Duration::from_secs(10));
    let st = h.engine.status(h.now);
    assert_eq!(st.relays.len(), 1 + 4 + 18);
    assert_eq!(st.relays.iter().filter(|r| r.relay.starts_with("wss://one.example.net")).count(), 4);
    assert_eq!(st.totals.relay_urls_refused.get("per_host"), Some(&6));

    let config = SyncConfig { max_tracked_relays: 12, ..cfg() };
    let mut h = Harness::new(config, server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events))]);
    h.advance(Duration::from_secs(10));
    let st = h.engine.status(h.now);
    assert_eq!(st.relays.len(), 12);
    // 28 URLs listed, 11 tracked besides R1: the other 17 refused (counted once each)
    assert_eq!(st.totals.relay_urls_refused.values().sum::<u64>(), 28 - 11, "{:?}", st.totals.relay_urls_refused);
    assert!(st.totals.relay_urls_refused.contains_key("total"));
}

use nostr::Event;

#[test]
fn long_urls_are_refused() {
    let k = Keys::generate();
    let long = format!("wss://{}.example.net", "a".repeat(250));
    let ann = announcement(&k, "long", &[OURS, &long], &[]);
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, vec![ann]))]);
    h.advance(Duration::from_secs(10));
    assert_eq!(tracked_count(&h), 1);
    assert_eq!(h.engine.status(h.now).totals.relay_urls_refused.get("too_long"), Some(&1));
}

#[test]
fn a_newer_announcement_without_us_delists_the_repository_and_replaces_the_old_one() {
    let k = Keys::generate();
    let v1 = announcement_at(&k, "repo", &[OURS, R1], Timestamp::from(1_700_000_000));
    let addr = nip34::repo_address(&v1);
    let patch = tagged(&k, 1617, "a", &addr);
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, vec![v1.clone(), patch.clone()]))]);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.engine.status(h.now).totals.repositories, 1);
    assert_eq!(h.store.saved_count(&patch.id), 1);

    let v2 = announcement_at(&k, "repo", &[R1], Timestamp::from(1_700_000_100));
    h.publish(R1, v2.clone());
    h.advance(Duration::from_secs(10));
    let st = h.engine.status(h.now);
    assert_eq!(st.totals.repositories, 0, "the repository is no longer synced");
    assert_eq!(h.store.saved_count(&v2.id), 1, "the newer version is stored and replaces the old one");
    let stored_announcements: Vec<EventId> = h.store.all().iter().filter(|e| e.kind.as_u16() == 30617).map(|e| e.id).collect();
    assert_eq!(stored_announcements, vec![v2.id]);
    assert_eq!(h.store.saved_count(&patch.id), 1, "stored events stay");
    // the maintainers' write access to the state ends with the repository
    let state = repo_state(&k, "repo");
    h.publish(R1, state.clone());
    h.advance(Duration::from_secs(10));
    assert_eq!(h.store.saved_count(&state.id), 0);
    // an older version (re-)published later changes nothing
    let old = announcement_at(&k, "repo", &[OURS, R1], Timestamp::from(1_700_000_050));
    h.publish(R1, old.clone());
    h.advance(Duration::from_secs(10));
    assert_eq!(h.engine.status(h.now).totals.repositories, 0);
    assert_eq!(h.status(R1), ConnectionStatus::Connected);
    // a still newer version naming us again brings the repository back
    let v3 = announcement_at(&k, "repo", &[OURS, R1], Timestamp::from(1_700_000_200));
    h.publish(R1, v3);
    h.advance(Duration::from_secs(10));
    assert_eq!(h.engine.status(h.now).totals.repositories, 1);
}

/// A repo listing us and R1 with one patch and `comments` comments on it.
fn thread(k: &Keys, comments: usize) -> (Vec<Event>, Vec<EventId>) {
    let ann = announcement(k, "repo", &[OURS, R1], &[]);
    let patch = tagged(k, 1617, "a", &nip34::repo_address(&ann));
    let mut events = vec![ann, patch.clone()];
    for i in 0..comments {
        events.push(tagged_at(k, 1111, "E", &patch.id.to_hex(), Timestamp::from(1_700_000_000 + i as u64)));
    }
    let ids = events.iter().map(|e| e.id).collect();
    (events, ids)
}

fn stored(h: &Harness) -> std::collections::BTreeSet<EventId> {
    h.store.all().into_iter().map(|e| e.id).collect()
}

#[test]
fn endless_negentropy_ends_the_batch_as_failed_within_its_bounds() {
    let k = Keys::generate();
    let (events, _) = thread(&k, 3);
    let config = SyncConfig { max_negentropy_rounds: 20, ..cfg() };
    let mut h = Harness::new(config, server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::EndlessNeg, events))]);
    h.advance(Duration::from_secs(600));
    assert_eq!(h.status(R1), ConnectionStatus::ConnectedDegraded, "never stuck Syncing");
    let st = h.engine.status(h.now);
    assert!(!st.relays[0].req_only, "a relay that answers NEG-MSG is not REQ-only");
    let mut rounds: std::collections::BTreeMap<String, usize> = Default::default();
    for f in h.sent_to(R1).iter().filter(|f| f.starts_with("[\"NEG-MSG\"")) {
        let sub: serde_json::Value = serde_json::from_str(f).unwrap();
        *rounds.entry(sub[1].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert!(rounds.values().all(|n| *n <= 20), "{rounds:?}");
    assert!(h.engine.unsaved_count() == 0);
}

#[test]
fn negentropy_ids_are_bounded_per_session() {
    let k = Keys::generate();
    let (events, _) = thread(&k, 3);
    let config = SyncConfig { max_negentropy_ids: 5_000, fetch_queue_max: 100_000, ..cfg() };
    let mut h = Harness::new(config, server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::EndlessNeg, events))]);
    h.advance(Duration::from_secs(600));
    assert_eq!(h.status(R1), ConnectionStatus::ConnectedDegraded);
    let needed = h.engine.status(h.now).relays[0].progress.ids_needed;
    assert!(needed <= 5_000 + 1_000 * 4, "at most one round past the bound per session: {needed}");
}

#[test]
fn junk_pages_neither_keep_a_job_paging_nor_hide_real_events() {
    let k = Keys::generate();
    let (events, accepted) = thread(&k, 150);
    let mut relay = ScriptRelay::new(Mode::ReqOnly, events);
    relay.junk_per_page = 300;
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, relay)]);
    h.advance(Duration::from_secs(120));
    assert_eq!(stored(&h), accepted.into_iter().collect());
    assert_eq!(h.status(R1), ConnectionStatus::Connected);
    let reqs = h.sent_to(R1).iter().filter(|f| f.starts_with("[\"REQ\"") && !f.contains("\"limit\":0")).count();
    assert!(reqs < 30, "junk did not keep pagination going: {reqs} REQs");
    let rejected = &h.engine.status(h.now).totals.events_rejected;
    assert!(rejected.get("invalid_signature").copied().unwrap_or(0) > 0, "{rejected:?}");
}

#[test]
fn pages_per_job_are_bounded() {
    let k = Keys::generate();
    let (events, _) = thread(&k, 600);
    let config = SyncConfig { max_pages_per_job: 2, ..cfg() };
    let mut h = Harness::new(config, server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::ReqOnly, events))]);
    h.advance(Duration::from_secs(120));
    assert_eq!(h.status(R1), ConnectionStatus::ConnectedDegraded);
}

#[test]
fn an_event_dated_far_in_the_future_is_refused_and_blocks_nothing() {
    let k = Keys::generate();
    let (mut events, accepted) = thread(&k, 3);
    let patch_id = events[1].id;
    let poison = tagged_at(&k, 1111, "E", &patch_id.to_hex(), Timestamp::from(1u64 << 53));
    let soon = tagged_at(&k, 1111, "E", &patch_id.to_hex(), Timestamp::from(1_800_000_000 + 600));
    events.push(poison.clone());
    events.push(soon.clone());
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events))]);
    h.advance(Duration::from_secs(60));
    let mut want: std::collections::BTreeSet<EventId> = accepted.into_iter().collect();
    want.insert(soon.id); // 10 minutes ahead: within the 15-minute skew
    assert_eq!(stored(&h), want);
    assert_eq!(h.engine.status(h.now).totals.events_rejected.get("invalid_created_at"), Some(&1));
    assert_eq!(h.status(R1), ConnectionStatus::Connected);
}

/// The relay closes every live subscription it holds, saying `why`.
fn close_live(h: &mut Harness, relay: &str, why: &str) {
    let u = url(relay);
    let subs: Vec<String> = h.relays.get_mut(&u).unwrap().live.keys().cloned().collect();
    h.relays.get_mut(&u).unwrap().live.clear();
    for sub in subs {
        let text = nostr::RelayMessage::closed(nostr::SubscriptionId::new(sub), why).as_json();
        h.engine.handle_input(Input::Frame { relay: u.clone(), text }, h.now);
    }
    h.pump();
}

use nostr::JsonUtil;

#[test]
fn live_subscriptions_closed_by_the_relay_are_reopened_and_nothing_is_lost() {
    let k = Keys::generate();
    let (events, _) = thread(&k, 2);
    let patch_id = events[1].id;
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events))]);
    h.advance(Duration::from_secs(30));
    assert_eq!(h.status(R1), ConnectionStatus::Connected);
    let live_before = h.relays[&url(R1)].live.len();
    assert!(live_before > 0);
    close_live(&mut h, R1, "error: subscription expired");
    // published while the subscription is closed: reaches the relay, not us (yet)
    let comment = tagged_at(&k, 1111, "E", &patch_id.to_hex(), Timestamp::from(h.now.as_secs()));
    h.publish(R1, comment.clone());
    assert_eq!(h.store.saved_count(&comment.id), 0);
    h.advance(Duration::from_secs(10));
    assert_eq!(h.relays[&url(R1)].live.len(), live_before, "every live subscription is open again");
    assert_eq!(h.store.saved_count(&comment.id), 1, "the reopened subscription asked with since");
    let later = tagged_at(&k, 1111, "E", &patch_id.to_hex(), Timestamp::from(h.now.as_secs()));
    h.publish(R1, later.clone());
    assert_eq!(h.store.saved_count(&later.id), 1);
    assert_eq!(h.status(R1), ConnectionStatus::Connected, "one close is not a degraded relay");
}

#[test]
fn a_relay_that_keeps_closing_live_subscriptions_is_degraded_with_its_reason() {
    let k = Keys::generate();
    let (events, _) = thread(&k, 2);
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events))]);
    h.advance(Duration::from_secs(30));
    let mut reopen_gaps = Vec::new();
    for _ in 0..6 {
        let closed_at = h.now;
        close_live(&mut h, R1, "blocked: not allowed");
        let mut waited = Duration::ZERO;
        while h.relays[&url(R1)].live.is_empty() {
            h.advance(Duration::from_secs(1));
            waited += Duration::from_secs(1);
            assert!(waited < Duration::from_secs(3600), "reopened within the backoff cap");
        }
        reopen_gaps.push(h.now.since(closed_at).as_secs());
    }
    assert!(reopen_gaps.windows(2).all(|w| w[1] >= w[0]), "backoff grows: {reopen_gaps:?}");
    assert_eq!(h.status(R1), ConnectionStatus::ConnectedDegraded);
    let reason = h.engine.status(h.now).relays[0].degraded_reason.clone().unwrap();
    assert!(reason.contains("closing live subscriptions") && reason.contains("blocked: not allowed"), "{reason}");
    // quiet for a stability period: trusted again
    h.advance(Duration::from_secs(6 * 60));
    assert_eq!(h.status(R1), ConnectionStatus::Connected);
    assert!(h.engine.status(h.now).relays[0].degraded_reason.is_none());
}

#[test]
fn an_event_the_store_cannot_save_is_quarantined_and_the_queue_moves_on() {
    let k = Keys::generate();
    let (events, accepted) = thread(&k, 60);
    let poison = events[9].id;
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events))]);
    h.store.refuse_to_save(poison);
    h.advance(Duration::from_secs(60));
    let want: std::collections::BTreeSet<EventId> = accepted.into_iter().filter(|id| *id != poison).collect();
    assert_eq!(stored(&h), want);
    let st = h.engine.status(h.now);
    assert_eq!(st.totals.events_quarantined, 1);
    assert_eq!(st.totals.unsaved_events, 0);
    assert!(st.totals.store_error.is_none(), "one bad event is not a failing store");
    assert!(h.save_attempts < 40, "isolated in a few halvings: {}", h.save_attempts);
}

#[test]
fn a_full_store_holds_a_bounded_backlog_reports_the_error_and_loses_nothing_when_it_recovers() {
    let k = Keys::generate();
    let (events, accepted) = thread(&k, 200);
    let config = SyncConfig { max_unsaved: 10, ..cfg() };
    let mut h = Harness::new(config, server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events.clone()))]);
    h.store.set_full(true);
    h.advance(Duration::from_secs(120));
    let st = h.engine.status(h.now);
    assert_eq!(st.totals.store_error.as_deref(), Some("no space left on device"));
    assert!(st.totals.unsaved_events <= 40, "backlog bounded: {}", st.totals.unsaved_events);
    assert_eq!(st.totals.events_quarantined, 0, "a full store is not a poison event");
    assert!(h.save_attempts < 60, "retries back off: {}", h.save_attempts);
    // live events keep coming while the store is down
    let patch_id = events[1].id;
    let live = tagged_at(&k, 1111, "E", &patch_id.to_hex(), Timestamp::from(h.now.as_secs()));
    h.publish(R1, live.clone());
    h.advance(Duration::from_secs(30));
    h.store.set_full(false);
    h.advance(Duration::from_secs(180));
    let mut want: std::collections::BTreeSet<EventId> = accepted.into_iter().collect();
    want.insert(live.id);
    assert_eq!(stored(&h), want, "every accepted event stored after recovery");
    let st = h.engine.status(h.now);
    assert!(st.totals.store_error.is_none());
    assert!(st.totals.events_forgotten > 0, "the backlog bound was exercised");
    assert_eq!(h.status(R1), ConnectionStatus::Connected);
}

#[test]
fn state_persisted_while_the_store_fails_is_never_ahead_of_it() {
    let k = Keys::generate();
    let (events, _) = thread(&k, 20);
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events.clone()))]);
    h.advance(Duration::from_secs(60));
    assert_eq!(h.status(R1), ConnectionStatus::Connected);
    let state = crate::state::SyncState::from_bytes(h.persisted.as_ref().unwrap()).unwrap();
    assert!(state.relays[&url(R1)].historic_sync_completed);
    // the store fills up; a live event is accepted but cannot be saved
    h.store.set_full(true);
    let live = tagged_at(&k, 1111, "E", &events[1].id.to_hex(), Timestamp::from(h.now.as_secs()));
    h.publish(R1, live);
    h.advance(Duration::from_secs(120));
    let state = crate::state::SyncState::from_bytes(h.persisted.as_ref().unwrap()).unwrap();
    let entry = &state.relays[&url(R1)];
    assert!(!entry.historic_sync_completed && entry.confirmed_roots.is_empty(), "the relay will sync afresh");
    // shutdown: the final save fails, the state persisted after it says so too
    h.persisted = None;
    h.input(Input::Shutdown);
    let state = crate::state::SyncState::from_bytes(h.persisted.as_ref().expect("persisted after the final save")).unwrap();
    assert!(!state.relays[&url(R1)].historic_sync_completed);
}

#[test]
fn shutdown_persists_the_state_only_after_the_final_save_reported() {
    let k = Keys::generate();
    let (events, _) = thread(&k, 5);
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, events.clone()))]);
    h.advance(Duration::from_secs(60));
    let live = tagged_at(&k, 1111, "E", &events[1].id.to_hex(), Timestamp::from(h.now.as_secs()));
    let u = url(R1);
    let frames = h.relays.get_mut(&u).unwrap().publish(live.clone());
    for text in frames {
        h.engine.handle_input(Input::Frame { relay: u.clone(), text }, h.now);
    }
    h.trace.clear();
    h.input(Input::Shutdown);
    assert_eq!(h.trace, vec![Executed::Save { events: 1, ok: true }, Executed::Persist]);
    let state = crate::state::SyncState::from_bytes(h.persisted.as_ref().unwrap()).unwrap();
    assert!(state.relays[&u].historic_sync_completed, "saved, so the state may say complete");
    assert_eq!(h.store.saved_count(&live.id), 1);
}

#[test]
fn start_up_indexes_a_large_store_page_by_page() {
    let k = Keys::generate();
    let ann = announcement(&k, "repo", &[OURS, R1], &[]);
    let addr = nip34::repo_address(&ann);
    let mut stored_events = vec![ann];
    // 2,500 roots in one second (more than a page) and 3,000 spread out
    let root = |kind: u16, i: u64, at: u64| {
        nostr::EventBuilder::new(nostr::Kind::Custom(kind), format!("root {i}"))
            .tags([nostr::Tag::parse(["a", addr.as_str()]).unwrap()])
            .custom_created_at(Timestamp::from(at))
            .sign_with_keys(&k)
            .unwrap()
    };
    for i in 0..2500u64 {
        stored_events.push(root(1621, i, 1_700_000_000));
    }
    for i in 0..3000u64 {
        stored_events.push(root(1617, i, 1_600_000_000 + i / 3));
    }
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::Nip77, vec![]))]);
    h.store.save_sync(stored_events).unwrap();
    h.pump();
    let queries = h.trace.iter().filter(|e| matches!(e, Executed::Query { .. })).count();
    for page in &h.trace {
        assert!(
            matches!(page, Executed::Query { events } if *events <= 2_500),
            "bounded pages, and nothing else before start-up ends: {page:?}"
        );
    }
    assert!(h.engine.is_started());
    assert_eq!(h.engine.status(h.now).totals.repositories, 1);
    assert_eq!(h.engine.status(h.now).totals.root_events, 5500);
    assert!(queries >= 5, "{queries} queries");
}

#[test]
fn future_dated_events_taking_page_slots_do_not_end_pagination_early() {
    let k = Keys::generate();
    let (mut events, accepted) = thread(&k, 40);
    let patch_id = events[1].id;
    // the newest page slots go to events dated years ahead (refused, but verifying)
    for i in 0..12u64 {
        events.push(tagged_at(&k, 1111, "E", &patch_id.to_hex(), Timestamp::from(2_500_000_000 + i)));
    }
    let mut relay = ScriptRelay::new(Mode::ReqOnly, events);
    relay.cap = 10;
    let config = SyncConfig { pagination_threshold: 7, page_limit: 10, ..cfg() };
    let mut h = Harness::new(config, server_policy(), &[R1], vec![(R1, relay)]);
    h.advance(Duration::from_secs(120));
    assert_eq!(stored(&h), accepted.into_iter().collect());
    assert!(h.engine.status(h.now).totals.events_rejected.get("invalid_created_at").copied().unwrap_or(0) >= 12);
}

#[test]
fn every_accepted_event_is_offered_to_the_store_once() {
    let k = Keys::generate();
    let (events, accepted) = thread(&k, 300);
    let mut h = Harness::new(cfg(), server_policy(), &[R1], vec![(R1, ScriptRelay::new(Mode::ReqOnly, events))]);
    h.advance(Duration::from_secs(120));
    assert_eq!(stored(&h).len(), accepted.len());
    assert_eq!(h.events_offered, accepted.len() as u64, "no event saved twice");
}
