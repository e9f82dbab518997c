//! A block-parallel, deterministic gzip encoder (the pigz scheme on flate2's zlib-rs backend).
//!
//! The input is cut into fixed [`BLOCK_SIZE`] blocks. Each block is raw-deflated on its own,
//! primed with the last 32 KiB of the previous block as preset dictionary, and ends with a
//! sync flush (byte-aligned, not final) — except the last block, which ends the deflate stream.
//! Concatenated, the blocks form one valid deflate stream inside one gzip member whose CRC-32
//! is computed over the input on the caller's thread. Block boundaries and dictionaries depend
//! only on the input, never on which worker compressed a block or how many workers there are,
//! so the output bytes are the same for 1 or N threads.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

/// Size of the independently compressed blocks. Part of the output format: changing it
/// changes every gzip layer digest kiln produces.
pub(crate) const BLOCK_SIZE: usize = 256 * 1024;
/// Deflate's window: the dictionary carried from one block into the next.
const DICT_SIZE: usize = 32 * 1024;
/// gzip header: magic, CM=deflate, no flags, MTIME=0, XFL=0, OS=255 (unknown) — the header
/// Go's `compress/gzip` writes, so nothing host-specific leaks into the digest.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    seq: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
    is_last: bool,
}

type JobResult = (u64, io::Result<Vec<u8>>);

/// A gzip writer compressing fixed blocks on `threads` worker threads; the bytes written to
/// the inner writer do not depend on the thread count. Call [`ParallelGzipWriter::finish`]:
/// dropping the writer abandons the stream.
///
/// `flush` only passes on complete blocks; a partial block stays buffered, because cutting
/// it early would change the output.
pub struct ParallelGzipWriter<W: Write> {
    inner: W,
    block: Vec<u8>,
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    total_in: u64,
    next_submit: u64,
    next_write: u64,
    finished_blocks: BTreeMap<u64, Vec<u8>>,
    jobs: Option<mpsc::Sender<Job>>,
    results: mpsc::Receiver<JobResult>,
    workers: Vec<JoinHandle<()>>,
    max_in_flight: u64,
}

impl<W: Write> fmt::Debug for ParallelGzipWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelGzipWriter")
            .field("workers", &self.workers.len())
            .field("total_in", &self.total_in)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ParallelGzipWriter<W> {
    /// Starts a gzip stream at `level` (0–9, clamped) into `inner`, with `threads` workers.
    pub fn new(mut inner: W, level: u32, threads: NonZeroUsize) -> io::Result<Self> {
        let level = flate2::Compression::new(level.min(9));
        inner.write_all(&GZIP_HEADER)?;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (result_tx, result_rx) = mpsc::channel::<JobResult>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let mut workers = Vec::with_capacity(threads.get());
        for i in 0..threads.get() {
            let job_rx = Arc::clone(&job_rx);
            let result_tx = result_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("kiln-gzip-{i}"))
                .spawn(move || run_worker(&job_rx, &result_tx, level))?;
            workers.push(handle);
        }
        Ok(Self {
            inner,
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            next_submit: 0,
            next_write: 0,
            finished_blocks: BTreeMap::new(),
            jobs: Some(job_tx),
            results: result_rx,
            workers,
            max_in_flight: 2 * threads.get() as u64 + 1,
        })
    }

    fn submit(&mut self, is_last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let next_dict = data[data.len().saturating_sub(DICT_SIZE)..].to_vec();
        let dict = std::mem::replace(&mut self.dict, next_dict);
        let job = Job {
            seq: self.next_submit,
            dict,
            data,
            is_last,
        };
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(worker_gone)?;
        self.next_submit += 1;
        // Bound memory: at most `max_in_flight` blocks between input and output.
        while self.next_submit - self.next_write >= self.max_in_flight {
            self.receive_one()?;
        }
        while let Ok(result) = self.results.try_recv() {
            self.accept(result)?;
        }
        Ok(())
    }

    fn receive_one(&mut self) -> io::Result<()> {
        let result = self.results.recv().map_err(|_| worker_gone())?;
        self.accept(result)
    }

    fn accept(&mut self, (seq, result): JobResult) -> io::Result<()> {
        self.finished_blocks.insert(seq, result?);
        while let Some(bytes) = self.finished_blocks.remove(&self.next_write) {
            self.inner.write_all(&bytes)?;
            self.next_write += 1;
        }
        Ok(())
    }

    /// Compresses the rest, writes the gzip trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.next_write < self.next_submit {
            self.receive_one()?;
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            worker
                .join()
                .map_err(|_| io::Error::other("a gzip worker thread panicked"))?;
        }
        let crc = std::mem::take(&mut self.crc).finalize();
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        let isize = u32::try_from(self.total_in & u64::from(u32::MAX)).unwrap_or(0);
        self.inner.write_all(&crc.to_le_bytes())?;
        self.inner.write_all(&isize.to_le_bytes())?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

