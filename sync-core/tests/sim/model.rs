//! An independent reference model of what the engine must and may store.
//!
//! * **allowed**: every valid event the server policy accepts, computed over
//!   the whole world (a fixpoint over announcements listing our relay, roots
//!   tagging accepted repositories, events tagging either). Nothing outside it
//!   may ever be stored.
//! * **required**: what the engine must end up with: a fixpoint over the
//!   *reliable* relays it contacts (bootstrap relays plus relays listed by
//!   required repositories): announcements and states there (L1), events
//!   tagging a required repository on a relay that repository lists (L2),
//!   and events tagging a required root on a relay its repository lists (L3).
//!
//! The model re-derives acceptance from tags on its own; it does not call the
//! engine's policy code.

use std::collections::{BTreeMap, BTreeSet};

use nostr::{Event, EventId};
use sync_core::RelayUrl;

use super::dataset::{World, OUR_RELAY};

/// A repository as the model sees it.
#[derive(Debug, Clone, Default)]
pub struct ModelRepo {
    /// Relay URLs (normalised) the newest announcement lists.
    pub relays: BTreeSet<String>,
    /// Author and maintainers (hex).
    pub controllers: BTreeSet<String>,
    /// `d` tag.
    pub d: String,
    /// `created_at` of the newest announcement.
    pub created_at: u64,
}

/// The model's verdicts.
pub struct Model {
    /// Ids that may be stored.
    pub allowed: BTreeSet<EventId>,
    /// Events that must be stored (addressable ones: this version or a newer one).
    pub required: BTreeMap<EventId, Event>,
    /// Repository addresses that must be known to the engine.
    pub required_repos: BTreeSet<String>,
    /// Repository addresses the engine may know.
    pub allowed_repos: BTreeSet<String>,
    /// Relay URLs the engine must be tracking (reliable or not).
    pub contacted: BTreeSet<String>,
}

fn tag_refs<'a>(e: &'a Event, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    e.tags.iter().filter_map(move |t| {
        let s = t.as_slice();
        (s.len() >= 2 && s[0] == name).then(|| s[1].as_str())
    })
}

fn tag_values<'a>(e: &'a Event, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    e.tags
        .iter()
        .filter(move |t| t.as_slice().first().is_some_and(|n| n == name))
        .flat_map(|t| t.as_slice()[1..].iter().map(String::as_str))
}

fn d_of(e: &Event) -> String {
    tag_refs(e, "d").next().unwrap_or("").to_string()
}

fn address(e: &Event) -> String {
    format!("30617:{}:{}", e.pubkey.to_hex(), d_of(e))
}

fn is_root_kind(k: u16) -> bool {
    matches!(k, 1617 | 1618 | 1621)
}

fn norm(url: &str) -> Option<String> {
    RelayUrl::parse(url).ok().map(|u| u.to_string())
}

/// Announcements listing our relay, newest per address.
fn repos_from<'a>(events: impl Iterator<Item = &'a Event>) -> BTreeMap<String, ModelRepo> {
    let ours = norm(OUR_RELAY).expect("our url");
    let mut repos: BTreeMap<String, ModelRepo> = BTreeMap::new();
    for e in events {
        if e.kind.as_u16() != 30617 || !tag_values(e, "relays").filter_map(norm).any(|u| u == ours) {
            continue;
        }
        let entry = repos.entry(address(e)).or_default();
        if entry.created_at > e.created_at.as_secs() && !entry.relays.is_empty() {
            continue;
        }
        entry.created_at = e.created_at.as_secs();
        entry.relays = tag_values(e, "relays").filter_map(norm).collect();
        entry.controllers = tag_values(e, "maintainers").map(str::to_string).collect();
        entry.controllers.insert(e.pubkey.to_hex());
        entry.d = d_of(e);
    }
    repos
}

/// Which accepted repositories an event tags via `a`/`A`/`q`.
fn tagged_repos(e: &Event, repos: &BTreeMap<String, ModelRepo>) -> Vec<String> {
    ["a", "A", "q"].iter().flat_map(|n| tag_refs(e, n)).filter(|v| repos.contains_key(*v)).map(str::to_string).collect()
}

