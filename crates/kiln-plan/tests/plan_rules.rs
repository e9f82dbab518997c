//! Planning rules as assertions: targets, pruning, references, args, warnings, errors.

mod common;

use std::collections::BTreeMap;

use common::{expand_all, options, plan_src};
use kiln_oci::ImageConfiguration;
use kiln_plan::{
    Action, BaseSource, ConfigEdit, PlanError, PlanWarning, SourceRef, StageBase, StageId,
    StageState,
};

const THREE_STAGES: &str = "FROM busybox AS Builder\nRUN make\nFROM busybox AS tester\nRUN test\nFROM busybox\nCOPY --from=builder /out /out\n";

#[test]
fn without_target_the_last_stage_is_built_with_its_dependencies_only() {
    let graph = plan_src(THREE_STAGES, &options()).unwrap();
    let ids: Vec<usize> = graph.stages.iter().map(|s| s.id.0).collect();
    assert_eq!(ids, [0, 2], "the unrelated `tester` stage is pruned");
    assert_eq!(graph.target, StageId(2));
    assert_eq!(graph.target_stage().deps, [StageId(0)]);
    assert_eq!(graph.dependents(StageId(0)), [StageId(2)]);
}

#[test]
fn target_is_case_insensitive_and_unknown_targets_list_the_stages() {
    let graph = plan_src(THREE_STAGES, &options().target("TESTER")).unwrap();
    assert_eq!(graph.stages.len(), 1);
    assert_eq!(graph.target, StageId(1));
    let err = plan_src(THREE_STAGES, &options().target("prod")).unwrap_err();
    assert!(
        matches!(&err, PlanError::UnknownTarget { available, .. } if available == &["builder", "tester"])
    );
    assert_eq!(
        err.to_string(),
        "target stage `prod` could not be found; stages are: builder, tester"
    );
}

#[test]
fn a_broken_unrelated_stage_does_not_fail_the_plan() {
    let src = "FROM busybox AS ok\nRUN true\nFROM ${NOPE:?required} AS broken\nCOPY --from=$X / /\nFROM NOT_VALID::REF AS garbage\n";
    let graph = plan_src(src, &options().target("ok")).unwrap();
    assert_eq!(graph.stages.len(), 1);
    // The same stages fail once they are needed.
    let err = plan_src(src, &options().target("broken")).unwrap_err();
    assert!(matches!(err, PlanError::Expand { .. }), "{err}");
    let err = plan_src(src, &options().target("garbage")).unwrap_err();
    assert!(matches!(err, PlanError::InvalidReference { .. }), "{err}");
    let err = plan_src(src, &options().all_stages(true)).unwrap_err();
    assert!(matches!(err, PlanError::Expand { .. }), "{err}");
}

#[test]
fn from_uses_global_args_and_build_args_override_them() {
    let src = "ARG REPO=busybox\nARG TAG=1.36\nFROM ${REPO}:${TAG}\n";
    let graph = plan_src(src, &options()).unwrap();
    assert!(
        matches!(&graph.stages[0].base, BaseSource::Image(r) if r.to_string() == "docker.io/library/busybox:1.36")
    );
    let graph = plan_src(src, &options().build_arg("TAG", "musl")).unwrap();
    assert!(
        matches!(&graph.stages[0].base, BaseSource::Image(r) if r.to_string() == "docker.io/library/busybox:musl")
    );
    assert!(graph.warnings.is_empty(), "{:?}", graph.warnings);
    let err = plan_src("ARG TAG=\nFROM $TAG\n", &options()).unwrap_err();
    assert!(matches!(err, PlanError::EmptyBaseName { .. }), "{err}");
}

#[test]
fn from_sees_platform_args_without_declaration() {
    let src = "FROM --platform=$BUILDPLATFORM busybox:${TARGETARCH}\n";
    let opts =
        kiln_plan::PlanOptions::new("linux/arm64".parse().unwrap()).build_platform(common::amd64());
    let graph = plan_src(src, &opts).unwrap();
    let stage = &graph.stages[0];
    assert_eq!(stage.platform.to_string(), "linux/amd64");
    assert!(matches!(&stage.base, BaseSource::Image(r) if r.tag() == Some("arm64")));
    let err = plan_src("FROM --platform=nope/x/y/z busybox\n", &options()).unwrap_err();
    assert!(matches!(err, PlanError::InvalidPlatform { .. }), "{err}");
}

#[test]
fn global_args_are_invisible_in_a_stage_until_redeclared() {
    let src = "ARG V=1\nFROM busybox\nRUN echo a\nENV X=${V}-x\nARG V\nENV Y=${V}-y\n";
    let graph = plan_src(src, &options()).unwrap();
    let stages = expand_all(&graph, &BTreeMap::new()).unwrap();
    let env = &stages[0].2.image.config.env;
    assert!(env.contains(&"X=-x".to_owned()), "{env:?}");
    assert!(env.contains(&"Y=1-y".to_owned()), "{env:?}");
    // ARG values are in RUN's env but never in the image config.
    assert!(!env.iter().any(|e| e.starts_with("V=")), "{env:?}");
}