fn worker_gone() -> io::Error {
    io::Error::other("a gzip worker thread stopped unexpectedly")
}

fn run_worker(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    results: &mpsc::Sender<JobResult>,
    level: flate2::Compression,
) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A fresh compressor per block: a reset zlib-rs stream does not reproduce a fresh one's
        // bytes, and block output must not depend on what the worker compressed before.
        // A panic must still answer for its block, or the writer would wait for it forever.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let block_level = if level.level() > 0 && looks_incompressible(&job.data) {
                flate2::Compression::none()
            } else {
                level
            };
            deflate_block(&mut Compress::new(block_level, false), &job)
        }))
        .unwrap_or_else(|_| Err(io::Error::other("a gzip worker thread panicked")));
        if results.send((job.seq, out)).is_err() {
            return;
        }
    }
}

/// Samples probed by [`looks_incompressible`], and their size.
const PROBES: usize = 3;
const PROBE_SIZE: usize = 8 * 1024;
/// A probe compressing to more than this fraction (in 1/1000) counts as incompressible.
const INCOMPRESSIBLE_PER_MILLE: usize = 985;

/// Whether a block is already-compressed data (archives, images, random bytes), judged from
/// the block alone so the decision is the same on every run: a byte histogram first (text
/// and code use few distinct bytes), then three 8 KiB probes deflated at level 1. Such
/// blocks are stored instead of searched for matches at the chosen level, which costs the
/// most time and saves nothing (pigz and zstd skip incompressible input the same way).
fn looks_incompressible(data: &[u8]) -> bool {
    if data.len() < PROBES * PROBE_SIZE {
        return false;
    }
    let mut seen = [false; 256];
    for &b in &data[..PROBE_SIZE] {
        seen[usize::from(b)] = true;
    }
    if seen.iter().filter(|&&s| s).count() < 200 {
        return false;
    }
    let step = (data.len() - PROBE_SIZE) / (PROBES - 1);
    let mut packed = 0;
    let mut out = Vec::with_capacity(PROBE_SIZE + 1024);
    for i in 0..PROBES {
        let probe = &data[i * step..i * step + PROBE_SIZE];
        let mut c = Compress::new(flate2::Compression::fast(), false);
        out.clear();
        if c.compress_vec(probe, &mut out, FlushCompress::Finish)
            .is_err()
        {
            return false;
        }
        packed += out.len();
    }
    packed * 1000 > PROBES * PROBE_SIZE * INCOMPRESSIBLE_PER_MILLE
}

fn deflate_block(c: &mut Compress, job: &Job) -> io::Result<Vec<u8>> {
    if !job.dict.is_empty() {
        c.set_dictionary(&job.dict).map_err(io::Error::other)?;
    }
    let flush = if job.is_last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() + job.data.len() / 16 + 1024);
    let start = c.total_in();
    loop {
        let consumed = usize::try_from(c.total_in() - start).map_err(io::Error::other)?;
        let status = c
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = usize::try_from(c.total_in() - start).map_err(io::Error::other)?;
        let is_done = consumed == job.data.len()
            && if job.is_last {
                status == Status::StreamEnd
            } else {
                // zlib: a flush is complete when it returns with output space left.
                out.len() < out.capacity()
            };
        if is_done {
            return Ok(out);
        }
        out.reserve(64 * 1024);
    }
}

impl<W: Write> Write for ParallelGzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.total_in += n as u64;
        if self.block.len() == BLOCK_SIZE {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        while let Ok(result) = self.results.try_recv() {
            self.accept(result)?;
        }
        self.inner.flush()
    }
}
