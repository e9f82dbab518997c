//! `--cache-from`: the local store layered over imported caches, with the same fakes as the
//! driver's other tests.

#[allow(
    clippy::wildcard_imports,
    reason = "the fakes and imports of the parent test module"
)]
use super::*;

/// Fetches an imported cache's blobs into a fake store, or fails when `fails`.
struct FakeFetcher {
    into: Arc<Mutex<HashSet<Digest>>>,
    fetched: Arc<AtomicUsize>,
    fails: bool,
}

impl BlobFetcher for FakeFetcher {
    fn fetch(&self, blob: &LayerBlob) -> Result<(), CacheImportError> {
        if self.fails {
            return Err(CacheImportError::ReadBlob {
                digest: blob.digest.clone(),
                source: std::io::Error::other("connection reset"),
            });
        }
        self.fetched.fetch_add(1, Ordering::SeqCst);
        lock(&self.into).insert(blob.digest.clone());
        Ok(())
    }
}

/// What runner A's `--cache-to` would export (every stage: `mode=max`; the image's stages
/// only: `mode=min`), as imported records; a layer's blob digest is derived from its diffID.
fn exported(built: &Built, max: bool) -> BTreeMap<CacheKey, ExportedRecord> {
    built
        .ran
        .iter()
        .filter(|s| max || built.image_stages.contains(&s.stage))
        .map(|s| {
            let key = s.inputs.key();
            let layer = s.layer.as_ref().map(|l| ExportedLayer {
                diff_id: l.diff_id.clone(),
                digest: Digest::sha256_of(l.diff_id.to_string().as_bytes()),
                size: 42,
                media_type: kiln_oci::MediaType::OciLayerTarGzip,
            });
            let record = ExportedRecord {
                key,
                parent: s.inputs.parent,
                step: s.step.clone(),
                created: s.created.clone(),
                layer,
                inputs: s.inputs.clone(),
                last_used: None,
            };
            (key, record)
        })
        .collect()
}

/// Runner B: a fresh machine with the same context and base images as `python_world`, and
/// the cache `records` to import through a fetcher that fails when `fails`.
fn fresh_runner(
    records: BTreeMap<CacheKey, ExportedRecord>,
    fails: bool,
) -> (World, Vec<ImportedCache>, Arc<AtomicUsize>) {
    let world = python_world();
    let fetched = Arc::new(AtomicUsize::new(0));
    let fetcher = FakeFetcher {
        into: Arc::clone(&world.results.blobs),
        fetched: Arc::clone(&fetched),
        fails,
    };
    let cache = ImportedCache::new(
        "reg.test/app/cache:main".to_owned(),
        CacheRecords {
            records,
            ..CacheRecords::default()
        },
        Arc::new(fetcher),
    );
    (world, vec![cache], fetched)
}

#[test]
fn a_fresh_runner_hits_every_step_from_an_imported_cache_and_fetches_no_layer() {
    let runner_a = python_world();
    let built_a = runner_a.build(PYTHON_SERVICE, &Request::default());
    built_a.result.as_ref().unwrap();
    let (runner_b, imported, fetched) = fresh_runner(exported(&built_a, true), false);
    let built = runner_b.build_importing(PYTHON_SERVICE, &Request::default(), imported);
    built.result.as_ref().unwrap();
    assert!(runner_b.executor.ran().is_empty(), "{built:#?}");
    for step in [
        "WORKDIR",
        "COPY requirements.txt",
        "RUN pip install",
        "COPY app app",
        "RUN python",
        "COPY --from=builder",
    ] {
        assert_eq!(
            built.outcome(step),
            "CACHED (from reg.test/app/cache:main)",
            "{step}"
        );
    }
    assert_eq!(
        fetched.load(Ordering::SeqCst),
        0,
        "a hit downloads nothing: no step needed the files"
    );
}

#[test]
fn an_edit_on_a_fresh_runner_reruns_only_what_follows_and_says_why() {
    let runner_a = python_world();
    let built_a = runner_a.build(PYTHON_SERVICE, &Request::default());
    built_a.result.as_ref().unwrap();
    let (runner_b, imported, fetched) = fresh_runner(exported(&built_a, true), false);
    runner_b.executor.write("app/main.py", "print('changed')\n");
    let built = runner_b.build_importing(PYTHON_SERVICE, &Request::default(), imported);
    built.result.as_ref().unwrap();
    assert_eq!(
        built.outcome("RUN pip install"),
        "CACHED (from reg.test/app/cache:main)"
    );
    // The COPY that misses runs on the layers below it: those (and only those) were fetched.
    assert!(fetched.load(Ordering::SeqCst) > 0, "{built:#?}");
    // The imported records' inputs explain the misses of a runner with no history.
    assert_eq!(
        built.outcome("COPY app app"),
        "miss: file app/main.py changed"
    );
    assert_eq!(built.misses().len(), 3, "{built:#?}");
}

#[test]
fn mode_min_leaves_the_builder_stage_out() {
    let runner_a = python_world();
    let built_a = runner_a.build(PYTHON_SERVICE, &Request::default());
    built_a.result.as_ref().unwrap();
    let (runner_b, imported, _) = fresh_runner(exported(&built_a, false), false);
    let built = runner_b.build_importing(PYTHON_SERVICE, &Request::default(), imported);
    built.result.as_ref().unwrap();
    assert!(
        built.outcome("RUN pip install").starts_with("miss"),
        "{built:#?}"
    );
    assert!(
        built
            .outcome("COPY --from=builder")
            .starts_with("CACHED (from"),
        "{built:#?}"
    );
}

#[test]
fn a_blob_that_cannot_be_fetched_is_a_warning_and_the_step_runs() {
    let runner_a = python_world();
    let built_a = runner_a.build(PYTHON_SERVICE, &Request::default());
    built_a.result.as_ref().unwrap();
    let (runner_b, imported, _) = fresh_runner(exported(&built_a, true), true);
    // The edit makes a step run on the imported layers: they are needed, and cannot come.
    runner_b.executor.write("app/main.py", "print('changed')\n");
    let built = runner_b.build_importing(PYTHON_SERVICE, &Request::default(), imported);
    built.result.as_ref().unwrap();
    assert!(
        built.outcome("RUN pip install").starts_with("miss"),
        "{built:#?}"
    );
    assert!(
        built
            .warnings
            .iter()
            .any(|w| w.contains("reg.test/app/cache:main") && w.contains("connection reset")),
        "{:?}",
        built.warnings
    );
}
