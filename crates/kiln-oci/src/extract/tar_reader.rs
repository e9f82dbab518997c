//! A bounded tar reader: USTAR, GNU (`L`/`K` long names) and PAX (`x`, `g`) headers, with a
//! size limit on every extension header and on every entry. The `tar` crate decodes header
//! fields; the sequencing is ours because the crate reads extension headers of any size into
//! memory (a gzip bomb in a PAX header would exhaust it).

use std::io::{self, Read};

/// Tar's block size.
const BLOCK: u64 = 512;

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// A type we do not extract (GNU sparse, volume labels, vendor types).
    Unsupported(u8),
}

/// One entry with extension headers applied.
#[derive(Debug, Clone)]
pub(super) struct RawEntry {
    pub(super) path: Vec<u8>,
    pub(super) link: Vec<u8>,
    pub(super) kind: RawKind,
    pub(super) size: u64,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: i64,
    pub(super) major: u32,
    pub(super) minor: u32,
    pub(super) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why the stream is not a readable tar.
#[derive(Debug)]
pub(super) enum ReadError {
    Io(io::Error),
    Corrupt {
        offset: u64,
        reason: String,
    },
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
}

/// Limits against hostile archives.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReaderLimits {
    pub(super) max_entry_size: u64,
    pub(super) max_extension_size: u64,
}

pub(super) struct TarReader<R: Read> {
    inner: R,
    offset: u64,
    pending_data: u64,
    pending_pad: u64,
    limits: ReaderLimits,
}

#[derive(Default)]
struct Extensions {
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    pax_uid: Option<u64>,
    pax_gid: Option<u64>,
    pax_mtime: Option<i64>,
    gnu_path: Option<Vec<u8>>,
    gnu_link: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    is_sparse: bool,
}

impl<R: Read> TarReader<R> {
    pub(super) fn new(inner: R, limits: ReaderLimits) -> Self {
        Self {
            inner,
            offset: 0,
            pending_data: 0,
            pending_pad: 0,
            limits,
        }
    }

    /// The underlying reader (to drain what follows the end-of-archive marker).
    pub(super) fn into_inner(self) -> R {
        self.inner
    }

