//! Layers compressed in the background, off the build's critical path (DESIGN.md §8:
//! compression is the cold-build bottleneck).
//!
//! A step of a stage in the image commits its layer as a snapshot named by its diffID (one
//! tar + SHA-256 pass, no compression) and hands the layer to the [`Compressor`]. A worker
//! compresses it from the snapshot while the next steps run, at the lowest priority: a RUN's
//! process mostly keeps one core busy, so the layer before it is compressed on the others,
//! and a step that wants every core gets them. The export then asks for
//! each blob ([`Compressor::blob`]): it waits for a layer a worker is compressing, and
//! compresses a layer no worker has reached yet itself, with every core.
//!
//! A build whose image only goes into the local store under its `-t` names
//! ([`Compressor::deferred`]) compresses nothing: as docker's image store keeps layers by
//! diffID, the stored manifest lists the layers it made uncompressed (`…layer.v1.tar`, the
//! digest being the diffID), backed by their snapshots, and `kiln push`/`kiln save` compress
//! them when they send the image (`stored::compress_stored_image`).
//!
//! Compressing from the snapshot is [`commit::ensure_blob`]: it checks that the snapshot still
//! makes the recorded diffID and remembers the blob for later builds. A build that fails or
//! is cancelled drops the layers still queued and stops the one being compressed (their
//! snapshots stay, and a later build compresses them when it needs them).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use kiln_oci::{Compression, Descriptor, DiffId, MediaType};
use kiln_store::Store;

use super::commit;
use super::error::LayerError;
use super::model::{LayerBlob, LayerInfo};

/// Background compression of a build's layers; see the module docs.
pub(crate) struct Compressor {
    shared: Arc<Shared>,
    /// The one worker, started with the first layer. One is enough: it runs on every core
    /// the steps leave idle, and the export takes what it has not reached.
    worker: Mutex<Option<JoinHandle<()>>>,
    /// Nothing is compressed in the background, and the image lists the layers it made
    /// uncompressed ([`Self::descriptor`]).
    defer: bool,
}

struct Shared {
    store: Store,
    compression: Compression,
    epoch: Option<i64>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Set when the compressor is dropped: a compression still running stops.
    abort: AtomicBool,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Arc<Job>>,
    /// Every layer handed over, by diffID (two steps that make the same layer share a job).
    jobs: HashMap<DiffId, Arc<Job>>,
    closed: bool,
}

struct Job {
    layer: LayerInfo,
    state: Mutex<JobState>,
    done: Condvar,
}

