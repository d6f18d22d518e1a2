//! The floor: the work no sync engine can skip, in-process on one core —
//! parse every `EVENT` frame of the dataset (`RelayMessage::from_json`) and
//! verify the event (`Event::verify`: id hash and schnorr signature). No
//! network, no storage, no reconciliation: a lower bound on time, and its
//! frame bytes a lower bound on what must be received.

use std::time::Instant;

use nostr::{Event, JsonUtil, RelayMessage};

use crate::report::Measurement;

/// Parses and verifies every event as an `EVENT` frame; errors name the first bad one.
pub fn run(events: &[Event]) -> Result<Measurement, String> {
    let frames: Vec<String> = events.iter().map(|e| format!(r#"["EVENT","floor",{}]"#, e.as_json())).collect();
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    let cpu_before = crate::measure::sample(std::process::id());
    let started = Instant::now();
    let mut ok = 0u64;
    for (i, frame) in frames.iter().enumerate() {
        match RelayMessage::from_json(frame) {
            Ok(RelayMessage::Event { event, .. }) => {
                event.verify().map_err(|e| format!("floor: event {i} does not verify: {e}"))?;
                ok += 1;
            }
            Ok(other) => return Err(format!("floor: frame {i} parsed as {other:?}")),
            Err(e) => return Err(format!("floor: frame {i} does not parse: {e}")),
        }
    }
    let wall = started.elapsed();
    let cpu = match (cpu_before, crate::measure::sample(std::process::id())) {
        (Some(a), Some(b)) => Some(b.cpu.saturating_sub(a.cpu)),
        _ => None,
    };
    Ok(Measurement {
        wall,
        expected: events.len() as u64,
        stored: ok,
        bytes_received: bytes,
        complete: true,
        cpu,
        ..Measurement::default()
    })
}
