//! Robustness: planning and expanding arbitrary parsable Dockerfiles never panics.

mod common;

use std::collections::BTreeMap;

use common::{expand_all, options};
use proptest::prelude::*;

/// Instruction lines built from fragments that exercise stages, args, references and
/// expansion, including broken ones.
fn line() -> impl Strategy<Value = String> {
    let word = prop::sample::select(vec![
        "busybox",
        "a",
        "B",
        "0",
        "1",
        "7",
        "$X",
        "${X}",
        "${X:-d}",
        "${X:?e}",
        "scratch",
        "alpine:3",
        "Bad:Ref",
        "ctx",
        "/x",
        "./y/",
        ".",
        "$TARGETARCH",
        "${BUILDPLATFORM}",
        "",
        "x=y",
        "80/tcp",
        "9-1",
        "sigterm",
        "755",
    ]);
    let w = || word.clone();
    prop_oneof![
        (w(), w()).prop_map(|(a, b)| format!("FROM {a} AS {b}")),
        w().prop_map(|a| format!("FROM {a}")),
        (w(), w()).prop_map(|(p, a)| format!("FROM --platform={p} {a}")),
        (w(), w()).prop_map(|(k, v)| format!("ARG {k}={v}")),
        w().prop_map(|k| format!("ARG {k}")),
        (w(), w()).prop_map(|(k, v)| format!("ENV {k}={v}")),
        (w(), w(), w()).prop_map(|(f, s, d)| format!("COPY --from={f} {s} {d}")),
        (w(), w()).prop_map(|(s, d)| format!("ADD {s} {d}")),
        (w(), w()).prop_map(|(f, t)| format!("RUN --mount=type=bind,from={f},target={t} echo {t}")),
        w().prop_map(|a| format!("RUN echo {a}")),
        w().prop_map(|a| format!("WORKDIR {a}")),
        w().prop_map(|a| format!("USER {a}")),
        w().prop_map(|a| format!("EXPOSE {a}")),
        w().prop_map(|a| format!("VOLUME {a}")),
        w().prop_map(|a| format!("STOPSIGNAL {a}")),
        w().prop_map(|a| format!("LABEL l={a}")),
        w().prop_map(|a| format!("CMD {a}")),
        w().prop_map(|a| format!("ENTRYPOINT [\"{a}\"]")),
        w().prop_map(|a| format!("ONBUILD RUN {a}")),
        Just("HEALTHCHECK NONE".to_owned()),
        Just("SHELL [\"/bin/bash\", \"-c\"]".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn planning_never_panics(
        lines in prop::collection::vec(line(), 1..12),
        target in prop::option::of(prop::sample::select(vec!["a", "b", "A", "nope"])),
        all in any::<bool>(),
        build_arg in prop::option::of(prop::sample::select(vec!["X", "TARGETARCH", "Y"])),
    ) {
        let src = format!("FROM busybox AS a\n{}\n", lines.join("\n"));
        let Ok(dockerfile) = kiln_dockerfile::parse(&src) else { return Ok(()) };
        let mut opts = options().all_stages(all).named_context("ctx");
        if let Some(t) = target {
            opts = opts.target(t);
        }
        if let Some(k) = build_arg {
            opts = opts.build_arg(k, "v");
        }
        if let Ok(graph) = kiln_plan::plan(&dockerfile, &opts) {
            // Dependencies come before their dependents.
            for (i, stage) in graph.stages.iter().enumerate() {
                for dep in &stage.deps {
                    prop_assert!(graph.stages[..i].iter().any(|s| s.id == *dep));
                }
            }
            prop_assert!(graph.stage(graph.target).is_some());
            if let Ok(stages) = expand_all(&graph, &BTreeMap::new()) {
                for (_, steps, _) in stages {
                    for step in steps {
                        let _ = step.key_inputs(None).key();
                    }
                }
            }
        }
    }
}
