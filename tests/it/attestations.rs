//! `--sbom`, `--provenance` and `--attest`: attestation manifests in the image index as
//! BuildKit attaches them (platform `unknown/unknown`, `vnd.docker.reference.*`
//! annotations, in-toto statements as layers), checked in OCI layouts, in a loopback
//! registry with skopeo, in `type=local` output files; the statements validate against the
//! in-toto Statement v1 and SLSA provenance v1 schemas (`tests/data/schemas`), are
//! byte-identical under `SOURCE_DATE_EPOCH`, and never hold a `--secret` value. Off by
//! default; bad values are usage errors naming them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::builds::store_with_busybox;
use crate::common::{build_plain, kiln_in, run_fails, run_ok, skopeo_inspect, write};

const EPOCH: &str = "1700000000";
const SECRET: &str = "s3cr3t-value-kiln-attest-7f1c";

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn layout_blob(layout: &Path, digest: &str) -> Value {
    read_json(&blob_path(layout, digest))
}

fn schema(name: &str) -> Value {
    read_json(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/schemas")
            .join(name),
    )
}

/// Asserts `instance` is valid under the schema `name` of `tests/data/schemas`.
fn assert_valid(name: &str, instance: &Value) {
    let schema = schema(name);
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:#?}\n{instance:#}");
}

/// A busybox context with a RUN that reads a secret, a build arg and a label.
fn busybox_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM busybox AS build\n\
         ARG VERSION\n\
         RUN --mount=type=secret,id=token test -s /run/secrets/token && echo built-$VERSION > /built\n\
         FROM busybox\n\
         COPY --from=build /built /built\n",
    );
    ctx
}

/// The attestation manifests of an OCI layout's index, with the image entries.
struct Attached {
    index: Value,
    images: Vec<Value>,
    attestations: Vec<Value>,
}

