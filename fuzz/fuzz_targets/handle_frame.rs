//! `Engine::handle_frame` on arbitrary relay frames.
//!
//! An engine is brought to two connected relays with historic work in flight
//! (R1: NEG-OPENs and live REQs sent; R2: REQ-only, REQ pages sent), then the
//! input drives it. Two input forms:
//!
//! - **text** (input starts with `[`): newline-separated frames from R1, as
//!   lossy UTF-8; `$0`…`$9` stand for the subscription ids the engine used
//!   (first-seen order). An empty line advances the clock 1 s (firing
//!   timeouts); a line `.` lets the scripted relays answer everything the
//!   engine sent them. The seed corpus is in this form.
//! - **structured** (anything else): `arbitrary` picks operations — frame
//!   templates (EVENT with a real, mutated or freshly signed event or junk,
//!   EOSE, NEG-MSG with arbitrary hex, NEG-ERR/CLOSED/NOTICE/OK with
//!   arbitrary messages, raw text) addressed to real or arbitrary
//!   subscription ids, scripted-relay answers, clock advances and jumps,
//!   dropped connections, store failures, and the NIP-11 document served.
//!
//! Checks: no panic (debug assertions are on, so illegal status transitions
//! count) plus the invariants of `sync_core_fuzz::Rig`.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use sync_core::nostr::{Event, EventId, JsonUtil, Kind, Tags, Timestamp};
use sync_core::SyncConfig;
use sync_core_fuzz::{fixtures, frame_json, hex, small_config, tag, url, Rig, R1, R2};

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'[') {
        text_mode(data);
    } else if let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) {
        structured(input);
    }
});

fn text_mode(data: &[u8]) {
    let r1 = url(R1);
    let r2 = url(R2);
    let mut rig = Rig::new(SyncConfig::default(), None);
    for line in data.split(|b| *b == b'\n').take(512) {
        match line {
            b"" => rig.advance(Duration::from_secs(1)),
            b"." => {
                rig.answer(&r1, usize::MAX);
                rig.answer(&r2, usize::MAX);
            }
            _ => {
                let mut text = String::from_utf8_lossy(line).into_owned();
                if text.contains('$') {
                    for i in (0..10).rev() {
                        let placeholder = format!("${i}");
                        if text.contains(&placeholder) {
                            text = text.replace(&placeholder, &rig.sub(&r1, i, false));
                        }
                    }
                }
                rig.frame(&r1, &text);
            }
        }
    }
    rig.finish();
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Small page/fetch/window limits instead of the defaults.
    small: bool,
    /// NIP-11 document served (None: the relay has none).
    info: Option<String>,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Frame { r2: bool, frame: Frame },
    Answer { r2: bool, n: u8 },
    AdvanceMs(u16),
    AdvanceSecs(u8),
    JumpMinutes(u16),
    Drop { r2: bool },
    StoreFails(bool),
}

