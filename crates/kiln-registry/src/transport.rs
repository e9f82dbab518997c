//! Sending requests to a registry: endpoint choice (plain HTTP for loopback and insecure
//! hosts, HTTPS otherwise), authentication on 401 (one re-try with fresh credentials or
//! token), and retries of transient failures (connection errors, 5xx, 429) with exponential
//! backoff that honours `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};

use crate::auth::{AuthState, Scopes, challenges_of, parse_token_response, token_http_request};
use crate::config::is_loopback;
use crate::{ClientConfig, Credentials, DockerConfig, ProgressEvent, RegistryError};

/// How much of an error body is quoted in messages.
const ERROR_BODY_QUOTE: usize = 512;

/// One registry endpoint: where it is and how to authenticate.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The registry name as in references (`docker.io`, `localhost:5000`).
    pub(crate) name: String,
    /// `http(s)://host[:port]/` (Docker Hub → `registry-1.docker.io`).
    pub(crate) base: Url,
    /// Whether TLS certificates are not verified (`--insecure-registry` over HTTPS).
    accepts_any_certificate: bool,
    pub(crate) auth: tokio::sync::Mutex<AuthState>,
}

impl Endpoint {
    /// `base` joined with an API path such as `v2/library/busybox/manifests/latest`.
    pub(crate) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        self.base.join(path).map_err(|err| RegistryError::BadUrl {
            registry: self.name.clone(),
            url: format!("{}{path}", self.base),
            reason: err.to_string(),
        })
    }
}

