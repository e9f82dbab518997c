//! Docker's client config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`) as the
//! credential source, and `kiln login`/`kiln logout` writing the same file.
//!
//! Lookup order mirrors the docker CLI (`cli/config/configfile`): a per-registry
//! `credHelpers` entry, else the global `credsStore`, else the base64 `auth` of `auths`.
//! Helpers are `docker-credential-<name>` executables speaking the docker-credential-helpers
//! protocol (`get`/`store`/`erase`, JSON on stdin/stdout). Writes keep every key kiln does not
//! know and replace the file atomically with mode 0600.
//!
//! Why not the `docker_credential` crate (1.4.0) that DESIGN.md names: it only reads, so
//! `kiln login`/`logout` would still need this file's writer and helper `store`/`erase`; it
//! reports a missing config file and a malformed one as the same `ConfigReadError` (no path),
//! so "no config, pull anonymously" cannot be told from "broken config"; a `credsStore`
//! helper answering "credentials not found" is an error (`HelperFailure`) instead of
//! anonymous access, so a Docker Desktop `credsStore` fails pulls from public registries; a
//! missing helper is `HelperCommunicationError` without the program or the OS error; and its
//! `Debug` prints passwords.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::RegistryError;

/// The key Docker Hub credentials are stored under (docker CLI `registry.IndexServer`).
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or access token used as password).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh ("identity") token exchanged at the token server.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { username, .. } => write!(f, "Credentials::Basic({username}, ***)"),
            Self::IdentityToken(_) => f.write_str("Credentials::IdentityToken(***)"),
        }
    }
}

/// The docker client config file: where it is and its JSON (kept whole, so unknown keys
/// survive a write).
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    json: Map<String, Value>,
}