#[test]
fn stage_args_carry_into_stages_built_from_them() {
    let src = "FROM busybox AS base\nARG A=1\nFROM base\nRUN echo $A\n";
    let graph = plan_src(src, &options()).unwrap();
    let stages = expand_all(&graph, &BTreeMap::new()).unwrap();
    let Action::Run(run) = &stages[1].1[0].action else {
        panic!("RUN")
    };
    assert_eq!(run.args_in_scope, [("A".to_owned(), "1".to_owned())]);
    assert!(run.env.contains(&"A=1".to_owned()));
}

#[test]
fn unused_build_args_are_warned_except_predefined_ones() {
    let src =
        "ARG GLOBAL\nFROM busybox AS a\nARG USED\nFROM busybox AS b\nARG ONLY_IN_PRUNED\nFROM a\n";
    let opts = options()
        .build_arg("GLOBAL", "1")
        .build_arg("USED", "1")
        .build_arg("ONLY_IN_PRUNED", "1")
        .build_arg("TYPO", "1")
        .build_arg("http_proxy", "http://p")
        .build_arg("TARGETARCH", "amd64")
        .build_arg("SOURCE_DATE_EPOCH", "0");
    let graph = plan_src(src, &opts).unwrap();
    assert_eq!(
        graph.warnings,
        [PlanWarning::UnusedBuildArgs {
            names: vec!["ONLY_IN_PRUNED".into(), "TYPO".into()]
        }]
    );
}

