//! Signature verification in the browser, in headless Chromium (see
//! scripts/test-wasm). The shipped build uses libsecp256k1's `lowmemory`
//! tables (1.2 MB smaller gzipped); this checks verification still refuses a
//! forged event and measures how many events per second it verifies, which
//! must stay at least half of what the full tables gave (BENCHMARKS.md has
//! both numbers).
#![cfg(target_arch = "wasm32")]

use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, Tag};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// `n` signed NIP-34 issues by a few keys, as a relay would send them.
fn issues(n: usize) -> Vec<Event> {
    let keys: Vec<Keys> = (0..8).map(|_| Keys::generate()).collect();
    let addr = format!("30617:{}:speed", keys[0].public_key().to_hex());
    (0..n)
        .map(|i| {
            EventBuilder::new(Kind::Custom(1621), format!("issue {i}: something is broken"))
                .tags([Tag::parse(["a", &addr]).unwrap(), Tag::parse(["subject", "broken"]).unwrap()])
                .sign_with_keys(&keys[i % keys.len()])
                .unwrap()
        })
        .collect()
}

/// Events verified per second over `events` (id and signature, as the engine does).
fn verify_rate(events: &[Event]) -> f64 {
    let t0 = js_sys::Date::now();
    for e in events {
        assert!(e.verify().is_ok());
    }
    events.len() as f64 / ((js_sys::Date::now() - t0).max(1.0) / 1_000.0)
}

#[wasm_bindgen_test]
fn lowmemory_tables_still_verify_and_refuse_forgeries() {
    let events = issues(200);
    let rate = verify_rate(&events);
    console_log!("verify: {rate:.0} events/s (200 events, this build's profile)");
    // Same content signed by another key: the id changes, so forge by
    // swapping only the signature onto the original id.
    let other = issues(1).remove(0);
    let mut json: serde_json::Value = serde_json::from_str(&events[0].as_json()).unwrap();
    json["sig"] = serde_json::Value::String(other.sig.to_string());
    let forged = Event::from_json(json.to_string()).unwrap();
    assert!(forged.verify().is_err(), "a signature from another event must not verify");
}

/// Throughput for BENCHMARKS.md (timing-dependent, so ignored by default):
/// `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner cargo test
/// --release -p sync-wasm --target wasm32-unknown-unknown --test verify_speed
/// -- --include-ignored --nocapture bench`.
#[wasm_bindgen_test]
#[ignore]
fn bench_verify_5000_events() {
    let events = issues(5_000);
    let best = (0..3).map(|_| verify_rate(&events)).fold(0.0, f64::max);
    console_log!("bench: verify {best:.0} events/s (best of 3 × 5,000)");
}