impl DockerConfig {
    /// The config path the docker CLI would use: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`; `None` when neither variable is set.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
    }

    /// Loads the config at the default path (an absent file is an empty config).
    pub fn load_default() -> Result<Self, RegistryError> {
        let path = Self::default_path().ok_or_else(|| RegistryError::DockerConfig {
            path: PathBuf::from("~/.docker/config.json"),
            reason: "neither DOCKER_CONFIG nor HOME is set".to_owned(),
        })?;
        Self::load(&path)
    }

    /// Loads the config at `path` (an absent file is an empty config).
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        match fs_err::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Self {
                path: path.to_owned(),
                json: Map::new(),
            }),
            Ok(bytes) => Self::from_json_bytes(path, &bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Self {
                path: path.to_owned(),
                json: Map::new(),
            }),
            Err(source) => Err(RegistryError::DockerConfigIo { source }),
        }
    }

    /// Parses config JSON text (for tests and callers holding the text).
    pub fn from_json(path: &Path, text: &str) -> Result<Self, RegistryError> {
        Self::from_json_bytes(path, text.as_bytes())
    }

    fn from_json_bytes(path: &Path, bytes: &[u8]) -> Result<Self, RegistryError> {
        let reason = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(json)) => {
                return Ok(Self {
                    path: path.to_owned(),
                    json,
                });
            }
            Ok(_) => "expected a JSON object".to_owned(),
            Err(err) => format!("invalid JSON: {err}"),
        };
        Err(RegistryError::DockerConfig {
            path: path.to_owned(),
            reason,
        })
    }

    /// Where this config lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credential helper responsible for `registry`, if any (`credHelpers`, then
    /// `credsStore`).
    pub fn helper_for(&self, registry: &str) -> Option<String> {
        let per_registry = self
            .json
            .get("credHelpers")
            .and_then(Value::as_object)
            .and_then(|helpers| {
                auth_keys(registry)
                    .iter()
                    .find_map(|key| helpers.get(key.as_str()).and_then(Value::as_str))
            });
        per_registry
            .or_else(|| self.json.get("credsStore").and_then(Value::as_str))
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
    }

    /// The credentials stored for `registry` (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        if let Some(helper) = self.helper_for(registry)
            && let Some(creds) = helper_get(&helper, registry)?
        {
            return Ok(Some(creds));
        }
        self.file_credentials(registry)
    }

    /// The credentials in the file's `auths` section only.
    pub fn file_credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let Some(auths) = self.json.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let wanted = auth_keys(registry);
        let entry = auths
            .iter()
            .find(|(key, _)| wanted.contains(&normalize_auth_key(key)))
            .map(|(_, value)| value);
        let Some(entry) = entry.and_then(Value::as_object) else {
            return Ok(None);
        };
        if let Some(token) = entry
            .get("identitytoken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            return Ok(Some(Credentials::IdentityToken(token.to_owned())));
        }
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let decoded =
                STANDARD
                    .decode(auth.trim())
                    .map_err(|err| RegistryError::DockerConfig {
                        path: self.path.clone(),
                        reason: format!("auths.{registry}.auth is not valid base64: {err}"),
                    })?;
            let text = String::from_utf8(decoded).map_err(|_| RegistryError::DockerConfig {
                path: self.path.clone(),
                reason: format!("auths.{registry}.auth is not UTF-8"),
            })?;
            let (username, password) =
                text.split_once(':')
                    .ok_or_else(|| RegistryError::DockerConfig {
                        path: self.path.clone(),
                        reason: format!("auths.{registry}.auth must encode `user:password`"),
                    })?;
            return Ok(Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        let username = entry.get("username").and_then(Value::as_str);
        let password = entry.get("password").and_then(Value::as_str);
        Ok(match (username, password) {
            (Some(username), Some(password)) => Some(Credentials::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }),
            _ => None,
        })
    }

    /// Stores `username`/`password` for `registry` (through its credential helper when one
    /// is configured, else base64 in `auths`) and writes the file.
    pub fn store(
        &mut self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<(), RegistryError> {
        let key = primary_auth_key(registry);
        if let Some(helper) = self.helper_for(registry) {
            helper_store(&helper, &key, username, password)?;
            // docker keeps an empty entry in `auths` so `docker info` lists the registry.
            self.auths_mut().insert(key, Value::Object(Map::new()));
        } else {
            let mut entry = Map::new();
            entry.insert(
                "auth".to_owned(),
                Value::String(STANDARD.encode(format!("{username}:{password}"))),
            );
            self.remove_auth_entries(registry);
            self.auths_mut().insert(key, Value::Object(entry));
        }
        self.save()
    }

    /// Removes the credentials for `registry`; returns whether there were any.
    pub fn erase(&mut self, registry: &str) -> Result<bool, RegistryError> {
        let mut was_present = false;
        if let Some(helper) = self.helper_for(registry) {
            was_present |= helper_erase(&helper, &primary_auth_key(registry))?;
        }
        was_present |= self.remove_auth_entries(registry);
        self.save()?;
        Ok(was_present)
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let auths = self
            .json
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        auths.as_object_mut().expect("just made an object")
    }

    fn remove_auth_entries(&mut self, registry: &str) -> bool {
        let wanted = auth_keys(registry);
        let Some(auths) = self.json.get_mut("auths").and_then(Value::as_object_mut) else {
            return false;
        };
        let before = auths.len();
        auths.retain(|key, _| !wanted.contains(&normalize_auth_key(key)));
        auths.len() != before
    }

    /// Writes the file atomically (temp file, fsync, rename) with mode 0600.
    pub fn save(&self) -> Result<(), RegistryError> {
        let bad = |reason: String| RegistryError::DockerConfig {
            path: self.path.clone(),
            reason,
        };
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        fs_err::create_dir_all(dir).map_err(|source| RegistryError::DockerConfigIo { source })?;
        let mut text = serde_json::to_vec_pretty(&Value::Object(self.json.clone()))
            .map_err(|err| bad(format!("cannot serialize: {err}")))?;
        text.push(b'\n');
        let tmp = dir.join(format!(".config.json.kiln-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut options = fs_err::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            fs_err::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs_err::rename(&tmp, &self.path)
        };
        write().map_err(|source| {
            let _ = fs_err::remove_file(&tmp);
            RegistryError::DockerConfigIo { source }
        })
    }
}

/// The key `kiln login REGISTRY` stores under: Docker Hub's legacy URL, else the host.
pub fn primary_auth_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_AUTH_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com"
    ) || normalize_auth_key(registry) == "docker.io"
}

