//! Deterministic tar entry encoding, byte-compatible in spirit with Go's `archive/tar` as
//! Docker and BuildKit use it: USTAR headers, a PAX extended header only when a value does
//! not fit (long or non-ASCII names and link targets, big ids, sizes or times) or when the
//! entry has xattrs (`SCHILY.xattr.*`), PAX records sorted by key, empty user/group names,
//! whole-second mtimes, no atime/ctime, and an end-of-archive of two zero blocks.

use std::io::{self, Read, Write};

/// Tar's block size.
pub(crate) const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_7: u64 = 0o7_777_777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_11: u64 = 0o77_777_777_777;

/// The type of a tar entry with its type-specific data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EntryKind<'a> {
    File { size: u64 },
    Dir,
    Symlink { target: &'a [u8] },
    Hardlink { target: &'a [u8] },
    CharDevice { major: u64, minor: u64 },
    BlockDevice { major: u64, minor: u64 },
    Fifo,
}

/// Metadata of one entry. `path` is relative, without leading `/`; directories get their
/// trailing `/` from the encoder.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryHeader<'a> {
    pub(crate) path: &'a [u8],
    pub(crate) kind: EntryKind<'a>,
    /// Permission bits incl. setuid/setgid/sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) mtime: i64,
    /// Sorted by name.
    pub(crate) xattrs: &'a [(Vec<u8>, Vec<u8>)],
}

/// Counts of what a tar writer produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarSummary {
    /// Entries written, whiteouts included.
    pub entries: u64,
    /// File content bytes written (without headers and padding).
    pub content_bytes: u64,
}

/// Why appending an entry failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// Reading the content failed.
    Read(io::Error),
    /// The content ended before `size` bytes.
    Short { read: u64 },
    /// Writing the output failed.
    Write(io::Error),
    /// A value no header can hold.
    Unencodable(&'static str),
}

/// Streams tar entries into a writer.
pub(crate) struct TarEncoder<W: Write> {
    out: W,
    copy_buf: Vec<u8>,
    pub(crate) summary: TarSummary,
}

const COPY_BUF: usize = 256 * 1024;

impl<W: Write> TarEncoder<W> {
    pub(crate) fn new(out: W) -> Self {
        Self {
            out,
            copy_buf: vec![0; COPY_BUF],
            summary: TarSummary::default(),
        }
    }

