//! Content digests of COPY inputs for cache keys, memoized by file identity so an unchanged
//! context is stat-ed, never re-read (DESIGN.md §6: memo keyed by device, inode, size, mtime
//! and ctime).

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_oci::{Digest, Sha256Hasher};

use crate::copy::CopyPlan;
use crate::copy::source::{Entry, EntryKind};

/// Identity of a file's content as far as `stat` can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.dev, self.ino, self.size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.mtime, self.mtime_nsec, self.ctime, self.ctime_nsec] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn decode(bytes: &[u8; STAMP_LEN]) -> Self {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            w
        };
        Self {
            dev: u64::from_le_bytes(word(0)),
            ino: u64::from_le_bytes(word(1)),
            size: u64::from_le_bytes(word(2)),
            mtime: i64::from_le_bytes(word(3)),
            mtime_nsec: i64::from_le_bytes(word(4)),
            ctime: i64::from_le_bytes(word(5)),
            ctime_nsec: i64::from_le_bytes(word(6)),
        }
    }
}

/// The memo's map: stamps are already well-mixed numbers from the kernel and not chosen by
/// an attacker, so a multiply-rotate hash (FxHash's) replaces SipHash, which was a tenth of
/// keying a 20k-file COPY.
type StampMap = HashMap<FileStamp, Known, std::hash::BuildHasherDefault<StampHasher>>;

/// FxHash over the stamp's words.
#[derive(Debug, Default, Clone, Copy)]
struct StampHasher(u64);

impl std::hash::Hasher for StampHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_i64(&mut self, word: i64) {
        self.write_u64(word.cast_unsigned());
    }
}

/// What a loaded memo file holds: its entries, and its bytes, which the entries' copy
/// locations point into (decoded when a COPY asks, not for 20k files on every load).
type Loaded = (StampMap, Vec<u8>);

/// A persistent memo of file content digests.
#[derive(Debug, Default)]
pub(crate) struct HashMemo {
    file: Option<PathBuf>,
    map: Mutex<MemoState>,
}

#[derive(Debug, Default)]
struct MemoState {
    /// Stamp → what is known of that file.
    digests: StampMap,
    /// The loaded memo file's bytes ([`CopyLocation::InFile`] points into them).
    raw: Vec<u8>,
    dirty: bool,
    /// The memo file being read on a thread of its own (see [`HashMemo::load`]); taken
    /// into `digests` by the first use.
    loading: Option<std::thread::JoinHandle<Loaded>>,
}

#[derive(Debug, Clone, Default)]
struct Known {
    sha256: [u8; 32],
    /// Whether this build used or added it.
    used: bool,
    /// Where a COPY last wrote this file's content into a snapshot (`<snapshot>/<path>`,
    /// relative to the store's `snapshots/`): the next COPY of the unchanged file may link it.
    copy: CopyLocation,
}

/// A [`Known::copy`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum CopyLocation {
    /// None known.
    #[default]
    None,
    /// The UTF-8 text at `start..start + len` of the loaded file ([`MemoState::raw`]).
    InFile { start: usize, len: usize },
    /// Set by this build.
    Set(String),
}

impl CopyLocation {
    /// The location's text (`None` for none, or bytes that are not UTF-8).
    fn text<'a>(&'a self, raw: &'a [u8]) -> Option<&'a str> {
        match self {
            Self::None => None,
            Self::InFile { start, len } => raw
                .get(*start..start + len)
                .and_then(|b| std::str::from_utf8(b).ok()),
            Self::Set(text) => Some(text),
        }
    }
}

/// The memo file: `MEMO_MAGIC`, then records of a stamp (seven little-endian 64-bit words),
/// a raw SHA-256, and the length (16 bits) and UTF-8 text of the copy location. Binary
/// because a warm build of a large context loads it whole: 20k entries parse in a few
/// milliseconds, where JSON took 30-40 ms.
const MEMO_MAGIC: &[u8; 8] = b"kilnmem3";
const STAMP_LEN: usize = 7 * 8;
const RECORD_LEN: usize = STAMP_LEN + 32 + 2;
/// Entries kept at most: the ones this build used, then others up to the limit (a cache; an
/// evicted entry only costs re-hashing that file).
const MEMO_MAX_ENTRIES: usize = 200_000;

