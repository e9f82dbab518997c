//! `kiln build --call=check|outline|targets` and `kiln lint`: the I/O side of the build checks
//! and of the outline and targets requests. The Dockerfile and the context's `.dockerignore`
//! are read as a build reads them, base image configs are taken from the local store when it
//! already has them (never pulled: a base the store lacks leaves the rules that need it
//! silent), and nothing is written. The results print as `docker buildx build --call=…`
//! prints them (buildx `commands/build.go` `printResult`, BuildKit `frontend/subrequests`),
//! as BuildKit's result JSON, or as SARIF 2.1.0 for code scanning.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use kiln_oci::{ImageRef, Platform};
use kiln_plan::{
    BaseSource, BuildGraph, CheckError, CheckReport, Outline, OutlineMount, PlanOptions, RULES,
    SourceLines, StageTarget,
};
use kiln_store::Store;
use serde_json::{Value, json};

use crate::engine::{BuildError, Builder};
use crate::images::{PullPolicy, resolve_platform_image};

/// What `--call` evaluates instead of building (buildx `--call`; `check` is BuildKit's
/// `lint` subrequest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFunction {
    /// Run the build checks only.
    Check,
    /// The build args and secrets the target uses.
    Outline,
    /// The stages that can be targets.
    Targets,
}

/// The Dockerfile a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerfileSource {
    /// The name as the user gave it (`-f` as written, else `CONTEXT/Dockerfile`), for text
    /// output (buildx `DockerfileMappingSrc`).
    pub shown_name: String,
    /// The file name BuildKit's JSON gives its source (the base name).
    pub file_name: String,
    /// The text.
    pub text: String,
}

/// The result of [`Builder::check`].
#[derive(Debug, Clone)]
pub struct LintReport {
    /// The Dockerfile.
    pub source: DockerfileSource,
    /// The checks' findings and error.
    pub report: CheckReport,
    /// kiln's warning about a `# syntax=` frontend it does not run, if any.
    pub syntax_warning: Option<String>,
}

impl LintReport {
    /// Whether `--check` fails (exit 1): any warning or an error (BuildKit
    /// `result.statuscode`).
    pub fn has_findings(&self) -> bool {
        !self.report.warnings.is_empty() || self.report.error.is_some()
    }

    /// The warnings sorted as BuildKit prints them (by line, stable).
    fn sorted_warnings(&self) -> Vec<&kiln_plan::Check> {
        let mut warnings: Vec<&kiln_plan::Check> = self.report.warnings.iter().collect();
        warnings.sort_by_key(|w| w.start_line);
        warnings
    }

    /// BuildKit's lint `result.json` (`lint.LintResults`), as `--call=check,format=json`
    /// prints it. The source's LLB definition is left out (kiln has no LLB).
    pub fn to_json(&self) -> String {
        let warnings: Value = if self.report.warnings.is_empty() {
            // Go encodes the nil slice of a check without findings as null.
            Value::Null
        } else {
            self.report
                .warnings
                .iter()
                .map(|w| {
                    let mut warning = serde_json::Map::new();
                    warning.insert("ruleName".into(), w.rule.name.into());
                    if !w.rule.description.is_empty() {
                        warning.insert("description".into(), w.rule.description.into());
                    }
                    if !w.rule.url.is_empty() {
                        warning.insert("url".into(), w.rule.url.into());
                    }
                    if !w.detail.is_empty() {
                        warning.insert("detail".into(), w.detail.clone().into());
                    }
                    warning.insert(
                        "location".into(),
                        location_json(Some(SourceLines {
                            start: w.start_line,
                            end: w.end_line,
                        })),
                    );
                    Value::Object(warning)
                })
                .collect()
        };
        let mut result = json!({
            "warnings": warnings,
            "sources": [source_json(&self.source)],
        });
        if let Some(error) = &self.report.error {
            let lines = error_line(error).map(|line| SourceLines {
                start: line,
                end: line,
            });
            result["buildError"] = json!({
                "message": error.to_string(),
                "location": location_json(lines),
            });
        }
        go_json(&result)
    }

