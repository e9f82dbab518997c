//! The driver's cache behaviour against in-memory fakes of its seams: no root, no sandbox,
//! no store on disk. Each test builds a Dockerfile once or more on the same fake "machine"
//! (its records, snapshots and history persist between builds, like a store) and reads what
//! the driver decided from its events.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kiln_oci::{ChainId, DiffId, Digest, ImageConfiguration, ImageRef, Platform};
use kiln_plan::{Action, CacheKey, KeyInputs, PlanOptions, SourceRef, StageId, Step};

use super::cache_format::{CacheRecords, ExportedLayer, ExportedRecord};
use super::cache_import::{BlobFetcher, CacheImportError, ImportedCache, LayeredResults};
use super::driver::{Driver, DriverOptions};
use super::error::{BaseError, BuildError, StepError};
use super::lazy::{LayerStore, LazyLayers, RoundError, with_fallback};
use super::model::{
    BaseImage, CacheRecord, FoundRecord, LayerBlob, LayerInfo, NamedSource, RanStep, RecordLayer,
    RecordOrigin, StepContext,
};
use super::seams::{BaseResolver, ResultStore, StepExecutor};
use crate::event::Event;
use crate::scheduler::CancelToken;

mod cache_from;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs steps by pretending: a COPY from the context "reads" [`FakeExecutor::files`], a RUN
/// does what its command's words say (`fail`, `nothing`, `wait-for-peer`,
/// `wait-for-cancel`), and every step that ran is noted in [`FakeExecutor::ran`].
#[derive(Default)]
struct FakeExecutor {
    /// The build context: path → content.
    files: Mutex<BTreeMap<String, String>>,
    /// The labels of the steps that ran, in order.
    ran: Mutex<Vec<String>>,
    /// How many `wait-for-peer` steps have arrived.
    peers: Mutex<usize>,
    arrived: Condvar,
    /// The build's imported layers: a step that runs needs the files of the layers below
    /// it (and of a stage it copies from), as the real executor does.
    lazy: Mutex<Option<Arc<LazyLayers>>>,
}

impl FakeExecutor {
    fn with_files(files: &[(&str, &str)]) -> Self {
        let executor = Self::default();
        for (path, content) in files {
            executor.write(path, content);
        }
        executor
    }

    fn write(&self, path: &str, content: &str) {
        lock(&self.files).insert((*path).to_owned(), (*content).to_owned());
    }

    fn ran(&self) -> Vec<String> {
        lock(&self.ran).clone()
    }

    fn command(step: &Step) -> String {
        match &step.action {
            Action::Run(run) => run.argv.join(" "),
            _ => String::new(),
        }
    }

    /// Waits until two `wait-for-peer` steps have arrived; an error if the other never does
    /// (the stages ran one after the other).
    fn meet_peer(&self) -> Result<(), StepError> {
        let mut peers = lock(&self.peers);
        *peers += 1;
        self.arrived.notify_all();
        let deadline = Instant::now() + Duration::from_secs(10);
        while *peers < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StepError::RunFailed {
                    command: "wait-for-peer".to_owned(),
                    status: "the other stage never ran alongside".to_owned(),
                    tail: String::new(),
                });
            }
            peers = self
                .arrived
                .wait_timeout(peers, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }
}

impl StepExecutor for FakeExecutor {
    type Prepared = ();

    fn key_inputs(
        &self,
        step: &Step,
        inputs: &mut KeyInputs,
        ctx: &StepContext<'_>,
    ) -> Result<Option<()>, StepError> {
        if let Action::Copy(copy) = &step.action {
            match &copy.from {
                SourceRef::Context => {
                    let files = lock(&self.files);
                    for source in &copy.sources {
                        let source = source.trim_start_matches("./");
                        for (path, content) in files.range(source.to_owned()..) {
                            if path != source && !path.starts_with(&format!("{source}/")) {
                                break;
                            }
                            inputs.add_input(
                                format!("file {path}"),
                                Digest::sha256_of(content.as_bytes()),
                            );
                        }
                    }
                }
                SourceRef::Stage(id) => {
                    let top = ctx.deps[id].layers.last().map(|l| l.chain.to_string());
                    inputs.add_input(
                        format!("stage {id}"),
                        Digest::sha256_of(top.unwrap_or_default().as_bytes()),
                    );
                }
                _ => {}
            }
        }
        Ok(None)
    }