#[derive(Arbitrary, Debug)]
enum Sub {
    /// A subscription id the engine used on that relay.
    Known(u8),
    /// The id of one of its NEG-OPENs.
    Neg(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
struct Msg {
    prefix: u8,
    rest: String,
}

const PREFIXES: &[&str] = &[
    "",
    "rate-limited: ",
    "error: too many concurrent REQs",
    "ERROR: too many concurrent NEG requests",
    "auth-required: ",
    "restricted: ",
    "blocked: ",
    "error: ",
    "invalid: ",
    "ERROR: unknown message type NEG-OPEN",
    "duplicate: ",
    "too many",
    "negentropy disabled",
];

impl Msg {
    fn text(&self) -> String {
        format!("{}{}", PREFIXES[self.prefix as usize % PREFIXES.len()], self.rest)
    }
}

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

#[derive(Arbitrary, Debug)]
enum Frame {
    Raw(String),
    /// A dataset event, possibly mutated.
    Event {
        sub: Sub,
        event: u8,
        mutation: Mutation,
    },
    /// A freshly signed event (valid id and signature).
    Fresh {
        sub: Sub,
        kind: KindSel,
        tags: Vec<FreshTag>,
        content: String,
        age: i32,
        stranger: bool,
    },
    /// `["EVENT", sub, <junk>]`.
    EventJunk {
        sub: Sub,
        json: String,
    },
    Eose(Sub),
    NegMsg {
        sub: Sub,
        payload: Payload,
    },
    NegErr {
        sub: Sub,
        msg: Msg,
    },
    Closed {
        sub: Sub,
        msg: Msg,
    },
    Notice(Msg),
    Ok {
        id: [u8; 32],
        accepted: bool,
        msg: Msg,
    },
    Auth(String),
    Count {
        sub: Sub,
        n: u32,
    },
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    None,
    /// Flip bits of the signature.
    Sig(u8, u8),
    /// Flip bits of the id.
    Id(u8, u8),
    /// Replace fields; `rehash` recomputes the id (the signature then no
    /// longer matches: a valid id with a forged signature).
    Content {
        content: String,
        rehash: bool,
    },
    CreatedAt {
        delta: i32,
        rehash: bool,
    },
    Kind {
        kind: u16,
        rehash: bool,
    },
    Tags {
        tags: Vec<Vec<String>>,
        rehash: bool,
    },
}

#[derive(Arbitrary, Debug)]
enum KindSel {
    Patch,
    PullRequest,
    Issue,
    Reply,
    Status(u8),
    Announcement,
    State,
    Other(u16),
}

impl KindSel {
    fn kind(&self) -> u16 {
        match self {
            KindSel::Patch => 1617,
            KindSel::PullRequest => 1618,
            KindSel::Issue => 1621,
            KindSel::Reply => 1111,
            KindSel::Status(n) => 1630 + (*n as u16 % 4),
            KindSel::Announcement => 30617,
            KindSel::State => 30618,
            KindSel::Other(k) => *k,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum FreshTag {
    /// `a` tag of the accepted repository.
    Repo,
    /// `e`/`E` tag of the accepted patch.
    Root {
        upper: bool,
    },
    D(String),
    Relays(Vec<String>),
    Any(Vec<String>),
}

fn sub_id(rig: &Rig, relay: &sync_core::RelayUrl, sub: &Sub) -> String {
    match sub {
        Sub::Known(i) => rig.sub(relay, *i as usize, false),
        Sub::Neg(i) => rig.sub(relay, *i as usize, true),
        Sub::Other(s) => s.clone(),
    }
}

fn mutate(e: &Event, m: &Mutation) -> Value {
    let mut v: Value = serde_json::from_str(&e.as_json()).expect("event JSON");
    let mut flip = |field: &str, pos: u8, xor: u8| {
        let s = v[field].as_str().expect("hex field").to_string();
        let mut bytes: Vec<u8> = (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect();
        let n = bytes.len();
        bytes[pos as usize % n] ^= xor.max(1);
        v[field] = Value::String(hex(&bytes));
    };
    let (content, created_at, kind, tags, rehash) = match m {
        Mutation::None => return v,
        Mutation::Sig(p, x) => {
            flip("sig", *p, *x);
            return v;
        }
        Mutation::Id(p, x) => {
            flip("id", *p, *x);
            return v;
        }
        Mutation::Content { content, rehash } => (content.clone(), e.created_at, e.kind, e.tags.clone(), *rehash),
        Mutation::CreatedAt { delta, rehash } => {
            let at = Timestamp::from((e.created_at.as_secs() as i64 + *delta as i64).max(0) as u64);
            (e.content.clone(), at, e.kind, e.tags.clone(), *rehash)
        }
        Mutation::Kind { kind, rehash } => (e.content.clone(), e.created_at, Kind::from(*kind), e.tags.clone(), *rehash),
        Mutation::Tags { tags, rehash } => {
            let tags = Tags::from_list(tags.iter().filter_map(|t| tag(t)).collect());
            (e.content.clone(), e.created_at, e.kind, tags, *rehash)
        }
    };
    v["content"] = json!(content);
    v["created_at"] = json!(created_at.as_secs());
    v["kind"] = json!(kind.as_u16());
    v["tags"] = serde_json::to_value(&tags).expect("tags JSON");
    if rehash {
        v["id"] = json!(EventId::new(&e.pubkey, &created_at, &kind, &tags, &content).to_hex());
    }
    v
}

fn build(rig: &Rig, relay: &sync_core::RelayUrl, frame: &Frame) -> String {
    let f = fixtures();
    match frame {
        Frame::Raw(s) => s.clone(),
        Frame::Event { sub, event, mutation } => {
            let e = &f.events[*event as usize % f.events.len()];
            frame_json(vec![json!("EVENT"), json!(sub_id(rig, relay, sub)), mutate(e, mutation)])
        }
        Frame::Fresh { sub, kind, tags, content, age, stranger } => {
            let signer = if *stranger { &f.stranger } else { &f.owner };
            let tags = tags
                .iter()
                .take(16)
                .filter_map(|t| match t {
                    FreshTag::Repo => tag(&["a", &f.address]),
                    FreshTag::Root { upper } => tag(&[if *upper { "E" } else { "e" }, &f.patch.id.to_hex()]),
                    FreshTag::D(d) => tag(&["d", d]),
                    FreshTag::Relays(r) => tag(&[vec!["relays".to_string()], r.clone()].concat()),
                    FreshTag::Any(parts) => tag(parts),
                })
                .collect();
            let at = (f.announcement.created_at.as_secs() as i64 + *age as i64).max(0) as u64;
            let e = signer.sign(kind.kind(), tags, content, at);
            frame_json(vec![json!("EVENT"), json!(sub_id(rig, relay, sub)), serde_json::from_str(&e.as_json()).expect("event JSON")])
        }
        Frame::EventJunk { sub, json } => {
            format!("[\"EVENT\",{},{json}]", json!(sub_id(rig, relay, sub)))
        }
        Frame::Eose(sub) => frame_json(vec![json!("EOSE"), json!(sub_id(rig, relay, sub))]),
        Frame::NegMsg { sub, payload } => frame_json(vec![json!("NEG-MSG"), json!(sub_id(rig, relay, sub)), json!(payload.text())]),
        Frame::NegErr { sub, msg } => frame_json(vec![json!("NEG-ERR"), json!(sub_id(rig, relay, sub)), json!(msg.text())]),
        Frame::Closed { sub, msg } => frame_json(vec![json!("CLOSED"), json!(sub_id(rig, relay, sub)), json!(msg.text())]),
        Frame::Notice(msg) => frame_json(vec![json!("NOTICE"), json!(msg.text())]),
        Frame::Ok { id, accepted, msg } => frame_json(vec![json!("OK"), json!(hex(id)), json!(accepted), json!(msg.text())]),
        Frame::Auth(challenge) => frame_json(vec![json!("AUTH"), json!(challenge)]),
        Frame::Count { sub, n } => frame_json(vec![json!("COUNT"), json!(sub_id(rig, relay, sub)), json!({ "count": n })]),
    }
}

fn structured(input: Input) {
    let r1 = url(R1);
    let r2 = url(R2);
    let config = if input.small { small_config() } else { SyncConfig::default() };
    let mut rig = Rig::new(config, input.info);
    for op in input.ops.iter().take(256) {
        let pick = |r2_: bool| if r2_ { &r2 } else { &r1 };
        match op {
            Op::Frame { r2: to_r2, frame } => {
                let relay = pick(*to_r2);
                let text = build(&rig, relay, frame);
                rig.frame(relay, &text);
            }
            Op::Answer { r2: to_r2, n } => rig.answer(pick(*to_r2), *n as usize + 1),
            Op::AdvanceMs(ms) => rig.advance(Duration::from_millis(*ms as u64)),
            Op::AdvanceSecs(s) => rig.advance(Duration::from_secs(*s as u64)),
            Op::JumpMinutes(m) => rig.jump(Duration::from_secs(*m as u64 * 60)),
            Op::Drop { r2: to_r2 } => rig.drop_connection(pick(*to_r2)),
            Op::StoreFails(on) => rig.world.store_fails = *on,
        }
    }
    rig.finish();
}