    /// What `--call=check` prints to stdout (buildx `printResult`, BuildKit
    /// `LintResults.PrintTo`); the error, if any, is [`LintReport::error_text`].
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let count = self.report.warnings.len();
        match count {
            0 => {}
            1 => out.push_str("Check complete, 1 warning has been found!\n"),
            n => {
                let _ = writeln!(out, "Check complete, {n} warnings have been found!");
            }
        }
        for warning in self.sorted_warnings() {
            let _ = write!(out, "\nWARNING: {}", warning.rule.name);
            if !warning.rule.url.is_empty() {
                let _ = write!(out, " - {}", warning.rule.url);
            }
            let _ = writeln!(out, "\n{}", warning.detail);
            print_source(
                &mut out,
                &self.source,
                SourceLines {
                    start: warning.start_line,
                    end: warning.end_line,
                },
            );
        }
        match (&self.report.error, count) {
            (Some(_), 1..) => out.push('\n'),
            (None, 0) => out.push_str("Check complete, no warnings found.\n"),
            _ => {}
        }
        out
    }

    /// The check's error with its source lines (BuildKit `LintResults.PrintErrorTo`), when
    /// it has one.
    pub fn error_text(&self) -> Option<String> {
        let error = self.report.error.as_ref()?;
        let mut out = format!("{error}\n");
        if let Some(line) = error_line(error) {
            print_source(
                &mut out,
                &self.source,
                SourceLines {
                    start: line,
                    end: line,
                },
            );
        }
        Some(out)
    }

    /// The findings as a SARIF 2.1.0 log for code scanning: one rule per build check, one
    /// result per finding (`level` `error` under `# check=error=true`), located at
    /// `artifact_uri` (the Dockerfile's path relative to the repository). A Dockerfile
    /// error is a failed invocation's notification.
    pub fn to_sarif(&self, tool_version: &str, artifact_uri: &str) -> String {
        let rules: Vec<Value> = RULES
            .iter()
            .map(|rule| {
                let mut value = json!({
                    "id": rule.name,
                    "shortDescription": {"text": rule.description},
                });
                if !rule.url.is_empty() {
                    value["helpUri"] = rule.url.into();
                }
                value
            })
            .collect();
        let level = if self.report.config.is_error {
            "error"
        } else {
            "warning"
        };
        let results: Vec<Value> = self
            .sorted_warnings()
            .into_iter()
            .map(|w| {
                let index = RULES.iter().position(|r| r.name == w.rule.name);
                let mut result = json!({
                    "ruleId": w.rule.name,
                    "level": level,
                    "message": {"text": w.detail},
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": {"uri": artifact_uri},
                            "region": {
                                "startLine": w.start_line.max(1),
                                "endLine": w.end_line.max(w.start_line).max(1),
                            },
                        },
                    }],
                });
                if let Some(index) = index {
                    result["ruleIndex"] = index.into();
                }
                result
            })
            .collect();
        let mut run = json!({
            "tool": {"driver": {
                "name": "kiln",
                "version": tool_version,
                "informationUri": "https://docs.docker.com/reference/build-checks/",
                "rules": rules,
            }},
            "artifacts": [{"location": {"uri": artifact_uri}}],
            "results": results,
        });
        let failure = match &self.report.error {
            Some(CheckError::Dockerfile { message, .. }) => Some(message.clone()),
            Some(error @ CheckError::Config(_)) => Some(error.to_string()),
            _ => None,
        };
        if let Some(message) = failure {
            run["invocations"] = json!([{
                "executionSuccessful": false,
                "toolExecutionNotifications": [{
                    "level": "error",
                    "message": {"text": message},
                }],
            }]);
        }
        let log = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [run],
        });
        let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The result of [`Builder::outline`].
#[derive(Debug, Clone)]
pub struct OutlineReport {
    /// The Dockerfile.
    pub source: DockerfileSource,
    /// The outline.
    pub outline: Outline,
}

impl OutlineReport {
    /// BuildKit's `outline.Outline` JSON, as `--call=outline,format=json` prints it.
    pub fn to_json(&self) -> String {
        let o = &self.outline;
        let mut value = serde_json::Map::new();
        if let Some(name) = &o.name {
            value.insert("name".into(), name.clone().into());
        }
        if !o.description.is_empty() {
            value.insert("description".into(), o.description.clone().into());
        }
        if !o.args.is_empty() {
            let args = o
                .args
                .iter()
                .map(|a| {
                    let mut arg = serde_json::Map::new();
                    arg.insert("name".into(), a.name.clone().into());
                    if !a.description.is_empty() {
                        arg.insert("description".into(), a.description.clone().into());
                    }
                    if let Some(v) = a.value.as_ref().filter(|v| !v.is_empty()) {
                        arg.insert("value".into(), v.clone().into());
                    }
                    arg.insert("location".into(), location_json(Some(a.location)));
                    Value::Object(arg)
                })
                .collect();
            value.insert("args".into(), Value::Array(args));
        }
        for (key, mounts) in [("secrets", &o.secrets), ("ssh", &o.ssh)] {
            if !mounts.is_empty() {
                value.insert(key.into(), mounts.iter().map(mount_json).collect());
            }
        }
        value.insert(
            "sources".into(),
            json!([base64::engine::general_purpose::STANDARD.encode(&self.source.text)]),
        );
        go_json(&Value::Object(value))
    }

