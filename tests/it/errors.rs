//! What a user sees when `kiln build` fails: the exact stderr of the binary for a
//! representative set of failures (parse, plan, COPY, `.dockerignore`, RUN, base image,
//! flags, store), snapshot-tested with temp paths, digests and times filtered, so a change
//! to the error types cannot change a message unnoticed. The RUN case needs root (it runs
//! the busybox fixture); the others need neither root nor network.

use std::path::Path;

use crate::builds::store_with_busybox;
use crate::common::kiln_in;

/// Writes `dockerfile` (and `files`, relative to the context) into a fresh context under
/// `dir`, runs `kiln build --progress quiet` with `args` against `store`, asserts the exit
/// code and returns stderr with `dir` replaced by `[TMP]`.
fn failed_build(
    dir: &Path,
    store: &Path,
    dockerfile: &str,
    files: &[(&str, &str)],
    args: &[&str],
    code: i32,
) -> String {
    let context = dir.join("context");
    fs_err::create_dir_all(&context).unwrap();
    fs_err::write(context.join("Dockerfile"), dockerfile).unwrap();
    for (path, content) in files {
        let path = context.join(path);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, content).unwrap();
    }
    build_stderr(dir, store, &context, args, code)
}

/// [`failed_build`] in a fresh temp dir with its own empty store, expecting exit code 1: the
/// common case.
fn failed_fresh_build(dockerfile: &str, files: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    failed_build(
        dir.path(),
        &dir.path().join("store"),
        dockerfile,
        files,
        args,
        1,
    )
}

/// Runs `kiln build --progress quiet` with `args` on `context` against `store`, asserts the
/// exit code and that nothing panicked, and returns stderr with `dir` replaced by `[TMP]`.
fn build_stderr(dir: &Path, store: &Path, context: &Path, args: &[&str], code: i32) -> String {
    let out = kiln_in(store)
        .args(["build", "--progress", "quiet"])
        .args(args)
        .arg(context)
        .output()
        .expect("spawning kiln build");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "unexpected status:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr.replace(&dir.display().to_string(), "[TMP]")
}

fn filters() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[HEX]");
    settings.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

macro_rules! assert_error_snapshot {
    ($name:expr, $value:expr) => {
        filters().bind(|| insta::assert_snapshot!($name, $value))
    };
}

#[test]
fn parse_error_shows_the_line_and_a_caret() {
    let err = failed_fresh_build("FROM scratch\nCOPPY app /app\n", &[], &[]);
    assert_error_snapshot!("errors_parse", err);
}

#[test]
fn unknown_target_lists_the_stages() {
    let err = failed_fresh_build(
        "FROM scratch AS build\nFROM scratch AS final\n",
        &[],
        &["--target", "nope"],
    );
    assert_error_snapshot!("errors_unknown_target", err);
}

#[test]
fn bad_stage_index_names_the_line() {
    let err = failed_fresh_build("FROM scratch\nCOPY --from=3 /a /a\n", &[], &[]);
    assert_error_snapshot!("errors_bad_stage_index", err);
}

#[test]
fn expansion_error_gets_the_dockerfile_name() {
    let err = failed_fresh_build("FROM scratch\nENV A=${MISSING:?set MISSING}\n", &[], &[]);
    assert_error_snapshot!("errors_expansion", err);
}

#[test]
fn copy_of_a_missing_file_names_the_step_and_path() {
    let err = failed_fresh_build(
        "FROM scratch\nCOPY missing.txt /missing.txt\n",
        &[("present.txt", "x")],
        &[],
    );
    assert_error_snapshot!("errors_copy_missing", err);
}

#[test]
fn copy_of_an_ignored_file_says_so() {
    let err = failed_fresh_build(
        "FROM scratch\nCOPY secret.txt /secret.txt\n",
        &[("secret.txt", "x"), (".dockerignore", "secret.txt\n")],
        &[],
    );
    assert_error_snapshot!("errors_copy_ignored", err);
}

#[test]
fn invalid_dockerignore_pattern_names_the_file() {
    let err = failed_fresh_build(
        "FROM scratch\nCOPY a.txt /a.txt\n",
        &[("a.txt", "x"), (".dockerignore", "[z-a]\n")],
        &[],
    );
    assert_error_snapshot!("errors_dockerignore_pattern", err);
}

#[test]
fn missing_dockerfile_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("empty");
    fs_err::create_dir_all(&context).unwrap();
    let err = build_stderr(dir.path(), &dir.path().join("store"), &context, &[], 1);
    assert_error_snapshot!("errors_missing_dockerfile", err);
}

#[test]
fn base_image_not_found_names_the_registry() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let err = failed_fresh_build("FROM 127.0.0.1:1/nothing/here:1\n", &[], &[]);
    assert_error_snapshot!("errors_base_not_found", err);
}

#[test]
fn build_arg_without_a_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = failed_build(
        dir.path(),
        &dir.path().join("store"),
        "FROM scratch\n",
        &[],
        &["--build-arg", "=v"],
        2,
    );
    assert_error_snapshot!("errors_build_arg", err);
}

#[test]
fn unreadable_secret_source_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-secret");
    let spec = format!("id=token,src={}", missing.display());
    let err = failed_build(
        dir.path(),
        &dir.path().join("store"),
        "FROM scratch\n",
        &[],
        &["--secret", &spec],
        1,
    );
    assert_error_snapshot!("errors_secret_source", err);
}

#[test]
fn store_of_another_layout_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    fs_err::create_dir_all(&store).unwrap();
    fs_err::write(store.join("layout-version"), "99\n").unwrap();
    let err = failed_build(dir.path(), &store, "FROM scratch\n", &[], &[], 1);
    assert_error_snapshot!("errors_store_layout_version", err);
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn run_exiting_1_shows_the_command_status_and_tail_as_root() {
    kiln_test::require_root();
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_busybox(dir.path());
    let err = failed_build(
        dir.path(),
        &store,
        "FROM busybox\nRUN echo first line; echo second line; exit 1\n",
        &[],
        &[],
        1,
    );
    assert_error_snapshot!("errors_run_exit_1", err);
}

#[test]
fn step_expansion_error_gets_the_dockerfile_name() {
    let err = failed_fresh_build("FROM scratch\nEXPOSE 99999999\n", &[], &[]);
    assert_error_snapshot!("errors_step_expansion", err);
}

#[test]
fn dockerfile_that_is_not_utf8_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let context = dir.path().join("context");
    fs_err::create_dir_all(&context).unwrap();
    fs_err::write(context.join("Dockerfile"), b"FROM scratch\nENV A=\xff\n").unwrap();
    let err = build_stderr(dir.path(), &dir.path().join("store"), &context, &[], 1);
    assert_error_snapshot!("errors_not_utf8", err);
}
