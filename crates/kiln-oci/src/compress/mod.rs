//! Layer compression: gzip (block-parallel, deterministic), zstd (multithreaded, deterministic)
//! and uncompressed, plus decompression with detection by magic bytes.
//!
//! Determinism is a promise of kiln (same inputs, same digests), so the bytes of a compressed
//! layer never depend on how many threads compressed it:
//! - gzip goes through [`ParallelGzipWriter`]: fixed-size blocks, each deflated independently
//!   (primed with the previous block's last 32 KiB as dictionary, like pigz) and concatenated
//!   into one gzip member. One worker or eight, the same blocks are produced.
//! - zstd always runs in zstdmt mode with at least one worker: zstd's single-threaded mode
//!   (`nbWorkers = 0`) emits other bytes than its multithreaded one (DESIGN.md §4), while all
//!   worker counts ≥ 1 agree.
//!
//! Neighbours: [`crate::LayerWriter`] wraps these encoders with the two digests;
//! [`crate::extract_layer`] uses [`decompress`].

mod gzip;

use std::fmt;
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;

use crate::LayerCompression;

pub use gzip::ParallelGzipWriter;

/// Default gzip level, the one `docker push`, BuildKit and `gzip` use.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// Default zstd level, zstd's own default and BuildKit's.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// gzip (RFC 1952), `level` 0–9.
    Gzip {
        /// Compression level, 0 (store) to 9 (best); 6 is the usual default.
        level: u32,
    },
    /// Zstandard, `level` 1–22 (negative levels are zstd's "fast" modes).
    Zstd {
        /// Compression level; 3 is zstd's default.
        level: i32,
    },
    /// A plain tar.
    None,
}

impl Default for Compression {
    fn default() -> Self {
        Self::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }
}

impl Compression {
    /// gzip at the default level.
    pub fn gzip() -> Self {
        Self::default()
    }

    /// zstd at the default level.
    pub fn zstd() -> Self {
        Self::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
        }
    }

    /// The kind of compression, without its level.
    pub fn kind(self) -> LayerCompression {
        match self {
            Self::Gzip { .. } => LayerCompression::Gzip,
            Self::Zstd { .. } => LayerCompression::Zstd,
            Self::None => LayerCompression::None,
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Detects the compression of a stream from its first (up to 4) bytes.
pub fn detect_compression(prefix: &[u8]) -> LayerCompression {
    if prefix.starts_with(&GZIP_MAGIC) {
        LayerCompression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) {
        LayerCompression::Zstd
    } else {
        LayerCompression::None
    }
}

/// Wraps `reader` in the decoder its magic bytes call for; returns the detected kind.
/// Concatenated gzip members and zstd frames are decoded as one stream.
pub fn decompress<'a, R: Read + Send + 'a>(
    mut reader: R,
) -> io::Result<(LayerCompression, Box<dyn Read + Send + 'a>)> {
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = detect_compression(&prefix[..filled]);
    let whole = io::Cursor::new(prefix).take(filled as u64).chain(reader);
    let decoded: Box<dyn Read + Send + 'a> = match kind {
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(READ_BUFFER, whole),
        )),
        LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        LayerCompression::None => Box::new(whole),
    };
    Ok((kind, decoded))
}

const READ_BUFFER: usize = 128 * 1024;

/// The number of compression threads used when none is given: the machine's parallelism.
pub fn default_threads() -> NonZeroUsize {
    std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
}

/// A compressing writer for any [`Compression`]; [`CompressWriter::finish`] ends the stream.
pub enum CompressWriter<W: Write> {
    /// Block-parallel gzip.
    Gzip(ParallelGzipWriter<W>),
    /// Multithreaded zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// Pass-through.
    None(W),
}

impl<W: Write> fmt::Debug for CompressWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gzip(_) => "CompressWriter::Gzip",
            Self::Zstd(_) => "CompressWriter::Zstd",
            Self::None(_) => "CompressWriter::None",
        })
    }
}