    /// The tables `--call=outline` prints (BuildKit `outline.PrintOutline`).
    pub fn to_text(&self) -> String {
        let o = &self.outline;
        let mut out = String::new();
        if o.name.is_some() || !o.description.is_empty() {
            let mut rows = vec![vec![
                "TARGET:".to_owned(),
                o.name.clone().unwrap_or_else(|| "(default)".to_owned()),
            ]];
            if !o.description.is_empty() {
                rows.push(vec!["DESCRIPTION:".to_owned(), o.description.clone()]);
            }
            out.push_str(&tabwriter(&rows, 1));
            out.push('\n');
        }
        if !o.args.is_empty() {
            let mut rows = vec![vec![
                "BUILD ARG".to_owned(),
                "VALUE".to_owned(),
                "DESCRIPTION".to_owned(),
            ]];
            rows.extend(o.args.iter().map(|a| {
                vec![
                    a.name.clone(),
                    a.value.clone().unwrap_or_default(),
                    a.description.clone(),
                ]
            }));
            out.push_str(&tabwriter(&rows, 3));
            out.push('\n');
        }
        for (title, mounts) in [("SECRET", &o.secrets), ("SSH", &o.ssh)] {
            if mounts.is_empty() {
                continue;
            }
            let mut rows = vec![vec![title.to_owned(), "REQUIRED".to_owned()]];
            rows.extend(mounts.iter().map(|m| {
                vec![
                    m.name.clone(),
                    if m.is_required { "true" } else { "" }.to_owned(),
                ]
            }));
            out.push_str(&tabwriter(&rows, 3));
            out.push('\n');
        }
        out
    }
}

/// The result of [`Builder::targets`].
#[derive(Debug, Clone)]
pub struct TargetsReport {
    /// The Dockerfile.
    pub source: DockerfileSource,
    /// The stages, in order.
    pub targets: Vec<StageTarget>,
}

impl TargetsReport {
    /// BuildKit's `targets.List` JSON, as `--call=targets,format=json` prints it.
    pub fn to_json(&self) -> String {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                let mut target = serde_json::Map::new();
                if let Some(name) = &t.name {
                    target.insert("name".into(), name.clone().into());
                }
                if t.is_default {
                    target.insert("default".into(), true.into());
                }
                if !t.description.is_empty() {
                    target.insert("description".into(), t.description.clone().into());
                }
                if !t.base.is_empty() {
                    target.insert("base".into(), t.base.clone().into());
                }
                if let Some(p) = t.platform.as_ref().filter(|p| !p.is_empty()) {
                    target.insert("platform".into(), p.clone().into());
                }
                target.insert("location".into(), location_json(Some(t.location)));
                Value::Object(target)
            })
            .collect();
        go_json(&json!({
            "targets": targets,
            "sources": [base64::engine::general_purpose::STANDARD.encode(&self.source.text)],
        }))
    }

    /// The table `--call=targets` prints (BuildKit `targets.PrintTargets`).
    pub fn to_text(&self) -> String {
        let mut rows = vec![vec!["TARGET".to_owned(), "DESCRIPTION".to_owned()]];
        for t in &self.targets {
            let name = match (&t.name, t.is_default) {
                (None, true) => "(default)".to_owned(),
                (Some(name), true) => format!("{name} (default)"),
                (name, false) => name.clone().unwrap_or_default(),
            };
            rows.push(vec![name, t.description.clone()]);
        }
        tabwriter(&rows, 1)
    }
}

impl Builder {
    /// Runs the build checks only (`--call=check`): no step runs, nothing is pulled or
    /// stored. Base image configs come from the local store when it has them.
    pub fn check(&self) -> Result<LintReport, BuildError> {
        let source = self.dockerfile_source()?;
        let filter = self.context_filter(&source.shown_name)?;
        let options = self.check_options();
        let mut inputs = kiln_plan::CheckInputs {
            ignore: filter.matcher().cloned(),
            ..kiln_plan::CheckInputs::default()
        };
        if let Some(store) = self.existing_store()
            && let Ok(dockerfile) = kiln_dockerfile::parse(&source.text)
            && let Ok(graph) = kiln_plan::plan(&dockerfile, &options.clone().all_stages(true))
        {
            inputs.base_images = local_base_images(&store, &graph, true);
        }
        let report = kiln_plan::check(&source.text, &options, &inputs);
        let syntax_warning = kiln_dockerfile::syntax_warning(&source.text);
        Ok(LintReport {
            source,
            report,
            syntax_warning,
        })
    }

