//! The SLSA provenance predicate (v1, `https://slsa.dev/provenance/v1`) of an image, shaped
//! as BuildKit's `solver/llbsolver/provenance` writes it: the build type BuildKit names, the
//! request (frontend `dockerfile.v0`, its `build-arg:`/`label:` args, the secret and ssh ids,
//! the local sources by name), the Dockerfile as config source, the base images as resolved
//! dependencies, and BuildKit's `buildkit_*` metadata.
//!
//! `mode=min` leaves out what BuildKit's `scrubMinRequest` does (build args, labels, secret
//! and ssh ids; the request is then marked incomplete); `mode=max` adds every step's cache
//! key inputs as `internalParameters.buildConfig`, kiln's counterpart of BuildKit's LLB
//! definition. Nothing holds a secret's value, a host path or, with `SOURCE_DATE_EPOCH`, a
//! time.

use std::collections::BTreeMap;

use kiln_oci::{Digest, ImageRef, Platform};
use serde_json::{Map, Value, json};

use super::ProvenanceMode;
use super::statement::{digest_set, image_purl};

/// `predicateType` of SLSA provenance v1.
pub(crate) const PREDICATE_SLSA_V1: &str = "https://slsa.dev/provenance/v1";
/// `buildType` BuildKit writes into v1 predicates (the build is described in its terms).
pub(crate) const BUILD_TYPE_V1: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";
/// The frontend a Dockerfile build is, in BuildKit's terms.
pub(crate) const FRONTEND: &str = "dockerfile.v0";

/// A base image (or `docker-image://` context) the build resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ResolvedBase {
    /// As the Dockerfile or `--build-context` names it.
    pub(crate) reference: ImageRef,
    /// The platform it was resolved for.
    pub(crate) platform: Platform,
    /// The manifest digest it resolved to.
    pub(crate) digest: Digest,
}

/// One step of the build, for `mode=max`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepRecord {
    /// `stage:position`, as build histories name it.
    pub(crate) id: String,
    /// Its cache key (the digest of `inputs`).
    pub(crate) key: String,
    /// Its cache key inputs (instruction text, args in scope, settings, input digests).
    pub(crate) inputs: Value,
}

/// What the predicate is made of.
#[derive(Debug, Clone)]
pub(crate) struct ProvenanceInputs<'a> {
    /// `min` or `max`.
    pub(crate) mode: ProvenanceMode,
    /// `runDetails.builder.id`.
    pub(crate) builder_id: &'a str,
    /// The Dockerfile's file name (never a host path).
    pub(crate) dockerfile_name: &'a str,
    /// The digest of the Dockerfile's bytes.
    pub(crate) dockerfile_digest: &'a Digest,
    /// `--build-arg`s.
    pub(crate) build_args: &'a BTreeMap<String, String>,
    /// `--label`s.
    pub(crate) labels: &'a BTreeMap<String, String>,
    /// `--target`.
    pub(crate) target: Option<&'a str>,
    /// The `--secret` ids (never their values).
    pub(crate) secret_ids: Vec<String>,
    /// The `--ssh` ids.
    pub(crate) ssh_ids: Vec<String>,
    /// The local sources by name (`context`, `dockerfile`, named directory contexts).
    pub(crate) locals: Vec<String>,
    /// The base images this platform's image was built from.
    pub(crate) bases: Vec<ResolvedBase>,
    /// The steps (`mode=max`).
    pub(crate) steps: Vec<StepRecord>,
    /// `internalParameters.builderPlatform`: the host's platform.
    pub(crate) builder_platform: &'a Platform,
    /// When the build started and finished (RFC 3339); `None` under `SOURCE_DATE_EPOCH`.
    pub(crate) started_on: Option<String>,
    /// See `started_on`.
    pub(crate) finished_on: Option<String>,
}