    /// Appends one entry; for files, exactly `size` bytes are read from `content`.
    pub(crate) fn append(
        &mut self,
        h: &EntryHeader<'_>,
        content: Option<&mut dyn Read>,
    ) -> Result<(), AppendError> {
        let mut name = h.path.to_vec();
        if matches!(h.kind, EntryKind::Dir) && !name.ends_with(b"/") {
            name.push(b'/');
        }
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut block = [0u8; BLOCK];

        // Name: the name field, else a USTAR prefix/name split, else PAX `path`.
        if name.len() <= NAME_LEN && name.is_ascii() {
            block[..name.len()].copy_from_slice(&name);
        } else if let Some((prefix, rest)) = split_ustar_path(&name) {
            block[..rest.len()].copy_from_slice(rest);
            block[345..345 + prefix.len()].copy_from_slice(prefix);
        } else {
            put_truncated_ascii(&mut block[..NAME_LEN], &name);
            pax.push((b"path".to_vec(), name.clone()));
        }

        let (typeflag, size, link): (u8, u64, &[u8]) = match h.kind {
            EntryKind::File { size } => (b'0', size, b""),
            EntryKind::Dir => (b'5', 0, b""),
            EntryKind::Symlink { target } => (b'2', 0, target),
            EntryKind::Hardlink { target } => (b'1', 0, target),
            EntryKind::CharDevice { .. } => (b'3', 0, b""),
            EntryKind::BlockDevice { .. } => (b'4', 0, b""),
            EntryKind::Fifo => (b'6', 0, b""),
        };
        if link.len() <= NAME_LEN && link.is_ascii() {
            block[157..157 + link.len()].copy_from_slice(link);
        } else {
            put_truncated_ascii(&mut block[157..257], link);
            pax.push((b"linkpath".to_vec(), link.to_vec()));
        }

        put_octal(&mut block[100..108], u64::from(h.mode & 0o7777));
        for (field, value, key) in [(108..116, h.uid, "uid"), (116..124, h.gid, "gid")] {
            if value <= MAX_OCTAL_7 {
                put_octal(&mut block[field], value);
            } else {
                put_octal(&mut block[field], 0);
                pax.push((key.as_bytes().to_vec(), value.to_string().into_bytes()));
            }
        }
        if size <= MAX_OCTAL_11 {
            put_octal(&mut block[124..136], size);
        } else {
            put_octal(&mut block[124..136], 0);
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
        }
        match u64::try_from(h.mtime) {
            Ok(t) if t <= MAX_OCTAL_11 => put_octal(&mut block[136..148], t),
            _ => {
                put_octal(&mut block[136..148], 0);
                pax.push((b"mtime".to_vec(), h.mtime.to_string().into_bytes()));
            }
        }
        block[156] = typeflag;
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        let (major, minor) = match h.kind {
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                (major, minor)
            }
            _ => (0, 0),
        };
        if major > MAX_OCTAL_7 || minor > MAX_OCTAL_7 {
            return Err(AppendError::Unencodable("device number above 2097151"));
        }
        put_octal(&mut block[329..337], major);
        put_octal(&mut block[337..345], minor);
        for (name, value) in h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(name);
            pax.push((key, value.clone()));
        }

        if !pax.is_empty() {
            self.write_pax(&name, pax)?;
        }
        set_checksum(&mut block);
        self.out.write_all(&block).map_err(AppendError::Write)?;
        self.summary.entries += 1;

        if size > 0 {
            let content = content.ok_or(AppendError::Short { read: 0 })?;
            self.copy_exact(content, size)?;
        }
        Ok(())
    }

    fn write_pax(
        &mut self,
        name: &[u8],
        mut records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), AppendError> {
        // Go's archive/tar sorts PAX keys for deterministic output; so do we.
        records.sort();
        let mut data = Vec::new();
        for (key, value) in &records {
            push_pax_record(&mut data, key, value);
        }
        let mut block = [0u8; BLOCK];
        put_truncated_ascii(&mut block[..NAME_LEN], &pax_header_name(name));
        put_octal(&mut block[100..108], 0);
        put_octal(&mut block[108..116], 0);
        put_octal(&mut block[116..124], 0);
        put_octal(&mut block[124..136], data.len() as u64);
        put_octal(&mut block[136..148], 0);
        block[156] = b'x';
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        put_octal(&mut block[329..337], 0);
        put_octal(&mut block[337..345], 0);
        set_checksum(&mut block);
        self.out.write_all(&block).map_err(AppendError::Write)?;
        self.out.write_all(&data).map_err(AppendError::Write)?;
        self.pad(data.len() as u64)
    }

    fn copy_exact(&mut self, content: &mut dyn Read, size: u64) -> Result<(), AppendError> {
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left.min(COPY_BUF as u64)).unwrap_or(COPY_BUF);
            let n = match content.read(&mut self.copy_buf[..want]) {
                Ok(0) => return Err(AppendError::Short { read: size - left }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AppendError::Read(e)),
            };
            self.out
                .write_all(&self.copy_buf[..n])
                .map_err(AppendError::Write)?;
            left -= n as u64;
        }
        self.summary.content_bytes += size;
        self.pad(size)
    }

    fn pad(&mut self, len: u64) -> Result<(), AppendError> {
        let rem = usize::try_from(len % BLOCK as u64).unwrap_or(0);
        if rem != 0 {
            self.out
                .write_all(&[0u8; BLOCK][..BLOCK - rem])
                .map_err(AppendError::Write)?;
        }
        Ok(())
    }

    /// Writes the end-of-archive marker (two zero blocks, as Go's `tar.Writer.Close`).
    pub(crate) fn finish(mut self) -> io::Result<(W, TarSummary)> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok((self.out, self.summary))
    }
}

/// Go's `splitUSTARPath`: a name too long for the name field may be split at a `/` into a
/// ≤155-byte prefix and a ≤100-byte name (ASCII only).
fn split_ustar_path(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_LEN || !name.is_ascii() {
        return None;
    }
    let mut length = name.len();
    if length > PREFIX_LEN + 1 {
        length = PREFIX_LEN + 1;
    } else if name[length - 1] == b'/' {
        length -= 1;
    }
    let i = name[..length].iter().rposition(|&b| b == b'/')?;
    let suffix_len = name.len() - i - 1;
    if i == 0 || suffix_len > NAME_LEN || suffix_len == 0 || i > PREFIX_LEN {
        return None;
    }
    Some((&name[..i], &name[i + 1..]))
}

