//! NIP-77 negentropy messages.
//!
//! 1. `NegSession` (our client side, `sync_core::historic::negentropy`) over
//!    arbitrary items receives arbitrary messages; `NegResponder` (the
//!    server side, used by the scripted relays) answers arbitrary messages.
//! 2. A genuine exchange between a `NegSession` and a `NegResponder` over
//!    arbitrary item sets, with chosen messages corrupted on the way; when
//!    nothing is corrupted the client must learn exactly the ids it lacks.
//! 3. An engine with NEG-OPENs in flight (items loaded from its store)
//!    receiving arbitrary NEG-MSG payloads for its real subscription ids,
//!    interleaved with the scripted relay's genuine answers.

#![no_main]

use std::collections::BTreeSet;
use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use sync_core::historic::negentropy::{NegSession, NegStep};
use sync_core::nostr::{EventId, Timestamp};
use sync_core::testkit::NegResponder;
use sync_core::{NegentropyItem, SyncConfig};
use sync_core_fuzz::{frame_json, hex, small_config, url, Rig, R1};

#[derive(Arbitrary, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    Upper(Vec<u8>),
    Text(String),
}

impl Payload {
    fn text(&self) -> String {
        match self {
            Payload::Bytes(b) => hex(b),
            Payload::Upper(b) => hex(b).to_ascii_uppercase(),
            Payload::Text(s) => s.clone(),
        }
    }
}

/// An item set: explicit items plus `extra` generated ones (to cross the
/// frame size limit and get multi-round exchanges).
#[derive(Arbitrary, Debug)]
struct Items {
    explicit: Vec<(u8, u8, u32)>,
    extra: u16,
    seed: u8,
}

impl Items {
    /// The items. An id determines its timestamp (as with real events, whose
    /// id hashes `created_at`): negentropy compares ids within a range.
    fn build(&self) -> Vec<NegentropyItem> {
        let mut v: Vec<NegentropyItem> = self
            .explicit
            .iter()
            .take(256)
            .map(|(a, b, t)| {
                let mut id = [*a; 32];
                id[1] = *b;
                id[2..6].copy_from_slice(&t.to_be_bytes());
                id[31] = 1;
                (EventId::from_byte_array(id), Timestamp::from(*t as u64))
            })
            .collect();
        for i in 0..(self.extra % 3000) as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[4] = self.seed;
            id[5..9].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
            id[31] = 2;
            v.push((EventId::from_byte_array(id), Timestamp::from(1_700_000_000 + (i as u64 * 7) % 5000)));
        }
        v
    }
}

#[derive(Arbitrary, Debug)]
struct Corruption {
    /// Message number in the exchange (client and server messages alternate).
    at: u8,
    /// Byte position (modulo length) to change, or truncate/extend.
    pos: u16,
    how: How,
}

