//! The benchmark dataset: `n` signed NIP-34 events over [`REPOS`] repositories.
//!
//! Shape (deterministic apart from the signatures' randomness):
//! - one `30617` announcement and one `30618` state per repository; each
//!   announcement's `relays` tag lists the GRASP service URL [`SERVICE_URL`]
//!   and the relay under test, so a daemon with server policy for
//!   [`SERVICE_URL`] accepts every repository;
//! - about [`ROOT_SHARE`] of the rest are root events (`1617` patches with
//!   2–6 KB of diff text, `1618` pull requests, `1621` issues), spread over
//!   the repositories with a skew (a few big repositories, a long tail);
//! - the others are related events tagging both the repository (`a`) and a
//!   root (`e`/`E`): `1111` comments, `1630`–`1633` statuses, `1985` labels,
//!   skewed towards "hot" threads.
//!
//! `created_at` spans about two years ending an hour ago; a few "burst"
//! seconds hold many events each (bots, imports), which is what breaks naive
//! `until` pagination. Addresses are unique, so every event is stored by a
//! relay and accepted by the daemon: the expected count is `n`.
//!
//! Signing 100k events takes a while, so a dataset is cached as JSONL in
//! `target/bench-data/<n>.jsonl` and regenerated only when missing, of the
//! wrong size, or made for another relay URL.

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use nostr::hashes::{sha256, Hash};
use nostr::{Event, EventBuilder, JsonUtil, Keys, Kind, SecretKey, Tag, Timestamp};

/// The GRASP service the daemon serves (its `--service-url`).
pub const SERVICE_URL: &str = "wss://bench-grasp.example.com";
/// Number of repositories.
pub const REPOS: usize = 50;
/// Share of root events among the non-repository events.
const ROOT_SHARE: f64 = 0.15;
/// Distinct authors (repository owners are the first few).
const AUTHORS: usize = 200;
/// Distinct repository owners.
const OWNERS: usize = 30;
/// Time span of the data.
const SPAN_SECS: u64 = 2 * 365 * 24 * 3600;
/// Seconds that hold many events each.
const BURSTS: usize = 30;

/// A loaded dataset.
pub struct Dataset {
    /// Every event, announcements first.
    pub events: Vec<Event>,
    /// Sum of the events' JSON sizes.
    pub json_bytes: u64,
    /// Number of root events (1617/1618/1621).
    pub roots: usize,
}

impl Dataset {
    /// Events a fully synced client stores (all of them: ids and addresses are unique).
    pub fn expected(&self) -> u64 {
        self.events.len() as u64
    }
}