impl HashMemo {
    /// A memo persisted at `file`, read on a thread of its own while the build plans and
    /// lists its context (a large context's memo takes milliseconds to decode); the first
    /// use waits for it. A damaged file is ignored with a warning, since it only costs
    /// re-hashing.
    pub(crate) fn load(file: impl Into<PathBuf>) -> Self {
        let file = file.into();
        let path = file.clone();
        let read = move || read_memo(&path);
        let ((digests, raw), loading) = match std::thread::Builder::new()
            .name("kiln-memo".into())
            .spawn(read.clone())
        {
            Ok(handle) => (Loaded::default(), Some(handle)),
            Err(_) => (read(), None),
        };
        Self {
            file: Some(file),
            map: Mutex::new(MemoState {
                digests,
                raw,
                dirty: false,
                loading,
            }),
        }
    }

    /// The SHA-256 of a regular file's content, from the memo when its stamp is unchanged.
    pub(crate) fn file_digest(&self, entry: &Entry) -> io::Result<Digest> {
        let hashes = self.files_sha256(std::iter::once(entry))?;
        Ok(Digest::from_sha256_bytes(&hashes[0]))
    }

    /// The raw SHA-256 of every entry's content, in order: known ones from the memo, under
    /// one lock for all of them; the others read and hashed without holding it, then added.
    fn files_sha256<'a>(
        &self,
        entries: impl Iterator<Item = &'a Entry>,
    ) -> io::Result<Vec<[u8; 32]>> {
        let mut hashes = Vec::with_capacity(entries.size_hint().1.unwrap_or(0));
        let mut missing = Vec::new();
        {
            let mut state = self.lock();
            for entry in entries {
                if let Some(known) = state.digests.get_mut(&FileStamp::of(entry)) {
                    known.used = true;
                    hashes.push(known.sha256);
                } else {
                    missing.push((hashes.len(), entry));
                    hashes.push([0; 32]);
                }
            }
        }
        if missing.is_empty() {
            return Ok(hashes);
        }
        let mut found = Vec::with_capacity(missing.len());
        for &(index, entry) in &missing {
            let hash = hash_file(&entry.host_path)?;
            hashes[index] = hash;
            found.push((FileStamp::of(entry), hash));
        }
        let mut state = self.lock();
        for (stamp, sha256) in found {
            state.digests.insert(
                stamp,
                Known {
                    sha256,
                    used: true,
                    copy: CopyLocation::None,
                },
            );
        }
        state.dirty = true;
        Ok(hashes)
    }

    /// Where a COPY last wrote the content of `entry` (relative to the store's
    /// `snapshots/`), if the file is unchanged since.
    pub(crate) fn copy_location(&self, entry: &Entry) -> Option<String> {
        let state = self.lock();
        state
            .digests
            .get(&FileStamp::of(entry))
            .and_then(|k| k.copy.text(&state.raw))
            .map(str::to_owned)
    }

    /// Remembers where a COPY wrote `entry` (see [`HashMemo::copy_location`]).
    pub(crate) fn set_copy_location(&self, entry: &Entry, location: String) {
        let mut guard = self.lock();
        let state = &mut *guard;
        if let Some(known) = state.digests.get_mut(&FileStamp::of(entry))
            && known.copy.text(&state.raw) != Some(location.as_str())
        {
            known.copy = CopyLocation::Set(location);
            state.dirty = true;
        }
    }

    /// Writes the memo back if it gained entries (atomically: temp file + rename).
    pub(crate) fn save(&self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut state = self.lock();
        if !state.dirty {
            return Ok(());
        }
        let _span = tracing::debug_span!("hash_memo_save", entries = state.digests.len()).entered();
        // What this build used first, then the rest while there is room.
        let used = state.digests.iter().filter(|(_, k)| k.used);
        let unused = state.digests.iter().filter(|(_, k)| !k.used);
        let mut bytes =
            Vec::with_capacity(MEMO_MAGIC.len() + state.digests.len() * (RECORD_LEN + 40));
        bytes.extend_from_slice(MEMO_MAGIC);
        for (stamp, known) in used.chain(unused).take(MEMO_MAX_ENTRIES) {
            stamp.encode(&mut bytes);
            bytes.extend_from_slice(&known.sha256);
            // A location too long to record is dropped (the file is copied next time).
            let copy = known.copy.text(&state.raw).unwrap_or("");
            let (len, copy) = u16::try_from(copy.len()).map_or((0, ""), |len| (len, copy));
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(copy.as_bytes());
        }
        if let Some(dir) = file.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        fs_err::write(&tmp, bytes)?;
        fs_err::rename(&tmp, file)?;
        // The JSON memo of kiln before the binary format, superseded now.
        let _ = fs_err::remove_file(file.with_extension("json"));
        state.dirty = false;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoState> {
        let mut state = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(handle) = state.loading.take() {
            // A reader that panicked leaves an empty memo: it only costs re-hashing. Nothing
            // is added before the first lock, so the loaded entries replace an empty map.
            (state.digests, state.raw) = handle.join().unwrap_or_default();
        }
        state
    }
}