/// The normalised keys under which `registry`'s credentials may be stored.
fn auth_keys(registry: &str) -> Vec<String> {
    let host = normalize_auth_key(registry);
    if is_docker_hub(&host) {
        vec!["docker.io".to_owned(), DOCKER_HUB_AUTH_KEY.to_owned()]
    } else {
        vec![host]
    }
}

/// docker CLI `ConvertToHostname`: strips `http(s)://` and any path; Hub aliases become
/// `docker.io`.
fn normalize_auth_key(key: &str) -> String {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = stripped.split('/').next().unwrap_or(stripped);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            "docker.io".to_owned()
        }
        other => other.to_owned(),
    }
}

fn helper_error(
    helper: &str,
    action: &'static str,
    registry: &str,
    reason: String,
) -> RegistryError {
    RegistryError::CredentialHelper {
        helper: helper.to_owned(),
        action,
        registry: registry.to_owned(),
        reason,
    }
}

fn run_helper(
    helper: &str,
    action: &'static str,
    registry: &str,
    input: &[u8],
) -> Result<(bool, Vec<u8>, String), RegistryError> {
    let program = format!("docker-credential-{helper}");
    let fail = |reason: String| helper_error(helper, action, registry, reason);
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| fail(format!("cannot run `{program}` (is it on PATH?): {err}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|err| fail(format!("cannot write to `{program}`: {err}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|err| fail(format!("`{program}` did not finish: {err}")))?;
    let message = {
        let out = String::from_utf8_lossy(&output.stdout);
        let err = String::from_utf8_lossy(&output.stderr);
        format!("{}{}", out.trim(), err.trim())
    };
    Ok((output.status.success(), output.stdout, message))
}

/// docker-credential-helpers: `credentials.NewErrCredentialsNotFound` message.
fn is_not_found(message: &str) -> bool {
    message.contains("credentials not found")
}

fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let server = primary_auth_key(registry);
    let (ok, stdout, message) = run_helper(helper, "get", registry, server.as_bytes())?;
    if !ok {
        if is_not_found(&message) {
            return Ok(None);
        }
        return Err(helper_error(helper, "get", registry, message));
    }
    let parsed: Value = serde_json::from_slice(&stdout).map_err(|err| {
        helper_error(
            helper,
            "get",
            registry,
            format!("output is not JSON: {err}"),
        )
    })?;
    let username = parsed
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = parsed
        .get("Secret")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    // docker CLI: a helper returning the user `<token>` holds an identity token.
    if username == "<token>" {
        return Ok(Some(Credentials::IdentityToken(secret.to_owned())));
    }
    Ok(Some(Credentials::Basic {
        username: username.to_owned(),
        password: secret.to_owned(),
    }))
}

fn helper_store(
    helper: &str,
    server: &str,
    username: &str,
    password: &str,
) -> Result<(), RegistryError> {
    let input = serde_json::json!({"ServerURL": server, "Username": username, "Secret": password});
    let (ok, _, message) = run_helper(helper, "store", server, input.to_string().as_bytes())?;
    if ok {
        Ok(())
    } else {
        Err(helper_error(helper, "store", server, message))
    }
}