fn attached(layout: &Path) -> Attached {
    let top = read_json(&layout.join("index.json"));
    let top_entry = &top["manifests"][0];
    assert_eq!(
        top_entry["mediaType"], "application/vnd.oci.image.index.v1+json",
        "with attestations the image is an index: {top}"
    );
    let index = layout_blob(layout, top_entry["digest"].as_str().unwrap());
    let (attestations, images): (Vec<Value>, Vec<Value>) = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .cloned()
        .partition(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest");
    Attached {
        index,
        images,
        attestations,
    }
}

/// Every statement of an attestation manifest entry: (predicate type annotation, statement).
fn statements(layout: &Path, entry: &Value) -> Vec<(String, Value)> {
    let manifest = layout_blob(layout, entry["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
            (
                layer["annotations"]["in-toto.io/predicate-type"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                layout_blob(layout, layer["digest"].as_str().unwrap()),
            )
        })
        .collect()
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        out.extend(fs_err::read(entry).unwrap());
    }
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs_err::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Builds the busybox context into an OCI layout directory with `flags`.
fn build_layout(store: &Path, ctx: &Path, layout: &Path, flags: &[&str]) {
    let out = kiln_in(store)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("KILN_TEST_TOKEN", SECRET)
        .args([
            "build",
            "--progress",
            "plain",
            "--secret",
            "id=token,env=KILN_TEST_TOKEN",
        ])
        .args([
            "--build-arg",
            "VERSION=1.2",
            "--label",
            "org.example.team=build",
        ])
        .args([
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ])
        .args(flags)
        .arg(ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln build {flags:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn attestations_are_attached_as_buildkit_attaches_them_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = busybox_context(tmp.path());
    let layout = tmp.path().join("layout");
    let name = "kiln.example/attest/app:1.0";
    build_layout(
        &store,
        &ctx,
        &layout,
        &["-t", name, "--sbom=true", "--provenance=mode=max"],
    );
    let Attached {
        index,
        images,
        attestations,
    } = attached(&layout);
    assert_eq!(images.len(), 1, "{index}");
    assert_eq!(attestations.len(), 1, "{index}");
    let image = &images[0];
    let attestation = &attestations[0];
    // The attestation manifest is listed after the image, as BuildKit's exporter lists it.
    assert_eq!(index["manifests"][1], *attestation);
    assert_eq!(attestation["platform"]["os"], "unknown");
    assert_eq!(attestation["platform"]["architecture"], "unknown");
    assert_eq!(
        attestation["annotations"]["vnd.docker.reference.digest"],
        image["digest"]
    );
    let manifest = layout_blob(&layout, attestation["digest"].as_str().unwrap());
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = layout_blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["architecture"], "unknown");
    assert_eq!(config["os"], "unknown");
    let layer_digests: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let diff_ids: Vec<&Value> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(diff_ids, layer_digests);

    let made = statements(&layout, attestation);
    let types: Vec<&str> = made.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "https://spdx.dev/Document",
            "https://slsa.dev/provenance/v1"
        ],
        "the SBOM first, provenance last"
    );
    let arch = image["platform"]["architecture"].as_str().unwrap();
    for (predicate_type, statement) in &made {
        assert_valid("in-toto-statement-v1.schema.json", statement);
        assert_eq!(statement["predicateType"], *predicate_type);
        assert_eq!(
            statement["subject"],
            serde_json::json!([{
                "name": format!("pkg:docker/kiln.example/attest/app@1.0?platform=linux%2F{arch}"),
                "digest": {"sha256": image["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap()},
            }])
        );
    }
    let sbom = &made[0].1["predicate"];
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["creationInfo"]["created"], "2023-11-14T22:13:20Z");

    let provenance = &made[1].1["predicate"];
    assert_valid("slsa-provenance-v1.schema.json", provenance);
    let definition = &provenance["buildDefinition"];
    let request = &definition["externalParameters"]["request"];
    assert_eq!(request["frontend"], "dockerfile.v0");
    assert_eq!(request["args"]["build-arg:VERSION"], "1.2");
    assert_eq!(request["args"]["label:org.example.team"], "build");
    assert_eq!(request["secrets"], serde_json::json!([{"id": "token"}]));
    let config_source = &definition["externalParameters"]["configSource"];
    assert_eq!(config_source["path"], "Dockerfile");
    let dockerfile = fs_err::read(ctx.join("Dockerfile")).unwrap();
    assert_eq!(
        config_source["digest"]["sha256"],
        kiln::oci::Digest::sha256_of(&dockerfile).hex()
    );
    // The base image by digest.
    let dependencies = definition["resolvedDependencies"].as_array().unwrap();
    assert_eq!(dependencies.len(), 1, "{dependencies:?}");
    assert_eq!(
        dependencies[0]["uri"],
        format!("pkg:docker/busybox@latest?platform=linux%2F{arch}")
    );
    assert_eq!(
        dependencies[0]["digest"]["sha256"].as_str().unwrap().len(),
        64
    );
    // mode=max: every step with its cache key inputs.
    let steps = definition["internalParameters"]["buildConfig"]["steps"]
        .as_array()
        .unwrap();
    assert!(
        steps.iter().any(|s| s["inputs"]["instruction"]
            .as_str()
            .is_some_and(|i| i.contains("test -s /run/secrets/token"))),
        "{steps:#?}"
    );
    assert!(
        provenance["runDetails"]["builder"]["id"]
            .as_str()
            .unwrap()
            .contains("@v"),
        "{provenance}"
    );
    // No time under SOURCE_DATE_EPOCH, no host path, never the secret's value.
    let metadata = &provenance["runDetails"]["metadata"];
    assert!(metadata.get("startedOn").is_none(), "{metadata}");
    let text = provenance.to_string();
    assert!(!text.contains(tmp.path().to_str().unwrap()), "{text}");
    assert!(
        !contains(&all_bytes(&layout), SECRET.as_bytes()),
        "the secret's value is in the layout"
    );

    // Reproducible: the same build again (no cache) writes the same index.
    let again = tmp.path().join("again");
    build_layout(
        &store,
        &ctx,
        &again,
        &[
            "-t",
            name,
            "--sbom=true",
            "--provenance=mode=max",
            "--no-cache",
        ],
    );
    assert_eq!(
        fs_err::read(layout.join("index.json")).unwrap(),
        fs_err::read(again.join("index.json")).unwrap()
    );

    // mode=min leaves out the build args, labels and secret ids.
    let min = tmp.path().join("min");
    build_layout(
        &store,
        &ctx,
        &min,
        &["-t", name, "--attest", "type=provenance,mode=min"],
    );
    let min_statements = statements(&min, &attached(&min).attestations[0]);
    assert_eq!(min_statements.len(), 1);
    let request =
        &min_statements[0].1["predicate"]["buildDefinition"]["externalParameters"]["request"];
    assert!(request.get("args").is_none(), "{request}");
    assert!(request.get("secrets").is_none(), "{request}");
    assert_valid(
        "slsa-provenance-v1.schema.json",
        &min_statements[0].1["predicate"],
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn off_by_default_and_when_turned_off_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = busybox_context(tmp.path());
    let plain = tmp.path().join("plain");
    build_layout(&store, &ctx, &plain, &[]);
    let off = tmp.path().join("off");
    build_layout(
        &store,
        &ctx,
        &off,
        &[
            "--sbom=false",
            "--provenance=false",
            "--attest",
            "type=provenance,mode=max,disabled=true",
        ],
    );
    let top = read_json(&plain.join("index.json"));
    assert_eq!(
        top["manifests"][0]["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "one manifest, no index: {top}"
    );
    assert_eq!(
        fs_err::read(plain.join("index.json")).unwrap(),
        fs_err::read(off.join("index.json")).unwrap()
    );
}

#[test]
#[cfg_attr(any(kiln_no_root, kiln_no_busybox), ignore = "needs root, busybox")]
fn local_output_gets_statement_files_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = busybox_context(tmp.path());
    let dest = tmp.path().join("rootfs");
    run_ok(
        kiln_in(&store)
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .env("KILN_TEST_TOKEN", SECRET)
            .args([
                "build",
                "--progress",
                "quiet",
                "--secret",
                "id=token,env=KILN_TEST_TOKEN",
            ])
            .args([
                "--provenance=mode=max",
                "--attest",
                "type=sbom,scan-stage=true",
            ])
            .args(["-o", &format!("type=local,dest={}", dest.display())])
            .arg(&ctx),
    );
    assert_eq!(
        fs_err::read_to_string(dest.join("built")).unwrap(),
        "built-\n"
    );
    let provenance = read_json(&dest.join("provenance.json"));
    assert_valid("in-toto-statement-v1.schema.json", &provenance);
    assert_valid("slsa-provenance-v1.schema.json", &provenance["predicate"]);
    // About every file of the output, by its path.
    let built = provenance["subject"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "built")
        .unwrap_or_else(|| panic!("no subject `built`: {provenance}"));
    assert_eq!(
        built["digest"]["sha256"],
        kiln::oci::Digest::sha256_of(b"built-\n").hex()
    );
    let sbom = read_json(&dest.join("sbom.spdx.json"));
    assert_eq!(sbom["predicateType"], "https://spdx.dev/Document");
    // scan-stage: the `build` stage's own scan, named as BuildKit names it.
    let stage = read_json(&dest.join("sbom-build.spdx.json"));
    assert_eq!(stage["predicate"]["name"], "sbom-build");
    assert!(!contains(&all_bytes(&dest), SECRET.as_bytes()));
}

#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_busybox, kiln_no_registry_tools),
    ignore = "needs root, busybox, docker-registry, skopeo"
)]
fn pushed_index_lists_the_attestation_manifests_root() {
    kiln_test::require_root();
    crate::registry::require_registry_tools();
    let registry = kiln_test::Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let ctx = busybox_context(tmp.path());
    let name = format!("{}/attest/pushed:1", registry.host);
    let layout = tmp.path().join("layout");
    build_layout(
        &store,
        &ctx,
        &layout,
        &[
            "-t",
            &name,
            "--push",
            "--sbom=true",
            "--provenance=mode=max",
        ],
    );
    let raw = skopeo_inspect(
        &format!("docker://{name}"),
        &["--raw", "--tls-verify=false"],
    );
    // The same index as the layout's (the same names, so the same statements).
    let Attached {
        index,
        attestations,
        ..
    } = attached(&layout);
    assert_eq!(raw, index);
    let entry = &attestations[0];
    let manifest = skopeo_inspect(
        &format!(
            "docker://{}/attest/pushed@{}",
            registry.host,
            entry["digest"].as_str().unwrap()
        ),
        &["--raw", "--tls-verify=false"],
    );
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        2,
        "{manifest}"
    );
    // Every blob is in the registry: a copy of the whole index succeeds.
    let copy = tmp.path().join("copy");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{name}"))
            .arg(format!("oci:{}:x", copy.display())),
    );
    for layer in manifest["layers"].as_array().unwrap() {
        let statement = layout_blob(&copy, layer["digest"].as_str().unwrap());
        assert_valid("in-toto-statement-v1.schema.json", &statement);
    }
    // The local store keeps the index: `kiln push` of it pushes the attestations too.
    let second = format!("{}/attest/again:1", registry.host);
    run_ok(kiln_in(&store).args(["tag", &name, &second]));
    run_ok(kiln_in(&store).args(["push", &second]));
    let pushed = skopeo_inspect(
        &format!("docker://{second}"),
        &["--raw", "--tls-verify=false"],
    );
    assert_eq!(pushed, index);
}

