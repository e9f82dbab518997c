//! Image configurations (OCI image-spec config.md) with Docker's extensions, written the
//! way BuildKit writes them (moby `docker-image-spec` `DockerOCIImage`): Go field names,
//! `omitempty` everywhere except `architecture`, `os`, `config`, `rootfs` and
//! `rootfs.diff_ids`; `Healthcheck`, `OnBuild` and `Shell` kept even under OCI media types.
//!
//! Maps and sets are `BTreeMap`/`BTreeSet`, and unknown fields (`container_config`,
//! `docker_version`, …) are kept in `extra`, so a value always serializes to the same bytes
//! and foreign fields survive a round trip.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::canonical::null_as_default;
use crate::{DiffId, ModelError, Platform};

/// The JSON configuration of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfiguration {
    /// Spec: "An combined date and time at which the image was created, formatted as defined
    /// by RFC 3339, section 5.6." OPTIONAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Spec: "Gives the name and/or email address of the person or entity which created and
    /// is responsible for maintaining the image." OPTIONAL.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub author: String,
    /// Spec: "The CPU architecture which the binaries in this image are built to run on."
    /// REQUIRED; values from Go's `GOARCH`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub architecture: String,
    /// Spec: "The name of the operating system which the image is built to run on." REQUIRED;
    /// values from Go's `GOOS`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub os: String,
    /// Spec: "This OPTIONAL property specifies the version of the operating system targeted
    /// by the referenced blob."
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Spec: "This OPTIONAL property specifies an array of strings, each specifying a
    /// mandatory OS feature."
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub os_features: Vec<String>,
    /// Spec: "The variant of the specified CPU architecture." OPTIONAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Spec: "The execution parameters which SHOULD be used as a base when running a
    /// container using the image." OPTIONAL in the spec; BuildKit always writes it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: ContainerConfig,
    /// Spec: "The rootfs key references the layer content addresses used by the image."
    /// REQUIRED.
    #[serde(default)]
    pub rootfs: RootFs,
    /// Spec: "Describes the history of each layer. The array is ordered from first to last."
    /// OPTIONAL.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub history: Vec<History>,
    /// Fields this version of kiln does not know (e.g. Docker's `container_config`), kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Execution parameters (`config` object). Field names are Docker's, as the spec keeps them
/// (`rename_all`: the PascalCase of the Rust names); a missing field is its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    /// Spec: "The username or UID which is a platform-specific structure that allows specific
    /// control over which user the process run as."
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub user: String,
    /// Spec: "A set of ports to expose from a container running this image. Its keys can be
    /// in the format of: `port/tcp`, `port/udp`, `port` with the default protocol being
    /// `tcp` if not specified." Serialized as a map to `{}`.
    #[serde(skip_serializing_if = "BTreeSet::is_empty", with = "object_set")]
    pub exposed_ports: BTreeSet<String>,
    /// Spec: "Entries are in the format of `VARNAME=VARVALUE`."
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub env: Vec<String>,
    /// Spec: "A list of arguments to use as the command to execute when the container
    /// starts."
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub entrypoint: Vec<String>,
    /// Spec: "Default arguments to the entrypoint of the container."
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub cmd: Vec<String>,
    /// Spec: "A set of directories describing where the process is likely to write data
    /// specific to a container instance." Serialized as a map to `{}`.
    #[serde(skip_serializing_if = "BTreeSet::is_empty", with = "object_set")]
    pub volumes: BTreeSet<String>,
    /// Spec: "Sets the current working directory of the entrypoint process in the container."
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub working_dir: String,
    /// Spec: "The field contains arbitrary metadata for the container."
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub labels: BTreeMap<String, String>,
    /// Spec: "The field contains the system call signal that will be sent to the container
    /// to exit."
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub stop_signal: String,
    /// Spec: "Used for Windows images to indicate that the Cmd or Entrypoint was already
    /// escaped" (deprecated; BuildKit still sets it for shell-form on Windows).
    #[serde(skip_serializing_if = "is_false", deserialize_with = "null_as_default")]
    pub args_escaped: bool,
    /// Docker extension: the `HEALTHCHECK` test. `Test: ["NONE"]` disables an inherited one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// Docker extension: `ONBUILD` triggers, run after a later `FROM` of this image.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub on_build: Vec<String>,
    /// Docker extension: the shell for shell-form `RUN`, `CMD`, `ENTRYPOINT` (`SHELL`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub shell: Vec<String>,
    /// Fields this version of kiln does not know (e.g. Docker's `Hostname`), kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Docker's health check (moby `HealthcheckConfig`). Durations are nanoseconds, as Go's
/// `time.Duration` marshals; zero means "inherit / default" and is omitted. A closed set of
/// fields (moby has had no others); a pulled config's original bytes keep anything else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Healthcheck {
    /// `[]`: inherit; `["NONE"]`: disabled; `["CMD", args…]`: exec; `["CMD-SHELL", cmd]`:
    /// run with the system's default shell.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub test: Vec<String>,
    /// Time between checks, in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub interval: i64,
    /// Time after which a check is considered hung, in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub timeout: i64,
    /// Start period for the container to initialize, in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub start_period: i64,
    /// Time between checks during the start period, in nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub start_interval: i64,
    /// Consecutive failures needed to report unhealthy.
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: i64,
}

/// The layers of an image by diff id (`rootfs` object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Spec: "MUST be set to `layers`. Implementations MUST generate an error if they
    /// encounter a unknown value while verifying or unpacking an image."
    #[serde(rename = "type")]
    pub kind: String,
    /// Spec: "An array of layer content hashes (DiffIDs), in order from first to last."
    /// Always written, even when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<DiffId>,
    /// Fields this version of kiln does not know, kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Default for RootFs {
    fn default() -> Self {
        Self {
            kind: ROOTFS_TYPE_LAYERS.to_owned(),
            diff_ids: Vec::new(),
            extra: BTreeMap::new(),
        }
    }
}