    fn skip(&mut self, mut n: u64) -> Result<(), ReadError> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let want = usize::try_from(n.min(buf.len() as u64)).unwrap_or(buf.len());
            let got = read_some(&mut self.inner, &mut buf[..want]).map_err(ReadError::Io)?;
            if got == 0 {
                return Err(self.truncated());
            }
            n -= got as u64;
            self.offset += got as u64;
        }
        Ok(())
    }

    fn truncated(&self) -> ReadError {
        ReadError::Corrupt {
            offset: self.offset,
            reason: "the archive ends in the middle of an entry".to_owned(),
        }
    }

    fn read_block(&mut self) -> Result<Option<[u8; 512]>, ReadError> {
        let mut block = [0u8; 512];
        let mut filled = 0;
        while filled < block.len() {
            let n = read_some(&mut self.inner, &mut block[filled..]).map_err(ReadError::Io)?;
            if n == 0 {
                // A stream that simply stops between entries is accepted (some writers omit
                // the end-of-archive blocks); one that stops inside a header is not.
                return if filled == 0 {
                    Ok(None)
                } else {
                    Err(self.truncated())
                };
            }
            filled += n;
        }
        self.offset += BLOCK;
        Ok(Some(block))
    }

    fn read_extension(&mut self, size: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
        if size > self.limits.max_extension_size {
            return Err(ReadError::TooLarge {
                what,
                size,
                limit: self.limits.max_extension_size,
            });
        }
        let len = usize::try_from(size).map_err(|_| self.truncated())?;
        let mut data = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = read_some(&mut self.inner, &mut data[filled..]).map_err(ReadError::Io)?;
            if n == 0 {
                return Err(self.truncated());
            }
            filled += n;
        }
        self.offset += size;
        self.skip(padding(size))?;
        Ok(data)
    }

    /// The next entry, or `None` at the end-of-archive marker or end of stream. Any unread
    /// content of the previous entry is skipped first.
    pub(super) fn next_entry(&mut self) -> Result<Option<RawEntry>, ReadError> {
        self.skip(self.pending_data + self.pending_pad)?;
        self.pending_data = 0;
        self.pending_pad = 0;
        let mut ext = Extensions::default();
        let mut has_extensions = false;
        loop {
            let header_offset = self.offset;
            let Some(block) = self.read_block()? else {
                return if has_extensions {
                    Err(self.truncated())
                } else {
                    Ok(None)
                };
            };
            if block.iter().all(|&b| b == 0) {
                return if has_extensions {
                    Err(self.truncated())
                } else {
                    Ok(None)
                };
            }
            let corrupt = |reason: HeaderError| ReadError::Corrupt {
                offset: header_offset,
                reason: reason.to_string(),
            };
            let header = tar::Header::from_byte_slice(&block);
            verify_checksum(&block, header).map_err(corrupt)?;
            let size = numeric(header, 124..136, header.entry_size(), "size").map_err(corrupt)?;
            match block[156] {
                b'x' => {
                    let data = self.read_extension(size, "PAX extended header")?;
                    parse_pax(&data, &mut ext).map_err(corrupt)?;
                    has_extensions = true;
                }
                b'g' => {
                    // Global PAX headers carry defaults (comments, charset); nothing we apply.
                    self.read_extension(size, "PAX global header")?;
                }
                b'L' => {
                    let mut name = self.read_extension(size, "GNU long name")?;
                    trim_nuls(&mut name);
                    ext.gnu_path = Some(name);
                    has_extensions = true;
                }
                b'K' => {
                    let mut name = self.read_extension(size, "GNU long link name")?;
                    trim_nuls(&mut name);
                    ext.gnu_link = Some(name);
                    has_extensions = true;
                }
                typeflag => {
                    return self.finish_entry(header, typeflag, size, ext).map(Some);
                }
            }
        }
    }

    fn finish_entry(
        &mut self,
        header: &tar::Header,
        typeflag: u8,
        header_size: u64,
        ext: Extensions,
    ) -> Result<RawEntry, ReadError> {
        let offset = self.offset - BLOCK;
        let corrupt = |reason: HeaderError| ReadError::Corrupt {
            offset,
            reason: reason.to_string(),
        };
        let path = ext
            .pax_path
            .or(ext.gnu_path)
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let link = ext.pax_link.or(ext.gnu_link).unwrap_or_else(|| {
            header
                .link_name_bytes()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default()
        });
        let size = ext.pax_size.unwrap_or(header_size);
        let kind = match typeflag {
            _ if ext.is_sparse => RawKind::Unsupported(b'S'),
            // Pre-POSIX tars mark directories only by the trailing slash.
            0 if path.ends_with(b"/") => RawKind::Dir,
            0 | b'0' | b'7' => RawKind::File,
            b'1' => RawKind::Hardlink,
            b'2' => RawKind::Symlink,
            b'3' => RawKind::CharDevice,
            b'4' => RawKind::BlockDevice,
            b'5' => RawKind::Dir,
            b'6' => RawKind::Fifo,
            other => RawKind::Unsupported(other),
        };
        if size > self.limits.max_entry_size {
            return Err(ReadError::TooLarge {
                what: "entry",
                size,
                limit: self.limits.max_entry_size,
            });
        }
        let mode = numeric(header, 100..108, header.mode(), "mode").map_err(corrupt)?;
        let uid = match ext.pax_uid {
            Some(v) => v,
            None => numeric(header, 108..116, header.uid(), "uid").map_err(corrupt)?,
        };
        let gid = match ext.pax_gid {
            Some(v) => v,
            None => numeric(header, 116..124, header.gid(), "gid").map_err(corrupt)?,
        };
        let mtime = if let Some(v) = ext.pax_mtime {
            v
        } else {
            let t = numeric(header, 136..148, header.mtime(), "mtime").map_err(corrupt)?;
            i64::try_from(t).unwrap_or(i64::MAX)
        };
        let (major, minor) = if matches!(kind, RawKind::CharDevice | RawKind::BlockDevice) {
            let major =
                numeric(header, 329..337, header.device_major(), "devmajor").map_err(corrupt)?;
            let minor =
                numeric(header, 337..345, header.device_minor(), "devminor").map_err(corrupt)?;
            (major.unwrap_or(0), minor.unwrap_or(0))
        } else {
            (0, 0)
        };
        self.pending_data = size;
        self.pending_pad = padding(size);
        Ok(RawEntry {
            path,
            link,
            kind,
            size,
            mode,
            uid,
            gid,
            mtime,
            major,
            minor,
            xattrs: ext.xattrs,
        })
    }

    /// Reads content of the current entry (returns 0 at its end).
    pub(super) fn read_data(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending_data == 0 {
            return Ok(0);
        }
        let want = usize::try_from(self.pending_data.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = read_some(&mut self.inner, &mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends in the middle of an entry's content",
            ));
        }
        self.pending_data -= n as u64;
        self.offset += n as u64;
        Ok(n)
    }
}

fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn trim_nuls(name: &mut Vec<u8>) {
    while name.last() == Some(&0) {
        name.pop();
    }
}

/// What is wrong with a tar header or a PAX record.
#[derive(Debug, thiserror::Error)]
enum HeaderError {
    #[error("bad {field} field: {source}")]
    BadField {
        field: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "header checksum mismatch (stored {stored}, computed {computed}): not a tar archive or corrupt"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("{0}")]
    Pax(&'static str),
    #[error("PAX record `{key}` is not a number")]
    PaxNumber { key: String },
}

fn verify_checksum(block: &[u8; 512], header: &tar::Header) -> Result<(), HeaderError> {
    let expected = header.cksum().map_err(|source| HeaderError::BadField {
        field: "checksum",
        source,
    })?;
    let unsigned: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(b)
            }
        })
        .sum();
    if unsigned == expected {
        Ok(())
    } else {
        Err(HeaderError::Checksum {
            stored: expected,
            computed: unsigned,
        })
    }
}

fn parse_pax(data: &[u8], ext: &mut Extensions) -> Result<(), HeaderError> {
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or(HeaderError::Pax("PAX record without length"))?;
        let len: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(HeaderError::Pax("PAX record with a bad length"))?;
        if len <= space + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(HeaderError::Pax(
                "PAX record length does not match its content",
            ));
        }
        let record = &rest[space + 1..len - 1];
        rest = &rest[len..];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or(HeaderError::Pax("PAX record without `=`"))?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let number = |v: &[u8]| -> Result<u64, HeaderError> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| HeaderError::PaxNumber {
                    key: String::from_utf8_lossy(key).into_owned(),
                })
        };
        match key {
            b"path" => ext.pax_path = Some(value.to_vec()),
            b"linkpath" => ext.pax_link = Some(value.to_vec()),
            b"size" => ext.pax_size = Some(number(value)?),
            b"uid" => ext.pax_uid = Some(number(value)?),
            b"gid" => ext.pax_gid = Some(number(value)?),
            b"mtime" => {
                // Seconds with an optional fraction, possibly negative.
                let text = std::str::from_utf8(value)
                    .map_err(|_| HeaderError::Pax("PAX mtime is not text"))?;
                let whole = text.split('.').next().unwrap_or("0");
                ext.pax_mtime = Some(
                    whole
                        .parse()
                        .map_err(|_| HeaderError::Pax("PAX mtime is not a number"))?,
                );
            }
            _ if key.starts_with(b"SCHILY.xattr.") => {
                ext.xattrs
                    .push((key[b"SCHILY.xattr.".len()..].to_vec(), value.to_vec()));
            }
            _ if key.starts_with(b"GNU.sparse.") => ext.is_sparse = true,
            _ => {}
        }
    }
    Ok(())
}

/// A numeric header field; an empty one (all NUL or spaces) reads as 0, as Go's
/// `archive/tar` reads it (some writers leave unused fields empty).
fn numeric<T: Default>(
    header: &tar::Header,
    field: std::ops::Range<usize>,
    parsed: io::Result<T>,
    name: &'static str,
) -> Result<T, HeaderError> {
    if header.as_bytes()[field]
        .iter()
        .all(|&b| b == 0 || b == b' ')
    {
        return Ok(T::default());
    }
    parsed.map_err(|source| HeaderError::BadField {
        field: name,
        source,
    })
}