/// Which known roots an event tags via `e`/`E`/`q`.
fn tagged_roots(e: &Event, roots: &BTreeMap<EventId, BTreeSet<String>>) -> Vec<EventId> {
    ["e", "E", "q"]
        .iter()
        .flat_map(|n| tag_refs(e, n))
        .filter_map(|v| EventId::from_hex(v).ok())
        .filter(|id| roots.contains_key(id))
        .collect()
}

fn state_ok(e: &Event, repos: &BTreeMap<String, ModelRepo>) -> bool {
    let d = d_of(e);
    let pk = e.pubkey.to_hex();
    repos.values().any(|r| r.d == d && r.controllers.contains(&pk))
}

impl Model {
    /// Builds the model for a world.
    pub fn new(world: &World) -> Self {
        let universe = world.universe();
        // ---- allowed: fixpoint over every valid event ----
        let allowed_repo_map = repos_from(universe.values());
        let mut roots: BTreeMap<EventId, BTreeSet<String>> = BTreeMap::new();
        for e in universe.values() {
            let repos = tagged_repos(e, &allowed_repo_map);
            if is_root_kind(e.kind.as_u16()) && !repos.is_empty() {
                roots.entry(e.id).or_default().extend(repos);
            }
        }
        let mut allowed = BTreeSet::new();
        for e in universe.values() {
            let ok = match e.kind.as_u16() {
                30617 => allowed_repo_map.contains_key(&address(e)),
                30618 => state_ok(e, &allowed_repo_map),
                _ => !tagged_repos(e, &allowed_repo_map).is_empty() || !tagged_roots(e, &roots).is_empty(),
            };
            if ok {
                allowed.insert(e.id);
            }
        }

        // ---- required: fixpoint over reliable relays the engine contacts ----
        // Final content per relay (initial plus live publications).
        let mut content: Vec<Vec<Event>> = world.relays.iter().map(|r| r.events.clone()).collect();
        for l in &world.live {
            for &i in &l.relays {
                content[i].push(l.event.clone());
            }
        }
        let url_index: BTreeMap<String, usize> = world.relays.iter().enumerate().map(|(i, r)| (r.url.clone(), i)).collect();
        let reliable: Vec<bool> = world.relays.iter().map(|r| r.kind.reliable()).collect();
        let visible = |i: usize, e: &Event| !world.relays[i].withheld.contains(&e.id);
        let mut contacted: BTreeSet<usize> = world.relays.iter().enumerate().filter(|(_, r)| r.bootstrap).map(|(i, _)| i).collect();
        let mut repos: BTreeMap<String, ModelRepo>;
        let mut req_roots: BTreeMap<EventId, BTreeSet<String>>;
        loop {
            let l1 = contacted.iter().filter(|&&i| reliable[i]).flat_map(|&i| content[i].iter().filter(move |e| visible(i, e)));
            repos = repos_from(l1);
            req_roots = BTreeMap::new();
            for (addr, repo) in &repos {
                for url in &repo.relays {
                    let Some(&i) = url_index.get(url) else { continue };
                    if !reliable[i] {
                        continue;
                    }
                    for e in &content[i] {
                        if is_root_kind(e.kind.as_u16()) && visible(i, e) && tagged_repos(e, &repos).contains(addr) {
                            req_roots.entry(e.id).or_default().insert(addr.clone());
                        }
                    }
                }
            }
            let mut next = contacted.clone();
            for repo in repos.values() {
                next.extend(repo.relays.iter().filter_map(|u| url_index.get(u).copied()));
            }
            if next == contacted {
                break;
            }
            contacted = next;
        }
        let mut required = BTreeMap::new();
        for &i in contacted.iter().filter(|&&i| reliable[i]) {
            let url = &world.relays[i].url;
            for e in content[i].iter().filter(|e| visible(i, e)) {
                let need = match e.kind.as_u16() {
                    30617 => repos.contains_key(&address(e)),
                    30618 => state_ok(e, &repos),
                    _ => {
                        tagged_repos(e, &repos).iter().any(|a| repos[a].relays.contains(url))
                            || tagged_roots(e, &req_roots).iter().any(|r| req_roots[r].iter().any(|a| repos[a].relays.contains(url)))
                    }
                };
                if need {
                    required.insert(e.id, e.clone());
                }
            }
        }
        Model {
            allowed,
            required,
            required_repos: repos.keys().cloned().collect(),
            allowed_repos: allowed_repo_map.keys().cloned().collect(),
            contacted: contacted.iter().map(|&i| world.relays[i].url.clone()).collect(),
        }
    }
}