/// The entries of the memo file at `file`: empty when it is absent, an older kiln's, or
/// damaged (with a warning).
fn read_memo(file: &Path) -> Loaded {
    let _span = tracing::debug_span!("hash_memo_load").entered();
    match fs_err::read(file) {
        // An older kiln's memo: re-hashing once replaces it.
        Ok(bytes) if bytes.starts_with(b"kilnmem") && !bytes.starts_with(MEMO_MAGIC) => {
            Loaded::default()
        }
        Ok(bytes) => {
            if let Some(map) = decode_memo(&bytes) {
                (map, bytes)
            } else {
                tracing::warn!(path = %file.display(), "ignoring a damaged hash memo (it only costs re-hashing)");
                Loaded::default()
            }
        }
        Err(_) => Loaded::default(),
    }
}

/// The entries of a memo file; `None` when it is not one.
fn decode_memo(bytes: &[u8]) -> Option<StampMap> {
    let mut rest = bytes.strip_prefix(MEMO_MAGIC.as_slice())?;
    let mut map = StampMap::with_capacity_and_hasher(
        rest.len() / (RECORD_LEN + 40),
        std::hash::BuildHasherDefault::default(),
    );
    while !rest.is_empty() {
        let (record, tail) = rest.split_at_checked(RECORD_LEN)?;
        let (stamp, record) = record.split_at(STAMP_LEN);
        let (hash, len) = record.split_at(32);
        let len = usize::from(u16::from_le_bytes(len.try_into().ok()?));
        if tail.len() < len {
            return None;
        }
        let copy = if len == 0 {
            CopyLocation::None
        } else {
            CopyLocation::InFile {
                start: bytes.len() - tail.len(),
                len,
            }
        };
        let tail = &tail[len..];
        map.insert(
            FileStamp::decode(stamp.try_into().ok()?),
            Known {
                sha256: hash.try_into().ok()?,
                used: false,
                copy,
            },
        );
        rest = tail;
    }
    Some(map)
}

/// The SHA-256 of the file's content, as raw bytes.
fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish_bytes())
}

/// The digest of exactly what a COPY writes: for each destination path (sorted) its type,
/// mode, owner, and link target or content digest. Also returns per-file digests keyed by
/// source path, which explain cache misses (`file app/main.py changed`).
pub(crate) fn copy_plan_digest(
    plan: &CopyPlan,
    memo: &HashMemo,
) -> io::Result<(Digest, Vec<(String, Digest)>)> {
    let (digest, files) = copy_plan_digest_listing(plan, memo, usize::MAX)?;
    Ok((digest, files.unwrap_or_default()))
}

