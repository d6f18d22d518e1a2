//! The relay side of NIP-77 negentropy, for the relays of tests, the
//! simulation and fuzzing (the engine itself is only ever the client).

use negentropy::{Id, Negentropy, NegentropyStorageVector};

use crate::historic::negentropy::{err, hex_decode, hex_encode, NegError};
use crate::runtime::NegentropyItem;

/// The relay side of a negentropy session, for scripted and simulated
/// relays: answers each client message.
pub struct NegResponder {
    neg: Negentropy<'static, NegentropyStorageVector>,
}

impl NegResponder {
    /// A responder over the relay's items for the filter.
    pub fn new(items: &[NegentropyItem], frame_limit: u64) -> Result<Self, NegError> {
        let mut storage = NegentropyStorageVector::with_capacity(items.len());
        for (id, created_at) in items {
            storage.insert(created_at.as_secs(), Id::from_byte_array(id.to_bytes())).map_err(err)?;
        }
        storage.seal().map_err(err)?;
        Ok(Self { neg: Negentropy::owned(storage, frame_limit).map_err(err)? })
    }

    /// Answers one client message (hex in, hex out).
    pub fn reconcile(&mut self, hex: &str) -> Result<String, NegError> {
        let bytes = hex_decode(hex).ok_or_else(|| NegError("NEG-MSG is not valid hex".into()))?;
        Ok(hex_encode(&self.neg.reconcile(&bytes).map_err(err)?))
    }
}
