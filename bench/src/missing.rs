//! `grasp-sync-bench missing --db DIR --events N`: which dataset events an
//! LMDB store (the daemon's `events.lmdb`, or the nostr-sdk peer's) lacks,
//! with their kind, `created_at` and tags — for reporting an incomplete sync.

use std::path::Path;

use nostr::{Event, EventId, Filter};
use nostr_database::NostrDatabase;
use nostr_lmdb::NostrLMDB;

/// Prints the dataset events missing from the store at `db`.
pub async fn run(db: &Path, dataset: &[Event]) -> Result<(), String> {
    let store = NostrLMDB::open(db).map_err(|e| format!("cannot open lmdb at {}: {e}", db.display()))?;
    let mut missing = Vec::new();
    for chunk in dataset.chunks(500) {
        let ids: Vec<EventId> = chunk.iter().map(|e| e.id).collect();
        let found = store.query(Filter::new().ids(ids.clone()).limit(ids.len())).await.map_err(|e| format!("query: {e}"))?;
        for e in chunk {
            if !found.iter().any(|f| f.id == e.id) {
                missing.push(e);
            }
        }
    }
    println!("{} of {} dataset events missing from {}", missing.len(), dataset.len(), db.display());
    for e in missing.iter().take(50) {
        let same_second = dataset.iter().filter(|o| o.created_at == e.created_at).count();
        println!(
            "  {} kind {} created_at {} ({} dataset events in that second) tags {:?}",
            e.id,
            e.kind.as_u16(),
            e.created_at.as_secs(),
            same_second,
            e.tags.iter().map(|t| t.as_slice().iter().take(2).cloned().collect::<Vec<_>>().join(":")).collect::<Vec<_>>()
        );
    }
    Ok(())
}
