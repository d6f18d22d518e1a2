//! A NIP-77 client session over the `negentropy` crate.
//!
//! We are always the initiator: our stored items for the filter go in, the
//! relay's NEG-MSG answers come back, and the ids we *need* accumulate for
//! fetching with `REQ {ids}`. Ids we *have* and the relay lacks are ignored:
//! sync is pull-only.

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::EventId;

use crate::runtime::NegentropyItem;

/// A negentropy reconciliation in progress.
pub struct NegSession {
    neg: Negentropy<'static, NegentropyStorageVector>,
    /// Rounds completed.
    pub rounds: u32,
    /// Ids the relay's messages reported so far (have + need): bounded by
    /// the engine, because a lying relay can report endless ones.
    pub ids: usize,
}

impl core::fmt::Debug for NegSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("NegSession").field("rounds", &self.rounds).finish()
    }
}

/// Negentropy failed (bad hex, protocol violation from the relay).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("negentropy: {0}")]
pub struct NegError(pub String);

/// What a relay message produced.
#[derive(Debug, PartialEq, Eq)]
pub enum NegStep {
    /// Send this NEG-MSG (hex) and wait for the answer.
    Continue(String),
    /// Reconciliation finished.
    Done,
}

impl NegSession {
    /// Builds the session from our items; returns it and the NEG-OPEN message (hex).
    pub fn open(items: &[NegentropyItem], frame_limit: u64) -> Result<(Self, String), NegError> {
        let mut storage = NegentropyStorageVector::with_capacity(items.len());
        for (id, created_at) in items {
            storage.insert(created_at.as_secs(), Id::from_byte_array(id.to_bytes())).map_err(err)?;
        }
        storage.seal().map_err(err)?;
        let mut neg = Negentropy::owned(storage, frame_limit).map_err(err)?;
        let init = neg.initiate().map_err(err)?;
        Ok((Self { neg, rounds: 0, ids: 0 }, hex_encode(&init)))
    }

    /// Handles one NEG-MSG from the relay; needed ids are appended to `need`.
    pub fn on_message(&mut self, hex: &str, need: &mut Vec<EventId>) -> Result<NegStep, NegError> {
        let bytes = hex_decode(hex).ok_or_else(|| NegError("NEG-MSG is not valid hex".into()))?;
        let mut have_ids = Vec::new();
        let mut need_ids = Vec::new();
        let out = self.neg.reconcile_with_ids(&bytes, &mut have_ids, &mut need_ids).map_err(err)?;
        self.rounds += 1;
        self.ids += have_ids.len() + need_ids.len();
        need.extend(need_ids.into_iter().map(|id| EventId::from_byte_array(id.to_bytes())));
        Ok(match out {
            Some(msg) => NegStep::Continue(hex_encode(&msg)),
            None => NegStep::Done,
        })
    }
}

pub(crate) fn err(e: impl core::fmt::Display) -> NegError {
    NegError(e.to_string())
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes().chunks(2).map(|p| Some(val(p[0])? << 4 | val(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::NegResponder;
    use nostr::Timestamp;

    fn item(b: u8, t: u64) -> NegentropyItem {
        (EventId::from_byte_array([b; 32]), Timestamp::from(t))
    }

    #[test]
    fn client_learns_exactly_the_ids_it_lacks() {
        let ours: Vec<_> = (0..50u8).map(|b| item(b, 1000 + b as u64)).collect();
        let theirs: Vec<_> = (25..120u8).map(|b| item(b, 1000 + b as u64)).collect();
        let (mut client, mut msg) = NegSession::open(&ours, 60_000).unwrap();
        let mut server = NegResponder::new(&theirs, 60_000).unwrap();
        let mut need = Vec::new();
        loop {
            let answer = server.reconcile(&msg).unwrap();
            match client.on_message(&answer, &mut need).unwrap() {
                NegStep::Continue(m) => msg = m,
                NegStep::Done => break,
            }
        }
        need.sort();
        let expected: Vec<EventId> = (50..120u8).map(|b| EventId::from_byte_array([b; 32])).collect();
        assert_eq!(need, expected);
    }

    #[test]
    fn garbage_from_relay_is_an_error_not_a_panic() {
        let (mut client, _) = NegSession::open(&[], 60_000).unwrap();
        let mut need = Vec::new();
        assert!(client.on_message("zz", &mut need).is_err());
        assert!(client.on_message("abc", &mut need).is_err());
        assert!(client.on_message("ffffffff", &mut need).is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_decode(&hex_encode(&[0, 1, 254, 255])).unwrap(), vec![0, 1, 254, 255]);
    }
}
