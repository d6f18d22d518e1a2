//! The IndexedDB store in a real (headless Chromium) browser:
//! `wasm-pack`-free, run with `wasm-bindgen-test-runner` (see scripts/test-wasm).
#![cfg(target_arch = "wasm32")]

use nostr::{Event, EventBuilder, Filter, Keys, Kind, SingleLetterTag, Tag, Timestamp};
use sync_core::{EventStore, SaveOutcome};
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

/// A fresh, uniquely named database.
async fn fresh(name: &str) -> IdbStore {
    let name = format!("{name}-{}", js_sys::Math::random());
    IdbStore::open(&name).await.unwrap()
}

fn letter(c: &str) -> SingleLetterTag {
    SingleLetterTag::from_char(c.chars().next().unwrap()).unwrap()
}

#[wasm_bindgen_test]
async fn save_then_duplicate() {
    let s = fresh("dup").await;
    let k = Keys::generate();
    let e = ev(&k, 1621, vec![], 10);
    assert_eq!(s.save(vec![e.clone()]).await.unwrap(), vec![SaveOutcome::Saved]);
    assert_eq!(s.save(vec![e.clone()]).await.unwrap(), vec![SaveOutcome::Duplicate]);
    // the same id twice in one batch
    let f = ev(&k, 1621, vec![], 11);
    assert_eq!(s.save(vec![f.clone(), f.clone()]).await.unwrap(), vec![SaveOutcome::Saved, SaveOutcome::Duplicate]);
    assert_eq!(s.count_all().await.unwrap(), 2);
    let got = s.query(Filter::new().id(e.id)).await.unwrap();
    assert_eq!(got, vec![e]);
}

#[wasm_bindgen_test]
async fn addressable_replacement_keeps_newest() {
    let s = fresh("addr").await;
    let k = Keys::generate();
    let old = ev(&k, 30617, vec![tag(&["d", "repo"])], 100);
    let new = ev(&k, 30617, vec![tag(&["d", "repo"])], 200);
    let other_d = ev(&k, 30617, vec![tag(&["d", "other"])], 50);
    assert_eq!(s.save(vec![old.clone()]).await.unwrap(), vec![SaveOutcome::Saved]);
    assert_eq!(s.save(vec![new.clone(), other_d.clone()]).await.unwrap(), vec![SaveOutcome::Saved, SaveOutcome::Saved]);
    assert_eq!(s.save(vec![old.clone()]).await.unwrap(), vec![SaveOutcome::Stale]);
    let all = s.query(Filter::new().kind(Kind::Custom(30617))).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![new.id, other_d.id]);
    // within one batch: newer then older, and older then newer
    let k2 = Keys::generate();
    let a = ev(&k2, 30618, vec![tag(&["d", "x"])], 1);
    let b = ev(&k2, 30618, vec![tag(&["d", "x"])], 2);
    assert_eq!(s.save(vec![b.clone(), a.clone()]).await.unwrap(), vec![SaveOutcome::Saved, SaveOutcome::Stale]);
    let c = ev(&k2, 30618, vec![tag(&["d", "x"])], 3);
    let d = ev(&k2, 30618, vec![tag(&["d", "x"])], 4);
    assert_eq!(s.save(vec![c, d.clone()]).await.unwrap(), vec![SaveOutcome::Saved, SaveOutcome::Saved]);
    let states = s.query(Filter::new().kind(Kind::Custom(30618))).await.unwrap();
    assert_eq!(states, vec![d]);
}

