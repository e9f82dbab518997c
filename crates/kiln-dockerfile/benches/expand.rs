//! Hot paths of the frontend outside the parser: word expansion (run for every argument of
//! every expanding instruction) and `.dockerignore` matching (run for every context entry).
//!
//! `cargo bench -p kiln-dockerfile --bench expand`

use kiln_dockerfile::{PatternMatcher, ShellLexer};

fn main() {
    divan::main();
}

const ENV: [(&str, &str); 5] = [
    ("HOME", "/root"),
    ("NAME", "service"),
    ("VERSION", "v1.2.3"),
    ("PORT", "8000"),
    ("EMPTY", ""),
];

#[divan::bench]
fn process_word_typical(bencher: divan::Bencher<'_, '_>) {
    let lexer = ShellLexer::default();
    bencher.bench(|| {
        lexer
            .process_word(
                divan::black_box("\"${HOME:-/root}\"/app/${NAME}-${VERSION#v}.tar.gz"),
                &ENV[..],
            )
            .expect("expands")
    });
}

#[divan::bench]
fn process_word_plain(bencher: divan::Bencher<'_, '_>) {
    let lexer = ShellLexer::default();
    bencher.bench(|| {
        lexer
            .process_word(
                divan::black_box("/usr/local/lib/python3.12/site-packages"),
                &ENV[..],
            )
            .expect("expands")
    });
}

#[divan::bench]
fn process_words_expose(bencher: divan::Bencher<'_, '_>) {
    let lexer = ShellLexer::default();
    bencher.bench(|| {
        lexer
            .process_words(divan::black_box("80/tcp ${PORT:-9090}/udp 443"), &ENV[..])
            .expect("expands")
    });
}

/// A Python project's context: 1,000 paths a few levels deep.
fn context_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for package in 0..10 {
        for module in 0..25 {
            let dir = format!("src/pkg{package}/sub{}", module % 5);
            paths.push(format!("{dir}/module{module}.py"));
            paths.push(format!("{dir}/__pycache__/module{module}.cpython-312.pyc"));
            paths.push(format!("node_modules/dep{package}/lib/file{module}.js"));
            paths.push(format!("docs/pkg{package}/page{module}.md"));
        }
    }
    paths
}

#[divan::bench]
fn dockerignore_matches_1000_paths(bencher: divan::Bencher<'_, '_>) {
    let matcher = PatternMatcher::new([
        ".git",
        "**/__pycache__",
        "**/*.pyc",
        "node_modules",
        "!node_modules/keep",
        "*.md",
        "!README.md",
        "docs/**/*.md",
        "dist/**",
        "build",
    ])
    .expect("valid patterns");
    let paths = context_paths();
    bencher
        .counter(divan::counter::ItemsCount::new(paths.len()))
        .bench(|| {
            paths
                .iter()
                .filter(|path| matcher.matches_or_parent_matches(path).expect("matchable"))
                .count()
        });
}