    fn execute(
        &self,
        step: &Step,
        _prepared: Option<()>,
        ctx: &StepContext<'_>,
    ) -> Result<Option<LayerInfo>, StepError> {
        let lazy = lock(&self.lazy).clone();
        if let Some(lazy) = lazy {
            lazy.ensure_snapshots(ctx.layers)?;
            if let Action::Copy(copy) = &step.action
                && let SourceRef::Stage(id) = &copy.from
            {
                lazy.ensure_snapshots(&ctx.deps[id].layers)?;
            }
        }
        lock(&self.ran).push(ctx.id.label.clone());
        let command = Self::command(step);
        if command.contains("fail") {
            return Err(StepError::RunFailed {
                command,
                status: "exit code: 1".to_owned(),
                tail: String::new(),
            });
        }
        if command.contains("wait-for-peer") {
            self.meet_peer()?;
        }
        if command.contains("wait-for-cancel") {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !ctx.cancel.is_cancelled() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if command.contains("nothing") {
            return Ok(None);
        }
        // The layer's content: the step, and for a COPY what it copied.
        let content = match &step.action {
            Action::Copy(_) => format!("{} {:?}", step.source_text, lock(&self.files)),
            _ => step.source_text.clone(),
        };
        let diff_id = DiffId(Digest::sha256_of(content.as_bytes()));
        Ok(Some(LayerInfo {
            chain: ChainId::on(ctx.parent_chain(), &diff_id),
            diff_id,
            blob: None,
            tar_size: None,
        }))
    }
}

/// Records, snapshots and build histories in memory.
#[derive(Default)]
struct FakeResults {
    records: Mutex<HashMap<CacheKey, CacheRecord>>,
    snapshots: Arc<Mutex<HashSet<ChainId>>>,
    /// Layer blobs in the fake store (put there by a fetch from an imported cache).
    blobs: Arc<Mutex<HashSet<Digest>>>,
    histories: Mutex<BTreeMap<String, BTreeMap<String, KeyInputs>>>,
}

impl FakeResults {
    /// What `kiln prune` does to snapshots no image names: they are gone, records stay.
    fn prune_snapshots(&self) {
        lock(&self.snapshots).clear();
    }
}

impl ResultStore for FakeResults {
    fn lookup(&self, key: &CacheKey) -> Option<FoundRecord> {
        lock(&self.records)
            .get(key)
            .cloned()
            .map(|record| FoundRecord {
                record,
                origin: RecordOrigin::Local,
            })
    }

    fn adopt(
        &self,
        layer: &RecordLayer,
        parent: Option<&ChainId>,
    ) -> Result<Option<LayerInfo>, StepError> {
        let chain = ChainId::on(parent, &layer.diff_id);
        let has_blob = layer
            .blob
            .as_ref()
            .is_some_and(|b| lock(&self.blobs).contains(b));
        let mut snapshots = lock(&self.snapshots);
        if has_blob {
            // Unpacked from the blob.
            snapshots.insert(chain.clone());
        }
        Ok(snapshots.contains(&chain).then(|| LayerInfo {
            diff_id: layer.diff_id.clone(),
            blob: None,
            chain,
            tar_size: None,
        }))
    }

    fn record(&self, key: &CacheKey, record: &CacheRecord) {
        if let Some(chain) = record.layer.as_ref().and_then(|l| l.chain.clone()) {
            lock(&self.snapshots).insert(chain);
        }
        lock(&self.records).insert(*key, record.clone());
    }

    fn load_history(&self, name: &str) -> BTreeMap<String, KeyInputs> {
        lock(&self.histories).get(name).cloned().unwrap_or_default()
    }

