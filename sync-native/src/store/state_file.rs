//! The engine's sync state as one file in the data directory, replaced
//! atomically (write a temporary file, fsync it, rename over the old one,
//! fsync the directory) so a crash leaves either the old or the new state,
//! never a torn one.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// File name of the persisted sync state inside the data directory.
pub const STATE_FILE: &str = "sync-state.json";

/// Reads and atomically replaces the sync-state file.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file inside `dir`.
    pub fn new(dir: &Path) -> Self {
        Self { path: dir.join(STATE_FILE) }
    }

    /// Its path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored bytes, or `None` when no state was written yet.
    pub fn load(&self) -> std::io::Result<Option<Vec<u8>>> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the state durably and atomically.
    pub fn store(&self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // Makes the rename itself durable.
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_then_written_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path());
        assert_eq!(f.load().unwrap(), None);
        f.store(b"one").unwrap();
        f.store(b"two").unwrap();
        assert_eq!(f.load().unwrap().as_deref(), Some(&b"two"[..]));
        assert!(!f.path().with_extension("tmp").exists());
    }
}
