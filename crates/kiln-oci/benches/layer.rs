//! Layer export benchmarks: a directory → deterministic tar → gzip / zstd / none with both
//! digests, in one pass (the path every RUN and COPY layer takes).
//!
//! `cargo bench -p kiln-oci --bench layer` runs divan on a generated ~24 MB tree of mixed
//! files. With `KILN_LAYER_EXPORT_DIR=<dir>` set, the binary instead exports that directory
//! once (compression from `KILN_LAYER_EXPORT_COMPRESSION`: `gzip`, `zstd` or `none`;
//! threads from `KILN_LAYER_EXPORT_THREADS`) and prints one line of throughput: this is what
//! `bench/layer-export.sh` runs under `/usr/bin/time -v` against `tar | gzip` and `tar | zstd`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use kiln_oci::{Compression, DiffTar, LayerWriter};

fn main() {
    if let Some(dir) = std::env::var_os("KILN_LAYER_EXPORT_DIR") {
        export_once(Path::new(&dir));
        return;
    }
    divan::main();
}

fn compression_named(name: &str) -> Compression {
    match name {
        "gzip" => Compression::gzip(),
        "zstd" => Compression::zstd(),
        "none" => Compression::None,
        other => panic!("unknown compression `{other}` (gzip, zstd, none)"),
    }
}

fn export(dir: &Path, compression: Compression, threads: NonZeroUsize) -> kiln_oci::LayerDigests {
    let mut writer =
        LayerWriter::with_threads(io::sink(), compression, threads).expect("compressor");
    DiffTar::new(dir).write_to(&mut writer).expect("layer tar");
    writer.flush().expect("flush");
    writer.finish().expect("finish").1
}

fn export_once(dir: &Path) {
    let name = std::env::var("KILN_LAYER_EXPORT_COMPRESSION").unwrap_or_else(|_| "gzip".to_owned());
    let threads = std::env::var("KILN_LAYER_EXPORT_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(kiln_oci::default_threads);
    let start = Instant::now();
    let digests = export(dir, compression_named(&name), threads);
    let secs = start.elapsed().as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "sizes far below 2^52")]
    let mb = digests.uncompressed_size as f64 / 1e6;
    #[expect(clippy::cast_precision_loss, reason = "sizes far below 2^52")]
    let out_mb = digests.size as f64 / 1e6;
    eprintln!(
        "kiln {name} threads={threads}: {mb:.1} MB tar -> {out_mb:.1} MB in {secs:.2} s = {:.0} MB/s; digest {} diff_id {}",
        mb / secs,
        digests.digest,
        digests.diff_id
    );
}

/// A generated tree: 3000 small text files, one 8 MB compressible log, one 4 MB random blob.
fn tree() -> &'static Path {
    static TREE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = TREE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("tree");
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let words = [
            "layer", "image", "build", "cache", "kiln", "stage", "copy", "run", "digest", "blob",
        ];
        for i in 0..3000 {
            let sub = root.join(format!("src/pkg{:02}", i % 50));
            fs_err::create_dir_all(&sub).expect("mkdir");
            let mut text = String::new();
            while text.len() < 2000 + (i % 7) * 700 {
                let w = words[usize::try_from(next() % 10).unwrap_or(0)];
                text.push_str(w);
                text.push(if next() % 9 == 0 { '\n' } else { ' ' });
            }
            fs_err::write(sub.join(format!("file{i}.txt")), text).expect("write");
        }
        let mut log = String::new();
        let mut n = 0u64;
        while log.len() < 8 << 20 {
            let _ = writeln!(
                log,
                "2024-01-01T00:00:{:02}Z INFO request {n} served in {} ms",
                n % 60,
                next() % 500
            );
            n += 1;
        }
        fs_err::write(root.join("app.log"), log).expect("write");
        let random: Vec<u8> = (0..(4 << 20) / 8)
            .flat_map(|_| next().to_le_bytes())
            .collect();
        fs_err::write(root.join("blob.bin"), random).expect("write");
        (dir, root)
    });
    path
}

fn tree_bytes() -> u64 {
    export(tree(), Compression::None, NonZeroUsize::MIN).uncompressed_size
}

#[divan::bench(args = ["gzip", "zstd", "none"], sample_count = 5)]
fn export_tree(bencher: divan::Bencher, compression: &str) {
    let c = compression_named(compression);
    let dir = tree();
    bencher
        .counter(divan::counter::BytesCount::new(tree_bytes()))
        .bench(|| export(dir, c, kiln_oci::default_threads()));
}

#[divan::bench(args = [1, 2], sample_count = 5)]
fn gzip_threads(bencher: divan::Bencher, threads: usize) {
    let dir = tree();
    let threads = NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN);
    bencher
        .counter(divan::counter::BytesCount::new(tree_bytes()))
        .bench(|| export(dir, Compression::gzip(), threads));
}