impl<W: Write> CompressWriter<W> {
    /// Starts a compressed stream into `inner` using `threads` workers (gzip and zstd).
    /// The output bytes do not depend on `threads`.
    pub fn new(inner: W, compression: Compression, threads: NonZeroUsize) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip { level } => {
                Self::Gzip(ParallelGzipWriter::new(inner, level, threads)?)
            }
            Compression::Zstd { level } => {
                let mut enc = zstd::stream::write::Encoder::new(inner, level)?;
                // zstdmt with ≥ 1 worker: the bytes are the same for every worker count.
                let workers = u32::try_from(threads.get()).unwrap_or(u32::MAX);
                enc.multithread(workers)?;
                enc.include_checksum(false)?;
                Self::Zstd(enc)
            }
            Compression::None => Self::None(inner),
        })
    }

    /// Ends the stream (trailers, last blocks) and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Self::Gzip(w) => w.finish(),
            Self::Zstd(w) => w.finish(),
            Self::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(w) => w.write(buf),
            Self::Zstd(w) => w.write(buf),
            Self::None(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Self::Gzip(w) => w.write_all(buf),
            Self::Zstd(w) => w.write_all(buf),
            Self::None(w) => w.write_all(buf),
        }
    }

    /// Flushes what is already compressed to the inner writer, without cutting the stream:
    /// a zstd flush would end the current block early and a gzip one would need a flush
    /// marker, so the bytes (and digest) would depend on when callers flush.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Gzip(w) => w.flush(),
            Self::Zstd(w) => w.get_mut().flush(),
            Self::None(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: words with a varying counter.
        let mut out = Vec::with_capacity(len);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!("line {i} of the sample, value {}\n", i * 7919 % 1000).as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn compress(data: &[u8], c: Compression, threads: usize) -> Vec<u8> {
        let mut w =
            CompressWriter::new(Vec::new(), c, NonZeroUsize::new(threads).unwrap()).unwrap();
        for chunk in data.chunks(77_777) {
            w.write_all(chunk).unwrap();
        }
        w.finish().unwrap()
    }

    fn roundtrip(compressed: &[u8]) -> (LayerCompression, Vec<u8>) {
        let (kind, mut r) = decompress(compressed).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (kind, out)
    }

    #[test]
    fn every_compression_round_trips_and_is_detected() {
        let data = sample(3 * 1024 * 1024 + 17);
        for (c, kind) in [
            (Compression::gzip(), LayerCompression::Gzip),
            (Compression::zstd(), LayerCompression::Zstd),
            (Compression::None, LayerCompression::None),
        ] {
            let z = compress(&data, c, 2);
            let (got_kind, back) = roundtrip(&z);
            assert_eq!(got_kind, kind);
            assert!(back == data, "{kind:?} round trip differs");
        }
    }

    #[test]
    fn every_level_round_trips_deterministically() {
        let data = sample(600 * 1024);
        for level in [0, 1, 6, 9] {
            let c = Compression::Gzip { level };
            let z = compress(&data, c, 1);
            assert!(roundtrip(&z).1 == data, "gzip level {level}");
            assert!(
                compress(&data, c, 3) == z,
                "gzip level {level} with 3 threads"
            );
        }
        for level in [1, 3, 19] {
            let z = compress(&data, Compression::Zstd { level }, 1);
            assert!(roundtrip(&z).1 == data, "zstd level {level}");
        }
    }

    #[test]
    fn flushing_never_changes_the_bytes() {
        let data = sample(3 * 1024 * 1024);
        for c in [Compression::gzip(), Compression::zstd()] {
            let plain = compress(&data, c, 2);
            let mut w = CompressWriter::new(Vec::new(), c, NonZeroUsize::new(2).unwrap()).unwrap();
            for chunk in data.chunks(100_003) {
                w.write_all(chunk).unwrap();
                w.flush().unwrap();
            }
            assert!(w.finish().unwrap() == plain, "{c:?}");
        }
    }

    #[test]
    fn empty_input_round_trips() {
        for c in [Compression::gzip(), Compression::zstd(), Compression::None] {
            let z = compress(b"", c, 1);
            assert_eq!(roundtrip(&z).1, b"");
        }
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_thread_count() {
        let data = sample(5 * 1024 * 1024 + 3);
        let one = compress(&data, Compression::gzip(), 1);
        for threads in [2, 3, 4] {
            assert!(
                compress(&data, Compression::gzip(), threads) == one,
                "{threads} threads differ"
            );
        }
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_worker_count() {
        let data = sample(9 * 1024 * 1024 + 5);
        let one = compress(&data, Compression::zstd(), 1);
        assert!(compress(&data, Compression::zstd(), 2) == one);
        assert!(compress(&data, Compression::zstd(), 4) == one);
    }

    fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(&seed.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn incompressible_blocks_are_stored_and_repeated_random_data_still_compresses() {
        let random = random_bytes(2 << 20, 7);
        let z = compress(&random, Compression::gzip(), 2);
        assert!(
            z.len() < random.len() + random.len() / 100,
            "stored, not expanded"
        );
        assert!(roundtrip(&z).1 == random);
        // High byte entropy but a 4 KiB period: the level-1 probes see the repeats.
        let chunk = random_bytes(4096, 11);
        let repeated: Vec<u8> = chunk.iter().copied().cycle().take(2 << 20).collect();
        let z = compress(&repeated, Compression::gzip(), 2);
        assert!(
            z.len() < repeated.len() / 20,
            "compressed to {} bytes",
            z.len()
        );
        assert!(roundtrip(&z).1 == repeated);
    }

    #[test]
    fn gzip_output_is_read_by_flate2s_single_member_decoder() {
        // One member: decoders that stop after the first member still get everything.
        let data = sample(2 * 1024 * 1024);
        let z = compress(&data, Compression::Gzip { level: 1 }, 2);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert!(out == data);
    }
}
