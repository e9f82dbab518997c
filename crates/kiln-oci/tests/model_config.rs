//! The image model against hand-written documents shaped like what BuildKit and Docker
//! write (field names and omit-empty rules from moby's `docker-image-spec` and the OCI
//! image-spec), checking parse, required fields, canonical bytes and round trips.

use kiln_oci::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, JsonBlob, MediaType,
    to_canonical_json,
};
use serde_json::{Value, json};

fn diff(n: u8) -> String {
    Digest::sha256_of(&[n]).to_string()
}

/// A config as BuildKit writes it for a Dockerfile with ENV, WORKDIR, EXPOSE, VOLUME, USER,
/// LABEL, HEALTHCHECK, STOPSIGNAL, SHELL, ONBUILD, ENTRYPOINT and CMD.
fn buildkit_config() -> Value {
    json!({
        "architecture": "amd64",
        "config": {
            "User": "app:app",
            "ExposedPorts": {"8000/tcp": {}, "53/udp": {}},
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONUNBUFFERED=1"],
            "Entrypoint": ["/docker-entrypoint.sh"],
            "Cmd": ["uvicorn", "main:app", "--host", "0.0.0.0"],
            "Volumes": {"/data": {}},
            "WorkingDir": "/app",
            "Labels": {"org.opencontainers.image.source": "https://example.invalid/app", "maintainer": "kiln"},
            "StopSignal": "SIGQUIT",
            "Healthcheck": {
                "Test": ["CMD-SHELL", "curl -f http://localhost:8000/ || exit 1"],
                "Interval": 30_000_000_000_i64,
                "Timeout": 3_000_000_000_i64,
                "StartPeriod": 5_000_000_000_i64,
                "StartInterval": 1_000_000_000_i64,
                "Retries": 3
            },
            "OnBuild": ["COPY . /app/src"],
            "Shell": ["/bin/bash", "-o", "pipefail", "-c"]
        },
        "created": "2024-05-01T10:20:30.123456789Z",
        "history": [
            {"created": "2024-04-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
            {"created": "2024-04-01T00:00:00Z", "created_by": "/bin/sh -c #(nop)  CMD [\"bash\"]", "empty_layer": true},
            {"created": "2024-05-01T10:20:30Z", "created_by": "ENV PYTHONUNBUFFERED=1", "comment": "buildkit.dockerfile.v0", "empty_layer": true},
            {"created": "2024-05-01T10:20:30Z", "created_by": "RUN |1 VERSION=1.2 /bin/sh -c pip install app==$VERSION # buildkit", "comment": "buildkit.dockerfile.v0"}
        ],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff(1), diff(2)]}
    })
}

/// A config as classic `docker build` wrote it: Go nulls, legacy fields kiln does not model.
fn legacy_docker_config() -> Value {
    json!({
        "architecture": "arm64",
        "variant": "v8",
        "config": {
            "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
            "Tty": false, "Env": ["PATH=/bin"], "Cmd": null, "Image": "sha256:0123",
            "Volumes": null, "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null
        },
        "container": "3f1b9c",
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ", "CMD [\"sh\"]"], "Labels": {}},
        "created": "2023-07-18T23:19:33.655005962Z",
        "docker_version": "20.10.23",
        "history": [{"created": "2023-07-18T23:19:33Z", "created_by": "/bin/sh -c #(nop) ADD file:x in / "}],
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff(3)]}
    })
}

#[test]
fn buildkit_config_parses_every_field() {
    let config: ImageConfiguration = serde_json::from_value(buildkit_config()).unwrap();
    let c = &config.config;
    assert_eq!(c.user, "app:app");
    assert_eq!(
        c.exposed_ports.iter().collect::<Vec<_>>(),
        ["53/udp", "8000/tcp"]
    );
    assert_eq!(c.entrypoint, ["/docker-entrypoint.sh"]);
    assert_eq!(c.cmd.len(), 4);
    assert!(c.volumes.contains("/data"));
    assert_eq!(c.stop_signal, "SIGQUIT");
    let health = c.healthcheck.as_ref().unwrap();
    assert_eq!(
        (health.interval, health.timeout, health.retries),
        (30_000_000_000, 3_000_000_000, 3)
    );
    assert_eq!(health.start_interval, 1_000_000_000);
    assert_eq!(c.on_build, ["COPY . /app/src"]);
    assert_eq!(c.shell[0], "/bin/bash");
    assert_eq!(config.history.len(), 4);
    assert_eq!(config.non_empty_history_len(), config.rootfs.diff_ids.len());
    assert_eq!(config.history[2].comment, "buildkit.dockerfile.v0");
    assert_eq!(config.platform().to_string(), "linux/amd64");
    assert!(
        config.extra.is_empty() && c.extra.is_empty(),
        "every BuildKit field is modelled"
    );
}

