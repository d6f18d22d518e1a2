//! Deterministic simulation of the sync engine against simulated relays.
//!
//! [`dataset`] builds a random world per seed, [`relay`] plays the relays,
//! [`world`] runs the production driver (and its engine) in that world on
//! virtual time ([`exec`]: the clock and a one-task executor; [`net`]: the
//! connector over the simulated relays; [`store`]: the store, its faults
//! and the driver's ordering checks), [`model`] says independently what
//! must and may be stored, [`check`] compares the two and [`stats`] counts
//! what the runs exercised.
//!
//! A run: a world of 4–7 relays of mixed kinds plus an unreachable and a
//! private URL, 2–5 repositories (most listing our relay), their states,
//! roots, threads and noise, events published live during the first minutes,
//! sometimes a slow store and one or two restarts from persisted state (one
//! during the initial sync); it ends when the system is quiescent, with a
//! last shutdown. Then: every required event stored exactly once, nothing
//! unacceptable or forged stored, status histories legal, totals consistent
//! with the store and the per-relay rows, relays in their expected states;
//! and, seen from the relays' side, flow control: never more historic
//! requests open on a connection than the engine's window, no id asked for
//! twice on one connection, no NIP-77 relay made REQ-only by "too many".
//!
//! Hostile relays ([`dataset::RelayKind::hostile`]) join the mix, with store
//! outages, random save failures and small `max_unsaved` settings; the
//! engine must stay within its bounds against them: nothing forged or
//! future-dated stored, no relay Syncing longer than
//! [`check::SYNCING_BOUND`] after it connected, hostile relays Connected or
//! ConnectedDegraded with a reason (and never REQ-only after answering
//! NEG-MSG), negentropy rounds and pages per request within the engine's
//! bounds, the unsaved backlog within 4 × `max_unsaved` while the store
//! fails, and live events a relay received while it had closed our live
//! subscription delivered.
//!
//! The driver, seen from the store: one save in flight at a time, a
//! negentropy load only after the saves asked before it, queries and
//! persisted states only with no save in flight, and after each shutdown no
//! save finished after the last persisted state.

pub mod check;
pub mod dataset;
pub mod exec;
pub mod model;
pub mod net;
pub mod relay;
pub mod stats;
pub mod store;
pub mod world;

/// Result of one seed: the violated invariants (empty when fine) and coverage counters.
pub fn run_seed(seed: u64) -> (Vec<String>, stats::Stats) {
    let world = dataset::generate(seed);
    let model = model::Model::new(&world);
    let outcome = world::Sim::new(seed, world.clone()).run();
    (check::check(&world, &model, &outcome), check::snapshot_stats(&world, &outcome))
}