enum JobState {
    Queued,
    Running,
    Done(Result<LayerBlob, LayerError>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Compressor {
    /// A compressor writing `compression` blobs into `store` (times clamped to `epoch`).
    pub(crate) fn new(store: Store, compression: Compression, epoch: Option<i64>) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                compression,
                epoch,
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                abort: AtomicBool::new(false),
            }),
            worker: Mutex::new(None),
            defer: false,
        }
    }

    /// A compressor for an image kept in the local store only: layers handed to it are not
    /// compressed, and [`Self::descriptor`] lists a layer without a blob uncompressed.
    pub(crate) fn deferred(mut self) -> Self {
        self.defer = true;
        self
    }

    /// Queues `layer` (committed, blob not yet written) for compression.
    pub(crate) fn submit(&self, layer: &LayerInfo) {
        if self.defer || layer.blob.is_some() {
            return;
        }
        {
            let mut queue = lock(&self.shared.queue);
            if queue.closed || queue.jobs.contains_key(&layer.diff_id) {
                return;
            }
            let job = Arc::new(Job {
                layer: layer.clone(),
                state: Mutex::new(JobState::Queued),
                done: Condvar::new(),
            });
            queue.jobs.insert(layer.diff_id.clone(), Arc::clone(&job));
            queue.pending.push_back(job);
        }
        self.shared.wake.notify_one();
        let mut worker = lock(&self.worker);
        if worker.is_none() {
            let shared = Arc::clone(&self.shared);
            match std::thread::Builder::new()
                .name("kiln-compress".into())
                .spawn(move || shared.work())
            {
                Ok(handle) => *worker = Some(handle),
                // The export compresses what no worker took.
                Err(e) => tracing::warn!("could not start a layer compression thread: {e}"),
            }
        }
    }

    /// The blob of `layer`: the one it has, the one a worker made or is making, or one made
    /// now (on every core) from its snapshot.
    pub(crate) fn blob(&self, layer: &LayerInfo) -> Result<LayerBlob, LayerError> {
        if let Some(blob) = &layer.blob {
            return Ok(blob.clone());
        }
        let job = lock(&self.shared.queue).jobs.get(&layer.diff_id).cloned();
        match job {
            Some(job) => self.shared.finish(&job, true),
            None => self.shared.compress(layer),
        }
    }

    /// The image manifest's descriptor of `layer`: its blob's ([`Self::blob`]), or, when
    /// the compressor defers, the uncompressed tar of its snapshot (digest = diffID, size =
    /// the tar's length as its commit counted it) unless a blob was made for it before. A
    /// layer whose tar length is unknown (a record written before kiln counted it) is
    /// compressed.
    pub(crate) fn descriptor(&self, layer: &LayerInfo) -> Result<Descriptor, LayerError> {
        if self.defer
            && layer.blob.is_none()
            && let Some(size) = layer.tar_size
            && commit::remembered_blob(&self.shared.store, &layer.diff_id, self.shared.compression)
                .is_none()
            && self.shared.store.has_snapshot(&layer.chain)
        {
            return Ok(Descriptor::new(
                MediaType::OciLayerTar,
                layer.diff_id.0.clone(),
                size,
            ));
        }
        self.blob(layer)
            .map(|b| Descriptor::new(b.media_type, b.digest, b.size))
    }
}