/// The SLSA v1 predicate of `inputs`.
pub(crate) fn predicate_v1(inputs: &ProvenanceInputs<'_>) -> Value {
    let mut bases = inputs.bases.clone();
    bases.sort();
    bases.dedup();
    let resolved: Vec<Value> = bases
        .iter()
        .map(|base| {
            json!({
                "uri": image_purl(&base.reference, Some(&base.platform)),
                "digest": digest_set(&base.digest),
            })
        })
        .collect();

    let mut args = Map::new();
    let mut is_scrubbed = false;
    for (name, value) in inputs.build_args {
        if inputs.mode == ProvenanceMode::Min {
            is_scrubbed = true;
            continue;
        }
        args.insert(format!("build-arg:{name}"), Value::String(value.clone()));
    }
    for (name, value) in inputs.labels {
        if inputs.mode == ProvenanceMode::Min {
            is_scrubbed = true;
            continue;
        }
        args.insert(format!("label:{name}"), Value::String(value.clone()));
    }
    if let Some(target) = inputs.target {
        args.insert("target".to_owned(), Value::String(target.to_owned()));
    }
    // BuildKit's Map marshals sorted by key.
    args.sort_keys();
    let mut request = Map::new();
    request.insert("frontend".to_owned(), Value::String(FRONTEND.to_owned()));
    if !args.is_empty() {
        request.insert("args".to_owned(), Value::Object(args));
    }
    if inputs.mode == ProvenanceMode::Max {
        let ids = |ids: &[String]| -> Vec<Value> {
            let mut ids = ids.to_vec();
            ids.sort();
            ids.dedup();
            ids.into_iter().map(|id| json!({ "id": id })).collect()
        };
        if !inputs.secret_ids.is_empty() {
            request.insert("secrets".to_owned(), Value::Array(ids(&inputs.secret_ids)));
        }
        if !inputs.ssh_ids.is_empty() {
            request.insert("ssh".to_owned(), Value::Array(ids(&inputs.ssh_ids)));
        }
    } else if !inputs.secret_ids.is_empty() || !inputs.ssh_ids.is_empty() {
        is_scrubbed = true;
    }
    if !inputs.locals.is_empty() {
        let mut locals = inputs.locals.clone();
        locals.sort();
        locals.dedup();
        request.insert(
            "locals".to_owned(),
            Value::Array(
                locals
                    .into_iter()
                    .map(|name| json!({ "name": name }))
                    .collect(),
            ),
        );
    }

    let mut internal = Map::new();
    if inputs.mode == ProvenanceMode::Max {
        let steps: Vec<Value> = inputs
            .steps
            .iter()
            .map(|step| {
                json!({
                    "id": step.id,
                    "key": step.key,
                    "inputs": step.inputs,
                })
            })
            .collect();
        internal.insert("buildConfig".to_owned(), json!({ "steps": steps }));
    }
    internal.insert(
        "builderPlatform".to_owned(),
        Value::String(inputs.builder_platform.to_string()),
    );

    let mut metadata = Map::new();
    if let Some(started) = &inputs.started_on {
        metadata.insert("startedOn".to_owned(), Value::String(started.clone()));
    }
    if let Some(finished) = &inputs.finished_on {
        metadata.insert("finishedOn".to_owned(), Value::String(finished.clone()));
    }
    metadata.insert(
        "buildkit_completeness".to_owned(),
        json!({
            "request": !is_scrubbed,
            // As BuildKit: a build with local sources (the context) has materials it does
            // not list.
            "resolvedDependencies": inputs.locals.is_empty(),
        }),
    );

    let mut definition = Map::new();
    definition.insert(
        "buildType".to_owned(),
        Value::String(BUILD_TYPE_V1.to_owned()),
    );
    definition.insert(
        "externalParameters".to_owned(),
        json!({
            "configSource": {
                "digest": digest_set(inputs.dockerfile_digest),
                "path": inputs.dockerfile_name,
            },
            "request": Value::Object(request),
        }),
    );
    definition.insert("internalParameters".to_owned(), Value::Object(internal));
    if !resolved.is_empty() {
        definition.insert("resolvedDependencies".to_owned(), Value::Array(resolved));
    }
    json!({
        "buildDefinition": Value::Object(definition),
        "runDetails": {
            "builder": { "id": inputs.builder_id },
            "metadata": Value::Object(metadata),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        mode: ProvenanceMode,
        args: &'a BTreeMap<String, String>,
        labels: &'a BTreeMap<String, String>,
        digest: &'a Digest,
        platform: &'a Platform,
    ) -> ProvenanceInputs<'a> {
        ProvenanceInputs {
            mode,
            builder_id: "https://example.invalid/kiln@v0",
            dockerfile_name: "Dockerfile",
            dockerfile_digest: digest,
            build_args: args,
            labels,
            target: None,
            secret_ids: vec!["token".to_owned()],
            ssh_ids: Vec::new(),
            locals: vec!["dockerfile".to_owned(), "context".to_owned()],
            bases: vec![ResolvedBase {
                reference: ImageRef::parse("debian:bookworm").unwrap(),
                platform: platform.clone(),
                digest: Digest::sha256_of(b"base"),
            }],
            steps: vec![StepRecord {
                id: "0:1".to_owned(),
                key: "k".to_owned(),
                inputs: json!({"instruction": "RUN true"}),
            }],
            builder_platform: platform,
            started_on: None,
            finished_on: None,
        }
    }

    #[test]
    fn min_leaves_out_args_and_secrets_and_max_has_them() {
        let args = BTreeMap::from([("VERSION".to_owned(), "1".to_owned())]);
        let labels = BTreeMap::new();
        let digest = Digest::sha256_of(b"FROM debian\n");
        let platform: Platform = "linux/amd64".parse().unwrap();
        let min = predicate_v1(&inputs(
            ProvenanceMode::Min,
            &args,
            &labels,
            &digest,
            &platform,
        ));
        let request = &min["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(request["frontend"], "dockerfile.v0");
        assert!(request.get("args").is_none(), "{request}");
        assert!(request.get("secrets").is_none(), "{request}");
        assert_eq!(
            min["runDetails"]["metadata"]["buildkit_completeness"]["request"],
            false
        );
        assert!(
            min["buildDefinition"]["internalParameters"]
                .get("buildConfig")
                .is_none()
        );

        let max = predicate_v1(&inputs(
            ProvenanceMode::Max,
            &args,
            &labels,
            &digest,
            &platform,
        ));
        let request = &max["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(request["args"]["build-arg:VERSION"], "1");
        assert_eq!(request["secrets"], json!([{"id": "token"}]));
        assert_eq!(
            request["locals"],
            json!([{"name": "context"}, {"name": "dockerfile"}])
        );
        assert_eq!(
            max["buildDefinition"]["resolvedDependencies"],
            json!([{
                "uri": "pkg:docker/debian@bookworm?platform=linux%2Famd64",
                "digest": {"sha256": Digest::sha256_of(b"base").hex()},
            }])
        );
        assert_eq!(
            max["buildDefinition"]["externalParameters"]["configSource"]["digest"]["sha256"],
            digest.hex()
        );
        assert_eq!(
            max["buildDefinition"]["internalParameters"]["buildConfig"]["steps"][0]["id"],
            "0:1"
        );
        assert!(max["runDetails"]["metadata"].get("startedOn").is_none());
    }
}