#[test]
fn bad_values_are_usage_errors_naming_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\n");
    let store = tmp.path().join("store");
    for (flag, value, named) in [
        ("--provenance", "mode=fast", "fast"),
        ("--provenance", "version=v0.2", "v0.2"),
        ("--attest", "type=foo", "foo"),
        ("--attest", "mode=max", "type"),
        (
            "--attest",
            "type=sbom,generator=docker/scout-sbom-indexer",
            "generator",
        ),
        ("--sbom", "colour=blue", "colour"),
    ] {
        let out = run_fails(
            kiln_in(&store)
                .args(["build", &format!("{flag}={value}")])
                .arg(&ctx),
            2,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{flag}={value}: {stderr}");
    }
}

#[test]
#[cfg_attr(kiln_no_root, ignore = "needs root")]
fn docker_archive_with_attestations_is_refused_root() {
    kiln_test::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write(&ctx, "Dockerfile", "FROM scratch\nCOPY Dockerfile /\n");
    let store = tmp.path().join("store");
    let dest = tmp.path().join("image.tar");
    let out = run_fails(
        kiln_in(&store)
            .args(["build", "--sbom=true", "-o"])
            .arg(format!("type=docker,dest={}", dest.display()))
            .arg(&ctx),
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("type=oci"), "{stderr}");
    assert!(!dest.exists());
}

