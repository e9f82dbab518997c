//! `kiln build --check` / `--call=check|outline|targets` and `kiln lint`: exit codes, the
//! text and JSON buildx prints (derived from buildx `commands/build.go` `printResult` and
//! BuildKit `frontend/subrequests/{lint,outline,targets}`), SARIF validated against the
//! official schema, and that a check stores nothing. No root needed.

use std::path::Path;

use serde_json::{Value, json};

use crate::common::{kiln_in, run_fails, run_ok, write};

/// A Dockerfile with two findings (FromAsCasing, JSONArgsRecommended).
const TWO_FINDINGS: &str = "FROM alpine as base\nCMD run\n";

/// A Dockerfile whose ARGs and stages carry descriptions.
const DESCRIBED: &str = "\
# syntax=docker/dockerfile:1

# GO_VERSION the Go toolchain to build with
ARG GO_VERSION=1.22

# build compile the binary
FROM golang:${GO_VERSION} AS build
# LDFLAGS extra linker flags
ARG LDFLAGS=-s
RUN --mount=type=secret,id=netrc,required go build

# test run the tests
FROM build AS test
RUN go test

# release the shipped image
FROM scratch AS release
COPY --from=build /out /app
";

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

fn lines(line: u32) -> Value {
    json!({"ranges": [{"start": {"line": line}, "end": {"line": line}}]})
}

fn context_with(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "Dockerfile", dockerfile);
    dir
}

#[test]
fn check_prints_like_buildx_and_exits_1_without_storing_anything() {
    let ctx = context_with(TWO_FINDINGS);
    let store = ctx.path().join("store");
    let out = run_fails(
        kiln_in(&store).current_dir(ctx.path()).args([
            "build",
            "--check",
            "--push",
            "-t",
            "example.invalid/x",
            ".",
        ]),
        1,
    );
    assert_eq!(
        stdout_of(&out),
        "Check complete, 2 warnings have been found!\n\
         \n\
         WARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\
         'as' and 'FROM' keywords' casing do not match\n\
         Dockerfile:1\n\
         --------------------\n   \
         1 | >>> FROM alpine as base\n   \
         2 |     CMD run\n   \
         3 |     \n\
         --------------------\n\
         \n\
         WARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n\
         JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n\
         Dockerfile:2\n\
         --------------------\n   \
         1 |     FROM alpine as base\n   \
         2 | >>> CMD run\n   \
         3 |     \n\
         --------------------\n"
    );
    assert!(!store.exists(), "--check created the store");

    let clean = context_with("FROM scratch\nCOPY a /\n");
    let text =
        run_ok(
            kiln_in(&store)
                .current_dir(clean.path())
                .args(["build", "--call=check", "."]),
        );
    assert_eq!(text, "Check complete, no warnings found.\n");
    assert!(!store.exists(), "--call=check created the store");
}

#[test]
fn check_json_is_buildkits_lint_result() {
    let ctx = context_with(TWO_FINDINGS);
    let out = run_fails(
        kiln_in(&ctx.path().join("store"))
            .args(["build", "--call=check,format=json"])
            .arg(ctx.path()),
        1,
    );
    let text = stdout_of(&out);
    assert!(text.starts_with("{\n  \"warnings\": [\n"), "{text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["warnings"][0],
        json!({
            "ruleName": "FromAsCasing",
            "description": "The 'as' keyword should match the case of the 'from' keyword",
            "url": "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
            "detail": "'as' and 'FROM' keywords' casing do not match",
            "location": lines(1),
        })
    );
    assert_eq!(value["warnings"][1]["ruleName"], "JSONArgsRecommended");
    assert_eq!(value["sources"][0]["filename"], "Dockerfile");
    assert_eq!(value["sources"][0]["language"], "Dockerfile");
    assert_eq!(
        value["sources"][0]["data"],
        "RlJPTSBhbHBpbmUgYXMgYmFzZQpDTUQgcnVuCg=="
    );
    assert!(value.get("buildError").is_none());
}

#[test]
fn outline_lists_the_targets_args_and_secrets_with_descriptions() {
    let ctx = context_with(DESCRIBED);
    let store = ctx.path().join("store");
    let text = run_ok(
        kiln_in(&store)
            .args(["build", "--call=outline"])
            .arg(ctx.path()),
    );
    assert_eq!(
        text,
        "TARGET:      release\n\
         DESCRIPTION: the shipped image\n\
         \n\
         BUILD ARG    VALUE   DESCRIPTION\n\
         GO_VERSION   1.22    the Go toolchain to build with\n\
         LDFLAGS      -s      extra linker flags\n\
         \n\
         SECRET   REQUIRED\n\
         netrc    true\n\
         \n"
    );
    let text = run_ok(
        kiln_in(&store)
            .args(["build", "--call=outline,format=json", "--target", "test"])
            .arg(ctx.path()),
    );
    let mut value: Value = serde_json::from_str(&text).unwrap();
    let sources = value
        .as_object_mut()
        .unwrap()
        .remove("sources")
        .expect("sources");
    assert_eq!(sources.as_array().map(Vec::len), Some(1));
    assert_eq!(
        value,
        json!({
            "name": "test",
            "description": "run the tests",
            "args": [
                {
                    "name": "GO_VERSION",
                    "description": "the Go toolchain to build with",
                    "value": "1.22",
                    "location": lines(4),
                },
                {
                    "name": "LDFLAGS",
                    "description": "extra linker flags",
                    "value": "-s",
                    "location": lines(9),
                },
            ],
            "secrets": [{"name": "netrc", "required": true, "location": lines(10)}],
        })
    );
    // kiln's `--format json` says the same as buildx's `,format=json`.
    let flag = run_ok(
        kiln_in(&store)
            .args([
                "build",
                "--call=outline",
                "--format",
                "json",
                "--target",
                "test",
            ])
            .arg(ctx.path()),
    );
    assert_eq!(flag, text);
    assert!(!store.exists());
}