/// Loads `<dir>/<n>.jsonl`, or generates (and caches) it for `relay_url`.
pub fn load_or_generate(n: usize, relay_url: &str, dir: &Path) -> Result<Dataset, String> {
    if n < 2 * REPOS + 100 {
        return Err(format!("--events must be at least {} (there are {REPOS} repositories)", 2 * REPOS + 100));
    }
    let path = dir.join(format!("{n}.jsonl"));
    if path.exists() {
        match load(&path, relay_url) {
            Ok(Some(d)) if d.events.len() == n => {
                eprintln!("dataset: {} events from {}", n, path.display());
                return Ok(d);
            }
            Ok(_) => eprintln!("dataset: {} is stale (size, relay URL or duplicate events), regenerating", path.display()),
            Err(e) => eprintln!("dataset: {} unreadable ({e}), regenerating", path.display()),
        }
    }
    let started = std::time::Instant::now();
    let events = generate(n, relay_url)?;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("jsonl.tmp");
    {
        let f = fs::File::create(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        let mut w = BufWriter::new(f);
        for e in &events {
            writeln!(w, "{}", e.as_json()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        }
        w.flush().map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    fs::rename(&tmp, &path).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))?;
    eprintln!("dataset: generated and signed {n} events in {:.1}s -> {}", started.elapsed().as_secs_f64(), path.display());
    Ok(summarize(events))
}

/// Reads a cached file; `None` when it was made for another relay URL.
fn load(path: &Path, relay_url: &str) -> Result<Option<Dataset>, String> {
    let f = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if i == 0 && !line.contains(&format!("\"{relay_url}\"")) {
            return Ok(None);
        }
        events.push(Event::from_json(&line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    let unique: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    if unique.len() != events.len() {
        // An older generator could produce the same event twice.
        return Ok(None);
    }
    Ok(Some(summarize(events)))
}

fn summarize(events: Vec<Event>) -> Dataset {
    let json_bytes = events.iter().map(|e| e.as_json().len() as u64).sum();
    let roots = events.iter().filter(|e| matches!(e.kind.as_u16(), 1617 | 1618 | 1621)).count();
    Dataset { events, json_bytes, roots }
}

/// SplitMix64: a tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [0, n).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// What to sign: author index, kind, content, tags, created_at.
struct Spec {
    author: usize,
    kind: u16,
    content: String,
    tags: Vec<Vec<String>>,
    created_at: u64,
}

/// A signed root: what related events need to tag it.
#[derive(Clone)]
struct Root {
    id: String,
    pubkey: String,
    kind: u16,
    repo: usize,
    created_at: u64,
}

fn keys_for(i: usize) -> Result<Keys, String> {
    let digest = sha256::Hash::hash(format!("grasp-sync-bench author {i}").as_bytes());
    let sk = SecretKey::from_slice(&digest.to_byte_array()).map_err(|e| format!("secret key {i}: {e}"))?;
    Ok(Keys::new(sk))
}

fn generate(n: usize, relay_url: &str) -> Result<Vec<Event>, String> {
    let keys: Vec<Keys> = (0..AUTHORS).map(keys_for).collect::<Result<_, _>>()?;
    let mut rng = Rng(0x6772_6173_7062_656E ^ n as u64);
    let end = Timestamp::now().as_secs().saturating_sub(3600);
    let start = end - SPAN_SECS;
    let bursts: Vec<u64> = (0..BURSTS).map(|_| start + (rng.f() * SPAN_SECS as f64) as u64).collect();

    // Repositories: announcements and states.
    let mut specs = Vec::with_capacity(2 * REPOS);
    let mut repo_addr = Vec::with_capacity(REPOS);
    let mut repo_owner = Vec::with_capacity(REPOS);
    let mut repo_created = Vec::with_capacity(REPOS);
    for r in 0..REPOS {
        let owner = r % OWNERS;
        let d = format!("{}-{r}", rng.pick(&["ngit", "gitworkshop", "relay", "client", "lib", "tools", "docs", "infra"]));
        let pk = keys[owner].public_key().to_hex();
        let created = start + (rng.f() * (SPAN_SECS / 4) as f64) as u64;
        let euc = rng.hex(40);
        let mut tags = vec![
            vec!["d".into(), d.clone()],
            vec!["name".into(), d.clone()],
            vec!["description".into(), format!("Repository {d}: a benchmark fixture for GRASP-02 sync")],
            vec!["relays".into(), SERVICE_URL.into(), relay_url.into()],
            vec!["clone".into(), format!("https://bench-grasp.example.com/{pk}/{d}.git")],
            vec!["web".into(), format!("https://gitworkshop.dev/{pk}/{d}")],
            vec!["r".into(), euc, "euc".into()],
        ];
        if r % 3 == 0 {
            tags.push(vec!["maintainers".into(), keys[(owner + 1) % OWNERS].public_key().to_hex()]);
        }
        // Announcements first: the cache check looks for the relay URL in line 1.
        specs.push(Spec { author: owner, kind: 30617, content: String::new(), tags, created_at: created + 3600 * 24 * 30 });
        repo_addr.push(format!("30617:{pk}:{d}"));
        repo_owner.push(owner);
        repo_created.push(created);
    }
    for r in 0..REPOS {
        let d = repo_addr[r].rsplit(':').next().unwrap_or_default().to_string();
        let tags = vec![
            vec!["d".into(), d],
            vec!["refs/heads/main".into(), rng.hex(40)],
            vec!["refs/heads/dev".into(), rng.hex(40)],
            vec!["refs/tags/v1.0.0".into(), rng.hex(40)],
            vec!["HEAD".into(), "ref: refs/heads/main".into()],
        ];
        specs.push(Spec {
            author: repo_owner[r],
            kind: 30618,
            content: String::new(),
            tags,
            created_at: end - rng.below(3600 * 24) as u64,
        });
    }
    let mut events = sign_all(&keys, specs)?;

    // Roots.
    let rest = n - 2 * REPOS;
    let n_roots = ((rest as f64 * ROOT_SHARE).round() as usize).max(1);
    let repo_weights: Vec<f64> = (0..REPOS).map(|r| 1.0 / ((r + 1) as f64).powf(0.8)).collect();
    let weight_sum: f64 = repo_weights.iter().sum();
    let mut root_specs = Vec::with_capacity(n_roots);
    let mut root_repo = Vec::with_capacity(n_roots);
    for _ in 0..n_roots {
        let mut x = rng.f() * weight_sum;
        let mut repo = REPOS - 1;
        for (r, w) in repo_weights.iter().enumerate() {
            if x < *w {
                repo = r;
                break;
            }
            x -= w;
        }
        let author = if rng.f() < 0.4 { repo_owner[repo] } else { rng.below(AUTHORS) };
        let created_at = if rng.f() < 0.03 {
            bursts[rng.below(BURSTS)].max(repo_created[repo])
        } else {
            repo_created[repo] + (rng.f() * (end - repo_created[repo]) as f64) as u64
        };
        let owner_pk = keys[repo_owner[repo]].public_key().to_hex();
        let x = rng.f();
        let (kind, content, mut tags) = if x < 0.5 {
            let subject = subject(&mut rng);
            let mut tags = vec![vec!["r".into(), rng.hex(40), "euc".into()], vec!["commit".into(), rng.hex(40)]];
            if rng.f() < 0.7 {
                tags.push(vec!["t".into(), "root".into()]);
            }
            (1617, patch_text(&mut rng, &subject), tags)
        } else if x < 0.65 {
            let tags = vec![
                vec!["subject".into(), subject(&mut rng)],
                vec!["c".into(), rng.hex(40)],
                vec!["clone".into(), format!("https://bench-grasp.example.com/{owner_pk}/pr-{}.git", rng.below(1000))],
                vec!["branch-name".into(), format!("feature/{}", rng.pick(WORDS))],
            ];
            (1618, prose(&mut rng, 300, 1500), tags)
        } else {
            let tags = vec![vec!["subject".into(), subject(&mut rng)], vec!["t".into(), rng.pick(&["bug", "feature", "question"]).into()]];
            (1621, prose(&mut rng, 200, 1500), tags)
        };
        tags.push(vec!["a".into(), repo_addr[repo].clone()]);
        tags.push(vec!["p".into(), owner_pk]);
        root_specs.push(Spec { author, kind, content, tags, created_at });
        root_repo.push(repo);
    }
    let signed_roots = sign_all(&keys, root_specs)?;
    let roots: Vec<Root> = signed_roots
        .iter()
        .zip(&root_repo)
        .map(|(e, &repo)| Root {
            id: e.id.to_hex(),
            pubkey: e.pubkey.to_hex(),
            kind: e.kind.as_u16(),
            repo,
            created_at: e.created_at.as_secs(),
        })
        .collect();
    events.extend(signed_roots);

    // Related events.
    let n_related = n - events.len();
    let mut related = Vec::with_capacity(n_related);
    for _ in 0..n_related {
        // Skewed towards hot threads: u^2.5 favours low indices of a random order.
        let root = &roots[((rng.f().powf(2.5)) * roots.len() as f64) as usize % roots.len()];
        let addr = &repo_addr[root.repo];
        let owner_pk = keys[repo_owner[root.repo]].public_key().to_hex();
        let created_at = if rng.f() < 0.08 {
            bursts[rng.below(BURSTS)]
        } else {
            let delay = (-(1.0 - rng.f()).ln() * 3.0 * 24.0 * 3600.0) as u64;
            (root.created_at + delay).min(end)
        };
        let x = rng.f();
        let (author, kind, content, tags) = if x < 0.55 {
            let tags = vec![
                vec!["E".into(), root.id.clone(), String::new(), root.pubkey.clone()],
                vec!["K".into(), root.kind.to_string()],
                vec!["P".into(), root.pubkey.clone()],
                vec!["e".into(), root.id.clone(), String::new(), root.pubkey.clone()],
                vec!["k".into(), root.kind.to_string()],
                vec!["p".into(), root.pubkey.clone()],
                vec!["a".into(), addr.clone()],
            ];
            (rng.below(AUTHORS), 1111, prose(&mut rng, 80, 900), tags)
        } else if x < 0.85 {
            let kind = [1630u16, 1630, 1631, 1631, 1631, 1632, 1632, 1633][rng.below(8)];
            let tags = vec![
                vec!["e".into(), root.id.clone(), String::new(), "root".into()],
                vec!["a".into(), addr.clone()],
                vec!["p".into(), owner_pk],
                vec!["p".into(), root.pubkey.clone()],
            ];
            let author = if rng.f() < 0.7 { repo_owner[root.repo] } else { rng.below(AUTHORS) };
            (author, kind, rng.pick(&["", "merged", "applied in main", "closing as duplicate", "draft"]).to_string(), tags)
        } else {
            let label = rng.pick(&["bug", "enhancement", "good-first-issue", "wontfix", "security", "docs"]);
            let tags = vec![
                vec!["L".into(), "#t".into()],
                vec!["l".into(), label.into(), "#t".into()],
                vec!["e".into(), root.id.clone()],
                vec!["a".into(), addr.clone()],
            ];
            (repo_owner[root.repo], 1985, String::new(), tags)
        };
        related.push(Spec { author, kind, content, tags, created_at });
    }
    events.extend(sign_all(&keys, related)?);
    Ok(events)
}

/// Signs specs on every core. Identical specs would be the same event (same
/// id), so a duplicate is moved one second later until it is unique: every
/// line of the dataset is a distinct event.
fn sign_all(keys: &[Keys], mut specs: Vec<Spec>) -> Result<Vec<Event>, String> {
    let mut seen = std::collections::HashSet::with_capacity(specs.len());
    for sp in &mut specs {
        while !seen.insert((sp.author, sp.kind, sp.created_at, sp.content.clone(), sp.tags.clone())) {
            sp.created_at += 1;
        }
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let chunk = specs.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> =
            specs.chunks(chunk).map(|part| s.spawn(move || part.iter().map(|sp| sign(keys, sp)).collect::<Result<Vec<_>, _>>())).collect();
        let mut out = Vec::with_capacity(specs.len());
        for h in handles {
            out.extend(h.join().map_err(|_| "a signing thread panicked".to_string())??);
        }
        Ok(out)
    })
}

fn sign(keys: &[Keys], sp: &Spec) -> Result<Event, String> {
    let tags = sp
        .tags
        .iter()
        .map(|t| Tag::parse(t.iter().map(String::as_str)).map_err(|e| format!("tag {t:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    EventBuilder::new(Kind::from(sp.kind), sp.content.as_str())
        .tags(tags)
        .custom_created_at(Timestamp::from(sp.created_at))
        .sign_with_keys(&keys[sp.author])
        .map_err(|e| format!("signing: {e}"))
}

const WORDS: &[&str] = &[
    "relay",
    "event",
    "filter",
    "sync",
    "negentropy",
    "patch",
    "commit",
    "branch",
    "merge",
    "index",
    "store",
    "cache",
    "parse",
    "verify",
    "signature",
    "timeout",
    "backoff",
    "window",
    "batch",
    "queue",
    "state",
    "status",
    "config",
    "metrics",
    "connection",
    "socket",
    "frame",
    "buffer",
    "limit",
    "page",
    "cursor",
    "thread",
    "comment",
    "issue",
    "label",
    "repository",
    "maintainer",
    "announcement",
    "clone",
    "tag",
];

fn subject(rng: &mut Rng) -> String {
    let verb = rng.pick(&["fix", "add", "remove", "refactor", "handle", "document", "speed up", "test"]);
    format!("{verb} {} {} in {}", rng.pick(WORDS), rng.pick(WORDS), rng.pick(WORDS))
}

fn prose(rng: &mut Rng, min: usize, max: usize) -> String {
    let target = rng.range(min, max);
    let mut s = String::with_capacity(target + 16);
    while s.len() < target {
        s.push_str(rng.pick(WORDS));
        s.push(if rng.below(12) == 0 { '\n' } else { ' ' });
    }
    s
}

/// A `git format-patch`-like text of 2–6 KB.
fn patch_text(rng: &mut Rng, subject: &str) -> String {
    let target = rng.range(2048, 6144);
    let file = format!("src/{}_{}.rs", rng.pick(WORDS), rng.pick(WORDS));
    let mut s = format!(
        "From {} Mon Sep 17 00:00:00 2001\nFrom: Dev <dev@example.com>\nSubject: [PATCH] {subject}\n\n---\n {file} | {} ++++----\n 1 file changed\n\ndiff --git a/{file} b/{file}\nindex {}..{} 100644\n--- a/{file}\n+++ b/{file}\n",
        rng.hex(40),
        rng.range(4, 80),
        rng.hex(7),
        rng.hex(7)
    );
    let mut line = rng.range(1, 400);
    while s.len() < target {
        s.push_str(&format!("@@ -{line},7 +{line},8 @@ fn {}_{}() {{\n", rng.pick(WORDS), rng.pick(WORDS)));
        for _ in 0..rng.range(4, 12) {
            let mark = rng.pick(&[" ", " ", " ", "-", "+"]);
            s.push_str(&format!(
                "{mark}    let {} = {}.{}({}, {});\n",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.range(0, 9999)
            ));
        }
        line += rng.range(10, 120);
    }
    s.push_str("-- \n2.43.0\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_distinct_and_shaped() {
        let events = generate(600, "ws://127.0.0.1:1").expect("generate");
        assert_eq!(events.len(), 600);
        let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 600);
        assert!(events[0].as_json().contains(SERVICE_URL) && events[0].as_json().contains("ws://127.0.0.1:1"));
        let d = summarize(events);
        assert!(d.roots > 50 && d.roots < 120, "roots {}", d.roots);
        assert!(d.events.iter().all(|e| e.verify().is_ok()));
    }
}