    /// The build args and secrets the target uses (`--call=outline`).
    pub fn outline(&self) -> Result<OutlineReport, BuildError> {
        let source = self.dockerfile_source()?;
        let outline = kiln_plan::outline(&source.text, &self.check_options())
            .map_err(|e| describe_error(&source, e))?;
        Ok(OutlineReport { source, outline })
    }

    /// The stages that can be targets (`--call=targets`).
    pub fn targets(&self) -> Result<TargetsReport, BuildError> {
        let source = self.dockerfile_source()?;
        let targets = kiln_plan::targets(&source.text).map_err(|e| describe_error(&source, e))?;
        Ok(TargetsReport { source, targets })
    }

    /// The plan options of the checks: build args, target and the first target platform.
    pub(crate) fn check_options(&self) -> PlanOptions {
        let platform = self
            .target_platforms()
            .first()
            .cloned()
            .unwrap_or_else(Platform::host);
        let mut options = PlanOptions::new(platform);
        options.build_args = self.build_args.clone().into_iter().collect();
        options.target.clone_from(&self.target);
        options.named_contexts = self.build_contexts.keys().cloned().collect();
        options
    }

    fn dockerfile_source(&self) -> Result<DockerfileSource, BuildError> {
        let (name, text) = self.read_dockerfile()?;
        let (shown_name, file_name) = if self.dockerfile_text.is_some() {
            ("stdin".to_owned(), "Dockerfile".to_owned())
        } else {
            let path = std::path::PathBuf::from(&name);
            let file_name = path
                .file_name()
                .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
            // buildx: `filepath.Join(context, "Dockerfile")`, cleaned (`./Dockerfile` is
            // `Dockerfile`); `-f` as given.
            let shown = name.strip_prefix("./").unwrap_or(&name).to_owned();
            (shown, file_name)
        };
        Ok(DockerfileSource {
            shown_name,
            file_name,
            text,
        })
    }

    /// The local store, when one exists (a check never creates one).
    fn existing_store(&self) -> Option<Store> {
        let root = self
            .store_root
            .clone()
            .unwrap_or_else(crate::engine::default_store_root);
        if !root.join("layout-version").is_file() {
            return None;
        }
        Store::open(root).ok()
    }
}

/// A Dockerfile error of the outline or targets request, as the build reports it.
fn describe_error(source: &DockerfileSource, error: CheckError) -> BuildError {
    BuildError::Plan {
        dockerfile: source.shown_name.clone(),
        source: Box::new(kiln_plan::PlanError::Check {
            source: Box::new(error),
        }),
    }
}

/// What the checks know of each base image `graph` names that the store already holds for
/// the stage's platform (resolved without pulling; an image the store lacks is left out, so
/// the rules that need it stay silent). Without `with_platform` the image's platform is left
/// out: a build reports `InvalidBaseImagePlatform` once it has resolved every base, pulled
/// ones included.
pub(crate) fn local_base_images(
    store: &Store,
    graph: &BuildGraph,
    with_platform: bool,
) -> BTreeMap<String, kiln_plan::BaseImage> {
    let mut images = BTreeMap::new();
    for stage in &graph.stages {
        let BaseSource::Image(reference) = &stage.base else {
            continue;
        };
        if images.contains_key(&stage.base_name) {
            continue;
        }
        if let Some(image) = stored_config(store, reference, &stage.base_name, &stage.platform) {
            let config = image.config.value();
            images.insert(
                stage.base_name.clone(),
                kiln_plan::BaseImage {
                    env: config.config.env.clone(),
                    platform: with_platform.then(|| config.platform()),
                },
            );
        }
    }
    images
}

fn stored_config(
    store: &Store,
    reference: &ImageRef,
    shown: &str,
    platform: &Platform,
) -> Option<kiln_oci::ResolvedImage> {
    let mut no_pull = |_: &ImageRef, _: &Platform| {
        Err(kiln_registry::RegistryError::ClientSetup(
            "the build checks never pull".to_owned(),
        ))
    };
    resolve_platform_image(
        store,
        reference,
        shown,
        platform,
        PullPolicy::Never,
        &mut no_pull,
    )
    .ok()
    .map(|found| found.image)
}

