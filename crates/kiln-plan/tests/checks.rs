//! `kiln_plan::check` beyond the BuildKit corpus (`lint_conformance.rs`): what `kiln build`
//! relies on.

use kiln_plan::{BaseImage, CheckError, CheckInputs, PlanOptions, check};

fn names(src: &str, options: &PlanOptions, inputs: &CheckInputs) -> Vec<&'static str> {
    check(src, options, inputs)
        .warnings
        .iter()
        .map(|w| w.rule.name)
        .collect()
}

#[test]
fn error_true_fails_with_buildkits_message() {
    let report = check(
        "# check=error=true\nFROM scratch as base\n",
        &PlanOptions::default(),
        &CheckInputs::default(),
    );
    assert_eq!(
        report.error.map(|e| e.to_string()).as_deref(),
        Some("lint violation found for rules: FromAsCasing")
    );
}

#[test]
fn the_build_arg_replaces_the_directive() {
    let options = PlanOptions::default().build_arg("BUILDKIT_DOCKERFILE_CHECK", "skip=all");
    let report = check(
        "# check=error=true\nFROM scratch as base\n",
        &options,
        &CheckInputs::default(),
    );
    assert!(report.warnings.is_empty() && report.error.is_none());
}

#[test]
fn bad_options_are_an_error() {
    let report = check(
        "# check=skip\nFROM scratch\n",
        &PlanOptions::default(),
        &CheckInputs::default(),
    );
    assert!(matches!(report.error, Some(CheckError::Config(_))));
    assert_eq!(
        report.error.unwrap().to_string(),
        r#"failed to parse check options: invalid check option "skip""#
    );
}

#[test]
fn undefined_var_needs_the_base_image_env() {
    let src = "FROM alpine\nENV A=$JAVA_HOME\n";
    // Not resolved yet: its variables are unknown, so nothing is reported.
    assert!(names(src, &PlanOptions::default(), &CheckInputs::default()).is_empty());
    let mut inputs = CheckInputs::default();
    inputs.base_images.insert(
        "alpine".into(),
        BaseImage {
            env: vec!["PATH=/bin".into()],
            platform: None,
        },
    );
    assert_eq!(
        names(src, &PlanOptions::default(), &inputs),
        ["UndefinedVar"]
    );
    inputs
        .base_images
        .get_mut("alpine")
        .unwrap()
        .env
        .push("JAVA_HOME=/opt/java".into());
    assert!(names(src, &PlanOptions::default(), &inputs).is_empty());
}

#[test]
fn invalid_base_image_platform_compares_os_and_architecture() {
    let mut inputs = CheckInputs::default();
    inputs.base_images.insert(
        "alpine".into(),
        BaseImage {
            env: Vec::new(),
            platform: Some("linux/arm64".parse().unwrap()),
        },
    );
    let options = PlanOptions::new("linux/amd64".parse().unwrap());
    let report = check("FROM alpine\n", &options, &inputs);
    assert_eq!(report.warnings.len(), 1);
    assert_eq!(
        report.warnings[0].detail,
        r#"Base image alpine was pulled with platform "linux/arm64", expected "linux/amd64" for current build"#
    );
    assert_eq!(
        report.warnings[0].to_string(),
        r#"InvalidBaseImagePlatform: Base image alpine was pulled with platform "linux/arm64", expected "linux/amd64" for current build (line 1)"#
    );
}
