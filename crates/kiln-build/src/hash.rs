//! Content digests of COPY inputs for cache keys, memoized by file identity so an unchanged
//! context is stat-ed, never re-read (DESIGN.md §6: memo keyed by device, inode, size, mtime
//! and ctime).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_oci::{Digest, Sha256Hasher};
use serde::{Deserialize, Serialize};

use crate::copy::CopyPlan;
use crate::tree::{Entry, EntryKind};

/// Identity of a file's content as far as `stat` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl FileStamp {
    fn of(e: &Entry) -> Self {
        Self {
            dev: e.dev,
            ino: e.ino,
            size: e.size,
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            ctime: e.ctime,
            ctime_nsec: e.ctime_nsec,
        }
    }
}

/// A persistent memo of file content digests.
#[derive(Debug, Default)]
pub struct HashMemo {
    file: Option<PathBuf>,
    map: Mutex<MemoState>,
}

#[derive(Debug, Default)]
struct MemoState {
    digests: HashMap<FileStamp, Digest>,
    dirty: bool,
}

#[derive(Serialize, Deserialize)]
struct MemoFile {
    version: u32,
    entries: Vec<(FileStamp, Digest)>,
}

const MEMO_VERSION: u32 = 1;
/// Entries kept at most; the memo is a cache, an overflow just starts afresh.
const MEMO_MAX_ENTRIES: usize = 500_000;

impl HashMemo {
    /// An in-memory memo.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A memo persisted at `file` (loaded now if present; a damaged file is ignored with a
    /// warning, since it only costs re-hashing).
    pub fn load(file: impl Into<PathBuf>) -> Self {
        let file = file.into();
        let _span = tracing::debug_span!("hash_memo_load").entered();
        let digests = match fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<MemoFile>(&bytes) {
                Ok(m) if m.version == MEMO_VERSION => m.entries.into_iter().collect(),
                Ok(_) => HashMap::new(),
                Err(e) => {
                    tracing::warn!(path = %file.display(), "ignoring unreadable hash memo: {e}");
                    HashMap::new()
                }
            },
            Err(_) => HashMap::new(),
        };
        Self {
            file: Some(file),
            map: Mutex::new(MemoState {
                digests,
                dirty: false,
            }),
        }
    }

    /// The SHA-256 of a regular file's content, from the memo when its stamp is unchanged.
    pub fn file_digest(&self, entry: &Entry) -> io::Result<Digest> {
        let stamp = FileStamp::of(entry);
        if let Some(d) = self.lock().digests.get(&stamp) {
            return Ok(d.clone());
        }
        let digest = hash_file(&entry.host_path)?;
        let mut state = self.lock();
        if state.digests.len() >= MEMO_MAX_ENTRIES {
            state.digests.clear();
        }
        state.digests.insert(stamp, digest.clone());
        state.dirty = true;
        Ok(digest)
    }

    /// Writes the memo back if it changed (atomically: temp file + rename).
    pub fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut state = self.lock();
        if !state.dirty {
            return Ok(());
        }
        let _span = tracing::debug_span!("hash_memo_save", entries = state.digests.len()).entered();
        let memo = MemoFile {
            version: MEMO_VERSION,
            entries: state.digests.iter().map(|(s, d)| (*s, d.clone())).collect(),
        };
        let bytes = serde_json::to_vec(&memo).map_err(io::Error::other)?;
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, file)?;
        state.dirty = false;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoState> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn hash_file(path: &Path) -> io::Result<Digest> {
    let mut file = fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
    let mut hasher = Sha256Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// The digest of exactly what a COPY writes: for each destination path (sorted) its type,
/// mode, owner, and link target or content digest. Also returns per-file digests keyed by
/// source path, which explain cache misses (`file app/main.py changed`).
pub fn copy_plan_digest(
    plan: &CopyPlan,
    memo: &HashMemo,
) -> io::Result<(Digest, Vec<(String, Digest)>)> {
    let mut hasher = Sha256Hasher::new();
    let mut files = Vec::new();
    let field = |h: &mut Sha256Hasher, bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (dest, item) in &plan.items {
        field(&mut hasher, dest.as_bytes());
        let (tag, payload) = match &item.source.kind {
            EntryKind::Dir => (b'd', Vec::new()),
            EntryKind::Symlink(target) => (b'l', target.as_os_str().as_encoded_bytes().to_vec()),
            EntryKind::Special => (b's', Vec::new()),
            EntryKind::File => {
                let d = memo.file_digest(&item.source)?;
                let bytes = d.to_string().into_bytes();
                files.push((item.source_path.clone(), d));
                (b'f', bytes)
            }
        };
        field(&mut hasher, &[tag]);
        field(&mut hasher, &item.mode.to_le_bytes());
        field(&mut hasher, &item.uid.to_le_bytes());
        field(&mut hasher, &item.gid.to_le_bytes());
        field(&mut hasher, &payload);
    }
    Ok((hasher.finish(), files))
}
