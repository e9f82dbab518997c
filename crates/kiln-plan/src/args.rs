//! Build args: the ordered variable list BuildKit expands words with, the predefined platform
//! args, and the proxy args that are usable but never cached or persisted.

use std::collections::{BTreeMap, HashMap};

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
///
/// `set` and `get` take constant time (an index by name over a list with holes, compacted
/// when half of it is holes), so a Dockerfile of 100,000 `ENV` lines plans in linear time.
#[derive(Debug, Clone, Default)]
pub struct EnvList {
    /// Entries in order of last definition; `None` where a name was set again later.
    entries: Vec<Option<(String, String)>>,
    /// Name → position in `entries`.
    index: HashMap<String, usize>,
}

impl PartialEq for EnvList {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for EnvList {}

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
        let position = self.entries.len();
        match self.index.get_mut(name) {
            Some(slot) => {
                let old = std::mem::replace(slot, position);
                self.entries[old] = None;
            }
            None => {
                self.index.insert(name.to_owned(), position);
            }
        }
        self.entries.push(Some((name.to_owned(), value.into())));
        if self.entries.len() > 2 * self.index.len() + COMPACT_SLACK {
            self.compact();
        }
    }

    /// Drops the holes left by names set again.
    fn compact(&mut self) {
        self.entries.retain(Option::is_some);
        for (position, entry) in self.entries.iter().enumerate() {
            if let Some((name, _)) = entry
                && let Some(slot) = self.index.get_mut(name)
            {
                *slot = position;
            }
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let position = *self.index.get(name)?;
        self.entries[position].as_ref().map(|(_, v)| v.as_str())
    }

    /// Whether `name` is set.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The entries as `K=V` strings, in order.
    pub fn to_env_strings(&self) -> Vec<String> {
        self.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Holes [`EnvList`] tolerates beyond one per entry before compacting.
const COMPACT_SLACK: usize = 16;

impl Env for EnvList {
    fn get(&self, name: &str) -> Option<&str> {
        EnvList::get(self, name)
    }
}

/// Sets `k=v` in an image config's `Env` list: replaces the first entry with that key in place,
/// else appends (BuildKit `addEnv`). Linear in the list; [`ConfigEnvIndex`] is the
/// constant-time version for a stage's many `ENV`s.
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

/// The key of a `K=V` config entry (all of it without `=`).
fn config_env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// Name → position of its first entry in an image config's `Env`, so [`add_config_env`]'s
/// replace-or-append takes constant time. Checked against the list at each use and rebuilt
/// when the list changed behind its back.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigEnvIndex {
    positions: HashMap<String, usize>,
    /// The list length the index describes.
    len: usize,
}

impl ConfigEnvIndex {
    fn rebuild(&mut self, env: &[String]) {
        self.positions.clear();
        for (position, entry) in env.iter().enumerate() {
            self.positions
                .entry(config_env_key(entry).to_owned())
                .or_insert(position);
        }
        self.len = env.len();
    }

    /// [`add_config_env`] in constant time.
    pub(crate) fn add(&mut self, env: &mut Vec<String>, key: &str, value: &str) {
        if self.len != env.len() {
            self.rebuild(env);
        }
        let entry = format!("{key}={value}");
        if let Some(&position) = self.positions.get(key) {
            if env
                .get(position)
                .is_some_and(|existing| config_env_key(existing) == key)
            {
                env[position] = entry;
                return;
            }
            self.rebuild(env);
            if let Some(&position) = self.positions.get(key) {
                env[position] = entry;
                return;
            }
        }
        self.positions.insert(key.to_owned(), env.len());
        env.push(entry);
        self.len = env.len();
    }
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
    fn config_env_index_matches_the_linear_version() {
        let mut linear = vec!["PATH=/bin".to_owned(), "A=1".to_owned(), "A=dup".to_owned()];
        let mut indexed = linear.clone();
        let mut index = ConfigEnvIndex::default();
        for (k, v) in [
            ("A", "2"),
            ("B", "1"),
            ("PATH", "/x"),
            ("B", "2"),
            ("C", ""),
        ] {
            add_config_env(&mut linear, k, v);
            index.add(&mut indexed, k, v);
        }
        assert_eq!(indexed, linear);
        // Changed behind the index's back: it notices.
        indexed.insert(0, "B=0".to_owned());
        linear.insert(0, "B=0".to_owned());
        add_config_env(&mut linear, "B", "3");
        index.add(&mut indexed, "B", "3");
        assert_eq!(indexed, linear);
    }

    #[test]
    fn env_list_stays_ordered_through_compaction() {
        let mut env = EnvList::default();
        for i in 0..1_000 {
            env.set(&format!("V{}", i % 7), i.to_string());
        }
        assert_eq!(env.len(), 7);
        assert!(env.entries.len() <= 2 * 7 + COMPACT_SLACK + 1);
        let order: Vec<&str> = env.iter().map(|(k, _)| k).collect();
        assert_eq!(order, ["V6", "V0", "V1", "V2", "V3", "V4", "V5"]);
        assert_eq!(env.get("V5"), Some("999"));
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
