//! The IndexedDB store at its limits, in headless Chromium (see
//! scripts/test-wasm): events no JS number can hold, repeated ids within and
//! across batches on the `add`-without-lookup write path, addressable
//! replacement mixed into those batches, and the speed of a 10k batch.
#![cfg(target_arch = "wasm32")]

use nostr::{Event, EventBuilder, Filter, Keys, Kind, SingleLetterTag, Tag, Timestamp};
use sync_core::{EventStore, SaveOutcome};
use sync_wasm::record::{CREATED_AT_OUT_OF_RANGE, MAX_CREATED_AT};
use sync_wasm::IdbStore;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn tag(parts: &[&str]) -> Tag {
    Tag::parse(parts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn ev(keys: &Keys, kind: u16, tags: Vec<Tag>, at: u64) -> Event {
    EventBuilder::new(Kind::Custom(kind), format!("{kind}@{at}"))
        .tags(tags)
        .custom_created_at(Timestamp::from(at))
        .sign_with_keys(keys)
        .unwrap()
}

async fn fresh(name: &str) -> IdbStore {
    let name = format!("{name}-{}", js_sys::Math::random());
    IdbStore::open(&name).await.unwrap()
}

fn letter(c: char) -> SingleLetterTag {
    SingleLetterTag::from_char(c).unwrap()
}

fn rejected() -> SaveOutcome {
    SaveOutcome::Rejected(CREATED_AT_OUT_OF_RANGE.to_string())
}

use SaveOutcome::{Duplicate, Saved, Stale};

#[wasm_bindgen_test]
async fn created_at_beyond_2_pow_53_is_rejected_alone() {
    let s = fresh("poison").await;
    let k = Keys::generate();
    let root = "f".repeat(64);
    let good: Vec<Event> = (0..3).map(|i| ev(&k, 1621, vec![tag(&["E", &root])], 1_000 + i)).collect();
    let at_2_53 = ev(&k, 1621, vec![tag(&["E", &root])], 1 << 53);
    let at_max = ev(&k, 1621, vec![tag(&["E", &root])], u64::MAX);
    let edge = ev(&k, 1621, vec![], MAX_CREATED_AT);
    let batch = vec![good[0].clone(), at_2_53.clone(), good[1].clone(), at_max.clone(), good[2].clone(), at_2_53.clone(), edge.clone()];
    let first = s.save(batch.clone()).await.unwrap();
    assert_eq!(first, vec![Saved, rejected(), Saved, rejected(), Saved, rejected(), Saved]);
    let second = s.save(batch).await.unwrap();
    assert_eq!(second, vec![Duplicate, rejected(), Duplicate, rejected(), Duplicate, rejected(), Duplicate]);
    assert_eq!(s.count_all().await.unwrap(), 4);

    // created_at ordering and ranges of normal events are unchanged
    let by_tag = s.query(Filter::new().custom_tag(letter('E'), root.clone())).await.unwrap();
    assert_eq!(by_tag, vec![good[2].clone(), good[1].clone(), good[0].clone()]);
    let ranged = s.query(Filter::new().since(Timestamp::from(1_001))).await.unwrap();
    assert_eq!(ranged, vec![edge.clone(), good[2].clone(), good[1].clone()]);
    let until = s.query(Filter::new().until(Timestamp::from(1_001))).await.unwrap();
    assert_eq!(until, vec![good[1].clone(), good[0].clone()]);
    let mut items = s.negentropy_items(Filter::new().custom_tag(letter('E'), root)).await.unwrap();
    items.sort();
    let mut want: Vec<_> = good.iter().map(|e| (e.id, e.created_at)).collect();
    want.sort();
    assert_eq!(items, want);

    // an out-of-range addressable event does not displace the stored one
    let repo = ev(&k, 30617, vec![tag(&["d", "r"])], 100);
    assert_eq!(s.save(vec![repo.clone()]).await.unwrap(), vec![Saved]);
    let far = ev(&k, 30617, vec![tag(&["d", "r"])], u64::MAX);
    assert_eq!(s.save(vec![far, repo.clone()]).await.unwrap(), vec![rejected(), Duplicate]);
    assert_eq!(s.query(Filter::new().kind(Kind::Custom(30617))).await.unwrap(), vec![repo]);
}

#[wasm_bindgen_test]
async fn duplicates_within_and_across_batches() {
    let s = fresh("dups").await;
    let k = Keys::generate();
    let a = ev(&k, 1617, vec![tag(&["a", "30617:x:y"])], 1);
    let b = ev(&k, 1621, vec![tag(&["a", "30617:x:y"])], 2);
    let c = ev(&k, 1630, vec![tag(&["e", &"0".repeat(64)])], 3);
    let d = ev(&k, 1, vec![], 4);
    let out = s.save(vec![a.clone(), b.clone(), a.clone(), c.clone(), b.clone()]).await.unwrap();
    assert_eq!(out, vec![Saved, Saved, Duplicate, Saved, Duplicate]);
    let out = s.save(vec![c.clone(), d.clone(), a.clone(), d.clone()]).await.unwrap();
    assert_eq!(out, vec![Duplicate, Saved, Duplicate, Duplicate]);
    // all duplicates: nothing written, nothing failed
    assert_eq!(s.save(vec![d.clone(), c.clone(), b.clone(), a.clone()]).await.unwrap(), vec![Duplicate; 4]);
    assert_eq!(s.count_all().await.unwrap(), 4);
    let tagged = s.query(Filter::new().custom_tag(letter('a'), "30617:x:y")).await.unwrap();
    assert_eq!(tagged, vec![b.clone(), a.clone()]);
    let items = s.negentropy_items(Filter::new()).await.unwrap();
    assert_eq!(items.len(), 4);
}

#[wasm_bindgen_test]
async fn addressable_replacement_mixed_with_repeats() {
    let s = fresh("addr-mix").await;
    let k = Keys::generate();
    let note = ev(&k, 1621, vec![], 5);
    let x1 = ev(&k, 30618, vec![tag(&["d", "r"])], 1);
    let x2 = ev(&k, 30618, vec![tag(&["d", "r"])], 2);
    // x1 is saved, repeated, replaced by x2, then repeated again: stale (as MemoryStore)
    let out = s.save(vec![x1.clone(), note.clone(), x1.clone(), x2.clone(), x1.clone(), note.clone()]).await.unwrap();
    assert_eq!(out, vec![Saved, Saved, Duplicate, Saved, Stale, Duplicate]);
    assert_eq!(s.save(vec![x2.clone(), x1.clone()]).await.unwrap(), vec![Duplicate, Stale]);
    assert_eq!(s.query(Filter::new().kind(Kind::Custom(30618))).await.unwrap(), vec![x2.clone()]);

    // a tie on created_at: the lowest id wins, in either order
    let k2 = Keys::generate();
    let t1 = ev(&k2, 30617, vec![tag(&["d", "tie"])], 50);
    let t2 = EventBuilder::new(Kind::Custom(30617), "other content")
        .tags(vec![tag(&["d", "tie"])])
        .custom_created_at(Timestamp::from(50))
        .sign_with_keys(&k2)
        .unwrap();
    let (low, high) = if t1.id < t2.id { (t1, t2) } else { (t2, t1) };
    assert_eq!(s.save(vec![high.clone()]).await.unwrap(), vec![Saved]);
    assert_eq!(s.save(vec![low.clone(), high.clone()]).await.unwrap(), vec![Saved, Stale]);
    assert_eq!(s.save(vec![high.clone()]).await.unwrap(), vec![Stale]);
    let kept = s.query(Filter::new().author(k2.public_key())).await.unwrap();
    assert_eq!(kept, vec![low.clone()]);
    // the replaced events left every index: tag lookups find only the winners
    assert_eq!(s.query(Filter::new().custom_tag(letter('d'), "tie")).await.unwrap(), vec![low.clone()]);
    assert_eq!(s.query(Filter::new().custom_tag(letter('d'), "r")).await.unwrap(), vec![x2.clone()]);
    let mut items = s.negentropy_items(Filter::new()).await.unwrap();
    items.sort();
    let mut want = vec![(note.id, note.created_at), (x2.id, x2.created_at), (low.id, low.created_at)];
    want.sort();
    assert_eq!(items, want);
    assert_eq!(s.count_all().await.unwrap(), 3);
}

/// 10k new events in one batch, then the same 10k again (all duplicates),
/// then 10k addressable events of 1k keys. Prints events/s; asserts only
/// correctness (see `bench_10k_batch_at_least_5000_events_per_s`).
#[wasm_bindgen_test]
async fn ten_thousand_event_batch_rates() {
    let (saved, dup) = save_10k_twice().await;
    console_log!("10k batch: {saved:.0} events/s new, {dup:.0} events/s all duplicates");
    let s = fresh("big-addr").await;
    let keys: Vec<Keys> = (0..10).map(|_| Keys::generate()).collect();
    let events: Vec<Event> =
        (0..10_000u64).map(|i| ev(&keys[(i % 10) as usize], 30617, vec![tag(&["d", &format!("r{}", i % 1_000)])], i)).collect();
    let t0 = js_sys::Date::now();
    let out = s.save(events.clone()).await.unwrap();
    let ms = js_sys::Date::now() - t0;
    assert!(out.iter().all(|o| *o == Saved));
    assert_eq!(s.count_all().await.unwrap(), 1_000, "one per (kind, pubkey, d)");
    let again = s.save(events[..1_000].to_vec()).await.unwrap();
    assert!(again.iter().all(|o| *o == Stale));
    console_log!("10k addressable batch (1k keys): {:.0} events/s", 10_000.0 / (ms / 1_000.0));
}

/// The issue-9 target: ≥ 5,000 events/s for a 10k batch of new events.
/// Timing-dependent (2 shared cores make it flaky), so ignored by default:
/// `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test
/// --release -p sync-wasm --target wasm32-unknown-unknown --test idb_store_limits
/// -- --include-ignored --nocapture bench`.
#[wasm_bindgen_test]
#[ignore]
async fn bench_10k_batch_at_least_5000_events_per_s() {
    let (saved, _) = save_10k_twice().await;
    console_log!("bench: 10k batch {saved:.0} events/s");
    assert!(saved >= 5_000.0, "10k batch saved at {saved:.0} events/s, target 5,000");
}

/// Saves 10k new events, then the same batch again; events/s of each.
async fn save_10k_twice() -> (f64, f64) {
    let s = fresh("big").await;
    let k = Keys::generate();
    let addr = format!("30617:{}:big", k.public_key().to_hex());
    let events: Vec<Event> = (0..10_000u64).map(|i| ev(&k, 1111, vec![tag(&["a", &addr])], 1_000 + i)).collect();
    let t0 = js_sys::Date::now();
    let out = s.save(events.clone()).await.unwrap();
    let t1 = js_sys::Date::now();
    assert!(out.iter().all(|o| *o == Saved));
    let again = s.save(events).await.unwrap();
    let t2 = js_sys::Date::now();
    assert!(again.iter().all(|o| *o == Duplicate));
    assert_eq!(s.count_all().await.unwrap(), 10_000);
    let items = s.negentropy_items(Filter::new().custom_tag(letter('a'), addr)).await.unwrap();
    assert_eq!(items.len(), 10_000);
    (10_000.0 / ((t1 - t0) / 1_000.0), 10_000.0 / ((t2 - t1) / 1_000.0))
}