/// The client's shared state.
pub(crate) struct Transport {
    pub(crate) config: ClientConfig,
    http: reqwest::Client,
    http_any_certificate: reqwest::Client,
    endpoints: tokio::sync::Mutex<HashMap<String, Arc<Endpoint>>>,
    /// Where blobs were seen: (registry, digest) → repositories (for cross-repo mounts).
    pub(crate) origins: Mutex<HashMap<(String, String), Vec<String>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Transport {
    pub(crate) fn new(config: ClientConfig) -> Result<Self, RegistryError> {
        let (http, http_any_certificate) = crate::tls::http_clients(&config)?;
        Ok(Self {
            config,
            http,
            http_any_certificate,
            endpoints: tokio::sync::Mutex::new(HashMap::new()),
            origins: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn http_for(&self, endpoint: &Endpoint) -> &reqwest::Client {
        if endpoint.accepts_any_certificate {
            &self.http_any_certificate
        } else {
            &self.http
        }
    }

    /// The credentials configured for `registry` (explicit ones first, then docker config).
    pub(crate) fn credentials_for(
        &self,
        registry: &str,
    ) -> Result<Option<Credentials>, RegistryError> {
        if let Some(creds) = self.config.credentials.get(registry) {
            return Ok(Some(creds.clone()));
        }
        if !self.config.use_docker_config {
            return Ok(None);
        }
        let config = match &self.config.docker_config {
            Some(path) => DockerConfig::load(path)?,
            None => match DockerConfig::default_path() {
                Some(path) => DockerConfig::load(&path)?,
                None => return Ok(None),
            },
        };
        config.credentials(registry)
    }

    /// The endpoint of `registry` (`api_host` is where requests go), created on first use.
    pub(crate) async fn endpoint(
        &self,
        registry: &str,
        api_host: &str,
    ) -> Result<Arc<Endpoint>, RegistryError> {
        let mut endpoints = self.endpoints.lock().await;
        if let Some(endpoint) = endpoints.get(registry) {
            return Ok(endpoint.clone());
        }
        let credentials = self.credentials_for(registry)?;
        let (scheme, accepts_any_certificate) = if is_loopback(registry) {
            ("http", false)
        } else if self.config.is_insecure(registry) {
            (self.probe_insecure_scheme(api_host).await, true)
        } else {
            ("https", false)
        };
        let text = format!("{scheme}://{api_host}/");
        let base = Url::parse(&text).map_err(|err| RegistryError::BadUrl {
            registry: registry.to_owned(),
            url: text,
            reason: err.to_string(),
        })?;
        let endpoint = Arc::new(Endpoint {
            name: registry.to_owned(),
            base,
            accepts_any_certificate,
            auth: tokio::sync::Mutex::new(AuthState::new(credentials)),
        });
        endpoints.insert(registry.to_owned(), endpoint.clone());
        Ok(endpoint)
    }

    /// docker: an insecure registry is tried over HTTPS (any certificate) first, then HTTP.
    async fn probe_insecure_scheme(&self, api_host: &str) -> &'static str {
        let url = format!("https://{api_host}/v2/");
        match self.http_any_certificate.get(&url).send().await {
            Ok(_) => "https",
            Err(err) => {
                tracing::warn!(
                    "{api_host} does not answer HTTPS ({err}); using plain HTTP as --insecure-registry allows"
                );
                "http"
            }
        }
    }

    /// Sends a request built by `build` (called again for every attempt), authenticating for
    /// `scopes` and retrying transient failures. Returns the final response whatever its
    /// status, except 401s, which become [`RegistryError::AuthRequired`] /
    /// [`RegistryError::AuthRejected`].
    pub(crate) async fn send(
        &self,
        endpoint: &Endpoint,
        scopes: &Scopes,
        operation: &str,
        build: &(dyn Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, RegistryError> + Sync),
    ) -> Result<Response, RegistryError> {
        self.send_attempts(
            endpoint,
            scopes,
            operation,
            self.config.retry.max_attempts,
            build,
        )
        .await
    }

    /// [`Transport::send`] with at most `max_attempts` tries of transient failures (1 for
    /// requests whose body cannot be sent twice to the same upload session).
    pub(crate) async fn send_attempts(
        &self,
        endpoint: &Endpoint,
        scopes: &Scopes,
        operation: &str,
        max_attempts: u32,
        build: &(dyn Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, RegistryError> + Sync),
    ) -> Result<Response, RegistryError> {
        let mut reauthenticated = false;
        loop {
            let authorization = self.authorization(endpoint, scopes).await?;
            let http = self.http_for(endpoint);
            let response = self
                .send_with_retries(&endpoint.name, operation, max_attempts, &|| {
                    let mut request = build(http)?;
                    if let Some(value) = &authorization {
                        request = request.header(AUTHORIZATION, value.clone());
                    }
                    Ok(request)
                })
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let challenges = challenges_of(response.headers());
            let mut state = endpoint.auth.lock().await;
            let learned = state.learn(&challenges, scopes);
            // A concurrent request may have learned the scheme while this one was in flight
            // (parallel blob HEADs on a Basic registry): then the state already answers with
            // a different header than the one sent, and a retry can succeed.
            let stale = match state.authorization(scopes) {
                Ok(now) => now != authorization,
                // A token is now obtainable and none was sent.
                Err(_) => authorization.is_none(),
            };
            let changed = learned || stale;
            let has_credentials = state.has_credentials();
            drop(state);
            if reauthenticated || !changed {
                return Err(auth_error(
                    endpoint,
                    scopes,
                    authorization.is_some() && has_credentials,
                    401,
                ));
            }
            reauthenticated = true;
        }
    }

    /// The `Authorization` header for `scopes`, fetching a bearer token when needed.
    async fn authorization(
        &self,
        endpoint: &Endpoint,
        scopes: &Scopes,
    ) -> Result<Option<reqwest::header::HeaderValue>, RegistryError> {
        let mut state = endpoint.auth.lock().await;
        let request = match state.authorization(scopes) {
            Ok(header) => return Ok(header),
            Err(request) => request,
        };
        // The lock is held while fetching, so concurrent blobs share one token request.
        let http = self.http_for(endpoint);
        let operation = format!("token request to {}", request.realm);
        let response = self
            .send_with_retries(
                &endpoint.name,
                &operation,
                self.config.retry.max_attempts,
                &|| token_http_request(http, &endpoint.name, &request),
            )
            .await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(auth_error(
                endpoint,
                scopes,
                request.credentials.is_some(),
                status.as_u16(),
            ));
        }
        let body = read_body(&endpoint.name, &operation, response).await?;
        if !status.is_success() {
            return Err(RegistryError::TokenServer {
                registry: endpoint.name.clone(),
                realm: request.realm.clone(),
                reason: format!("HTTP {status}: {}", quote(&body)),
            });
        }
        let (token, lifetime) = parse_token_response(&endpoint.name, &request.realm, &body)?;
        let header = crate::auth::bearer_header(&token);
        state.store_token(scopes, token, lifetime);
        Ok(header)
    }

    /// `GET url` with the verifying client and the retry policy, without authentication:
    /// a plain HTTP(S) download (`ADD <url>`). Returns the final response whatever its status.
    pub(crate) async fn get_url(&self, url: &Url) -> Result<Response, RegistryError> {
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => url.to_string(),
        };
        let operation = format!("GET {url}");
        let build = || Ok(self.http.get(url.clone()));
        self.send_with_retries(&host, &operation, self.config.retry.max_attempts, &build)
            .await
    }

    /// Sends with retries on connection errors, 5xx and 429 (no authentication handling).
    pub(crate) async fn send_with_retries(
        &self,
        registry: &str,
        operation: &str,
        max_attempts: u32,
        build: &(dyn Fn() -> Result<reqwest::RequestBuilder, RegistryError> + Sync),
    ) -> Result<Response, RegistryError> {
        let policy = &self.config.retry;
        let mut attempt = 1;
        loop {
            let result = build()?.send().await;
            let (delay, reason) = match result {
                Ok(response)
                    if is_retryable_status(response.status()) && attempt < max_attempts =>
                {
                    let delay = retry_after(response.headers()).map_or_else(
                        || policy.backoff(attempt + 1),
                        |d| d.min(policy.max_retry_after),
                    );
                    (delay, format!("HTTP {}", response.status()))
                }
                Ok(response) => return Ok(response),
                Err(err) if attempt < max_attempts && is_retryable_error(&err) => {
                    (policy.backoff(attempt + 1), error_chain(&err))
                }
                Err(error) => {
                    return Err(RegistryError::Transport {
                        registry: registry.to_owned(),
                        operation: operation.to_owned(),
                        attempts: attempt,
                        error,
                    });
                }
            };
            attempt += 1;
            self.retrying(operation, attempt, delay, reason).await;
        }
    }

    /// Reports and waits before a retry.
    pub(crate) async fn retrying(
        &self,
        operation: &str,
        attempt: u32,
        delay: Duration,
        reason: String,
    ) {
        tracing::debug!("{operation}: {reason}; attempt {attempt} in {delay:?}");
        self.config.progress.on_event(&ProgressEvent::Retrying {
            operation: operation.to_owned(),
            attempt,
            delay,
            reason,
        });
        tokio::time::sleep(delay).await;
    }

    /// Records that `digest` exists in `repository` of `registry` (a mount source later).
    pub(crate) fn record_origin(
        &self,
        registry: &str,
        repository: &str,
        digest: &kiln_oci::Digest,
    ) {
        let mut origins = self
            .origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let repos = origins
            .entry((registry.to_owned(), digest.to_string()))
            .or_default();
        if !repos.iter().any(|r| r == repository) {
            repos.push(repository.to_owned());
        }
    }

    /// Repositories of `registry` known to hold `digest`, other than `except`.
    pub(crate) fn origins_of(
        &self,
        registry: &str,
        digest: &kiln_oci::Digest,
        except: &str,
    ) -> Vec<String> {
        let origins = self
            .origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        origins
            .get(&(registry.to_owned(), digest.to_string()))
            .map(|repos| repos.iter().filter(|r| *r != except).cloned().collect())
            .unwrap_or_default()
    }
}

fn auth_error(
    endpoint: &Endpoint,
    scopes: &Scopes,
    had_credentials: bool,
    status: u16,
) -> RegistryError {
    if had_credentials {
        RegistryError::AuthRejected {
            registry: endpoint.name.clone(),
            repository: scopes.repository(),
            status,
        }
    } else {
        RegistryError::AuthRequired {
            registry: endpoint.name.clone(),
            repository: scopes.repository(),
        }
    }
}

/// distribution: 429 Too Many Requests and 5xx (but not 501 Not Implemented) are transient.
fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// Connection refused/reset, timeouts and broken bodies are worth another attempt; bad URLs,
/// redirect loops and a host name that does not exist (the resolver's answer, not a timeout)
/// are not.
pub(crate) fn is_retryable_error(err: &reqwest::Error) -> bool {
    !(err.is_builder()
        || err.is_redirect()
        || err.is_status()
        || err.is_decode()
        || is_unknown_host(&error_chain(err)))
}

/// Whether an error's text is the resolver saying the name does not exist (getaddrinfo's
/// `EAI_NONAME`/`EAI_NODATA`), as opposed to a temporary failure (`EAI_AGAIN`), which is
/// worth another attempt.
fn is_unknown_host(chain: &str) -> bool {
    chain.contains("dns error")
        && [
            "Name or service not known",
            "No address associated with hostname",
            "nodename nor servname provided",
        ]
        .iter()
        .any(|text| chain.contains(text))
}

/// `Retry-After`: delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The error and its sources in one line (`error sending request: connection reset`).
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        source = inner.source();
    }
    out
}