/// Go's name for a PAX header entry: `dir/PaxHeaders.0/file`.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, file) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut out = dir.to_vec();
    out.extend_from_slice(b"PaxHeaders.0/");
    out.extend_from_slice(file);
    out
}

fn push_pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // "%d %s=%s\n" where the length counts its own digits.
    let base = key.len() + value.len() + 3;
    let mut len = base + decimal_digits(base);
    while len != base + decimal_digits(len) {
        len += 1;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn decimal_digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn put_truncated_ascii(field: &mut [u8], value: &[u8]) {
    let ascii = value
        .iter()
        .copied()
        .filter(u8::is_ascii)
        .filter(|&b| b != 0);
    for (slot, b) in field.iter_mut().zip(ascii) {
        *slot = b;
    }
}

/// Zero-padded octal digits filling the field but its last byte, which stays NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

fn set_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].fill(b' ');
    let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
    put_octal(&mut block[148..155], sum);
    block[155] = b' ';
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(path: &'a [u8], kind: EntryKind<'a>) -> EntryHeader<'a> {
        EntryHeader {
            path,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: &[],
        }
    }

    fn encode(entries: &[(EntryHeader<'_>, &[u8])]) -> Vec<u8> {
        let mut enc = TarEncoder::new(Vec::new());
        for (h, data) in entries {
            let mut r: &[u8] = data;
            enc.append(h, Some(&mut r)).unwrap();
        }
        enc.finish().unwrap().0
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for value_len in [
            0, 1, 80, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 990, 995, 996, 997, 998, 999,
            9990, 9995,
        ] {
            let mut out = Vec::new();
            push_pax_record(&mut out, b"path", &vec![b'a'; value_len]);
            let text = String::from_utf8(out.clone()).unwrap();
            let (len, _) = text.split_once(' ').unwrap();
            assert_eq!(
                len.parse::<usize>().unwrap(),
                out.len(),
                "value length {value_len}"
            );
        }
    }

    #[test]
    fn ustar_split_follows_go() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let (p, n) = split_ustar_path(long.as_bytes()).unwrap();
        assert_eq!(p.len(), 120);
        assert_eq!(n.len(), 50);
        assert!(split_ustar_path(format!("{}/x", "d".repeat(200)).as_bytes()).is_none());
        assert!(split_ustar_path(b"short").is_none());
    }

    #[test]
    fn the_tar_crate_reads_what_we_write() {
        let long_name = format!("deep/{}/file.txt", "n".repeat(180));
        let long_target = "t".repeat(150);
        let xattrs = vec![(
            b"security.capability".to_vec(),
            vec![1, 0, 0, 2, 0, 0x20, 0, 0],
        )];
        let mut with_xattr = header(b"bin/ping", EntryKind::File { size: 5 });
        with_xattr.xattrs = &xattrs;
        let mut big_ids = header(b"ids", EntryKind::File { size: 0 });
        big_ids.uid = 100_000_000;
        big_ids.gid = 3_000_000;
        let bytes = encode(&[
            (header(b"dir", EntryKind::Dir), b""),
            (
                header(long_name.as_bytes(), EntryKind::File { size: 3 }),
                b"abc",
            ),
            (
                header(
                    b"link",
                    EntryKind::Symlink {
                        target: long_target.as_bytes(),
                    },
                ),
                b"",
            ),
            (with_xattr, b"hello"),
            (big_ids, b""),
        ]);
        assert_eq!(bytes.len() % BLOCK, 0);
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let link = entry
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let xattr_count = entry.pax_extensions().unwrap().map_or(0, |p| {
                p.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .key()
                        .unwrap()
                        .starts_with("SCHILY.xattr.")
                })
                .count()
            });
            let uid = entry.header().uid().unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            seen.push((path, link, xattr_count, uid, data));
        }
        assert_eq!(seen[0].0, "dir/");
        assert_eq!(seen[1].0, long_name);
        assert_eq!(seen[1].4, b"abc");
        assert_eq!(seen[2].1.as_deref(), Some(long_target.as_str()));
        assert_eq!(seen[3].2, 1);
        assert_eq!(seen[3].4, b"hello");
        assert_eq!(seen[4].3, 100_000_000);
    }

    #[test]
    fn short_content_is_an_error() {
        let mut enc = TarEncoder::new(Vec::new());
        let mut r: &[u8] = b"ab";
        let err = enc
            .append(&header(b"f", EntryKind::File { size: 5 }), Some(&mut r))
            .unwrap_err();
        assert!(matches!(err, AppendError::Short { read: 2 }));
    }
}