#[test]
fn references_by_name_index_image_scratch_and_context() {
    let src = "FROM busybox AS one\nFROM busybox\nCOPY --from=ONE /a /a\nCOPY --from=0 /a /b\nCOPY --from=alpine:3 /c /c\nCOPY --from=ctx /d /d\nRUN --mount=from=one,target=/m true\n";
    let graph = plan_src(src, &options().named_context("ctx")).unwrap();
    let stages = expand_all(&graph, &BTreeMap::new()).unwrap();
    let froms: Vec<SourceRef> = stages[1]
        .1
        .iter()
        .filter_map(|s| match &s.action {
            Action::Copy(c) => Some(c.from.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(froms[0], SourceRef::Stage(StageId(0)));
    assert_eq!(froms[1], SourceRef::Stage(StageId(0)));
    assert!(
        matches!(&froms[2], SourceRef::Image(r) if r.to_string() == "docker.io/library/alpine:3")
    );
    assert_eq!(froms[3], SourceRef::NamedContext("ctx".into()));
    assert_eq!(graph.stages[1].deps, [StageId(0)]);
}

#[test]
fn bad_references_are_errors_naming_the_line() {
    let cases = [
        (
            "FROM busybox\nCOPY --from=5 /a /a\n",
            "invalid stage index 5",
        ),
        (
            "FROM busybox\nCOPY --from=0 /a /a\n",
            "needs to be defined before",
        ),
        (
            "FROM busybox AS a\nCOPY --from=later /a /a\nFROM busybox AS later\nFROM a\n",
            "needs to be defined before",
        ),
        (
            "FROM busybox\nCOPY --from=$X /a /a\n",
            "variable expansion is not supported for --from",
        ),
        (
            "FROM busybox\nCOPY --from=Bad:Ref /a /a\n",
            "neither a stage",
        ),
    ];
    for (src, want) in cases {
        let message = match plan_src(src, &options()) {
            Err(e) => e.to_string(),
            Ok(graph) => match expand_all(&graph, &BTreeMap::new()) {
                Err(e) => e.to_string(),
                Ok(_) => String::from("<no error>"),
            },
        };
        assert!(message.contains(want), "{src:?}: {message}");
        assert!(message.starts_with("line 2:"), "{src:?}: {message}");
    }
}

#[test]
fn stage_base_lookup_is_exact_and_named_contexts_replace_stages() {
    let graph = plan_src("FROM busybox AS base\nFROM base\n", &options()).unwrap();
    assert_eq!(graph.stages[1].base, BaseSource::Stage(StageId(0)));
    // A context named like a stage replaces the whole stage.
    let graph = plan_src(
        "FROM busybox AS base\nRUN exit 1\nFROM base\n",
        &options().named_context("base"),
    )
    .unwrap();
    let base = graph.stage(StageId(0)).unwrap();
    assert!(base.is_replaced_by_context());
    assert!(base.instructions.is_empty());
    // A context named like an image replaces the image (familiar name, no `:latest`).
    let graph = plan_src(
        "FROM docker.io/library/busybox\n",
        &options().named_context("busybox"),
    )
    .unwrap();
    assert_eq!(
        graph.stages[0].base,
        BaseSource::NamedContext("busybox".into())
    );
}

#[test]
fn lint_warnings() {
    let src = "FROM busybox as Builder\nFROM busybox AS builder\nFROM busybox AS scratch\n";
    let graph = plan_src(src, &options().all_stages(true)).unwrap();
    let names: Vec<String> = graph.warnings.iter().map(ToString::to_string).collect();
    assert!(
        names.iter().any(|w| w.contains("FromAsCasing")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|w| w.contains("StageNameCasing")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|w| w.contains("DuplicateStageName")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|w| w.contains("ReservedStageName")),
        "{names:?}"
    );
}

#[test]
fn entrypoint_resets_only_an_inherited_cmd() {
    let graph = plan_src(
        "FROM busybox AS a\nENTRYPOINT [\"/x\"]\nFROM busybox\nCMD [\"y\"]\nENTRYPOINT [\"/x\"]\n",
        &options().all_stages(true),
    )
    .unwrap();
    let stages = expand_all(&graph, &BTreeMap::new()).unwrap();
    assert!(
        stages[0].2.image.config.cmd.is_empty(),
        "inherited `sh` reset"
    );
    assert_eq!(stages[1].2.image.config.cmd, ["y"]);
}

#[test]
fn image_onbuild_triggers_run_first_and_are_cleared() {
    let graph = plan_src("FROM base-with-triggers\nRUN echo main\n", &options()).unwrap();
    let mut base = ImageConfiguration::new(&common::amd64());
    base.config.on_build = vec!["RUN echo trigger".into(), "ENV FROM_TRIGGER=1".into()];
    let mut state = StageState::new(&graph, &graph.stages[0], StageBase::Image(&base)).unwrap();
    let first = state.next_step().unwrap().unwrap();
    assert!(first.is_onbuild);
    assert_eq!(
        first.progress.as_deref(),
        Some("[2/4] ONBUILD RUN echo trigger")
    );
    let second = state.next_step().unwrap().unwrap();
    assert!(matches!(second.config_edit, Some(ConfigEdit::Env { .. })));
    assert_eq!(
        second.progress.as_deref(),
        Some("[3/4] ONBUILD ENV FROM_TRIGGER=1")
    );
    let main = state.next_step().unwrap().unwrap();
    assert_eq!(main.progress.as_deref(), Some("[4/4] RUN echo main"));
    assert!(state.next_step().unwrap().is_none());
    assert!(state.image().config.on_build.is_empty());

    base.config.on_build = vec!["FROM x".into()];
    let err = StageState::new(&graph, &graph.stages[0], StageBase::Image(&base)).unwrap_err();
    assert!(matches!(err, PlanError::InvalidTrigger { .. }), "{err}");
}

#[test]
fn invalid_values_found_during_expansion_are_errors() {
    for (src, want) in [
        ("FROM busybox\nEXPOSE 80/http\n", "invalid port"),
        ("FROM busybox\nSTOPSIGNAL SIGNOPE\n", "invalid signal"),
        ("FROM busybox\nCOPY --chmod=999 a b\n", "invalid chmod"),
        ("FROM busybox\nVOLUME ${E}\n", "empty string"),
        (
            "FROM busybox\nADD --checksum=sha256:00 a b\n",
            "checksum requires",
        ),
        ("FROM busybox\nENV A=${X:?required}\n", "cannot expand"),
    ] {
        let graph = plan_src(src, &options()).unwrap();
        let err = expand_all(&graph, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{src:?}: {err}");
        assert!(err.starts_with("line 2:"), "{src:?}: {err}");
    }
}

#[test]
fn image_triggers_report_the_stages_they_read() {
    let graph = plan_src(
        "FROM busybox AS assets\nRUN touch /a\nFROM base-with-triggers\nCOPY --from=assets /a /a\n",
        &options(),
    )
    .unwrap();
    let stage = graph.target_stage();
    let mut base = ImageConfiguration::new(&common::amd64());
    base.config.on_build = vec!["COPY --from=assets /a /b".into()];
    let state = StageState::new(&graph, stage, StageBase::Image(&base)).unwrap();
    assert_eq!(state.trigger_stage_refs(), [StageId(0)]);
    // Without triggers there is nothing beyond the planned deps.
    let plain = ImageConfiguration::new(&common::amd64());
    let state = StageState::new(&graph, stage, StageBase::Image(&plain)).unwrap();
    assert!(state.trigger_stage_refs().is_empty());
}

#[test]
fn from_key_inputs_follow_the_base_digest() {
    let graph = plan_src("FROM busybox\n", &options()).unwrap();
    let stage = &graph.stages[0];
    let v1 = stage.base_key_inputs(Some(kiln_oci::Digest::sha256_of(b"v1")));
    let v2 = stage.base_key_inputs(Some(kiln_oci::Digest::sha256_of(b"v2")));
    assert_eq!(v1.instruction, "FROM docker.io/library/busybox:latest");
    assert_ne!(v1.key(), v2.key());
    assert_eq!(
        kiln_plan::explain_miss(Some(&v1), &v2).to_string(),
        "base image updated"
    );
}

#[test]
fn parser_warnings_are_passed_on() {
    let graph = plan_src("FROM busybox\nMAINTAINER me\n", &options()).unwrap();
    assert!(
        graph.warnings.iter().any(
            |w| matches!(w, PlanWarning::Syntax { message, .. } if message.contains("MAINTAINER"))
        ),
        "{:?}",
        graph.warnings
    );
}