#[test]
fn targets_lists_every_stage_with_its_description() {
    let ctx = context_with(DESCRIBED);
    let store = ctx.path().join("store");
    let text = run_ok(
        kiln_in(&store)
            .args(["build", "--call=targets"])
            .arg(ctx.path()),
    );
    assert_eq!(
        text,
        "TARGET            DESCRIPTION\n\
         build             compile the binary\n\
         test              run the tests\n\
         release (default) the shipped image\n"
    );
    let text = run_ok(
        kiln_in(&store)
            .args(["build", "--call", "targets,format=json"])
            .arg(ctx.path()),
    );
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value["targets"],
        json!([
            {"name": "build", "description": "compile the binary", "base": "golang:${GO_VERSION}", "location": lines(7)},
            {"name": "test", "description": "run the tests", "base": "build", "location": lines(13)},
            {"name": "release", "default": true, "description": "the shipped image", "base": "scratch", "location": lines(17)},
        ])
    );
}

#[test]
fn unknown_call_methods_are_usage_errors() {
    let ctx = context_with(TWO_FINDINGS);
    let out = run_fails(
        kiln_in(&ctx.path().join("store"))
            .args(["build", "--call=help"])
            .arg(ctx.path()),
        2,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--call help"));
}

fn lint(dir: &Path, args: &[&str], code: i32) -> std::process::Output {
    let mut cmd = kiln_in(&dir.join("store"));
    cmd.current_dir(dir).arg("lint").args(args);
    if code == 0 {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        out
    } else {
        run_fails(&mut cmd, code)
    }
}

#[test]
fn lint_reports_copy_ignored_file_through_the_contexts_dockerignore() {
    let ctx = context_with("FROM scratch\nCOPY secret.txt /\n");
    write(ctx.path(), ".dockerignore", "secret.txt\n");
    let out = lint(ctx.path(), &["--format", "json"], 1);
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["warnings"][0]["ruleName"], "CopyIgnoredFile");
    assert_eq!(
        value["warnings"][0]["detail"],
        "Attempting to Copy file \"secret.txt\" that is excluded by .dockerignore"
    );
    fs_err::remove_file(ctx.path().join(".dockerignore")).unwrap();
    lint(ctx.path(), &[], 0);
}

#[test]
fn lint_sarif_validates_against_the_sarif_2_1_0_schema() {
    let ctx = context_with(TWO_FINDINGS);
    let out = lint(
        ctx.path(),
        &["--format", "sarif", "-f", "Dockerfile", "."],
        1,
    );
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: Value = serde_json::from_str(
        &fs_err::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/schemas/sarif-schema-2.1.0.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft4::new(&schema).expect("the SARIF schema compiles");
    let errors: Vec<String> = validator.iter_errors(&log).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let result = &log["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "FromAsCasing");
    assert_eq!(result["level"], "warning");
    assert_eq!(
        result["message"]["text"],
        "'as' and 'FROM' keywords' casing do not match"
    );
    let location = &result["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "Dockerfile");
    assert_eq!(location["region"]["startLine"], 1);
    assert_eq!(log["runs"][0]["tool"]["driver"]["name"], "kiln");

    // A file that does not parse still gives a valid log, its error a notification.
    write(ctx.path(), "Dockerfile", "FROM scratch\nCOPPY a /\n");
    let out = lint(ctx.path(), &["--format", "sarif"], 1);
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(validator.is_valid(&log));
    assert_eq!(
        log["runs"][0]["invocations"][0]["executionSuccessful"],
        false
    );
}

#[test]
fn lint_with_a_target_checks_only_the_stages_it_needs() {
    // BuildKit's case 062: each stage uses an undefined variable.
    let ctx = context_with(
        "\nFROM scratch AS first\nCOPY $foo .\n\nFROM scratch AS second\nCOPY $bar .\n",
    );
    let all = lint(ctx.path(), &["--format", "json"], 1);
    let all: Value = serde_json::from_slice(&all.stdout).unwrap();
    assert_eq!(all["warnings"].as_array().map(Vec::len), Some(2));
    let one = lint(ctx.path(), &["--format", "json", "--target", "second"], 1);
    let one: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(one["warnings"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        one["warnings"][0]["detail"],
        "Usage of undefined variable '$bar'"
    );
}

#[test]
fn a_foreign_syntax_frontend_is_warned_about_once() {
    let ctx = context_with("# syntax=docker/dockerfile:1-labs\nFROM scratch\nCOPY a /\n");
    let out = lint(ctx.path(), &[], 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("kiln does not run frontend images").count(),
        1,
        "{stderr}"
    );
    write(
        ctx.path(),
        "Dockerfile",
        "# syntax=docker.io/docker/dockerfile:1.4@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021\nFROM scratch\nCOPY a /\n",
    );
    let out = lint(ctx.path(), &[], 0);
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
}

#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root")]
fn copy_ignored_file_and_the_syntax_warning_show_in_a_build_root() {
    kiln_test::require_root();
    let ctx = context_with("# syntax=example.com/frontend:1\nFROM scratch\nCOPY . /\n");
    write(ctx.path(), ".dockerignore", "*\n");
    let stderr = crate::common::build_plain(&ctx.path().join("store"), ctx.path(), &[]);
    assert!(
        stderr.contains(
            "CopyIgnoredFile: Attempting to Copy file \".\" that is excluded by .dockerignore (line 3)"
        ),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("kiln does not run frontend images").count(),
        1,
        "{stderr}"
    );
}