    fn save_history(&self, name: &str, history: &BTreeMap<String, KeyInputs>) {
        lock(&self.histories).insert(name.to_owned(), history.clone());
    }
}

/// The fake store's blobs and snapshots as the lazy layers see them: unpacking a blob that
/// is there makes its snapshot.
struct FakeLayerStore {
    blobs: Arc<Mutex<HashSet<Digest>>>,
    snapshots: Arc<Mutex<HashSet<ChainId>>>,
}

impl LayerStore for FakeLayerStore {
    fn has_blob(&self, digest: &Digest) -> bool {
        lock(&self.blobs).contains(digest)
    }

    fn has_snapshot(&self, chain: &ChainId) -> bool {
        lock(&self.snapshots).contains(chain)
    }

    fn snapshot_path(&self, chain: &ChainId) -> std::path::PathBuf {
        std::path::PathBuf::from(chain.hex())
    }

    fn unpack(
        &self,
        parent: Option<&ChainId>,
        diff_id: &DiffId,
        blob: &Digest,
    ) -> Result<(), kiln_store::StoreError> {
        assert!(
            self.has_blob(blob),
            "unpacking {blob}, which was not fetched"
        );
        lock(&self.snapshots).insert(ChainId::on(parent, diff_id));
        Ok(())
    }

    fn blobs(&self) -> &dyn kiln_oci::BlobSource {
        &NoBlobs
    }
}

/// A blob source without blobs.
struct NoBlobs;

impl kiln_oci::BlobSource for NoBlobs {
    fn open_blob(
        &self,
        digest: &Digest,
    ) -> Result<Box<dyn std::io::Read + Send>, kiln_oci::BlobError> {
        Err(kiln_oci::BlobError::NotFound {
            digest: digest.clone(),
        })
    }

    fn blob_len(&self, digest: &Digest) -> Result<u64, kiln_oci::BlobError> {
        Err(kiln_oci::BlobError::NotFound {
            digest: digest.clone(),
        })
    }
}

/// Base images by name; a `pull` counter; `local` says whether they count as already in
/// the store (reported `CACHED`).
#[derive(Default)]
struct FakeBases {
    images: Mutex<HashMap<String, BaseImage>>,
    resolved: AtomicUsize,
}

impl FakeBases {
    /// An image `name` whose manifest is `version` (a new version is "a new push of the tag").
    fn publish(&self, name: &str, version: &str, on_build: &[&str]) {
        let mut config = ImageConfiguration::new(&platform());
        config.config.on_build = on_build.iter().map(|s| (*s).to_owned()).collect();
        let diff_id = DiffId(Digest::sha256_of(format!("{name} {version}").as_bytes()));
        let image = BaseImage {
            manifest_digest: Digest::sha256_of(format!("manifest {name} {version}").as_bytes()),
            config,
            layers: vec![LayerInfo {
                chain: ChainId::on(None, &diff_id),
                diff_id,
                blob: None,
                tar_size: None,
            }],
            was_local: true,
            mismatched_platform: None,
        };
        lock(&self.images).insert(reference(name), image);
    }
}

fn reference(name: &str) -> String {
    ImageRef::parse(name).map_or_else(|_| name.to_owned(), |r| r.to_string())
}

impl BaseResolver for FakeBases {
    fn image(
        &self,
        reference: &ImageRef,
        _platform: &Platform,
    ) -> Result<Arc<BaseImage>, BaseError> {
        self.resolved.fetch_add(1, Ordering::SeqCst);
        lock(&self.images)
            .get(&reference.to_string())
            .cloned()
            .map(Arc::new)
            .ok_or_else(|| BaseError::NoBuildContext {
                name: reference.to_string(),
            })
    }

    fn local_image(&self, reference: &ImageRef, platform: &Platform) -> Option<Arc<BaseImage>> {
        self.image(reference, platform).ok()
    }

