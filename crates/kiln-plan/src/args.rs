//! Build args: the ordered variable list BuildKit expands words with, the predefined platform
//! args, and the proxy args that are usable but never cached or persisted.

use std::collections::BTreeMap;

use kiln_dockerfile::Env;
use kiln_oci::Platform;

/// `--build-arg NAME=VALUE` pairs.
pub type BuildArgs = BTreeMap<String, String>;

/// Proxy args BuildKit predefines (`HTTP_PROXY` …, either case): usable without `ARG`, passed
/// to `RUN`, never in history, a cache key or the image config.
const PROXY_ARGS: [&str; 5] = [
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

/// Whether `name` is one of BuildKit's predefined proxy args (any case).
pub fn is_proxy_arg(name: &str) -> bool {
    PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// Names of the predefined platform args (BuildKit `defaultArgs`).
pub const PLATFORM_ARGS: [&str; 11] = [
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDOSVERSION",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETOSVERSION",
    "TARGETARCH",
    "TARGETVARIANT",
    "TARGETSTAGE",
];

/// Whether a `--build-arg` of this name is consumed by the build even with no `ARG` for it:
/// platform args, proxy args, `SOURCE_DATE_EPOCH` and BuildKit's `BUILDKIT_*` knobs.
pub fn is_predefined_arg(name: &str) -> bool {
    is_proxy_arg(name)
        || PLATFORM_ARGS.contains(&name)
        || name == "SOURCE_DATE_EPOCH"
        || name.starts_with("BUILDKIT_")
}

/// The predefined platform args with their values (BuildKit `defaultArgs`), a `--build-arg`
/// of the same name overriding each. `target_stage` is the `--target` name (or the last
/// stage's name; `default` when unnamed).
pub(crate) fn platform_args(
    target: &Platform,
    build: &Platform,
    target_stage: &str,
    overrides: &BuildArgs,
) -> EnvList {
    let format = |p: &Platform| p.to_string();
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let values = [
        ("BUILDPLATFORM", format(build)),
        ("BUILDOS", build.os.clone()),
        ("BUILDOSVERSION", opt(&build.os_version)),
        ("BUILDARCH", build.architecture.clone()),
        ("BUILDVARIANT", opt(&build.variant)),
        ("TARGETPLATFORM", format(target)),
        ("TARGETOS", target.os.clone()),
        ("TARGETOSVERSION", opt(&target.os_version)),
        ("TARGETARCH", target.architecture.clone()),
        ("TARGETVARIANT", opt(&target.variant)),
        (
            "TARGETSTAGE",
            if target_stage.is_empty() {
                "default".to_owned()
            } else {
                target_stage.to_owned()
            },
        ),
    ];
    let mut env = EnvList::default();
    for (name, value) in values {
        let value = overrides.get(name).cloned().unwrap_or(value);
        env.set(name, value);
    }
    env
}

/// An ordered list of variables where setting a name again moves it to the end (BuildKit
/// `llb.EnvList`): the order of a `RUN`'s environment is the order of last definition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    entries: Vec<(String, String)>,
}

impl EnvList {
    /// A list from `K=V` strings (an image config's `Env`); an entry without `=` has an
    /// empty value.
    pub fn from_env_strings<S: AsRef<str>>(strings: &[S]) -> Self {
        let mut env = Self::default();
        for s in strings {
            let (k, v) = s.as_ref().split_once('=').unwrap_or((s.as_ref(), ""));
            env.set(k, v);
        }
        env
    }

    /// Sets `name`, moving it to the end.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.entries.retain(|(k, _)| k != name);
        self.entries.push((name.to_owned(), value.into()));
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The entries as `K=V` strings, in order.
    pub fn to_env_strings(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Env for EnvList {
    fn get(&self, name: &str) -> Option<&str> {
        EnvList::get(self, name)
    }
}

/// Sets `k=v` in an image config's `Env` list: replaces the first entry with that key in place,
/// else appends (BuildKit `addEnv`).
pub(crate) fn add_config_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    for existing in env.iter_mut() {
        let existing_key = existing
            .split_once('=')
            .map_or(existing.as_str(), |(k, _)| k);
        if existing_key == key {
            *existing = entry;
            return;
        }
    }
    env.push(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_list_moves_redefined_names_to_the_end() {
        let mut env = EnvList::from_env_strings(&["A=1", "B=2", "C"]);
        env.set("A", "3");
        assert_eq!(env.to_env_strings(), ["B=2", "C=", "A=3"]);
        assert_eq!(env.get("C"), Some(""));
        assert_eq!(env.get("D"), None);
    }

    #[test]
    fn config_env_replaces_in_place() {
        let mut env = vec!["PATH=/bin".to_owned(), "A=1".to_owned()];
        add_config_env(&mut env, "PATH", "/usr/bin");
        add_config_env(&mut env, "B", "x=y");
        assert_eq!(env, ["PATH=/usr/bin", "A=1", "B=x=y"]);
    }

    #[test]
    fn predefined_args() {
        assert!(
            is_proxy_arg("HTTP_PROXY") && is_proxy_arg("https_proxy") && is_proxy_arg("No_Proxy")
        );
        assert!(!is_proxy_arg("PROXY"));
        assert!(is_predefined_arg("TARGETARCH") && is_predefined_arg("BUILDKIT_INLINE_CACHE"));
        assert!(!is_predefined_arg("targetarch"));
        let target = Platform::with_variant("linux", "arm", Some("v7"));
        let build = Platform::new("linux", "amd64");
        let mut overrides = BuildArgs::new();
        overrides.insert("BUILDOS".into(), "custom".into());
        let env = platform_args(&target, &build, "", &overrides);
        assert_eq!(env.get("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(env.get("TARGETVARIANT"), Some("v7"));
        assert_eq!(env.get("BUILDARCH"), Some("amd64"));
        assert_eq!(env.get("BUILDVARIANT"), Some(""));
        assert_eq!(env.get("BUILDOS"), Some("custom"));
        assert_eq!(env.get("TARGETSTAGE"), Some("default"));
    }
}
