//! A NIP-34 dataset spread over two relays, with the exact set a GRASP
//! server listing `service` must end up with.
//!
//! Relay A (NIP-77, the bootstrap) and relay B (REQ-only) carry:
//! - repo1 (owner, maintainer M) listing service, A and B — newest version on
//!   A; an older version (stale, must not win) on B;
//! - repo2 (by M) listing service and B, stored on B only (found only by
//!   following repo1 to B);
//! - patches, a PR and PR update, issues, NIP-22 comments that only tag
//!   their root with `E` (layer 3), statuses, a label, a repo state by the
//!   owner; 110 comments on one issue on B over 55 seconds (two per second)
//!   so REQ pagination crosses page boundaries inside a second;
//! - noise: an announcement not listing us, a state by a stranger, events of
//!   the noise repo, comments on unknown roots, plain notes;
//! - forgeries: valid-looking events of repo1 with a wrong signature or
//!   altered content.

use std::collections::BTreeSet;

use nostr::{Event, EventBuilder, EventId, JsonUtil, Keys, Kind, Tag, Timestamp};

/// Events per relay and the expected outcome.
pub struct Dataset {
    /// Events planted on relay A.
    pub on_a: Vec<Event>,
    /// Events planted on relay B.
    pub on_b: Vec<Event>,
    /// Ids the daemon must store, and nothing else.
    pub expected: BTreeSet<EventId>,
    /// repo1's address.
    pub repo1: String,
    /// repo2's address.
    pub repo2: String,
    /// An accepted patch of repo1 (a root).
    pub patch1: EventId,
    /// An accepted issue of repo2 (a root).
    pub issue1: EventId,
    /// Author keys for more events.
    pub owner: Keys,
}

fn tag(parts: &[&str]) -> Tag {
    Tag::parse(parts.iter().copied()).expect("valid tag")
}

/// Signs an event of `kind` with `tags` at `at`.
pub fn ev(keys: &Keys, kind: u16, content: &str, tags: Vec<Tag>, at: u64) -> Event {
    EventBuilder::new(Kind::Custom(kind), content).tags(tags).custom_created_at(Timestamp::from(at)).sign_with_keys(keys).expect("signing")
}

/// A `30617` announcement.
pub fn announcement(keys: &Keys, d: &str, relays: &[&str], maintainers: &[String], at: u64) -> Event {
    let mut tags = vec![tag(&["d", d]), tag(&["name", d]), tag(&["description", "test repository"])];
    let mut r = vec!["relays"];
    r.extend_from_slice(relays);
    tags.push(tag(&r));
    if !maintainers.is_empty() {
        let mut m = vec!["maintainers"];
        m.extend(maintainers.iter().map(String::as_str));
        tags.push(tag(&m));
    }
    ev(keys, 30617, "", tags, at)
}

/// `30617:<pubkey>:<d>`.
pub fn address(keys: &Keys, d: &str) -> String {
    format!("30617:{}:{d}", keys.public_key().to_hex())
}

/// The same event with another event's signature (a forgery the relay serves anyway).
pub fn with_wrong_signature(event: &Event, other: &Event) -> Event {
    let mut v: serde_json::Value = serde_json::from_str(&event.as_json()).expect("event json");
    v["sig"] = serde_json::Value::String(other.sig.to_string());
    Event::from_json(v.to_string()).expect("forged event parses")
}

/// The same id and signature over different content (id no longer matches).
pub fn with_altered_content(event: &Event) -> Event {
    let mut v: serde_json::Value = serde_json::from_str(&event.as_json()).expect("event json");
    v["content"] = serde_json::Value::String("altered after signing".into());
    Event::from_json(v.to_string()).expect("forged event parses")
}

/// A NIP-22 comment on `root` (tags only the root id, layer 3).
pub fn comment(keys: &Keys, root: &EventId, text: &str, at: u64) -> Event {
    ev(keys, 1111, text, vec![tag(&["E", &root.to_hex()]), tag(&["K", "1617"])], at)
}

