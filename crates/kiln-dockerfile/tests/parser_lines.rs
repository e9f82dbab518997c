//! Logical lines, directives, JSON forms and flags: behaviour BuildKit tests only in Go.

use kiln_dockerfile::{ParseErrorKind, parse, parse_syntax};

fn dump(src: &str) -> String {
    parse_syntax(src)
        .unwrap_or_else(|e| panic!("{}", e.render("Dockerfile", src)))
        .dump_buildkit_ast()
}

#[test]
fn empty_continuation_lines_warn_once_per_instruction() {
    let src = "FROM alpine:3.6\n\nRUN ok \\\n    cont\n\nRUN one \\\n\n    two \\\n\n    three\n\nRUN four \\\n\n    five\n\nRUN c \\\n# comment\n   d\n";
    let tree = parse_syntax(src).unwrap();
    let messages: Vec<&str> = tree.warnings.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(
        messages,
        vec![
            "Empty continuation line found in: RUN one     two     three",
            "Empty continuation line found in: RUN four     five",
        ]
    );
    assert_eq!(tree.warnings[0].span.line, 10);
}

#[test]
fn json_arrays_of_strings() {
    for (args, expected) in [
        ("[]", "(cmd)"),
        ("[\"\"]", "(cmd \"\")"),
        ("[ \"a\", \"b\" ]", "(cmd \"a\" \"b\")"),
        ("\t[\t\"a\",\t\"b\"\t]\t", "(cmd \"a\" \"b\")"),
        ("[\"\\u2603\\ud83d\\ude00\"]", "(cmd \"☃😀\")"),
    ] {
        assert_eq!(dump(&format!("CMD {args}\n")), expected, "{args}");
    }
    for bad in [
        "[\"a\",42,\"b\"]",
        "[\"a\",123.456,\"b\"]",
        "[\"a\",{},\"b\"]",
        "[\"a\",{\"c\": \"d\"},\"b\"]",
        "[\"a\",[\"c\"],\"b\"]",
        "[\"a\",true,\"b\"]",
        "[\"a\",false,\"b\"]",
        "[\"a\",null,\"b\"]",
    ] {
        let err = parse_syntax(&format!("CMD {bad}\n")).unwrap_err();
        assert!(
            matches!(err.kind, ParseErrorKind::JsonNotStringArray { .. }),
            "{bad}: {err}"
        );
        let err = parse_syntax(&format!("COPY {bad}\n")).unwrap_err();
        assert!(matches!(
            err.kind,
            ParseErrorKind::JsonNotStringArray { .. }
        ));
    }
}

#[test]
fn directives_follow_buildkit_placement() {
    let tree =
        parse_syntax("# syntax=a\n#check = skip=all\n# escape=`\nFROM x `\n  AS y\n").unwrap();
    let names: Vec<(&str, &str)> = tree
        .directives
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("syntax", "a"), ("check", "skip=all"), ("escape", "`")]
    );
    assert_eq!(tree.dump_buildkit_ast(), "(from \"x\" \"AS\" \"y\")");
    // A blank line ends the directive block: the escape below is an ordinary comment.
    let tree = parse_syntax("\n# escape=`\nFROM x \\\n y\n").unwrap();
    assert!(tree.directives.is_empty());
    assert_eq!(tree.dump_buildkit_ast(), "(from \"x\" \"y\")");
    let err = parse_syntax("# escape=!\nFROM x\n").unwrap_err();
    assert!(matches!(
        err.kind,
        ParseErrorKind::InvalidEscapeToken { .. }
    ));
    let err = parse_syntax("# check=a\n# Check=b\nFROM x\n").unwrap_err();
    assert!(matches!(
        err.kind,
        ParseErrorKind::DuplicateDirective { .. }
    ));
    // An unknown key ends the block without error.
    let tree = parse_syntax("# foo=bar\n# escape=`\nFROM x\n").unwrap();
    assert!(tree.directives.is_empty());
}

#[test]
fn flags_unquote_and_stop_like_buildkit() {
    assert_eq!(
        dump("COPY --chown=\"a b\" --x='y z' --e=a\\ b -- --not-a-flag /d\n"),
        "(copy [\"--chown=a b\" \"--x=y z\" \"--e=a b\"] \"--not-a-flag\" \"/d\")"
    );
    assert_eq!(
        dump("RUN --mount=type=cache,target=/x\n"),
        "(run [\"--mount=type=cache,target=/x\"])"
    );
}

#[test]
fn unknown_instructions_and_onbuild_dump_like_buildkit() {
    assert_eq!(dump("FOO bar baz\n"), "(foo \"\")");
    assert_eq!(
        dump("ONBUILD COPY --from=a . /\nonbuild run [\"a\"]\n"),
        "(onbuild (copy [\"--from=a\"] \".\" \"/\"))\n(onbuild (run \"a\"))"
    );
    assert_eq!(dump("HEALTHCHECK NONE\n"), "(healthcheck \"NONE\")");
}

#[test]
fn typed_view_errors_name_their_subject() {
    type Check = fn(&ParseErrorKind) -> bool;
    let cases: [(&str, Check); 8] = [
        (
            "FROM a\nCOPPY x y\n",
            |k| matches!(k, ParseErrorKind::UnknownInstruction { name } if name == "COPPY"),
        ),
        ("FROM a\nENV\n", |k| {
            matches!(k, ParseErrorKind::ArgumentCount { .. })
        }),
        (
            "FROM a\nADD --from=x a b\n",
            |k| matches!(k, ParseErrorKind::UnknownFlag { flag, .. } if flag == "--from"),
        ),
        ("FROM a\nRUN --mount=type=cache,mode=abc x\n", |k| {
            matches!(k, ParseErrorKind::InvalidMount { .. })
        }),
        (
            "FROM a\nHEALTHCHECK --start-period=1x CMD x\n",
            |k| matches!(k, ParseErrorKind::InvalidDuration { flag, .. } if flag == "--start-period"),
        ),
        ("FROM a\nONBUILD FROM b\n", |k| {
            matches!(k, ParseErrorKind::OnbuildTrigger { .. })
        }),
        ("FROM a AS -x\n", |k| {
            matches!(k, ParseErrorKind::InvalidStageName { .. })
        }),
        ("COPY a b\n", |k| {
            matches!(k, ParseErrorKind::NoBuildStage { .. })
        }),
    ];
    for (src, check) in cases {
        let err = parse(src).unwrap_err();
        assert!(check(&err.kind), "{src}: {err}");
    }
    let src = "FROM a\n  COPPY x y\n";
    let rendered = parse(src).unwrap_err().render("Dockerfile", src);
    assert_eq!(
        rendered,
        "error: unknown instruction `COPPY`\n --> Dockerfile:2:3\n  |\n2 |   COPPY x y\n  |   ^^^^^ did you mean `COPY`?\n"
    );
}

#[test]
fn healthcheck_values_are_typed() {
    let df = parse(
        "FROM a\nHEALTHCHECK --interval=1m30s --timeout=500ms --retries=4 CMD [\"/check\"]\n",
    )
    .unwrap();
    let kiln_dockerfile::Command::Healthcheck(kiln_dockerfile::Healthcheck::Cmd(hc)) =
        &df.instructions[1].command
    else {
        panic!("healthcheck");
    };
    assert_eq!(hc.interval, std::time::Duration::from_secs(90));
    assert_eq!(hc.timeout, std::time::Duration::from_millis(500));
    assert_eq!(hc.retries, 4);
    assert_eq!(
        hc.test,
        kiln_dockerfile::ShellOrExec::Exec(vec!["/check".into()])
    );
}
