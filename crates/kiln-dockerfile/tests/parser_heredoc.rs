//! Heredoc detection and bodies, case by case, as BuildKit's parser attaches them.

use kiln_dockerfile::parse_syntax;

/// (name, content, expand, chomp, file descriptor)
type Doc = (&'static str, &'static str, bool, bool, u64);
/// The same, owned, as parsed.
type OwnedDoc = (String, String, bool, bool, u64);

fn docs(src: &str) -> Vec<Vec<OwnedDoc>> {
    let tree = parse_syntax(src).unwrap_or_else(|e| panic!("{}", e.render("Dockerfile", src)));
    tree.nodes
        .iter()
        .map(|n| {
            n.heredocs
                .iter()
                .map(|h| {
                    (
                        h.name.clone(),
                        h.content.clone(),
                        h.expand,
                        h.chomp,
                        h.file_descriptor,
                    )
                })
                .collect()
        })
        .collect()
}

fn check(src: &str, expected: &[&[Doc]]) {
    let got = docs(src);
    let want: Vec<Vec<OwnedDoc>> = expected
        .iter()
        .map(|d| {
            d.iter()
                .map(|&(n, c, e, ch, fd)| (n.to_owned(), c.to_owned(), e, ch, fd))
                .collect()
        })
        .collect();
    assert_eq!(got, want, "{src}");
}

#[test]
fn heredoc_openers_and_bodies() {
    let src = "FROM busybox\n\
USER <<NOTHERE\n\
NOTHERE\n\
RUN <<E1\n\
E1\n\
RUN 4<<E2\n\
E2\n\
RUN \"<<QUOTED\"\n\
RUN <<KEEP\n\
\tone\n\
\ttwo\n\
KEEP\n\
RUN <<-STRIP\n\
\tone\n\
\tSTRIP\n\
RUN <<-'RAW'\n\
\tcost $5\n\
RAW\n\
RUN --mount=type=cache,target=/c <<M\n\
# kept, not a comment\n\
M\n\
COPY <<A <<B /dst/\n\
B\n\
A\n\
A\n\
B\n\
RUN <<PY python3\n\
print(1)\n\
PY\n\
COPY <<cfg.ini /etc/\n\
x=1\n\
cfg.ini\n\
RUN <<te'rm'\n\
body\n\
term\n\
RUN <<te\\'rm\n\
body\n\
te'rm\n\
RUN <<'two words'\n\
two words\n\
RUN <<$VAR\n\
$VAR\n\
RUN <<   SPACED  > out\n\
SPACED\n";
    check(
        src,
        &[
            &[],
            &[],
            &[],
            &[("E1", "", true, false, 0)],
            &[("E2", "", true, false, 4)],
            &[],
            &[("KEEP", "\tone\n\ttwo\n", true, false, 0)],
            &[("STRIP", "\tone\n", true, true, 0)],
            &[("RAW", "\tcost $5\n", false, true, 0)],
            &[("M", "# kept, not a comment\n", true, false, 0)],
            &[("A", "B\n", true, false, 0), ("B", "A\n", true, false, 0)],
            &[("PY", "print(1)\n", true, false, 0)],
            &[("cfg.ini", "x=1\n", true, false, 0)],
            &[("term", "body\n", false, false, 0)],
            &[("te'rm", "body\n", true, false, 0)],
            &[("two words", "", false, false, 0)],
            &[("$VAR", "", true, false, 0)],
            &[("SPACED", "", true, false, 0)],
        ],
    );
}

#[test]
fn json_form_and_other_instructions_take_no_heredocs() {
    let src = "FROM a\nRUN [\"cat\", \"<<EOF\"]\nCMD <<EOF\nENV X=<<EOF\n";
    check(src, &[&[], &[], &[], &[]]);
}

#[test]
fn onbuild_triggers_take_heredocs() {
    let src = "FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\n";
    check(src, &[&[], &[("EOF", "echo hi\n", true, false, 0)]]);
    let df = kiln_dockerfile::parse(src).unwrap();
    let kiln_dockerfile::Command::Onbuild(onbuild) = &df.instructions[1].command else {
        panic!("ONBUILD");
    };
    assert_eq!(onbuild.expression, "RUN <<EOF\necho hi\nEOF");
    let kiln_dockerfile::Command::Run(run) = &onbuild.trigger.command else {
        panic!("RUN trigger");
    };
    assert_eq!(run.heredocs[0].content, "echo hi\n");
}

#[test]
fn unterminated_heredoc_is_an_error() {
    let err = parse_syntax("FROM a\nRUN <<EOF\necho\n").unwrap_err();
    assert!(err.to_string().contains("unterminated heredoc"), "{err}");
    assert_eq!(err.span.line, 2);
}

#[test]
fn crlf_bodies_keep_their_line_endings() {
    let src = "FROM a\r\nRUN <<EOF\r\necho hi\r\nEOF\r\nRUN echo after\r\n";
    check(src, &[&[], &[("EOF", "echo hi\r\n", true, false, 0)], &[]]);
}