/// The line a check error is attached to.
fn error_line(error: &CheckError) -> Option<u32> {
    match error {
        CheckError::Dockerfile { line, .. } => *line,
        _ => None,
    }
}

/// A `pb.Location` of source 0 as Go's JSON encodes it (zero fields left out).
fn location_json(lines: Option<SourceLines>) -> Value {
    match lines {
        Some(lines) => json!({"ranges": [{
            "start": {"line": lines.start},
            "end": {"line": lines.end},
        }]}),
        None => json!({}),
    }
}

fn mount_json(mount: &OutlineMount) -> Value {
    let mut value = json!({"name": mount.name});
    if mount.is_required {
        value["required"] = true.into();
    }
    value["location"] = location_json(Some(mount.location));
    value
}

/// A `pb.SourceInfo` as Go's JSON encodes it (`data` in base64).
fn source_json(source: &DockerfileSource) -> Value {
    json!({
        "filename": source.file_name,
        "data": base64::engine::general_purpose::STANDARD.encode(&source.text),
        "language": "Dockerfile",
    })
}

/// Go's `json.MarshalIndent(v, "", "  ")`: two-space indent, and `<`, `>`, `&`, U+2028 and
/// U+2029 escaped (they only occur inside strings).
fn go_json(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// BuildKit's `errdefs.Source.Print`: the file name and line, then the lines around the
/// range between dashes, the range's lines marked `>>>`.
fn print_source(out: &mut String, source: &DockerfileSource, range: SourceLines) {
    let lines: Vec<&str> = source.text.split('\n').collect();
    let (mut start, mut end) = (range.start as usize, range.end.max(range.start) as usize);
    if start > lines.len() || start < 1 {
        return;
    }
    end = end.min(lines.len());
    let pad = if end == start { 4 } else { 2 };
    let mut p = 0;
    let first = start;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != lines.len() {
            end += 1;
            p += 1;
        }
        p += 1;
    }
    let _ = write!(out, "{}:{first}\n--------------------\n", source.shown_name);
    for (i, line) in lines.iter().enumerate().take(end).skip(start - 1) {
        let number = i + 1;
        let marker =
            if (range.start as usize..=range.end.max(range.start) as usize).contains(&number) {
                ">>>"
            } else {
                "   "
            };
        let _ = writeln!(out, " {number:3} | {marker} {line}");
    }
    out.push_str("--------------------\n");
}

/// Go `text/tabwriter` with minwidth 0, tabwidth 0, padding `padding`, padchar ' ' and no
/// flags, for rows whose cells are all tab-terminated but the last: each column as wide as
/// its widest cell (in runes) plus the padding.
fn tabwriter(rows: &[Vec<String>], padding: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns.saturating_sub(1)];
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns.saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + padding);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if let Some(width) = widths.get(i)
                && i + 1 < row.len()
            {
                out.extend(std::iter::repeat_n(' ', width - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> DockerfileSource {
        DockerfileSource {
            shown_name: "Dockerfile".to_owned(),
            file_name: "Dockerfile".to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn source_excerpt_matches_buildkit() {
        let mut out = String::new();
        let text = "FROM alpine\nRUN a\nRUN b\nCMD c\nRUN d\nRUN e\nRUN f\n";
        print_source(&mut out, &source(text), SourceLines { start: 4, end: 4 });
        assert_eq!(
            out,
            "Dockerfile:4\n--------------------\n   2 |     RUN a\n   3 |     RUN b\n   4 | >>> CMD c\n   5 |     RUN d\n   6 |     RUN e\n--------------------\n"
        );
    }

    #[test]
    fn tabwriter_pads_every_column_but_the_last() {
        let rows = vec![
            vec!["TARGET".to_owned(), "DESCRIPTION".to_owned()],
            vec!["build".to_owned(), String::new()],
            vec!["app (default)".to_owned(), "the app".to_owned()],
        ];
        assert_eq!(
            tabwriter(&rows, 1),
            "TARGET        DESCRIPTION\nbuild         \napp (default) the app\n"
        );
    }

    #[test]
    fn json_escapes_like_go() {
        assert_eq!(
            go_json(&json!({"a": "<&>"})),
            "{\n  \"a\": \"\\u003c\\u0026\\u003e\"\n}"
        );
    }
}