#[derive(Arbitrary, Debug)]
enum How {
    Xor(u8),
    Truncate,
    Append(Vec<u8>),
    Replace(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    ours: Items,
    theirs: Items,
    /// 0: unlimited; else 4096 + n * 256 (the crate's minimum is 4096).
    frame_limit: u8,
    /// Messages for a fresh client session and for a fresh responder.
    direct: Vec<Payload>,
    corrupt: Vec<Corruption>,
    engine: Vec<EngineOp>,
}

#[derive(Arbitrary, Debug)]
enum EngineOp {
    NegMsg {
        sub: u8,
        payload: Payload,
    },
    /// A NEG-MSG for a subscription id that is not a negentropy session.
    NegMsgAnySub {
        sub: u8,
        payload: Payload,
    },
    Answer(u8),
    AdvanceSecs(u8),
}

fuzz_target!(|input: Input| {
    let limit = if input.frame_limit == 0 { 0 } else { 4096 + input.frame_limit as u64 * 256 };
    let ours = input.ours.build();
    let theirs = input.theirs.build();
    direct(&ours, &theirs, limit, &input.direct);
    exchange(&ours, &theirs, limit, &input.corrupt);
    engine(&input.engine);
});

fn direct(ours: &[NegentropyItem], theirs: &[NegentropyItem], limit: u64, payloads: &[Payload]) {
    if let Ok((mut client, _init)) = NegSession::open(ours, limit) {
        let mut need = Vec::new();
        for p in payloads.iter().take(32) {
            // The engine drops a session at Done or at the first error.
            match client.on_message(&p.text(), &mut need) {
                Ok(NegStep::Continue(_)) => {}
                Ok(NegStep::Done) | Err(_) => break,
            }
        }
    }
    if let Ok(mut server) = NegResponder::new(theirs, limit) {
        for p in payloads.iter().take(32) {
            if server.reconcile(&p.text()).is_err() {
                break;
            }
        }
    }
}

fn corrupt(msg: String, c: &Corruption) -> String {
    let mut bytes: Vec<u8> = (0..msg.len() / 2).map(|i| u8::from_str_radix(&msg[2 * i..2 * i + 2], 16).expect("hex")).collect();
    let n = bytes.len().max(1);
    let pos = c.pos as usize % n;
    match &c.how {
        How::Xor(x) => {
            if let Some(b) = bytes.get_mut(pos) {
                *b ^= (*x).max(1);
            }
        }
        How::Truncate => bytes.truncate(pos),
        How::Append(extra) => bytes.extend_from_slice(extra),
        How::Replace(with) => {
            let end = (pos + with.len()).min(bytes.len());
            bytes.splice(pos..end, with.iter().copied());
        }
    }
    hex(&bytes)
}

fn exchange(ours: &[NegentropyItem], theirs: &[NegentropyItem], limit: u64, corruptions: &[Corruption]) {
    let Ok((mut client, mut msg)) = NegSession::open(ours, limit) else { return };
    let Ok(mut server) = NegResponder::new(theirs, limit) else { return };
    let mut need = Vec::new();
    let mut corrupted = false;
    let mut n = 0u8;
    let apply = |m: String, n: u8, corrupted: &mut bool| {
        corruptions.iter().filter(|c| c.at == n).fold(m, |m, c| {
            *corrupted = true;
            corrupt(m, c)
        })
    };
    let mut done = false;
    for _ in 0..100 {
        msg = apply(msg, n, &mut corrupted);
        n = n.wrapping_add(1);
        let Ok(answer) = server.reconcile(&msg) else { break };
        let answer = apply(answer, n, &mut corrupted);
        n = n.wrapping_add(1);
        match client.on_message(&answer, &mut need) {
            Ok(NegStep::Continue(m)) => msg = m,
            Ok(NegStep::Done) => {
                done = true;
                break;
            }
            Err(_) => break,
        }
    }
    if corrupted {
        return;
    }
    assert!(done, "uncorrupted negentropy exchange did not finish in 100 rounds");
    let ours_ids: BTreeSet<EventId> = ours.iter().map(|(id, _)| *id).collect();
    let lacking: BTreeSet<EventId> = theirs.iter().map(|(id, _)| *id).filter(|id| !ours_ids.contains(id)).collect();
    let learned: BTreeSet<EventId> = need.into_iter().collect();
    assert_eq!(learned, lacking, "negentropy did not report exactly the ids we lack");
}

fn engine(ops: &[EngineOp]) {
    if ops.is_empty() {
        return;
    }
    let r1 = url(R1);
    let mut rig = Rig::new(if ops.len() % 2 == 0 { SyncConfig::default() } else { small_config() }, None);
    // Let the relay answer the live REQs and NEG-OPENs: sessions are now past
    // their first round.
    rig.answer(&r1, 2);
    for op in ops.iter().take(128) {
        match op {
            EngineOp::NegMsg { sub, payload } => {
                let sub = rig.sub(&r1, *sub as usize, true);
                rig.frame(&r1, &frame_json(vec![json!("NEG-MSG"), json!(sub), json!(payload.text())]));
            }
            EngineOp::NegMsgAnySub { sub, payload } => {
                let sub = rig.sub(&r1, *sub as usize, false);
                rig.frame(&r1, &frame_json(vec![json!("NEG-MSG"), json!(sub), json!(payload.text())]));
            }
            EngineOp::Answer(n) => rig.answer(&r1, *n as usize + 1),
            EngineOp::AdvanceSecs(s) => rig.advance(Duration::from_secs(*s as u64)),
        }
    }
    rig.finish();
}