/// Builds the dataset; `base` is a unix time some hours in the past.
pub fn build(service: &str, relay_a: &str, relay_b: &str, base: u64) -> Dataset {
    let owner = Keys::generate();
    let maint = Keys::generate();
    let stranger = Keys::generate();
    let m_hex = maint.public_key().to_hex();
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    let mut expected = BTreeSet::new();
    let keep = |e: &Event, set: &mut BTreeSet<EventId>| {
        set.insert(e.id);
    };

    // Layer 1: announcements.
    let repo1_new = announcement(&owner, "repo1", &[service, relay_a, relay_b], std::slice::from_ref(&m_hex), base + 100);
    let repo1_old = announcement(&owner, "repo1", &[service], &[], base + 10);
    let repo2 = announcement(&maint, "repo2", &[service, relay_b], &[], base + 20);
    let noise_repo = announcement(&stranger, "noise", &[relay_a, "wss://elsewhere.example.org"], &[], base + 30);
    keep(&repo1_new, &mut expected);
    keep(&repo2, &mut expected);
    on_a.extend([repo1_new.clone(), noise_repo.clone()]);
    on_b.extend([repo1_old, repo2.clone()]);
    let repo1 = address(&owner, "repo1");
    let repo2_addr = address(&maint, "repo2");
    let noise_addr = address(&stranger, "noise");

    // repository state: owner's accepted, stranger's not
    let state = ev(
        &owner,
        30618,
        "",
        vec![tag(&["d", "repo1"]), tag(&["refs/heads/main", "0123456789abcdef0123456789abcdef01234567"])],
        base + 110,
    );
    let state_stranger = ev(&stranger, 30618, "", vec![tag(&["d", "repo1"])], base + 111);
    keep(&state, &mut expected);
    on_a.extend([state, state_stranger]);

    // Layer 2: roots and events tagging the repositories.
    let mut patches = Vec::new();
    for i in 0..3u64 {
        let p = ev(&owner, 1617, &format!("patch {i}"), vec![tag(&["a", &repo1]), tag(&["t", "root"])], base + 200 + i);
        keep(&p, &mut expected);
        on_a.push(p.clone());
        patches.push(p);
    }
    let patch_b = ev(&maint, 1617, "patch only on B", vec![tag(&["a", &repo1])], base + 210);
    keep(&patch_b, &mut expected);
    on_b.push(patch_b.clone());
    on_b.push(patches[0].clone()); // on both relays
    let pr =
        ev(&maint, 1618, "pull request", vec![tag(&["a", &repo1]), tag(&["c", "0123456789abcdef0123456789abcdef01234567"])], base + 220);
    let pr_update = ev(&maint, 1619, "", vec![tag(&["a", &repo1]), tag(&["E", &pr.id.to_hex()])], base + 221);
    let label = ev(&owner, 1985, "", vec![tag(&["L", "ugc"]), tag(&["l", "bug", "ugc"]), tag(&["a", &repo1])], base + 222);
    for e in [&pr, &pr_update, &label] {
        keep(e, &mut expected);
        on_a.push((*e).clone());
    }
    let mut issues = Vec::new();
    for i in 0..2u64 {
        let is = ev(&owner, 1621, &format!("issue {i}"), vec![tag(&["a", &repo2_addr]), tag(&["subject", "bug"])], base + 300 + i);
        keep(&is, &mut expected);
        on_b.push(is.clone());
        issues.push(is);
    }

    // Layer 3: events that only tag a root id.
    for (i, p) in patches.iter().enumerate() {
        let c = comment(&maint, &p.id, &format!("review {i}"), base + 400 + i as u64);
        keep(&c, &mut expected);
        on_a.push(c);
    }
    let applied = ev(&owner, 1631, "", vec![tag(&["e", &patches[0].id.to_hex(), "", "root"])], base + 410);
    let open = ev(&owner, 1630, "", vec![tag(&["e", &pr.id.to_hex(), "", "root"])], base + 411);
    keep(&applied, &mut expected);
    keep(&open, &mut expected);
    on_a.extend([applied, open]);
    let closed = ev(&owner, 1632, "", vec![tag(&["e", &issues[0].id.to_hex(), "", "root"])], base + 412);
    keep(&closed, &mut expected);
    on_b.push(closed);
    for i in 0..110u64 {
        let c = comment(&stranger, &issues[0].id, &format!("me too #{i}"), base + 500 + i / 2);
        keep(&c, &mut expected);
        on_b.push(c);
    }
    let draft = ev(&maint, 1633, "", vec![tag(&["e", &patch_b.id.to_hex(), "", "root"])], base + 420);
    keep(&draft, &mut expected);
    on_b.push(draft);

    // Noise.
    let noise_patch = ev(&stranger, 1617, "noise patch", vec![tag(&["a", &noise_addr])], base + 600);
    let noise_comment = comment(&stranger, &noise_patch.id, "noise comment", base + 601);
    let unknown_root = comment(&stranger, &EventId::all_zeros(), "comment on nothing", base + 602);
    on_a.extend([noise_patch.clone(), noise_comment, unknown_root]);
    for i in 0..10u64 {
        on_a.push(ev(&stranger, 1, &format!("note {i}"), vec![], base + 700 + i));
        on_b.push(ev(&stranger, 1, &format!("note b {i}"), vec![], base + 700 + i));
    }

    // Forgeries of events that would be accepted.
    let genuine = ev(&owner, 1617, "forged patch", vec![tag(&["a", &repo1])], base + 800);
    on_a.push(with_wrong_signature(&genuine, &patches[0]));
    let genuine2 = ev(&owner, 1621, "issue whose content is altered in transit", vec![tag(&["a", &repo1])], base + 802);
    on_a.push(with_altered_content(&genuine2));
    let genuine_comment = comment(&maint, &patches[0].id, "forged comment", base + 801);
    on_b.push(with_wrong_signature(&genuine_comment, &noise_patch));

    Dataset { on_a, on_b, expected, repo1, repo2: repo2_addr, patch1: patches[0].id, issue1: issues[0].id, owner }
}
