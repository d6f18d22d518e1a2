//! The engine's sync state as one file in the data directory, replaced
//! atomically (write a temporary file, fsync it, rename over the old one,
//! fsync the directory) so a crash leaves either the old or the new state,
//! never a torn one.
//!
//! A file the engine cannot use (corrupt, or another format version) is
//! moved aside to `sync-state.json.corrupt-<unix-seconds>` before the daemon
//! starts fresh: the next persist would otherwise overwrite the only copy an
//! operator could inspect or repair.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sync_core::state::SyncState;

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

    /// Like [`Self::load`], but a state the engine cannot use is moved aside
    /// ([`Self::quarantine`], logged as an error with both paths) and `None`
    /// returned: the engine starts fresh and the next persist does not
    /// overwrite the only copy. The engine's own parser decides
    /// (`SyncState::from_bytes`, all `Engine::restore` can fail on).
    pub fn load_usable(&self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(bytes) = self.load()? else { return Ok(None) };
        let Err(error) = SyncState::from_bytes(&bytes) else { return Ok(Some(bytes)) };
        let path = self.path.display();
        match self.quarantine() {
            Ok(copy) => {
                tracing::error!(%path, copy = %copy.display(), %error, "sync state file is unusable: moved aside, starting fresh")
            }
            Err(e) => tracing::error!(
                %path,
                %error,
                quarantine_error = %e,
                "sync state file is unusable and could not be moved aside; starting fresh (it will be overwritten)"
            ),
        }
        Ok(None)
    }

    /// Moves the state file to `<path>.corrupt-<unix-seconds>` (never over
    /// an earlier copy) and returns the new path.
    pub fn quarantine(&self) -> std::io::Result<PathBuf> {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let named = |suffix: String| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        let mut dest = named(format!(".corrupt-{ts}"));
        let mut n = 1;
        while dest.exists() {
            dest = named(format!(".corrupt-{ts}-{n}"));
            n += 1;
        }
        fs::rename(&self.path, &dest)?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(dest)
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
        assert_eq!(f.load_usable().unwrap(), None);
        let (one, two) = (state(1), state(2));
        f.store(&one).unwrap();
        f.store(&two).unwrap();
        assert_eq!(f.load().unwrap().as_ref(), Some(&two));
        assert_eq!(f.load_usable().unwrap(), Some(two));
        assert!(!f.path().with_extension("tmp").exists());
    }

    /// A valid state document (`n` trailing spaces make two of them differ).
    fn state(n: usize) -> Vec<u8> {
        let mut bytes = SyncState { version: sync_core::state::STATE_VERSION, ..Default::default() }.to_bytes();
        bytes.extend(std::iter::repeat_n(b' ', n));
        bytes
    }

    #[test]
    fn unusable_state_is_moved_aside_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path());
        for garbage in [&b"{\"version\":1,\"repos\":"[..], b"", br#"{"version":99,"repos":{},"relays":{}}"#] {
            fs::write(f.path(), garbage).unwrap();
            assert_eq!(f.load_usable().unwrap(), None, "an unusable state means a fresh start");
            assert!(!f.path().exists(), "the unusable file is out of the way");
            f.store(&state(1)).unwrap();
            fs::remove_file(f.path()).unwrap();
        }
        let mut copies: Vec<Vec<u8>> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("sync-state.json.corrupt-"))
            .map(|p| fs::read(p).unwrap())
            .collect();
        copies.sort();
        assert_eq!(copies.len(), 3, "one copy each, none overwritten");
        assert!(copies.contains(&b"{\"version\":1,\"repos\":".to_vec()));
    }

    #[test]
    fn quarantine_returns_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::new(dir.path());
        fs::write(f.path(), b"torn").unwrap();
        let copy = f.quarantine().unwrap();
        assert_eq!(fs::read(&copy).unwrap(), b"torn");
        assert!(copy.to_string_lossy().contains("sync-state.json.corrupt-"));
        assert!(!f.path().exists());
    }
}