    fn named_context(&self, name: &str, _platform: &Platform) -> Result<NamedSource, BaseError> {
        Err(BaseError::NoBuildContext {
            name: name.to_owned(),
        })
    }
}

fn platform() -> Platform {
    Platform::new("linux", "amd64")
}

/// The fake machine: what persists from one build to the next.
#[derive(Default)]
struct World {
    executor: FakeExecutor,
    results: FakeResults,
    bases: FakeBases,
}

/// How one build is asked for.
#[derive(Default)]
struct Request<'a> {
    target: Option<&'a str>,
    no_cache: bool,
    args: &'a [(&'a str, &'a str)],
}

/// What a step came to, from the events: `CACHED`, or `miss: <reason>`; the FROM of an
/// image is `CACHED` too.
#[derive(Debug)]
struct Built {
    steps: Vec<(String, String)>,
    result: Result<(), BuildError>,
    /// The steps the build answered (what `--cache-to` exports).
    ran: Vec<RanStep>,
    /// The image's stages.
    image_stages: BTreeSet<StageId>,
    /// Warnings emitted.
    warnings: Vec<String>,
}

impl Built {
    fn outcome(&self, label_part: &str) -> &str {
        let found: Vec<_> = self
            .steps
            .iter()
            .filter(|(label, _)| label.contains(label_part))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one step labelled *{label_part}* in {self:#?}"
        );
        &found[0].1
    }

    fn misses(&self) -> Vec<&str> {
        self.steps
            .iter()
            .filter(|(_, o)| o.starts_with("miss"))
            .map(|(l, _)| l.as_str())
            .collect()
    }
}

impl World {
    fn build(&self, dockerfile: &str, request: &Request<'_>) -> Built {
        self.build_importing(dockerfile, request, Vec::new())
    }

    /// A build whose results are the machine's, layered over `imported` caches (as
    /// `--cache-from` does).
    fn build_importing(
        &self,
        dockerfile: &str,
        request: &Request<'_>,
        imported: Vec<ImportedCache>,
    ) -> Built {
        let parsed = kiln_dockerfile::parse(dockerfile).expect("the test's Dockerfile parses");
        let mut options = PlanOptions::new(platform());
        options.target = request.target.map(str::to_owned);
        options.build_args = request
            .args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let graph = kiln_plan::plan(&parsed, &options).expect("the test's Dockerfile plans");
        let events = Mutex::new(Vec::new());
        let sink = |event: Event| lock(&events).push(event);
        let lazy = Arc::new(LazyLayers::new(
            FakeLayerStore {
                blobs: Arc::clone(&self.results.blobs),
                snapshots: Arc::clone(&self.results.snapshots),
            },
            BTreeMap::new(),
        ));
        *lock(&self.executor.lazy) = Some(Arc::clone(&lazy));
        // The base images are unpacked, as the resolver leaves them.
        for image in lock(&self.bases.images).values() {
            let mut snapshots = lock(&self.results.snapshots);
            snapshots.extend(image.layers.iter().map(|l| l.chain.clone()));
        }
        let results = LayeredResults::new(&self.results, imported, &lazy);
        let options = DriverOptions {
            no_cache: request.no_cache,
            no_cache_stages: std::collections::BTreeSet::new(),
            source_date_epoch: None,
            dockerfile_name: "Dockerfile".to_owned(),
            history_name: "ab".repeat(32),
            started: "2026-01-01T00:00:00Z".to_owned(),
            platform_label: None,
        };
        // As the composition root does: a layer that cannot be fetched is left out and the
        // build runs again; the events are those of the last round.
        let mut fallback_warnings = Vec::new();
        let mut last = None;
        let result = with_fallback(&lazy, &sink, &mut fallback_warnings, || {
            lock(&events).clear();
            let driver = Driver::new(
                &graph,
                &sink,
                &self.executor,
                &results,
                &self.bases,
                options.clone(),
                Arc::default(),
            );
            let result = driver
                .run_all(usize::MAX, &CancelToken::new())
                .map(|results| {
                    assert!(results.contains_key(&graph.target), "the target was built");
                });
            driver.save_history();
            let ran = driver.ran_steps();
            let image_stages = driver.image_stages().clone();
            last = Some((ran, image_stages));
            result.map_err(RoundError::Build)
        });
        *lock(&self.executor.lazy) = None;
        let (ran, image_stages) = last.expect("a round ran");
        let mut names = BTreeMap::new();
        let mut steps = Vec::new();
        let mut warnings = fallback_warnings;
        for event in lock(&events).drain(..) {
            match event {
                Event::StepStarted { step, name } => {
                    names.insert(step, name);
                }
                Event::StepCached { step, from, .. } => {
                    let outcome = match from {
                        None => "CACHED".to_owned(),
                        Some(cache) => format!("CACHED (from {cache})"),
                    };
                    steps.push((names[&step].clone(), outcome));
                }
                Event::Warning { message } => warnings.push(message),
                Event::CacheMiss { step, reason } => {
                    steps.push((names[&step].clone(), format!("miss: {reason}")));
                }
                Event::StepDone { step, .. } if !steps.iter().any(|(l, _)| *l == names[&step]) => {
                    steps.push((names[&step].clone(), "pulled".to_owned()));
                }
                _ => {}
            }
        }
        Built {
            steps,
            result,
            ran,
            image_stages,
            warnings,
        }
    }
}

