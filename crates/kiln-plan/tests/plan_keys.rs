//! Cache keys of expanded steps: stability, sensitivity to what matters, blindness to what
//! must not matter (proxy args, secrets contents, history text), and miss explanations.

mod common;

use std::collections::BTreeMap;

use common::{expand_all, options, plan_src};
use kiln_oci::Digest;
use kiln_plan::{CacheKey, KeyInputs, PlanOptions, Step, explain_miss};

const DOCKERFILE: &str = "FROM busybox AS build
ARG VERSION=1
WORKDIR /src
COPY app/ ./app/
RUN --mount=type=secret,id=token make VERSION=$VERSION
FROM busybox
COPY --from=build /src/out /out
CMD [\"/out\"]
";

/// Key inputs of every step of every stage, chained (parent = previous step's key), with
/// fake input digests for the COPY steps.
fn chain(options: &PlanOptions, main_py: &[u8]) -> Vec<KeyInputs> {
    let graph = plan_src(DOCKERFILE, options).unwrap();
    let stages = expand_all(&graph, &BTreeMap::new()).unwrap();
    let mut out = Vec::new();
    for (_, steps, _) in stages {
        let mut parent: Option<CacheKey> = None;
        for step in &steps {
            let mut inputs = step.key_inputs(parent);
            add_fake_inputs(step, &mut inputs, main_py);
            parent = Some(inputs.key());
            out.push(inputs);
        }
    }
    out
}

fn add_fake_inputs(step: &Step, inputs: &mut KeyInputs, main_py: &[u8]) {
    if let kiln_plan::Action::Copy(copy) = &step.action {
        if copy.sources == ["app/"] {
            inputs.add_input("file app/main.py", Digest::sha256_of(main_py));
            inputs.add_input("file app/util.py", Digest::sha256_of(b"util"));
        } else {
            inputs.add_input("stage build:/src/out", Digest::sha256_of(b"out"));
        }
    }
}

fn keys(chain: &[KeyInputs]) -> Vec<CacheKey> {
    chain.iter().map(KeyInputs::key).collect()
}

#[test]
fn same_input_same_keys() {
    let a = keys(&chain(&options(), b"v1"));
    let b = keys(&chain(&options(), b"v1"));
    assert_eq!(a, b);
    let unique: std::collections::BTreeSet<_> = a.iter().collect();
    assert_eq!(unique.len(), a.len(), "every step has its own key");
}

#[test]
fn proxy_args_and_unused_args_do_not_change_keys() {
    let base = keys(&chain(&options(), b"v1"));
    let proxied = keys(&chain(
        &options()
            .build_arg("HTTP_PROXY", "http://proxy:3128")
            .build_arg("no_proxy", "localhost"),
        b"v1",
    ));
    assert_eq!(base, proxied);
}

#[test]
fn a_changed_build_arg_changes_the_keys_from_its_arg_on_and_is_explained() {
    let old = chain(&options(), b"v1");
    let new = chain(&options().build_arg("VERSION", "2"), b"v1");
    // Step 0 is `ARG VERSION` in the build stage.
    assert_eq!(
        old[0].instruction, new[0].instruction,
        "ARG text keeps only names"
    );
    assert_ne!(old[0].key(), new[0].key());
    assert_eq!(
        explain_miss(Some(&old[0]), &new[0]).to_string(),
        "build arg VERSION changed"
    );
    // The RUN sees the arg in scope: reported as the arg, not as its parent.
    assert_eq!(
        explain_miss(Some(&old[3]), &new[3]).to_string(),
        "build arg VERSION changed"
    );
    // The runtime stage does not see VERSION: its keys are unchanged.
    assert_eq!(
        old[4..].iter().map(KeyInputs::key).collect::<Vec<_>>(),
        keys(&new[4..])
    );
}

#[test]
fn a_changed_file_invalidates_the_copy_and_what_follows() {
    let old = chain(&options(), b"v1");
    let new = chain(&options(), b"v2");
    assert_eq!(old[0].key(), new[0].key(), "ARG");
    assert_eq!(old[1].key(), new[1].key(), "WORKDIR");
    assert_ne!(old[2].key(), new[2].key(), "COPY app/");
    assert_eq!(
        explain_miss(Some(&old[2]), &new[2]).to_string(),
        "file app/main.py changed"
    );
    assert_ne!(old[3].key(), new[3].key(), "RUN after it");
    assert_eq!(
        explain_miss(Some(&old[3]), &new[3]).to_string(),
        "parent changed"
    );
    assert_eq!(explain_miss(None, &new[3]).to_string(), "no previous build");
}

#[test]
fn an_edited_instruction_is_explained() {
    let graph = plan_src("FROM busybox\nRUN echo a\n", &options()).unwrap();
    let old = &expand_all(&graph, &BTreeMap::new()).unwrap()[0].1[0];
    let graph = plan_src("FROM busybox\nRUN echo b\n", &options()).unwrap();
    let new = &expand_all(&graph, &BTreeMap::new()).unwrap()[0].1[0];
    let (old, new) = (old.key_inputs(None), new.key_inputs(None));
    assert_ne!(old.key(), new.key());
    assert_eq!(
        explain_miss(Some(&old), &new).to_string(),
        "instruction changed"
    );
}

#[test]
fn secrets_and_history_text_never_enter_keys() {
    let graph = plan_src(DOCKERFILE, &options()).unwrap();
    let stages = expand_all(&graph, &BTreeMap::new()).unwrap();
    for (_, steps, _) in &stages {
        for step in steps {
            let inputs = step.key_inputs(None);
            let text = serde_json::to_string(&inputs).unwrap();
            if let Some(history) = &step.created_by
                && history.ends_with("# buildkit")
            {
                assert!(!text.contains("# buildkit"), "history text in key: {text}");
            }
            assert!(!text.contains("HTTP_PROXY"));
        }
    }
}

#[test]
fn user_and_workdir_are_part_of_a_run_key() {
    let key_of = |src: &str| {
        let graph = plan_src(src, &options()).unwrap();
        let stages = expand_all(&graph, &BTreeMap::new()).unwrap();
        stages[0].1.last().unwrap().key_inputs(None)
    };
    let base = key_of("FROM busybox\nRUN id\n");
    let user = key_of("FROM busybox\nUSER nobody\nRUN id\n");
    let workdir = key_of("FROM busybox\nWORKDIR /tmp\nRUN id\n");
    assert_ne!(base.key(), user.key());
    assert_ne!(base.key(), workdir.key());
    assert_eq!(explain_miss(Some(&base), &user).to_string(), "user changed");
    assert_eq!(
        explain_miss(Some(&base), &workdir).to_string(),
        "workdir changed"
    );
}

#[test]
fn base_image_digest_is_the_from_key() {
    let platform = common::amd64();
    let mut old = KeyInputs::new("FROM docker.io/library/busybox:latest", &platform);
    old.set_base_image(Digest::sha256_of(b"manifest v1"));
    let mut new = old.clone();
    new.set_base_image(Digest::sha256_of(b"manifest v2"));
    assert_ne!(old.key(), new.key());
    assert_eq!(
        explain_miss(Some(&old), &new).to_string(),
        "base image updated"
    );
}