#[wasm_bindgen_test]
async fn query_by_each_tag_index_kind_author_and_time() {
    let s = fresh("tags").await;
    let k = Keys::generate();
    let k2 = Keys::generate();
    let root = "e".repeat(64);
    let mut events = Vec::new();
    for (i, name) in ["a", "A", "e", "E", "q", "d"].iter().enumerate() {
        events.push(ev(&k, 1111, vec![tag(&[name, &root])], 1000 + i as u64));
    }
    let noise = ev(&k2, 1, vec![tag(&["p", &root])], 5);
    events.push(noise.clone());
    s.save(events.clone()).await.unwrap();
    for (i, name) in ["a", "A", "e", "E", "q", "d"].iter().enumerate() {
        let got = s.query(Filter::new().custom_tag(letter(name), root.clone())).await.unwrap();
        assert_eq!(got, vec![events[i].clone()], "tag {name}");
    }
    // a tag that is not indexed still matches (scan + exact match)
    assert_eq!(s.query(Filter::new().custom_tag(letter("p"), root.clone())).await.unwrap(), vec![noise.clone()]);
    assert_eq!(s.query(Filter::new().author(k2.public_key())).await.unwrap(), vec![noise.clone()]);
    assert_eq!(s.query(Filter::new().kind(Kind::Custom(1111))).await.unwrap().len(), 6);
    let ranged = s.query(Filter::new().since(Timestamp::from(1001)).until(Timestamp::from(1003))).await.unwrap();
    assert_eq!(ranged.iter().map(|e| e.created_at.as_secs()).collect::<Vec<_>>(), vec![1003, 1002, 1001]);
    let limited = s.query(Filter::new().kind(Kind::Custom(1111)).limit(2)).await.unwrap();
    assert_eq!(limited.iter().map(|e| e.created_at.as_secs()).collect::<Vec<_>>(), vec![1005, 1004]);
    // combined: tag narrows, kind filters exactly
    let combined = s.query(Filter::new().custom_tag(letter("a"), root.clone()).kind(Kind::Custom(1))).await.unwrap();
    assert!(combined.is_empty());
}

#[wasm_bindgen_test]
async fn negentropy_items_per_filter() {
    let s = fresh("neg").await;
    let k = Keys::generate();
    let addr = format!("30617:{}:r", k.public_key().to_hex());
    let a = ev(&k, 1617, vec![tag(&["a", &addr])], 10);
    let b = ev(&k, 1621, vec![tag(&["a", &addr])], 20);
    let c = ev(&k, 1621, vec![tag(&["a", "30617:other:r"])], 30);
    s.save(vec![a.clone(), b.clone(), c]).await.unwrap();
    let filter = Filter::new().custom_tag(letter("a"), addr).limit(1);
    let mut items = s.negentropy_items(filter).await.unwrap();
    items.sort();
    let mut want = vec![(a.id, a.created_at), (b.id, b.created_at)];
    want.sort();
    assert_eq!(items, want, "negentropy items ignore limit and match the filter exactly");
}

#[wasm_bindgen_test]
async fn persistence_across_reopen() {
    let name = format!("reopen-{}", js_sys::Math::random());
    let k = Keys::generate();
    let e = ev(&k, 1621, vec![], 10);
    {
        let s = IdbStore::open(&name).await.unwrap();
        s.save(vec![e.clone()]).await.unwrap();
        s.save_state(vec![1, 2, 3, 250]).await.unwrap();
        s.close();
        let closed = s.query(Filter::new()).await.unwrap_err();
        assert!(closed.to_string().contains("is closed"), "{closed}");
    }
    let s = IdbStore::open(&name).await.unwrap();
    assert_eq!(s.query(Filter::new()).await.unwrap(), vec![e.clone()]);
    assert_eq!(s.load_state().await.unwrap(), Some(vec![1, 2, 3, 250]));
    assert_eq!(s.save(vec![e]).await.unwrap(), vec![SaveOutcome::Duplicate]);
}

#[wasm_bindgen_test]
async fn batch_of_ten_thousand_events() {
    let s = fresh("big").await;
    let k = Keys::generate();
    let addr = format!("30617:{}:big", k.public_key().to_hex());
    let events: Vec<Event> = (0..10_000u64).map(|i| ev(&k, 1111, vec![tag(&["a", &addr])], 1_000 + i)).collect();
    let t0 = js_sys::Date::now();
    let outcomes = s.save(events.clone()).await.unwrap();
    let t1 = js_sys::Date::now();
    assert!(outcomes.iter().all(|o| *o == SaveOutcome::Saved));
    assert_eq!(s.count_all().await.unwrap(), 10_000);
    let again = s.save(events[..100].to_vec()).await.unwrap();
    assert!(again.iter().all(|o| *o == SaveOutcome::Duplicate));
    let items = s.negentropy_items(Filter::new().custom_tag(letter("a"), addr)).await.unwrap();
    let t2 = js_sys::Date::now();
    assert_eq!(items.len(), 10_000);
    console_log!(
        "10k batch: save {:.0} ms ({:.0} events/s), negentropy items {:.0} ms",
        t1 - t0,
        10_000.0 / ((t1 - t0) / 1_000.0),
        t2 - t1
    );
}