fn helper_erase(helper: &str, server: &str) -> Result<bool, RegistryError> {
    let (ok, _, message) = run_helper(helper, "erase", server, server.as_bytes())?;
    if ok {
        Ok(true)
    } else if is_not_found(&message) {
        Ok(false)
    } else {
        Err(helper_error(helper, "erase", server, message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> DockerConfig {
        DockerConfig::from_json(Path::new("/x/config.json"), text).unwrap()
    }

    fn basic(user: &str, pass: &str) -> Credentials {
        Credentials::Basic {
            username: user.to_owned(),
            password: pass.to_owned(),
        }
    }

    #[test]
    fn auths_with_base64_auth_and_key_spellings() {
        let cfg = config(&format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "http://localhost:5000/v2/": {{"auth": "{}"}},
                "ghcr.io": {{"username": "u", "password": "p"}},
                "quay.io": {{"identitytoken": "refresh"}}
            }}}}"#,
            STANDARD.encode("hubuser:hub:pass"),
            STANDARD.encode("me:secret"),
        ));
        assert_eq!(
            cfg.credentials("docker.io").unwrap(),
            Some(basic("hubuser", "hub:pass"))
        );
        assert_eq!(
            cfg.credentials("localhost:5000").unwrap(),
            Some(basic("me", "secret"))
        );
        assert_eq!(cfg.credentials("ghcr.io").unwrap(), Some(basic("u", "p")));
        assert_eq!(
            cfg.credentials("quay.io").unwrap(),
            Some(Credentials::IdentityToken("refresh".to_owned()))
        );
        assert_eq!(cfg.credentials("localhost:5001").unwrap(), None);
    }

    #[test]
    fn bad_auth_values_are_errors_naming_the_file() {
        let cfg = config(r#"{"auths": {"r.io": {"auth": "%%%"}}}"#);
        let err = cfg.credentials("r.io").unwrap_err().to_string();
        assert!(
            err.contains("/x/config.json") && err.contains("base64"),
            "{err}"
        );
        let cfg = config(&format!(
            r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
            STANDARD.encode("nocolon")
        ));
        assert!(
            cfg.credentials("r.io")
                .unwrap_err()
                .to_string()
                .contains("user:password")
        );
        assert!(DockerConfig::from_json(Path::new("c.json"), "[1]").is_err());
        assert!(DockerConfig::from_json(Path::new("c.json"), "{").is_err());
    }

    #[test]
    fn helpers_are_chosen_per_registry_then_global() {
        let cfg = config(
            r#"{"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud", "https://index.docker.io/v1/": "hub"}}"#,
        );
        assert_eq!(cfg.helper_for("gcr.io").as_deref(), Some("gcloud"));
        assert_eq!(cfg.helper_for("docker.io").as_deref(), Some("hub"));
        assert_eq!(cfg.helper_for("other.io").as_deref(), Some("desktop"));
        assert_eq!(config("{}").helper_for("x.io"), None);
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let cfg = config(r#"{"credsStore": "kiln-test-does-not-exist"}"#);
        let err = cfg.credentials("r.io").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-kiln-test-does-not-exist") && err.contains("r.io"),
            "{err}"
        );
    }

    #[test]
    fn store_and_erase_keep_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs_err::write(
            &path,
            r#"{"psFormat": "table", "auths": {"other.io": {"auth": "eDp5"}}}"#,
        )
        .unwrap();
        let mut cfg = DockerConfig::load(&path).unwrap();
        cfg.store("localhost:5000", "user", "pass").unwrap();
        let text = fs_err::read_to_string(&path).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["psFormat"], "table");
        assert_eq!(json["auths"]["other.io"]["auth"], "eDp5");
        assert_eq!(
            json["auths"]["localhost:5000"]["auth"],
            STANDARD.encode("user:pass")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                fs_err::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let mut cfg = DockerConfig::load(&path).unwrap();
        assert_eq!(
            cfg.credentials("localhost:5000").unwrap(),
            Some(basic("user", "pass"))
        );
        assert!(cfg.erase("localhost:5000").unwrap());
        assert!(!cfg.erase("localhost:5000").unwrap());
        let json: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert!(json["auths"].get("localhost:5000").is_none());
        assert_eq!(json["psFormat"], "table");
    }

    #[test]
    fn docker_hub_login_uses_the_legacy_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        let mut cfg = DockerConfig::load(&path).unwrap();
        cfg.store("docker.io", "u", "p").unwrap();
        let json: Value = serde_json::from_str(&fs_err::read_to_string(&path).unwrap()).unwrap();
        assert!(json["auths"].get(DOCKER_HUB_AUTH_KEY).is_some());
        assert_eq!(
            DockerConfig::load(&path)
                .unwrap()
                .credentials("index.docker.io")
                .unwrap(),
            Some(basic("u", "p"))
        );
    }
}