impl Shared {
    /// A worker: compresses queued layers until the compressor is dropped.
    fn work(&self) {
        // Niced (and so are the compression threads it starts, which inherit it): the
        // worker takes the cores the build's steps leave idle and yields them back, and
        // runs at full speed once the export waits for it.
        if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
            tracing::debug!("could not lower the compression thread's priority: {e}");
        }
        loop {
            let job = {
                let mut queue = lock(&self.queue);
                loop {
                    if queue.closed {
                        return;
                    }
                    if let Some(job) = queue.pending.pop_front() {
                        break job;
                    }
                    queue = self
                        .wake
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            // A job the export has taken meanwhile is left to it.
            let _ = self.finish(&job, false);
        }
    }

    /// Runs `job` if nobody has started it; otherwise (when `wait`) waits for its result.
    fn finish(&self, job: &Job, wait: bool) -> Result<LayerBlob, LayerError> {
        let mut state = lock(&job.state);
        loop {
            match &*state {
                JobState::Done(result) => return result.clone(),
                JobState::Running if wait => {
                    state = job.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                JobState::Running => return Err(LayerError::Taken),
                JobState::Queued => break,
            }
        }
        *state = JobState::Running;
        drop(state);
        // A panic must still finish the job: the export waits for it.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.compress(&job.layer)))
                .unwrap_or_else(|_| {
                    Err(LayerError::CompressionPanicked(job.layer.diff_id.clone()))
                });
        *lock(&job.state) = JobState::Done(result.clone());
        job.done.notify_all();
        result
    }

    /// Compresses `layer` from its snapshot (on every core).
    fn compress(&self, layer: &LayerInfo) -> Result<LayerBlob, LayerError> {
        let _span = tracing::debug_span!("compress_layer", diff_id = %layer.diff_id).entered();
        commit::ensure_blob(
            &self.store,
            self.compression,
            self.epoch,
            layer,
            &self.abort,
        )
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        // After a successful export nothing is left to compress; after a failed or cancelled
        // build what is left is dropped (the snapshots stay for a later build).
        lock(&self.shared.queue).closed = true;
        self.shared.abort.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {

    use std::path::Path;

    use super::*;

    fn store(dir: &Path) -> Store {
        Store::open(dir.join("store")).unwrap()
    }

    /// A committed layer (snapshot and diffID, no blob) of a directory holding `name`.
    fn layer(store: &Store, dir: &Path, name: &str, content: &[u8]) -> LayerInfo {
        let staged = dir.join(format!("staged-{name}"));
        fs_err::create_dir_all(&staged).unwrap();
        fs_err::write(staged.join(name), content).unwrap();
        commit::commit_snapshot(store, None, &staged, None).unwrap()
    }

    #[test]
    fn a_queued_layer_is_compressed_once_and_the_export_gets_that_blob() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        let layer = layer(&store, tmp.path(), "a", b"aaaa");
        assert!(layer.blob.is_none());
        let compressor = Compressor::new(store.clone(), Compression::Gzip { level: 6 }, None);
        compressor.submit(&layer);
        compressor.submit(&layer);
        let blob = compressor.blob(&layer).unwrap();
        assert_eq!(compressor.blob(&layer).unwrap(), blob);
        assert!(store.has_blob(&blob.digest));
        // The blob is what compressing the same layer directly makes (in another store,
        // which remembers no blob for it).
        let other_dir = tmp.path().join("other");
        fs_err::create_dir_all(&other_dir).unwrap();
        let other = self::store(&other_dir);
        let same = self::layer(&other, &other_dir, "a", b"aaaa");
        let direct = commit::ensure_blob(
            &other,
            Compression::Gzip { level: 6 },
            None,
            &same,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(direct, blob);
        assert_eq!(lock(&compressor.shared.queue).jobs.len(), 1);
    }

    #[test]
    fn the_export_compresses_a_layer_no_worker_has_reached() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        let first = layer(&store, tmp.path(), "first", &vec![7; 1 << 16]);
        let second = layer(&store, tmp.path(), "second", b"2");
        let compressor = Compressor::new(store.clone(), Compression::Gzip { level: 6 }, None);
        // With the worker's queue closed, nothing but `blob` can compress them.
        lock(&compressor.shared.queue).closed = true;
        let job = |layer: &LayerInfo| {
            let job = Arc::new(Job {
                layer: layer.clone(),
                state: Mutex::new(JobState::Queued),
                done: Condvar::new(),
            });
            lock(&compressor.shared.queue)
                .jobs
                .insert(layer.diff_id.clone(), job);
        };
        job(&first);
        job(&second);
        for layer in [&second, &first] {
            let blob = compressor.blob(layer).unwrap();
            assert!(store.has_blob(&blob.digest), "{layer:?}");
        }
    }

    #[test]
    fn a_layer_whose_snapshot_is_gone_fails_the_export_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        let layer = layer(&store, tmp.path(), "gone", b"x");
        fs_err::remove_dir_all(store.snapshot_path(&layer.chain)).unwrap();
        let compressor = Compressor::new(store, Compression::Gzip { level: 6 }, None);
        compressor.submit(&layer);
        let err = compressor.blob(&layer).unwrap_err().to_string();
        assert!(err.contains(&layer.diff_id.to_string()), "{err}");
        assert!(err.contains("--no-cache"), "{err}");
    }

    #[test]
    fn dropping_the_compressor_stops_the_compression_it_is_running() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path());
        // 24 MiB that gzip -9 takes well over a second to compress in a test build.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..24 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect();
        let big = layer(&store, tmp.path(), "big", &noise);
        let queued = layer(&store, tmp.path(), "queued", b"never compressed");
        let compressor = Compressor::new(store.clone(), Compression::Gzip { level: 9 }, None);
        compressor.submit(&big);
        compressor.submit(&queued);
        let job = lock(&compressor.shared.queue).jobs[&big.diff_id].clone();
        while matches!(*lock(&job.state), JobState::Queued) {
            std::thread::yield_now();
        }
        drop(compressor);
        // The running job stopped before writing its blob, and the queued one never ran.
        assert!(
            matches!(&*lock(&job.state), JobState::Done(Err(e)) if e.to_string().contains("ended")),
            "the compression ran to its end"
        );
        let compression = Compression::Gzip { level: 9 };
        assert!(commit::remembered_blob(&store, &big.diff_id, compression).is_none());
        assert!(commit::remembered_blob(&store, &queued.diff_id, compression).is_none());
        let leftovers: Vec<_> = fs_err::read_dir(store.root().join("tmp"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("ingest"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
