//! `kiln lint` and `kiln build --call=check|outline|targets` (`--check`): the build checks,
//! the target's build args and secrets, the stages, printed as buildx prints them.

use std::path::PathBuf;
use std::process::ExitCode;

use kiln_build::{BuildError, Builder, CallFunction, LintReport};

/// A parsed `--call` value (buildx `buildflags.ParseCallFunc`): `NAME[,format=json|text]
/// [,ignorestatus=BOOL]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallSpec {
    function: CallFunction,
    is_json: bool,
    ignores_status: bool,
}

/// The `--call` values kiln evaluates (`check` is buildx's alias of `lint`).
const CALL_NAMES: &str = "build, check (lint), outline, targets";

/// Parses `--call` (and `--check`, its shorthand); `Ok(None)` for a build. An unknown name,
/// field or format is a usage error naming it.
pub(crate) fn parse_call(
    value: Option<&str>,
    is_check: bool,
    format: Option<&str>,
) -> Result<Option<CallSpec>, String> {
    let value = match (value, is_check) {
        (_, true) => "check",
        (Some(v), false) => v,
        (None, false) if format.is_some() => {
            return Err("--format needs --call or --check (it is their output's format)".into());
        }
        (None, false) => return Ok(None),
    };
    let mut name: Option<&str> = None;
    let mut is_json = false;
    let mut ignores_status = false;
    for field in value.split(',') {
        match field.split_once('=') {
            Some(("format", "json")) => is_json = true,
            Some(("format", "text" | "")) => is_json = false,
            Some(("format", other)) => {
                return Err(format!(
                    "--call {value}: unknown format `{other}` (json or text)"
                ));
            }
            Some(("ignorestatus", v)) => {
                ignores_status = match v {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => return Err(format!("--call {value}: invalid ignorestatus value `{v}`")),
                };
            }
            Some(_) => return Err(format!("--call {value}: invalid field `{field}`")),
            None if name.is_some() => return Err(format!("--call {value}: two methods")),
            None => name = Some(field),
        }
    }
    // `--format` (kiln's) is the same as `,format=` (buildx's); both must agree.
    match format {
        Some("json") if !value.split(',').any(|f| f == "format=text") => is_json = true,
        Some("text" | "") if !value.split(',').any(|f| f == "format=json") => is_json = false,
        Some(other @ ("json" | "text" | "")) => {
            return Err(format!(
                "--format {other} contradicts --call {value}: give the format once"
            ));
        }
        Some(other) => return Err(format!("--format {other}: unknown format (json or text)")),
        None => {}
    }
    let function = match name.unwrap_or("build") {
        "build" if format.is_some() => {
            return Err("--format needs --call or --check (it is their output's format)".into());
        }
        "build" => return Ok(None),
        "check" | "lint" => CallFunction::Check,
        "outline" => CallFunction::Outline,
        "targets" => CallFunction::Targets,
        other => {
            return Err(format!(
                "--call {other}: kiln does not evaluate this method (it has {CALL_NAMES})"
            ));
        }
    };
    Ok(Some(CallSpec {
        function,
        is_json,
        ignores_status,
    }))
}

/// Evaluates `call` instead of building; nothing runs, nothing is stored or pulled (the
/// outputs, `--push` and `-t` are not used, as buildx exports nothing for a call).
pub(crate) fn run_call(builder: &Builder, call: CallSpec) -> ExitCode {
    let outcome = match call.function {
        CallFunction::Check => builder.check().map(|report| {
            let status = print_check(&report, call.is_json);
            if call.ignores_status {
                ExitCode::SUCCESS
            } else {
                status
            }
        }),
        CallFunction::Outline => builder.outline().map(|report| {
            print_stdout(&if call.is_json {
                format!("{}\n", report.to_json())
            } else {
                report.to_text()
            });
            ExitCode::SUCCESS
        }),
        CallFunction::Targets => builder.targets().map(|report| {
            print_stdout(&if call.is_json {
                format!("{}\n", report.to_json())
            } else {
                report.to_text()
            });
            ExitCode::SUCCESS
        }),
    };
    outcome.unwrap_or_else(|e| failure(&e))
}

fn failure(error: &BuildError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(crate::EXIT_FAILURE)
}

#[expect(
    clippy::print_stdout,
    reason = "the call's result is the command's output, on stdout as buildx prints it"
)]
fn print_stdout(text: &str) {
    print!("{text}");
}

