//! The planner under hostile Dockerfiles: expansion limits surface as [`PlanError::Expand`]
//! at the instruction's line, the build's expansion budget is shared across steps, and every
//! instruction kind stays linear (100,000 lines plan; no timing is asserted).

use std::fmt::Write as _;

use kiln_dockerfile::{ExpandError, MAX_EXPANDED_WORD_LENGTH, MAX_TOTAL_EXPANSION, parse};
use kiln_plan::{PlanError, PlanOptions, StageBase, StageState, plan};

/// Plans `src` and drives every stage on a scratch base; the first error, or the number of
/// steps and the final config's env length.
fn run(src: &str) -> Result<(usize, usize), PlanError> {
    let dockerfile = parse(src).expect("parses");
    let graph = plan(
        &dockerfile,
        &PlanOptions::new("linux/amd64".parse().unwrap()),
    )?;
    let mut steps = 0;
    let mut env = 0;
    for stage in &graph.stages {
        let mut state = StageState::new(&graph, stage, StageBase::Scratch)?;
        while state.next_step()?.is_some() {
            steps += 1;
        }
        env = state.image().config.env.len();
    }
    Ok((steps, env))
}

fn expand_error(err: PlanError) -> (u32, ExpandError, String) {
    let message = err.to_string();
    match err {
        PlanError::Expand { span, source, .. } => (span.line, *source, message),
        other => panic!("not an expansion error: {other}"),
    }
}

#[test]
fn deep_nesting_fails_at_its_line_in_every_expanding_instruction() {
    let deep = format!("{}z{}", "${Y:-".repeat(3_000), "}".repeat(3_000));
    for instruction in [
        format!("ENV X={deep}"),
        format!("LABEL x={deep}"),
        format!("WORKDIR /{deep}"),
        format!("ARG X={deep}"),
        format!("USER {deep}"),
        format!("EXPOSE {deep}"),
        format!("COPY {deep} /x"),
    ] {
        let src = format!("FROM scratch\nRUN true\n{instruction}\n");
        let (line, source, message) = expand_error(run(&src).unwrap_err());
        assert_eq!(line, 3, "{instruction:.20}");
        assert!(
            matches!(source, ExpandError::NestingTooDeep { .. }),
            "{source:?}"
        );
        assert!(message.contains("MAX_EXPANSION_DEPTH"), "{message}");
        assert!(message.len() < 1_000, "{} bytes", message.len());
    }
    // In FROM (phase 1) too.
    let src = format!("ARG B={deep}\nFROM scratch\n");
    let err = plan(
        &parse(&src).unwrap(),
        &PlanOptions::new("linux/amd64".parse().unwrap()),
    );
    let (line, source, _) = expand_error(err.unwrap_err());
    assert_eq!(line, 1);
    assert!(matches!(source, ExpandError::NestingTooDeep { .. }));
}

#[test]
fn thirty_nine_doubling_args_stop_at_the_word_limit() {
    let mut src = String::from("FROM scratch\nARG A0=xx\n");
    for i in 1..=39 {
        let _ = writeln!(src, "ARG A{i}=${{A{0}}}${{A{0}}}", i - 1);
    }
    let (line, source, message) = expand_error(run(&src).unwrap_err());
    // A19 is 2^20 bytes, exactly the limit; A20 would be twice that.
    assert_eq!(2_usize.pow(20), MAX_EXPANDED_WORD_LENGTH);
    assert_eq!(line, 2 + 20);
    assert!(
        matches!(source, ExpandError::WordTooLong { .. }),
        "{source:?}"
    );
    assert!(message.contains("MAX_EXPANDED_WORD_LENGTH") && message.len() < 1_000);
}

#[test]
fn growth_across_many_instructions_exhausts_the_build_budget() {
    let mut src = String::from("FROM scratch\nARG A0=xx\n");
    for i in 1..20 {
        let _ = writeln!(src, "ARG A{i}=${{A{0}}}${{A{0}}}", i - 1);
    }
    // Each copy is 1 MiB, under the word limit; together they pass the build's budget.
    let copies = MAX_TOTAL_EXPANSION / MAX_EXPANDED_WORD_LENGTH + 1;
    for i in 0..copies {
        let _ = writeln!(src, "ENV C{i}=${{A19}}");
    }
    let (line, source, message) = expand_error(run(&src).unwrap_err());
    assert!(
        matches!(source, ExpandError::BudgetExhausted { .. }),
        "{source:?}"
    );
    assert!(message.contains("MAX_TOTAL_EXPANSION"), "{message}");
    assert!((line as usize) < 22 + copies);
}

#[test]
fn a_hundred_thousand_lines_of_each_kind_plan() {
    const LINES: usize = 100_000;
    let many = |line: &dyn Fn(usize) -> String| {
        let mut src = String::from("FROM scratch\n");
        for i in 0..LINES {
            src.push_str(&line(i));
            src.push('\n');
        }
        src + "RUN true\n"
    };
    let (steps, env) = run(&many(&|i| format!("ENV V{i}=${{V0}}x"))).unwrap();
    assert_eq!((steps, env), (LINES + 1, LINES + 1)); // + PATH
    let (steps, _) = run(&many(&|i| format!("ARG A{i}=a{i}"))).unwrap();
    assert_eq!(steps, LINES + 1);
    let (steps, _) = run(&many(&|i| format!("LABEL l{i}=v{i}"))).unwrap();
    assert_eq!(steps, LINES + 1);
    let (steps, _) = run(&many(&|i| format!("EXPOSE {}", i % 60_000 + 1))).unwrap();
    assert_eq!(steps, LINES + 1);
    // `ENV Vi=${V(i-1)}x` grows quadratically in total: the budget stops it, at its line.
    let err = run(&many(&|i| format!("ENV V{i}=${{V{}}}x", i.max(1) - 1))).unwrap_err();
    let (line, source, _) = expand_error(err);
    assert!(
        matches!(source, ExpandError::BudgetExhausted { .. }),
        "{source:?}"
    );
    assert!(line > 10_000, "{line}");
}
