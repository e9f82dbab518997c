//! [`ClientConfig`]: registry client options, built with chained setters over `Default`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::{Credentials, NoProgress, Progress};

/// Default number of blobs downloaded at once.
pub const DEFAULT_DOWNLOAD_CONCURRENCY: usize = 4;
/// Default number of blobs uploaded at once.
pub const DEFAULT_UPLOAD_CONCURRENCY: usize = 4;
/// Blobs up to this size are uploaded with one `PUT`; larger ones in `PATCH` chunks.
pub const DEFAULT_MONOLITHIC_LIMIT: u64 = 256 * 1024 * 1024;
/// The size of one `PATCH` chunk of a chunked upload.
pub const DEFAULT_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

/// When and how often failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts per request or download, including the first (1 = never retry).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound of the exponential backoff.
    pub max_backoff: Duration,
    /// Upper bound on a server's `Retry-After` (a larger value is clamped to it).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_mins(1),
        }
    }
}

impl RetryPolicy {
    /// The backoff before attempt `attempt` (2 = first retry): `initial · 2^(attempt-2)`,
    /// capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(2).min(16);
        self.initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff)
    }
}

/// Options of a [`crate::Client`].
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) insecure_registries: Vec<String>,
    pub(crate) download_concurrency: usize,
    pub(crate) upload_concurrency: usize,
    pub(crate) monolithic_limit: u64,
    pub(crate) chunk_size: u64,
    pub(crate) retry: RetryPolicy,
    pub(crate) docker_config: Option<PathBuf>,
    pub(crate) use_docker_config: bool,
    pub(crate) credentials: BTreeMap<String, Credentials>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) user_agent: String,
    pub(crate) connect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            download_concurrency: DEFAULT_DOWNLOAD_CONCURRENCY,
            upload_concurrency: DEFAULT_UPLOAD_CONCURRENCY,
            monolithic_limit: DEFAULT_MONOLITHIC_LIMIT,
            chunk_size: DEFAULT_CHUNK_SIZE,
            retry: RetryPolicy::default(),
            docker_config: None,
            use_docker_config: true,
            credentials: BTreeMap::new(),
            progress: Arc::new(NoProgress),
            user_agent: concat!("kiln/", env!("CARGO_PKG_VERSION")).to_owned(),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("insecure_registries", &self.insecure_registries)
            .field("download_concurrency", &self.download_concurrency)
            .field("upload_concurrency", &self.upload_concurrency)
            .field("monolithic_limit", &self.monolithic_limit)
            .field("chunk_size", &self.chunk_size)
            .field("retry", &self.retry)
            .field("docker_config", &self.docker_config)
            .field("use_docker_config", &self.use_docker_config)
            .field("credentials", &self.credentials)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// The defaults: HTTPS except on loopback, credentials from the docker config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Talks plain HTTP (or HTTPS without certificate checks) to `host` (`host` or
    /// `host:port`). Loopback hosts are always allowed plain HTTP.
    #[must_use]
    pub fn insecure_registry(mut self, host: impl Into<String>) -> Self {
        self.insecure_registries.push(host.into());
        self
    }

    /// How many blobs a pull downloads at once (at least 1).
    #[must_use]
    pub fn download_concurrency(mut self, limit: usize) -> Self {
        self.download_concurrency = limit.max(1);
        self
    }

    /// How many blobs a push uploads at once (at least 1).
    #[must_use]
    pub fn upload_concurrency(mut self, limit: usize) -> Self {
        self.upload_concurrency = limit.max(1);
        self
    }

    /// Blobs up to `limit` bytes are uploaded in one `PUT`; larger ones in chunks.
    #[must_use]
    pub fn monolithic_limit(mut self, limit: u64) -> Self {
        self.monolithic_limit = limit;
        self
    }

    /// Size of one `PATCH` of a chunked upload (at least 1 byte).
    #[must_use]
    pub fn chunk_size(mut self, size: u64) -> Self {
        self.chunk_size = size.max(1);
        self
    }

    /// The retry policy.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Reads credentials from this docker config file instead of the default
    /// (`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`).
    #[must_use]
    pub fn docker_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.docker_config = Some(path.into());
        self.use_docker_config = true;
        self
    }

    /// Never reads a docker config (anonymous unless [`ClientConfig::credentials`] are given).
    #[must_use]
    pub fn without_docker_config(mut self) -> Self {
        self.use_docker_config = false;
        self
    }

    /// Uses these credentials for `registry` (e.g. `localhost:5000`, `docker.io`), ahead of
    /// the docker config.
    #[must_use]
    pub fn credentials(mut self, registry: impl Into<String>, credentials: Credentials) -> Self {
        self.credentials.insert(registry.into(), credentials);
        self
    }

    /// Where progress events go.
    #[must_use]
    pub fn progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// The `User-Agent` header.
    #[must_use]
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// TCP connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether `registry` is allowed plain HTTP: loopback hosts (127.0.0.0/8, ::1,
    /// localhost) and the configured insecure registries.
    pub fn is_plain_http_allowed(&self, registry: &str) -> bool {
        is_loopback(registry) || self.is_insecure(registry)
    }

    pub(crate) fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        self.insecure_registries
            .iter()
            .any(|entry| entry == registry || entry == host)
    }
}

/// The host part of `host[:port]` or `[v6]:port`, without brackets.
pub(crate) fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(host, _)| host)
}

/// Whether `registry` (`host[:port]`) is a loopback host.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure_hosts() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        let config = ClientConfig::new()
            .insecure_registry("10.0.0.1")
            .insecure_registry("reg.lan:5000");
        assert!(config.is_plain_http_allowed("10.0.0.1:5000"));
        assert!(config.is_plain_http_allowed("reg.lan:5000"));
        assert!(!config.is_plain_http_allowed("reg.lan:6000"));
        assert!(!config.is_plain_http_allowed("ghcr.io"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(400));
        assert_eq!(policy.backoff(4), Duration::from_millis(800));
        assert_eq!(policy.backoff(40), Duration::from_secs(10));
    }
}