/// Prints a check as buildx's `printResult` does; exit 1 with any finding.
fn print_check(report: &LintReport, is_json: bool) -> ExitCode {
    if let Some(warning) = &report.syntax_warning {
        eprintln!("WARNING: {warning}");
    }
    if is_json {
        print_stdout(&format!("{}\n", report.to_json()));
    } else {
        print_stdout(&report.to_text());
        if let Some(error) = report.error_text() {
            eprint!("error: {error}");
        }
    }
    if report.has_findings() {
        ExitCode::from(crate::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// What `kiln lint` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LintFormat {
    /// As `docker buildx build --check` prints.
    Text,
    /// BuildKit's lint result JSON (`--call=check,format=json`).
    Json,
    /// SARIF 2.1.0, for code scanning (GitHub).
    Sarif,
}

/// Arguments of `kiln lint`.
#[derive(Debug, clap::Args)]
pub(crate) struct LintArgs {
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile, else CONTEXT/Containerfile).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Set a build-time variable (K=V, or K to take it from the environment); repeatable.
    #[arg(long = "build-arg", value_name = "K=V")]
    build_args: Vec<String>,
    /// Check only this stage and what it needs (default: every stage).
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,
    /// The platform the checks assume for `TARGETPLATFORM` (default: the host's).
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: LintFormat,
    /// The build context (its `.dockerignore` feeds `CopyIgnoredFile`).
    #[arg(value_name = "CONTEXT", default_value = ".")]
    context: PathBuf,
}

/// Runs `kiln lint`: 0 without findings, 1 with findings (or a Dockerfile that cannot be
/// checked), 2 for a usage error.
pub(crate) fn run_lint(
    args: &LintArgs,
    root: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let mut builder = Builder::new(&args.context).store_root(crate::root::resolve_root(root)?);
    if let Some(file) = &args.file {
        builder = builder.dockerfile(file);
    }
    if let Some(target) = &args.target {
        builder = builder.target(target);
    }
    if let Some(platform) = &args.platform {
        match platform.parse() {
            Ok(platform) => builder = builder.platform(platform),
            Err(e) => {
                eprintln!("error: --platform {platform}: {e}");
                return Ok(ExitCode::from(crate::EXIT_USAGE));
            }
        }
    }
    for spec in &args.build_args {
        let (name, value) = match spec.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (spec.as_str(), None),
        };
        if name.is_empty() {
            eprintln!("error: --build-arg `{spec}` has no name: expected NAME=VALUE or NAME");
            return Ok(ExitCode::from(crate::EXIT_USAGE));
        }
        // As `kiln build`: `NAME` alone takes the environment's value, skipped when unset.
        if let Some(value) = value.or_else(|| std::env::var(name).ok()) {
            builder = builder.build_arg(name, value);
        }
    }
    let report = match builder.check() {
        Ok(report) => report,
        Err(e) => return Ok(failure(&e)),
    };
    match args.format {
        LintFormat::Text => return Ok(print_check(&report, false)),
        LintFormat::Json => return Ok(print_check(&report, true)),
        LintFormat::Sarif => {
            if let Some(warning) = &report.syntax_warning {
                eprintln!("WARNING: {warning}");
            }
            print_stdout(&report.to_sarif(env!("CARGO_PKG_VERSION"), &report.source.shown_name));
        }
    }
    Ok(if report.has_findings() {
        ExitCode::from(crate::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_values_parse_like_buildx() {
        let check = parse_call(Some("check,format=json"), false, None)
            .unwrap()
            .unwrap();
        assert_eq!(check.function, CallFunction::Check);
        assert!(check.is_json);
        assert_eq!(
            parse_call(None, true, None).unwrap().unwrap().function,
            CallFunction::Check
        );
        assert_eq!(parse_call(Some("build"), false, None).unwrap(), None);
        assert_eq!(parse_call(None, false, None).unwrap(), None);
        assert_eq!(
            parse_call(Some("lint"), false, None)
                .unwrap()
                .unwrap()
                .function,
            CallFunction::Check
        );
        let ignoring = parse_call(Some("outline,ignorestatus=true"), false, None)
            .unwrap()
            .unwrap();
        assert!(ignoring.ignores_status);
        assert!(
            parse_call(Some("help"), false, None)
                .unwrap_err()
                .contains("help")
        );
        assert!(
            parse_call(Some("check,format=yaml"), false, None)
                .unwrap_err()
                .contains("yaml")
        );
        assert!(
            parse_call(Some("check,x=1"), false, None)
                .unwrap_err()
                .contains("x=1")
        );
    }

    #[test]
    fn format_flag_is_the_calls_format_field() {
        let outline = parse_call(Some("outline"), false, Some("json"))
            .unwrap()
            .unwrap();
        assert!(outline.is_json);
        assert!(
            parse_call(None, true, Some("json"))
                .unwrap()
                .unwrap()
                .is_json
        );
        assert!(
            !parse_call(Some("targets,format=json"), false, Some("text"))
                .map(|_| ())
                .unwrap_err()
                .is_empty()
        );
        assert!(
            parse_call(Some("check,format=json"), false, Some("json"))
                .unwrap()
                .unwrap()
                .is_json
        );
        for (call, is_check) in [(None, false), (Some("build"), false)] {
            assert!(
                parse_call(call, is_check, Some("json"))
                    .unwrap_err()
                    .contains("--format needs --call")
            );
        }
        assert!(
            parse_call(Some("outline"), false, Some("yaml"))
                .unwrap_err()
                .contains("yaml")
        );
    }
}
