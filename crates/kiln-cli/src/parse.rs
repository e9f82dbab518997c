//! `kiln parse`: parse a Dockerfile and print its syntax tree.
//!
//! `--format json` (default) prints the checked, typed AST with spans; `--format
//! buildkit-ast` prints BuildKit's parser dump (the format of its `result` golden files) and
//! only needs the file to pass BuildKit's parser. Parse errors are rendered with a caret to
//! stderr and exit with code 1.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `kiln parse`.
#[derive(Debug, clap::Args)]
pub(crate) struct ParseArgs {
    /// Dockerfile to parse (default: CONTEXT/Dockerfile); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Build context directory (used to find the default Dockerfile).
    #[arg(value_name = "CONTEXT", default_value = ".")]
    context: PathBuf,
}

/// What `kiln parse` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// The typed AST with spans, as pretty JSON.
    Json,
    /// BuildKit's parser AST dump.
    #[value(name = "buildkit-ast")]
    BuildkitAst,
}

/// Runs `kiln parse`.
pub(crate) fn run(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    let (name, bytes) = match &args.file {
        Some(path) if path.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading the Dockerfile from standard input")?;
            ("<stdin>".to_owned(), buf)
        }
        Some(path) => (
            path.display().to_string(),
            fs_err::read(path).context("reading the Dockerfile")?,
        ),
        None => {
            let path = args.context.join("Dockerfile");
            (
                path.display().to_string(),
                fs_err::read(&path).context("reading the Dockerfile")?,
            )
        }
    };
    let src = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: {name} is not valid UTF-8; invalid bytes replaced with U+FFFD");
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    let output = match args.format {
        Format::BuildkitAst => {
            kiln_build::dockerfile::parse_syntax(&src).map(|tree| tree.dump_buildkit_ast() + "\n")
        }
        Format::Json => kiln_build::dockerfile::parse(&src).map(|df| {
            for warning in &df.warnings {
                eprintln!(
                    "warning: {} ({name}:{}:{})",
                    warning.message, warning.span.line, warning.span.column
                );
            }
            serde_json::to_string_pretty(&df).expect("the AST serializes to JSON") + "\n"
        }),
    };
    match output {
        Ok(text) => {
            print_stdout(&text);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprint!("{}", err.render(&name, &src));
            Ok(ExitCode::from(crate::EXIT_FAILURE))
        }
    }
}

#[expect(
    clippy::print_stdout,
    reason = "kiln parse prints its machine output to stdout"
)]
fn print_stdout(text: &str) {
    print!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: &std::path::Path, format: Format) -> ParseArgs {
        ParseArgs {
            file: Some(file.to_path_buf()),
            format,
            context: PathBuf::from("."),
        }
    }

    #[test]
    fn parse_exit_codes_follow_the_parse_result() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("Dockerfile");
        fs_err::write(&good, "FROM alpine\nCMD [\"true\"]\n").expect("write Dockerfile");
        assert_eq!(run(&args(&good, Format::Json)).unwrap(), ExitCode::SUCCESS);
        assert_eq!(
            run(&args(&good, Format::BuildkitAst)).unwrap(),
            ExitCode::SUCCESS
        );
        let bad = dir.path().join("Bad.Dockerfile");
        fs_err::write(&bad, "FROM alpine\nCOPPY a b\n").expect("write Dockerfile");
        assert_eq!(
            run(&args(&bad, Format::Json)).unwrap(),
            ExitCode::from(crate::EXIT_FAILURE)
        );
        // The BuildKit dump needs only BuildKit's parser, which accepts unknown keywords.
        assert_eq!(
            run(&args(&bad, Format::BuildkitAst)).unwrap(),
            ExitCode::SUCCESS
        );
        let missing = dir.path().join("missing");
        let err = run(&args(&missing, Format::Json)).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