/// Reads a whole (small) body; a broken body is a transport error.
pub(crate) async fn read_body(
    registry: &str,
    operation: &str,
    response: Response,
) -> Result<Vec<u8>, RegistryError> {
    response
        .bytes()
        .await
        .map(|b| b.to_vec())
        .map_err(|error| RegistryError::Transport {
            registry: registry.to_owned(),
            operation: operation.to_owned(),
            attempts: 1,
            error,
        })
}

pub(crate) fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_QUOTE)]);
    text.trim().to_owned()
}

/// Turns an unexpected response into the matching error (404 → not found, 401/403 → auth).
pub(crate) async fn unexpected(
    endpoint: &Endpoint,
    scopes: &Scopes,
    operation: &str,
    what: &str,
    response: Response,
) -> RegistryError {
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return RegistryError::NotFound {
            registry: endpoint.name.clone(),
            what: what.to_owned(),
        };
    }
    if status == StatusCode::FORBIDDEN {
        let has_credentials = endpoint.auth.lock().await.has_credentials();
        return auth_error(endpoint, scopes, has_credentials, 403);
    }
    let body = response
        .bytes()
        .await
        .map(|b| quote(&b))
        .unwrap_or_default();
    RegistryError::Status {
        registry: endpoint.name.clone(),
        operation: operation.to_owned(),
        status: status.as_u16(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_mins(2));
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        let delay = retry_after(&headers).unwrap();
        assert!(
            delay > Duration::from_secs(100) && delay <= Duration::from_mins(2),
            "{delay:?}"
        );
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn unknown_hosts_are_not_retried_but_temporary_failures_are() {
        assert!(is_unknown_host(
            "error sending request: client error (Connect): dns error: error resolving DNS: \
             failed to lookup address information: Name or service not known"
        ));
        assert!(!is_unknown_host(
            "client error (Connect): dns error: failed to lookup address information: \
             Temporary failure in name resolution"
        ));
        assert!(!is_unknown_host(
            "client error (Connect): connection refused"
        ));
    }

    #[test]
    fn retryable_statuses() {
        for code in [429, 500, 502, 503, 504] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [200, 400, 401, 404, 501] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }
}
