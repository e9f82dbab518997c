//! Hostile Dockerfiles given to the real `kiln build` (DESIGN.md §1.7): each is refused with
//! exit 1 and a short message naming the file, the line and the limit it broke — never a
//! panic, a stack overflow, a hang or megabytes of stderr. `FROM scratch` and config-only
//! steps: no root, no network, no image.

use std::fmt::Write as _;
use std::process::Stdio;

use crate::common::kiln_in;

/// Stderr a refused build may print, whatever the Dockerfile holds.
const MAX_STDERR: usize = 16 * 1024;

struct Case {
    name: &'static str,
    dockerfile: Vec<u8>,
    /// Every one of these must appear in stderr.
    expected: &'static [&'static str],
}

fn text(s: String) -> Vec<u8> {
    s.into_bytes()
}

fn nested(depth: usize) -> String {
    format!("{}z{}", "${Y:-".repeat(depth), "}".repeat(depth))
}

fn cases() -> Vec<Case> {
    let deep = nested(3_000);
    let mut doubling = String::from("FROM scratch\nARG A0=xx\n");
    for i in 1..=39 {
        let _ = writeln!(doubling, "ARG A{i}=${{A{0}}}${{A{0}}}", i - 1);
    }
    let mut non_utf8 = b"FROM scratch\nENV A=\xff\xfe\n".to_vec();
    non_utf8.extend_from_slice(b"RUN true\n");
    vec![
        Case {
            name: "env-nested-3000",
            dockerfile: text(format!("FROM scratch\nENV X={deep}\n")),
            expected: &["Dockerfile: line 2", "MAX_EXPANSION_DEPTH", "64"],
        },
        Case {
            name: "label-nested-3000",
            dockerfile: text(format!("FROM scratch\nLABEL x={deep}\n")),
            expected: &["Dockerfile: line 2", "MAX_EXPANSION_DEPTH"],
        },
        Case {
            name: "workdir-nested-3000",
            dockerfile: text(format!("FROM scratch\nWORKDIR /{deep}\n")),
            expected: &["Dockerfile: line 2", "MAX_EXPANSION_DEPTH"],
        },
        Case {
            name: "stage-arg-nested-3000",
            dockerfile: text(format!("FROM scratch\nARG X={deep}\n")),
            expected: &["Dockerfile: line 2", "MAX_EXPANSION_DEPTH"],
        },
        Case {
            name: "global-arg-nested-3000",
            dockerfile: text(format!("ARG B={deep}\nFROM scratch\n")),
            expected: &["Dockerfile: line 1", "MAX_EXPANSION_DEPTH"],
        },
        Case {
            name: "arg-doubling-39",
            dockerfile: text(doubling),
            expected: &["Dockerfile: line 22", "MAX_EXPANDED_WORD_LENGTH", "1048576"],
        },
        Case {
            name: "line-10mb",
            dockerfile: text(format!("FROM scratch\nRUN {}\n", "x".repeat(10_000_000))),
            expected: &["Dockerfile:2:", "MAX_LINE_LENGTH", "65535"],
        },
        Case {
            name: "expose-invalid",
            dockerfile: text(format!("FROM scratch\nEXPOSE 80/{}\n", "u".repeat(50_000))),
            expected: &["Dockerfile: line 2"],
        },
        Case {
            name: "add-chmod-invalid",
            dockerfile: text(format!(
                "FROM scratch\nADD --chmod={} a /a\n",
                "9".repeat(50_000)
            )),
            expected: &["Dockerfile: line 2", "chmod"],
        },
        Case {
            name: "unknown-instruction",
            dockerfile: text("FROM scratch\nCOPPY a /a\n".to_owned()),
            expected: &["error: unknown instruction", "Dockerfile:2:1"],
        },
        Case {
            name: "non-utf8",
            dockerfile: non_utf8,
            expected: &["Dockerfile", "UTF-8"],
        },
    ]
}

#[test]
fn hostile_dockerfiles_are_refused_briefly_with_file_line_and_limit() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir().expect("temp dir");
        let context = dir.path().join("context");
        fs_err::create_dir(&context).expect("context");
        fs_err::write(context.join("a"), "a").expect("file");
        fs_err::write(context.join("Dockerfile"), &case.dockerfile).expect("Dockerfile");
        let out = kiln_in(&dir.path().join("store"))
            .args(["build", "--progress", "plain", "-t", "bad:latest"])
            .arg(&context)
            .stdin(Stdio::null())
            .output()
            .expect("running kiln");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        let mut problems = Vec::new();
        if !matches!(code, Some(1 | 2)) {
            problems.push(format!("exit status {:?}", out.status));
        }
        if stderr.contains("panicked") || stderr.contains("stack overflow") {
            problems.push("panicked".to_owned());
        }
        if out.stderr.len() > MAX_STDERR {
            problems.push(format!("{} bytes of stderr", out.stderr.len()));
        }
        if stderr.contains("error: error:") {
            problems.push("doubled `error:` prefix".to_owned());
        }
        for expected in case.expected {
            if !stderr.contains(expected) {
                problems.push(format!("no `{expected}` in stderr"));
            }
        }
        if !problems.is_empty() {
            let shown: String = stderr.chars().take(2_000).collect();
            failures.push(format!("{}: {}\n{shown}", case.name, problems.join(", ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
