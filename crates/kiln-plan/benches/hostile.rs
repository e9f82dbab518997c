//! Parse + plan time of hostile Dockerfiles (DESIGN.md §1.7): the sizes and shapes that used
//! to hang, overflow the stack or exhaust memory, now linear or stopped by a named limit.
//!
//! `cargo bench -p kiln-plan --bench hostile [-- CASE…]` runs each case once per round (three
//! rounds, the fastest kept) and prints the phase times, the outcome and the size of the
//! rendered error. No statistics framework: the point is orders of magnitude (seconds against
//! milliseconds), and a case that used to run for minutes must be runnable alone.

use std::fmt::Write as _;

use std::time::{Duration, Instant};

use kiln_plan::{PlanOptions, StageBase, StageState, plan};

/// One hostile Dockerfile.
struct Case {
    name: &'static str,
    what: &'static str,
    make: fn() -> String,
}

const CASES: &[Case] = &[
    Case {
        name: "env-100k",
        what: "100,000 `ENV Vi=vi` lines",
        make: || lines(100_000, |i| format!("ENV V{i}=v{i}")),
    },
    Case {
        name: "env-100k-expand",
        what: "100,000 `ENV Vi=${V0}x` lines (an expansion on every line)",
        make: || lines(100_000, |i| format!("ENV V{i}=${{V0}}x")),
    },
    Case {
        name: "env-100k-growing",
        what: "100,000 `ENV Vi=${V(i-1)}x` lines (quadratic total, error path)",
        make: || {
            lines(100_000, |i| {
                format!("ENV V{i}=${{V{}}}x", i.saturating_sub(1))
            })
        },
    },
    Case {
        name: "arg-100k",
        what: "100,000 `ARG Ai=ai` lines, then a RUN",
        make: || lines(100_000, |i| format!("ARG A{i}=a{i}")) + "RUN true\n",
    },
    Case {
        name: "label-100k",
        what: "100,000 `LABEL li=vi` lines",
        make: || lines(100_000, |i| format!("LABEL l{i}=v{i}")),
    },
    Case {
        name: "expose-100k",
        what: "100,000 `EXPOSE port` lines",
        make: || lines(100_000, |i| format!("EXPOSE {}", i % 65_535 + 1)),
    },
    Case {
        name: "nesting-3000",
        what: "`ENV X=${Y:-${Y:-…}}` nested 3,000 deep (error path)",
        make: || {
            let depth = 3_000;
            format!(
                "FROM scratch\nENV X={}z{}\n",
                "${Y:-".repeat(depth),
                "}".repeat(depth)
            )
        },
    },
    Case {
        name: "arg-doubling-39",
        what: "39 ARGs `ARG Ai=${A(i-1)}${A(i-1)}` (error path)",
        make: || {
            let mut text = String::from("FROM scratch\nARG A0=xx\n");
            for i in 1..=39 {
                let _ = writeln!(text, "ARG A{i}=${{A{0}}}${{A{0}}}", i - 1);
            }
            text
        },
    },
    Case {
        name: "line-10mb",
        what: "one 10 MB line (error path)",
        make: || format!("FROM scratch\nRUN {}\n", "x".repeat(10_000_000)),
    },
];

fn lines(count: usize, line: impl Fn(usize) -> String) -> String {
    let mut text = String::from("FROM scratch\n");
    for i in 0..count {
        text.push_str(&line(i));
        text.push('\n');
    }
    text
}

/// Times of one run and what it ended with.
struct Outcome {
    parse: Duration,
    plan: Duration,
    steps: Duration,
    result: String,
}

fn run(src: &str) -> Outcome {
    let started = Instant::now();
    let parsed = kiln_dockerfile::parse(src);
    let parse = started.elapsed();
    let dockerfile = match parsed {
        Ok(d) => d,
        Err(err) => {
            let rendered = err.render("Dockerfile", src);
            return Outcome {
                parse,
                plan: Duration::ZERO,
                steps: Duration::ZERO,
                result: format!(
                    "parse error, {} B rendered: {}",
                    rendered.len(),
                    first_line(&rendered)
                ),
            };
        }
    };
    let started = Instant::now();
    let options = PlanOptions::new("linux/amd64".parse().expect("platform"));
    let graph = plan(&dockerfile, &options);
    let plan_time = started.elapsed();
    let graph = match graph {
        Ok(g) => g,
        Err(err) => {
            return Outcome {
                parse,
                plan: plan_time,
                steps: Duration::ZERO,
                result: format!("plan error: {}", first_line(&err.to_string())),
            };
        }
    };
    let started = Instant::now();
    let mut result = String::from("ok");
    let mut count = 0;
    'stages: for stage in &graph.stages {
        let mut state = match StageState::new(&graph, stage, StageBase::Scratch) {
            Ok(s) => s,
            Err(err) => {
                result = format!("step error: {}", first_line(&err.to_string()));
                break;
            }
        };
        loop {
            match state.next_step() {
                Ok(Some(_)) => count += 1,
                Ok(None) => break,
                Err(err) => {
                    let text = err.to_string();
                    result = format!(
                        "step error after {count} steps, {} B: {}",
                        text.len(),
                        first_line(&text)
                    );
                    break 'stages;
                }
            }
        }
    }
    if result == "ok" {
        result = format!("ok, {count} steps");
    }
    Outcome {
        parse,
        plan: plan_time,
        steps: started.elapsed(),
        result,
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    kiln_dockerfile::excerpt(line, 0)
}

fn main() {
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    for case in CASES {
        if !wanted.is_empty() && !wanted.iter().any(|w| case.name.contains(w.as_str())) {
            continue;
        }
        let src = (case.make)();
        let mut best: Option<Outcome> = None;
        for _ in 0..3 {
            let outcome = run(&src);
            let total = outcome.parse + outcome.plan + outcome.steps;
            let slow = total > Duration::from_secs(5);
            if best
                .as_ref()
                .is_none_or(|b| total < b.parse + b.plan + b.steps)
            {
                best = Some(outcome);
            }
            if slow {
                break;
            }
        }
        let best = best.expect("one round");
        #[expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
        {
            println!(
                "{:<18} {:>9.3} ms parse {:>9.3} ms plan {:>9.3} ms steps  {} B  {}\n    {}",
                case.name,
                best.parse.as_secs_f64() * 1e3,
                best.plan.as_secs_f64() * 1e3,
                best.steps.as_secs_f64() * 1e3,
                src.len(),
                case.what,
                best.result
            );
        }
    }
}