#[test]
fn buildkit_config_round_trips_to_the_same_canonical_bytes() {
    let original = buildkit_config();
    let config: ImageConfiguration = serde_json::from_value(original.clone()).unwrap();
    let ours = to_canonical_json(&config).unwrap();
    assert_eq!(
        ours,
        to_canonical_json(&original).unwrap(),
        "nothing lost, nothing added"
    );
    let first = to_canonical_json(&config).unwrap();
    for _ in 0..5 {
        let reparsed: ImageConfiguration = serde_json::from_slice(&first).unwrap();
        assert_eq!(to_canonical_json(&reparsed).unwrap(), first);
    }
}

#[test]
fn legacy_docker_fields_survive_and_nulls_become_empty() {
    let original = legacy_docker_config();
    let config: ImageConfiguration = serde_json::from_value(original.clone()).unwrap();
    assert!(config.config.cmd.is_empty() && config.config.volumes.is_empty());
    assert_eq!(config.extra["docker_version"], "20.10.23");
    assert_eq!(config.config.extra["Hostname"], "");
    assert_eq!(config.config.extra["Image"], "sha256:0123");
    let written: Value = serde_json::from_slice(&to_canonical_json(&config).unwrap()).unwrap();
    assert_eq!(written["container_config"], original["container_config"]);
    assert_eq!(written["config"]["AttachStdin"], false);
    assert!(
        written["config"].get("Cmd").is_none(),
        "empty Cmd is omitted, as BuildKit does"
    );
    // The original bytes, not a re-serialization, are what gets hashed and pushed.
    let bytes = serde_json::to_vec_pretty(&original).unwrap();
    let blob: JsonBlob<ImageConfiguration> = JsonBlob::parse(bytes.clone()).unwrap();
    assert_eq!(blob.bytes(), bytes.as_slice());
    assert_eq!(blob.digest(), &Digest::sha256_of(&bytes));
}

#[test]
fn required_fields_are_always_written() {
    let config = ImageConfiguration::new(&"linux/arm64".parse().unwrap());
    let value: Value = serde_json::from_slice(&to_canonical_json(&config).unwrap()).unwrap();
    // config.md: architecture, os, rootfs (type + diff_ids) are REQUIRED.
    for key in ["architecture", "os", "rootfs", "config"] {
        assert!(value.get(key).is_some(), "{key} missing");
    }
    assert_eq!(value["rootfs"], json!({"type": "layers", "diff_ids": []}));
    for key in ["created", "author", "history", "variant", "os.version"] {
        assert!(value.get(key).is_none(), "{key} written although empty");
    }
}

#[test]
fn manifest_and_index_keep_unknown_fields() {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": diff(9), "size": 10},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": diff(8), "size": 20,
                    "annotations": {"io.kiln.z": "1"}, "x-extension": [1, 2]}],
        "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        "x-future": {"b": 1, "a": 2}
    });
    let parsed: ImageManifest = serde_json::from_value(manifest.clone()).unwrap();
    parsed.validate().unwrap();
    assert_eq!(parsed.layers[0].media_type, MediaType::OciLayerTarZstd);
    assert_eq!(parsed.layers[0].extra["x-extension"], json!([1, 2]));
    assert_eq!(
        to_canonical_json(&parsed).unwrap(),
        to_canonical_json(&manifest).unwrap()
    );
    assert!(
        String::from_utf8(to_canonical_json(&parsed).unwrap())
            .unwrap()
            .contains(r#""x-future":{"a":2,"b":1}"#)
    );

    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": diff(7), "size": 30,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": diff(6), "size": 31,
             "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": diff(7)},
             "platform": {"architecture": "unknown", "os": "unknown"}}
        ]
    });
    let parsed: ImageIndex = serde_json::from_value(index.clone()).unwrap();
    assert_eq!(
        to_canonical_json(&parsed).unwrap(),
        to_canonical_json(&index).unwrap()
    );
    let picked = parsed
        .select_platform(&"linux/arm64".parse().unwrap())
        .unwrap();
    assert_eq!(picked.digest.to_string(), diff(7));
}

#[test]
fn descriptor_size_must_be_a_non_negative_integer() {
    let bad = json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": diff(1), "size": -1});
    assert!(serde_json::from_value::<Descriptor>(bad).is_err());
    let bad_digest = json!({"mediaType": "x", "digest": "sha256:nothex", "size": 1});
    assert!(serde_json::from_value::<Descriptor>(bad_digest).is_err());
}
