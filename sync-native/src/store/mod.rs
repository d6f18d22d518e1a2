//! The daemon's [`sync_core::EventStore`] implementations: the embedded LMDB
//! store (default) and a downstream relay written to over WebSocket.

pub mod lmdb;
pub mod relay;
pub mod state_file;

pub use lmdb::LmdbStore;
pub use relay::RelayStore;

/// A store that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// LMDB refused to open.
    #[error("cannot open LMDB database in {path}: {source}")]
    Lmdb {
        /// The directory.
        path: String,
        /// Why.
        source: nostr_database::DatabaseError,
    },
}