/// The only `rootfs.type` the spec defines.
pub const ROOTFS_TYPE_LAYERS: &str = "layers";

/// One step of an image's history (`history` array entry).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Spec: "A combined date and time at which the layer was created, formatted as defined
    /// by RFC 3339, section 5.6."
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Spec: "The command which created the layer."
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub created_by: String,
    /// Spec: "The author of the build point."
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub author: String,
    /// Spec: "A custom message set when creating the layer."
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub comment: String,
    /// Spec: "This field is used to mark if the history item created a filesystem diff. It is
    /// set to true if this history item doesn't correspond to an actual layer in the rootfs
    /// section (for example, Dockerfile's ENV command results in no change to the
    /// filesystem)."
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "null_as_default"
    )]
    pub empty_layer: bool,
    /// Fields this version of kiln does not know, kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl ImageConfiguration {
    /// An empty configuration for `platform` (no layers, no history, empty `config`).
    pub fn new(platform: &Platform) -> Self {
        Self {
            created: None,
            author: String::new(),
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            os_version: platform.os_version.clone(),
            os_features: platform.os_features.clone(),
            variant: platform.variant.clone(),
            config: ContainerConfig::default(),
            rootfs: RootFs::default(),
            history: Vec::new(),
            extra: BTreeMap::new(),
        }
    }

    /// The platform the image is for.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
            variant: self.variant.clone(),
        }
    }

    /// Checks the spec's REQUIRED fields: `architecture`, `os`, and `rootfs.type` =
    /// `layers` ("Implementations MUST generate an error if they encounter a unknown value
    /// while verifying or unpacking an image").
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.architecture.is_empty() {
            return Err(ModelError::MissingConfigField {
                field: "architecture",
            });
        }
        if self.os.is_empty() {
            return Err(ModelError::MissingConfigField { field: "os" });
        }
        if self.rootfs.kind != ROOTFS_TYPE_LAYERS {
            return Err(ModelError::UnknownRootfsType(self.rootfs.kind.clone()));
        }
        Ok(())
    }

    /// Number of history entries that produced a layer (`empty_layer` false); when the
    /// history is complete this equals `rootfs.diff_ids.len()`.
    pub fn non_empty_history_len(&self) -> usize {
        self.history.iter().filter(|h| !h.empty_layer).count()
    }
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(value: &bool) -> bool {
    !*value
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// Go's `map[string]struct{}` as a set: `{"8000/tcp":{}}`.
mod object_set {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct EmptyObject {}

    pub(super) fn serialize<S: Serializer>(
        set: &BTreeSet<String>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(set.len()))?;
        for key in set {
            map.serialize_entry(key, &EmptyObject {})?;
        }
        map.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeSet<String>, D::Error> {
        let map = Option::<BTreeMap<String, serde_json::Value>>::deserialize(deserializer)?;
        Ok(map.map(|m| m.into_keys().collect()).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Digest, to_canonical_json};

    #[test]
    fn empty_config_is_written_like_buildkit() {
        let config = ImageConfiguration::new(&"linux/amd64".parse().unwrap());
        let json = String::from_utf8(to_canonical_json(&config).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"architecture":"amd64","config":{},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#
        );
    }

    #[test]
    fn ports_volumes_and_healthcheck_have_docker_shapes() {
        let mut config = ImageConfiguration::new(&"linux/arm64".parse().unwrap());
        config.config.exposed_ports.insert("8000/tcp".into());
        config.config.volumes.insert("/data".into());
        config.config.healthcheck = Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
            interval: 30_000_000_000,
            retries: 3,
            ..Healthcheck::default()
        });
        config
            .rootfs
            .diff_ids
            .push(DiffId(Digest::sha256_of(b"layer")));
        let value: serde_json::Value = serde_json::to_value(&config).unwrap();
        assert_eq!(
            value["config"]["ExposedPorts"],
            serde_json::json!({"8000/tcp": {}})
        );
        assert_eq!(value["config"]["Volumes"], serde_json::json!({"/data": {}}));
        assert_eq!(
            value["config"]["Healthcheck"]["Interval"],
            30_000_000_000_i64
        );
        assert!(value["config"]["Healthcheck"].get("Timeout").is_none());
        let back: ImageConfiguration = serde_json::from_value(value).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn validate_checks_required_fields() {
        let mut config = ImageConfiguration::new(&"linux/amd64".parse().unwrap());
        config.validate().unwrap();
        config.rootfs.kind = "snapshot".into();
        assert_eq!(
            config.validate(),
            Err(ModelError::UnknownRootfsType("snapshot".into()))
        );
        let missing: ImageConfiguration =
            serde_json::from_str(r#"{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#)
                .unwrap();
        assert_eq!(
            missing.validate(),
            Err(ModelError::MissingConfigField {
                field: "architecture"
            })
        );
    }

    #[test]
    fn go_nulls_are_read_as_empty() {
        let text = r#"{"architecture":"amd64","os":"linux","config":{"Cmd":null,"Env":null,"ExposedPorts":null,"Labels":null},
                      "rootfs":{"type":"layers","diff_ids":null},"history":null}"#;
        let config: ImageConfiguration = serde_json::from_str(text).unwrap();
        assert!(config.config.cmd.is_empty() && config.config.exposed_ports.is_empty());
        assert!(config.rootfs.diff_ids.is_empty() && config.history.is_empty());
    }
}