/// The heavy end-to-end check: a Debian base with Python and a pip-installed package, built
/// with `--sbom=true --provenance=mode=max` and pushed to a loopback registry; the SBOM lists
/// what `dpkg-query -W` and `pip list` print in the image.
#[test]
#[cfg_attr(
    any(kiln_no_root, kiln_no_mmdebstrap, kiln_no_registry_tools),
    ignore = "needs root, mmdebstrap, docker-registry, skopeo"
)]
fn heavy_debian_python_image_sbom_lists_dpkg_and_pip_packages() {
    crate::examples::require_debian_bases();
    crate::registry::require_registry_tools();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    crate::examples::make_bases(&store, &["python"]);
    let registry = kiln_test::Registry::start();
    let ctx = tmp.path().join("ctx");
    write(
        &ctx,
        "Dockerfile",
        "FROM python:3.11-slim\n\
         COPY pkg /src/pkg\n\
         RUN pip install --no-index --no-build-isolation /src/pkg && rm -rf /src\n",
    );
    write(
        &ctx,
        "pkg/setup.py",
        "from setuptools import setup\nsetup(name='kiln-attest-probe', version='1.2.3', py_modules=['kiln_attest_probe'])\n",
    );
    write(&ctx, "pkg/kiln_attest_probe.py", "VALUE = 1\n");
    let name = format!("{}/attest/python:1", registry.host);
    let layout = tmp.path().join("layout");
    build_plain(
        &store,
        &ctx,
        &[
            "--sbom=true",
            "--provenance=mode=max",
            "-t",
            &name,
            "--push",
            "-o",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ],
    );
    // skopeo: the index, the image manifest and the attestation manifest.
    let index = skopeo_inspect(
        &format!("docker://{name}"),
        &["--raw", "--tls-verify=false"],
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    for entry in entries {
        let manifest = skopeo_inspect(
            &format!(
                "docker://{}/attest/python@{}",
                registry.host,
                entry["digest"].as_str().unwrap()
            ),
            &["--raw", "--tls-verify=false"],
        );
        assert_eq!(manifest["schemaVersion"], 2, "{manifest}");
    }
    let Attached { attestations, .. } = attached(&layout);
    let statements = statements(&layout, &attestations[0]);
    for (_, statement) in &statements {
        assert_valid("in-toto-statement-v1.schema.json", statement);
    }
    let provenance = &statements
        .iter()
        .find(|(t, _)| t == "https://slsa.dev/provenance/v1")
        .unwrap()
        .1["predicate"];
    assert_valid("slsa-provenance-v1.schema.json", provenance);
    let uri = provenance["buildDefinition"]["resolvedDependencies"][0]["uri"]
        .as_str()
        .unwrap();
    assert!(
        uri.starts_with("pkg:docker/python@3.11-slim?platform="),
        "{uri}"
    );
    let sbom = &statements
        .iter()
        .find(|(t, _)| t == "https://spdx.dev/Document")
        .unwrap()
        .1["predicate"];
    let listed: Vec<(String, String)> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                normalize(p["name"].as_str().unwrap_or_default()),
                p["versionInfo"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let dpkg = run_ok(kiln_in(&store).args([
        "run",
        "--rm",
        &name,
        "dpkg-query",
        "-W",
        "-f",
        "${Package} ${Version}\\n",
    ]));
    let pip =
        run_ok(kiln_in(&store).args(["run", "--rm", &name, "pip", "list", "--format=freeze"]));
    let mut expected: Vec<(String, String)> = dpkg
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, v)| (normalize(n), v.to_owned()))
        .collect();
    expected.extend(
        pip.lines()
            .filter_map(|l| l.split_once("=="))
            .map(|(n, v)| (normalize(n), v.to_owned())),
    );
    assert!(
        expected.iter().any(|(n, _)| n == "kiln-attest-probe"),
        "{pip}"
    );
    let missing: Vec<&(String, String)> = expected.iter().filter(|e| !listed.contains(e)).collect();
    assert!(missing.is_empty(), "not in the SBOM: {missing:#?}");
}

/// A package name as PEP 503 compares them (dpkg names are already lowercase).
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}
