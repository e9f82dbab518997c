//! BuildKit's build checks against `../shared/conformance/buildkit/lint/` (its README), read in
//! place: every case runs as `docker build --check` (all stages), with the case's build args,
//! `.dockerignore` and stub base images (`Env` = the default `PATH`, linux/amd64), and its
//! warnings must equal the expected multiset of (rule, detail, line, end line). Without the
//! corpus the test is skipped (`kiln_no_conformance`), or fails under `CI=true`.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_dockerfile::{PatternMatcher, read_ignore_file};
use kiln_plan::{BaseImage, CheckInputs, PlanOptions, RULES, check, rule_by_name};
use serde_json::Value;

/// Cases expected to fail, each with its reason. Empty: every case passes.
const SKIPPED: &[(&str, &str)] = &[];

/// The stub base image config the corpus's expectations hold for.
const STUB_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn lint_dir() -> std::path::PathBuf {
    kiln_test::require_conformance().join("buildkit/lint")
}

/// Runs one case as `--check` does (all stages), or with `is_build` as a build of the
/// default target does (`build_warnings` where the case has them); `Err` says how it differs.
fn run_case(dir: &Path, is_build: bool) -> Result<(), String> {
    let expected: Value = serde_json::from_str(
        &fs_err::read_to_string(dir.join("expected.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let src = fs_err::read_to_string(dir.join("Dockerfile")).map_err(|e| e.to_string())?;
    let amd64: kiln_oci::Platform = "linux/amd64".parse().expect("a platform");
    let mut options = PlanOptions::new(amd64.clone())
        .build_platform(amd64.clone())
        .all_stages(true);
    if let Some(args) = expected["build_args"].as_object() {
        for (k, v) in args {
            options = options.build_arg(k, v.as_str().expect("string build arg"));
        }
    }
    let mut inputs = CheckInputs {
        is_build,
        ..CheckInputs::default()
    };
    if expected.get("dockerignore").is_some() {
        let text = fs_err::read_to_string(dir.join(".dockerignore")).map_err(|e| e.to_string())?;
        let patterns = read_ignore_file(&text).map_err(|e| e.to_string())?;
        inputs.ignore = Some(PatternMatcher::new(&patterns).map_err(|e| e.to_string())?);
    }
    for image in expected["base_images"].as_array().into_iter().flatten() {
        let name = image.as_str().expect("string image");
        let short = name
            .strip_prefix("docker.io/library/")
            .unwrap_or(name)
            .to_owned();
        let base = BaseImage {
            env: vec![STUB_PATH.to_owned()],
            platform: Some(amd64.clone()),
        };
        inputs.base_images.insert(name.to_owned(), base.clone());
        if let Some(untagged) = short.strip_suffix(":latest") {
            inputs.base_images.insert(untagged.to_owned(), base.clone());
        }
        inputs.base_images.insert(short, base);
    }
    let report = check(&src, &options, &inputs);

    let key = if is_build && expected.get("build_warnings").is_some() {
        "build_warnings"
    } else {
        "warnings"
    };
    let mut want: Vec<(String, String, u64, u64)> = expected[key]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| {
            (
                w["rule"].as_str().expect("rule").to_owned(),
                w["detail"].as_str().expect("detail").to_owned(),
                w["line"].as_u64().expect("line"),
                w["end_line"].as_u64().expect("end_line"),
            )
        })
        .collect();
    let mut got: Vec<(String, String, u64, u64)> = report
        .warnings
        .iter()
        .map(|w| {
            (
                w.rule.name.to_owned(),
                w.detail.clone(),
                u64::from(w.start_line),
                u64::from(w.end_line),
            )
        })
        .collect();
    want.sort();
    got.sort();
    let mut problems = Vec::new();
    if want != got {
        problems.push(format!("warnings: want {want:#?}\n got {got:#?}"));
    }
    let want_error = expected["error_message"].as_str().map(str::to_owned);
    let got_error = report.error.as_ref().map(ToString::to_string);
    let is_same_error = match (&want_error, &got_error) {
        (Some(w), Some(g)) if w.starts_with("lint violation found for rules: ") => {
            let names = |s: &str| {
                let mut v: Vec<String> = s
                    .trim_start_matches("lint violation found for rules: ")
                    .split(", ")
                    .map(str::to_owned)
                    .collect();
                v.sort();
                v
            };
            names(w) == names(g)
        }
        (w, g) => w == g,
    };
    if !is_same_error {
        problems.push(format!("error: want {want_error:?}, got {got_error:?}"));
    }
    if expected["error"].as_bool() == Some(true)
        && !matches!(report.error, Some(kiln_plan::CheckError::Violation { .. }))
    {
        problems.push("error=true expected a lint violation".to_owned());
    }
    if let (Some(line), Some(kiln_plan::CheckError::Dockerfile { line: got, .. })) =
        (expected["error_line"].as_u64(), &report.error)
        && got.map(u64::from) != Some(line)
    {
        problems.push(format!("error line: want {line}, got {got:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn every_lint_case_matches_buildkit() {
    let root = lint_dir();
    let mut cases: Vec<_> = fs_err::read_dir(root.join("cases"))
        .expect("cases directory")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 87, "the corpus has 87 cases");
    let mut failures = Vec::new();
    let mut passed = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = run_case(dir, false).and_then(|()| {
            run_case(dir, true).map_err(|why| format!("as a build of the default target: {why}"))
        });
        match outcome {
            Ok(()) => passed += 1,
            Err(why) if SKIPPED.iter().any(|(n, _)| *n == name) => {
                eprintln!("{name}: skipped (known difference): {why}");
            }
            Err(why) => failures.push(format!("{name}:\n{why}")),
        }
    }
    eprintln!("{passed}/{} cases pass", cases.len());
    assert!(
        failures.is_empty(),
        "{} cases fail:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn rules_match_rules_tsv() {
    let text = fs_err::read_to_string(lint_dir().join("rules.tsv")).expect("rules.tsv");
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), RULES.len());
    let mut by_name = BTreeMap::new();
    for (row, rule) in rows.iter().zip(RULES.iter()) {
        let fields: Vec<&str> = row.split('\t').collect();
        assert_eq!(fields[0], rule.name, "ruleset.go order");
        assert_eq!(fields[1], rule.description, "{}", rule.name);
        assert_eq!(fields[2], rule.url, "{}", rule.name);
        assert_eq!(fields[3] == "true", rule.is_experimental, "{}", rule.name);
        by_name.insert(fields[0], rule_by_name(fields[0]));
    }
    assert!(by_name.values().all(Option::is_some));
}
