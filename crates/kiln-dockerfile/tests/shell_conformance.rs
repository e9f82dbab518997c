//! BuildKit's shell lexer tables (`../shared/conformance/buildkit/shell`), read in place and
//! run exactly as upstream's `TestShellParser4EnvVars` and `TestShellParser4Words` do (see the
//! conformance README, sections 3 and 4). Without the corpus the tests are skipped
//! (`kiln_no_conformance`), or fail under `CI=true`.

use std::path::{Path, PathBuf};

use kiln_dockerfile::{ExpandError, ShellLexer};

/// The shell tables (`kiln_test::require_conformance`).
fn shell_dir() -> PathBuf {
    kiln_test::require_conformance().join("buildkit/shell")
}

fn read(path: &Path) -> String {
    fs_err::read_to_string(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Physical lines as Go's `bufio.Scanner` yields them: split at `\n`, one trailing `\r`
/// removed, no empty line after a final newline.
fn scanner_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn env_var_test_rows_expand_like_buildkit() {
    let dir = shell_dir();
    let env: [(&str, &str); 4] = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ];
    let lexer = ShellLexer::new('\\');
    let text = read(&dir.join("envVarTest"));
    let (mut ran, mut errors) = (0, 0);
    let mut failures = Vec::new();
    for (number, line) in scanner_lines(&text) {
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(
            fields.len(),
            3,
            "envVarTest:{number}: expected 3 fields in {line:?}"
        );
        let (platform, source, expected) = (fields[0], fields[1], fields[2]);
        match platform {
            "A" | "U" => {}
            "W" => continue,
            other => panic!("envVarTest:{number}: unknown platform {other:?}"),
        }
        ran += 1;
        let got = lexer.process_word(source, &env[..]);
        if expected == "error" {
            errors += 1;
            if let Ok(value) = &got {
                failures.push(format!(
                    "envVarTest:{number}: {source:?} gave {value:?}, expected an error"
                ));
            }
        } else {
            match got {
                Ok(value) if value == expected => {}
                Ok(value) => failures.push(format!(
                    "envVarTest:{number}: {source:?} gave {value:?}, expected {expected:?}"
                )),
                Err(error) => failures.push(format!(
                    "envVarTest:{number}: {source:?} failed ({error}), expected {expected:?}"
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, 228, "Linux runs 228 rows of envVarTest");
    assert_eq!(errors, 36, "36 of them expect an error");
}

#[test]
#[cfg_attr(
    kiln_no_conformance,
    ignore = "needs the conformance corpus (KILN_CONFORMANCE_DIR)"
)]
fn words_test_rows_split_like_buildkit() {
    let dir = shell_dir();
    let lexer = ShellLexer::new('\\');
    let text = read(&dir.join("wordsTest"));
    let mut env: Vec<(String, String)> = Vec::new();
    let mut ran = 0;
    let mut failures = Vec::new();
    for (number, line) in scanner_lines(&text) {
        if line.starts_with('#') {
            continue;
        }
        if let Some(definition) = line.strip_prefix("ENV ") {
            // Upstream drops "ENV" and then leading spaces; the value keeps trailing spaces.
            let definition = definition.trim_start_matches(' ');
            let (name, value) = definition
                .split_once('=')
                .unwrap_or_else(|| panic!("wordsTest:{number}: ENV line without '='"));
            env.push((name.to_owned(), value.to_owned()));
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(
            fields.len(),
            2,
            "wordsTest:{number}: expected exactly one '|' in {line:?}"
        );
        let input = fields[0].trim();
        let expected: Vec<&str> = fields[1].trim_start_matches(' ').split(',').collect();
        ran += 1;
        let got: Result<Vec<String>, ExpandError> = lexer.process_words(input, &env[..]);
        if expected == ["error"] {
            if let Ok(words) = &got {
                failures.push(format!(
                    "wordsTest:{number}: {input:?} gave {words:?}, expected an error"
                ));
            }
            continue;
        }
        match got {
            Ok(words) if words == expected => {}
            Ok(words) => failures.push(format!(
                "wordsTest:{number}: {input:?} gave {} words {words:?}, expected {} words {expected:?}",
                words.len(),
                expected.len()
            )),
            Err(error) => failures.push(format!(
                "wordsTest:{number}: {input:?} failed ({error}), expected {expected:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, 24, "wordsTest has 24 rows");
    assert_eq!(env.len(), 4, "wordsTest defines 4 variables");
}