const PYTHON_SERVICE: &str = "\
FROM python:3.11-slim AS builder
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY app app
RUN python -m compileall app

FROM python:3.11-slim AS runtime
COPY --from=builder /app /app
CMD [\"python\", \"-m\", \"app\"]
";

fn python_world() -> World {
    let world = World {
        executor: FakeExecutor::with_files(&[
            ("requirements.txt", "fastapi==0.110\n"),
            ("app/main.py", "print('hello')\n"),
            ("app/util.py", "X = 1\n"),
        ]),
        ..World::default()
    };
    world.bases.publish("python:3.11-slim", "1", &[]);
    world
}

#[test]
fn a_first_build_runs_every_step_and_a_second_runs_none() {
    let world = python_world();
    let first = world.build(PYTHON_SERVICE, &Request::default());
    first.result.as_ref().expect("first build");
    assert_eq!(first.outcome("RUN pip install"), "miss: no previous build");
    // WORKDIR, COPY, RUN, COPY, RUN, COPY --from.
    assert_eq!(first.misses().len(), 6, "{first:#?}");
    let ran = world.executor.ran().len();
    assert_eq!(ran, 6);

    let second = world.build(PYTHON_SERVICE, &Request::default());
    second.result.as_ref().expect("second build");
    assert!(second.misses().is_empty(), "{second:#?}");
    assert!(
        second.steps.iter().all(|(_, o)| o == "CACHED"),
        "{second:#?}"
    );
    assert_eq!(world.executor.ran().len(), ran, "nothing ran again");
}

#[test]
fn a_source_edit_reruns_only_what_follows_it_and_names_the_file() {
    let world = python_world();
    world
        .build(PYTHON_SERVICE, &Request::default())
        .result
        .unwrap();
    world.executor.write("app/main.py", "print('changed')\n");
    let built = world.build(PYTHON_SERVICE, &Request::default());
    built.result.as_ref().unwrap();
    assert_eq!(built.outcome("COPY requirements.txt"), "CACHED");
    assert_eq!(built.outcome("RUN pip install"), "CACHED");
    assert_eq!(
        built.outcome("COPY app app"),
        "miss: file app/main.py changed"
    );
    assert_eq!(
        built.outcome("RUN python -m compileall"),
        "miss: parent changed"
    );
    assert_eq!(
        built.outcome("COPY --from=builder"),
        format!("miss: stage {} changed", StageId(0))
    );
}

#[test]
fn a_lock_file_edit_reruns_the_dependency_install() {
    let world = python_world();
    world
        .build(PYTHON_SERVICE, &Request::default())
        .result
        .unwrap();
    world.executor.write("requirements.txt", "fastapi==0.111\n");
    let built = world.build(PYTHON_SERVICE, &Request::default());
    assert_eq!(
        built.outcome("COPY requirements.txt"),
        "miss: file requirements.txt changed"
    );
    assert_eq!(built.outcome("RUN pip install"), "miss: parent changed");
    assert_eq!(built.misses().len(), 5, "{built:#?}");
}

#[test]
fn an_edited_instruction_is_the_reason() {
    let world = python_world();
    world
        .build(PYTHON_SERVICE, &Request::default())
        .result
        .unwrap();
    let edited = PYTHON_SERVICE.replace("compileall app", "compileall -q app");
    let built = world.build(&edited, &Request::default());
    assert_eq!(built.outcome("RUN python"), "miss: instruction changed");
    assert_eq!(built.outcome("RUN pip install"), "CACHED");
}

#[test]
fn a_changed_build_arg_is_the_reason_and_an_undeclared_one_changes_nothing() {
    let dockerfile = "FROM python:3.11-slim\nARG VERSION=1\nRUN echo $VERSION\n";
    let world = python_world();
    world.build(dockerfile, &Request::default()).result.unwrap();
    let unused = world.build(
        dockerfile,
        &Request {
            args: &[("UNDECLARED", "x")],
            ..Request::default()
        },
    );
    assert_eq!(unused.outcome("RUN echo"), "CACHED");
    let changed = world.build(
        dockerfile,
        &Request {
            args: &[("VERSION", "2")],
            ..Request::default()
        },
    );
    assert_eq!(
        changed.outcome("RUN echo"),
        "miss: build arg VERSION changed"
    );
}

#[test]
fn a_new_push_of_the_base_tag_is_the_reason() {
    let world = python_world();
    world
        .build(PYTHON_SERVICE, &Request::default())
        .result
        .unwrap();
    world.bases.publish("python:3.11-slim", "2", &[]);
    let built = world.build(PYTHON_SERVICE, &Request::default());
    assert_eq!(built.outcome("WORKDIR /app"), "miss: base image updated");
    assert_eq!(built.outcome("RUN pip install"), "miss: parent changed");
    assert_eq!(built.misses().len(), 6, "{built:#?}");
}

#[test]
fn a_record_whose_layer_was_pruned_is_a_miss_with_identical_inputs() {
    let world = python_world();
    world
        .build(PYTHON_SERVICE, &Request::default())
        .result
        .unwrap();
    world.results.prune_snapshots();
    let built = world.build(PYTHON_SERVICE, &Request::default());
    built.result.as_ref().unwrap();
    assert_eq!(built.outcome("RUN pip install"), "miss: no cached result");
    assert_eq!(built.misses().len(), 6, "{built:#?}");
}

#[test]
fn a_step_that_changes_nothing_is_recorded_and_cached_too() {
    let dockerfile = "FROM python:3.11-slim\nRUN do nothing\nRUN echo after\n";
    let world = python_world();
    world.build(dockerfile, &Request::default()).result.unwrap();
    let built = world.build(dockerfile, &Request::default());
    assert_eq!(built.outcome("RUN do nothing"), "CACHED");
    assert_eq!(built.outcome("RUN echo after"), "CACHED");
    assert_eq!(world.executor.ran().len(), 2);
}

#[test]
fn no_cache_runs_every_step_says_why_and_leaves_a_warm_cache() {
    let world = python_world();
    world
        .build(PYTHON_SERVICE, &Request::default())
        .result
        .unwrap();
    let forced = world.build(
        PYTHON_SERVICE,
        &Request {
            no_cache: true,
            ..Request::default()
        },
    );
    assert_eq!(forced.misses().len(), 6, "{forced:#?}");
    assert!(
        forced
            .steps
            .iter()
            .filter(|(_, o)| o.starts_with("miss"))
            .all(|(_, o)| o == "miss: --no-cache"),
        "{forced:#?}"
    );
    assert_eq!(world.executor.ran().len(), 12);
    let after = world.build(PYTHON_SERVICE, &Request::default());
    assert!(after.misses().is_empty(), "{after:#?}");
}

#[test]
fn a_target_builds_only_the_stages_it_needs() {
    let dockerfile = "\
FROM python:3.11-slim AS base
RUN echo base

FROM base AS test
RUN pytest

FROM base AS prod
RUN echo prod
";
    let world = python_world();
    let built = world.build(
        dockerfile,
        &Request {
            target: Some("prod"),
            ..Request::default()
        },
    );
    built.result.as_ref().unwrap();
    let ran = world.executor.ran();
    assert!(ran.iter().any(|l| l.contains("echo prod")), "{ran:?}");
    assert!(!ran.iter().any(|l| l.contains("pytest")), "{ran:?}");
    let test = world.build(
        dockerfile,
        &Request {
            target: Some("test"),
            ..Request::default()
        },
    );
    assert_eq!(test.outcome("RUN echo base"), "CACHED");
    assert_eq!(test.outcome("RUN pytest"), "miss: no previous build");
}

#[test]
fn a_failing_step_fails_the_build_names_the_step_and_cancels_the_others() {
    let dockerfile = "\
FROM python:3.11-slim AS slow
RUN wait-for-cancel
RUN echo never

FROM python:3.11-slim AS broken
RUN fail

FROM python:3.11-slim
COPY --from=slow /x /x
COPY --from=broken /y /y
";
    let world = python_world();
    let built = world.build(dockerfile, &Request::default());
    let Err(BuildError::Step { step, source }) = &built.result else {
        panic!("expected a step error, got {:?}", built.result);
    };
    assert_eq!(step.stage_name.as_deref(), Some("broken"));
    assert_eq!(step.line, 6);
    assert!(
        matches!(**source, StepError::RunFailed { .. }),
        "{source:?}"
    );
    let ran = world.executor.ran();
    assert!(ran.iter().any(|l| l.contains("wait-for-cancel")), "{ran:?}");
    assert!(!ran.iter().any(|l| l.contains("never")), "{ran:?}");
    assert!(!ran.iter().any(|l| l.contains("COPY")), "{ran:?}");
    // Nothing of the failed step was recorded: the next build runs it again.
    let again = world.build(dockerfile, &Request::default());
    assert!(again.result.is_err());
    assert_eq!(again.outcome("RUN fail"), "miss: no previous build");
}

#[test]
fn independent_stages_run_at_the_same_time() {
    let dockerfile = "\
FROM python:3.11-slim AS one
RUN wait-for-peer one

FROM python:3.11-slim AS two
RUN wait-for-peer two

FROM python:3.11-slim
COPY --from=one /a /a
COPY --from=two /b /b
";
    let world = python_world();
    let built = world.build(dockerfile, &Request::default());
    built.result.as_ref().expect("both stages met");
    assert_eq!(world.executor.ran().len(), 4);
}

#[test]
fn a_base_image_with_onbuild_triggers_counts_them_in_its_label() {
    let world = python_world();
    world
        .bases
        .publish("onbuild-base", "1", &["RUN echo triggered"]);
    let built = world.build("FROM onbuild-base\nRUN echo mine\n", &Request::default());
    built.result.as_ref().unwrap();
    let from = &built.steps[0].0;
    assert!(from.contains("FROM"), "{built:#?}");
    assert!(from.contains("/3]"), "{from}");
    assert_eq!(built.outcome("echo triggered"), "miss: no previous build");
}

#[test]
fn an_unknown_base_image_fails_its_from_step() {
    let world = python_world();
    let built = world.build("FROM nowhere:1\nRUN echo\n", &Request::default());
    let Err(BuildError::Step { step, source }) = &built.result else {
        panic!("expected a step error, got {:?}", built.result);
    };
    assert_eq!(step.position, 0);
    assert_eq!(step.line, 1);
    assert!(matches!(**source, StepError::Base(_)), "{source:?}");
    assert!(world.executor.ran().is_empty());
}