/// Per-file content digests by source path.
pub(crate) type FileDigests = Vec<(String, Digest)>;

/// [`copy_plan_digest`], listing the per-file digests only while there are at most
/// `max_listed` files (`None` past that: a large COPY is keyed by its aggregate alone, and
/// its 20k file digests are not worth allocating on every build).
pub(crate) fn copy_plan_digest_listing(
    plan: &CopyPlan,
    memo: &HashMemo,
    max_listed: usize,
) -> io::Result<(Digest, Option<FileDigests>)> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Sha256Hasher::new();
    let hashes = memo.files_sha256(
        plan.items()
            .iter()
            .filter(|i| i.source.kind == EntryKind::File)
            .map(|i| &i.source),
    )?;
    let mut files = (hashes.len() <= max_listed).then(|| Vec::with_capacity(hashes.len()));
    let mut hashes = hashes.into_iter();
    // `sha256:<hex>`, the digest's text, which the key has always hashed.
    let mut text = [0u8; 7 + 64];
    text[..7].copy_from_slice(b"sha256:");
    // Each item's fields, length-prefixed, go to the hasher in one update.
    let mut record = Vec::with_capacity(256);
    let field = |r: &mut Vec<u8>, bytes: &[u8]| {
        r.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        r.extend_from_slice(bytes);
    };
    for item in plan.items() {
        record.clear();
        // The name's bytes, not its escaped text: two names that differ only in bytes that
        // are not UTF-8 get different keys, and UTF-8 names (their own escaped form) keep
        // the keys they always had.
        field(&mut record, &kiln_dockerfile::decode_name(&item.dest));
        let (tag, payload): (u8, &[u8]) = match &item.source.kind {
            EntryKind::Dir => (b'd', &[]),
            EntryKind::Symlink(target) => (b'l', target.as_os_str().as_encoded_bytes()),
            EntryKind::Special => (b's', &[]),
            EntryKind::File => {
                let hash = hashes.next().ok_or_else(|| {
                    io::Error::other("hash memo returned fewer digests than files")
                })?;
                for (i, byte) in hash.iter().enumerate() {
                    text[7 + 2 * i] = HEX[usize::from(byte >> 4)];
                    text[8 + 2 * i] = HEX[usize::from(byte & 0xf)];
                }
                if let Some(files) = &mut files {
                    files.push((item.source_path.clone(), Digest::from_sha256_bytes(&hash)));
                }
                (b'f', &text)
            }
        };
        field(&mut record, &[tag]);
        field(&mut record, &item.mode.to_le_bytes());
        field(&mut record, &item.uid.to_le_bytes());
        field(&mut record, &item.gid.to_le_bytes());
        field(&mut record, payload);
        // Only files that have them add this, so keys of files without stay as they were.
        if !item.source.xattrs.is_empty() {
            field(&mut record, b"x");
            for (name, value) in &item.source.xattrs {
                field(&mut record, name);
                field(&mut record, value);
            }
        }
        hasher.update(&record);
    }
    Ok((hasher.finish(), files))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy::source::SourceTree as _;

    fn entry_of(path: &Path) -> Entry {
        crate::copy::source::ContextTree::new(
            path.parent().unwrap(),
            crate::copy::source::IncludeAll,
        )
        .lookup(path.file_name().unwrap().to_str().unwrap())
        .unwrap()
        .unwrap()
    }

    #[test]
    fn memo_survives_a_save_and_load_and_notices_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        fs_err::write(&file, "hello").unwrap();
        let memo_file = dir.path().join("memo.bin");
        let memo = HashMemo::load(&memo_file);
        let first = memo.file_digest(&entry_of(&file)).unwrap();
        assert_eq!(first, Digest::sha256_of(b"hello"));
        memo.save().unwrap();

        // Loaded again: the digest comes from the file, not from the content.
        let reloaded = HashMemo::load(&memo_file);
        assert_eq!(reloaded.lock().digests.len(), 1);
        let hash = reloaded.lock().digests.values().next().unwrap().sha256;
        assert_eq!(Digest::from_sha256_bytes(&hash), first);
        // A copy location survives a save and load too.
        reloaded.set_copy_location(&entry_of(&file), "abc/data/a.txt".to_owned());
        reloaded.save().unwrap();
        assert_eq!(
            HashMemo::load(&memo_file)
                .copy_location(&entry_of(&file))
                .as_deref(),
            Some("abc/data/a.txt")
        );
        assert_eq!(reloaded.file_digest(&entry_of(&file)).unwrap(), first);
        // A location read from the file (not decoded at load) is written back as it was
        // when the memo is saved for another reason.
        let other = dir.path().join("b.txt");
        fs_err::write(&other, "other").unwrap();
        let third = HashMemo::load(&memo_file);
        third.file_digest(&entry_of(&other)).unwrap();
        third.save().unwrap();
        let fourth = HashMemo::load(&memo_file);
        assert_eq!(fourth.lock().digests.len(), 2);
        assert_eq!(
            fourth.copy_location(&entry_of(&file)).as_deref(),
            Some("abc/data/a.txt")
        );
        assert_eq!(fourth.copy_location(&entry_of(&other)), None);

        // A changed file has a new stamp, so it is hashed again.
        fs_err::write(&file, "hello, world").unwrap();
        assert_eq!(
            reloaded.file_digest(&entry_of(&file)).unwrap(),
            Digest::sha256_of(b"hello, world")
        );
    }

    #[test]
    fn names_that_are_not_utf8_keep_their_bytes_in_the_plan_and_the_key() {
        use std::os::unix::ffi::OsStrExt as _;

        use crate::copy::source::{ContextTree, IncludeAll, host_path};
        use crate::copy::{CopyAttrs, CopyRequest, plan_copy};
        let dir = tempfile::tempdir().unwrap();
        let plan_of = |name: &[u8]| {
            let ctx = dir.path().join(format!("ctx-{}", name.escape_ascii()));
            fs_err::create_dir_all(&ctx).unwrap();
            fs_err::write(ctx.join(std::ffi::OsStr::from_bytes(name)), "same").unwrap();
            let tree = ContextTree::new(&ctx, IncludeAll);
            let request = CopyRequest {
                sources: &["bad*".to_owned()],
                dest: "/x/",
                parents: false,
                exclude: &[],
                attrs: CopyAttrs::default(),
            };
            let plan = plan_copy(&tree, &request, &|_| false).unwrap();
            let item = plan.items().last().unwrap().clone();
            assert!(host_path(&ctx, &item.source_path).is_file());
            let (digest, _) = copy_plan_digest(&plan, &HashMemo::default()).unwrap();
            (
                kiln_dockerfile::decode_name(&item.dest).into_owned(),
                digest,
            )
        };
        let (first_dest, first) = plan_of(b"bad\xff\xfename");
        let (second_dest, second) = plan_of(b"bad\xfe\xffname");
        assert_eq!(first_dest, b"/x/bad\xff\xfename");
        assert_eq!(second_dest, b"/x/bad\xfe\xffname");
        assert_ne!(first, second);
    }

    #[test]
    fn a_damaged_memo_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let memo_file = dir.path().join("memo.bin");
        fs_err::write(&memo_file, b"kilnmem3 and then garbage").unwrap();
        assert!(HashMemo::load(&memo_file).lock().digests.is_empty());
        fs_err::write(&memo_file, br#"{"version":1,"entries":[]}"#).unwrap();
        assert!(HashMemo::load(&memo_file).lock().digests.is_empty());
    }
}
