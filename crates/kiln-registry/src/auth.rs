//! Registry authentication state: which scheme a registry asked for (learned from its
//! `WWW-Authenticate` challenge), the credentials to answer with, and bearer tokens cached
//! per scope until they expire or a 401 says they are stale.
//!
//! Token flow (distribution `docs/spec/auth/token.md`): `GET realm?service=…&scope=…` with
//! basic credentials when there are some (anonymous otherwise), answer `{"token"|"access_token",
//! "expires_in"}`; identity tokens use the OAuth2 `refresh_token` grant (`oauth.md`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::HeaderValue;

use crate::challenge::{Challenge, parse_challenges};
use crate::{Credentials, RegistryError};

/// distribution token spec: "If omitted, a default of 60 seconds should be assumed."
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_mins(1);
/// Tokens are renewed this long before they expire, so a request never carries a token that
/// expires in flight.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The OAuth2 `client_id` kiln identifies as.
const OAUTH_CLIENT_ID: &str = "kiln";

/// The access a request needs, as token-server scopes (`repository:NAME:pull,push`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Scopes(Vec<String>);

impl Scopes {
    /// Pull access to `repository`.
    pub(crate) fn pull(repository: &str) -> Self {
        Self(vec![format!("repository:{repository}:pull")])
    }

    /// Pull and push access to `repository`, plus pull access to `mount_from` repositories.
    pub(crate) fn push(repository: &str, mount_from: &[String]) -> Self {
        let mut scopes = vec![format!("repository:{repository}:pull,push")];
        for from in mount_from {
            if from != repository {
                scopes.push(format!("repository:{from}:pull"));
            }
        }
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }

    /// No repository access (the `/v2/` ping of `kiln login`).
    pub(crate) fn none() -> Self {
        Self(Vec::new())
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }

    /// The repository the first scope names (for error messages).
    pub(crate) fn repository(&self) -> String {
        self.0
            .first()
            .and_then(|s| s.split(':').nth(1))
            .unwrap_or("/v2/")
            .to_owned()
    }
}

/// What a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Not known yet: requests go out without credentials until a 401 says otherwise.
    Unknown,
    /// `Basic`: every request carries the credentials.
    Basic,
    /// `Bearer`: tokens from `realm` for `service`.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

/// One registry's authentication state (behind a mutex in the client).
#[derive(Debug)]
pub(crate) struct AuthState {
    pub(crate) scheme: Scheme,
    tokens: HashMap<String, Token>,
    credentials: Option<Credentials>,
}

/// A token request to make (built under the lock, sent by the transport).
#[derive(Debug, Clone)]
pub(crate) struct TokenRequest {
    pub(crate) realm: String,
    pub(crate) service: Option<String>,
    pub(crate) scopes: Scopes,
    pub(crate) credentials: Option<Credentials>,
}

impl AuthState {
    pub(crate) fn new(credentials: Option<Credentials>) -> Self {
        Self {
            scheme: Scheme::Unknown,
            tokens: HashMap::new(),
            credentials,
        }
    }

    pub(crate) fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// The `Authorization` header for `scopes`, or the token request to make first.
    pub(crate) fn authorization(
        &self,
        scopes: &Scopes,
    ) -> Result<Option<HeaderValue>, TokenRequest> {
        match &self.scheme {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.basic_header()),
            Scheme::Bearer { realm, service } => match self.tokens.get(&scopes.key()) {
                Some(token) if token.renew_at > Instant::now() => Ok(bearer_header(&token.value)),
                _ => Err(TokenRequest {
                    realm: realm.clone(),
                    service: service.clone(),
                    scopes: scopes.clone(),
                    credentials: self.credentials.clone(),
                }),
            },
        }
    }

    fn basic_header(&self) -> Option<HeaderValue> {
        match &self.credentials {
            Some(Credentials::Basic { username, password }) => basic_header(username, password),
            Some(Credentials::IdentityToken(_)) | None => None,
        }
    }

    /// Learns the scheme from a 401's challenges; returns whether anything changed (so a
    /// retry can succeed). A stale token for `scopes` is dropped.
    pub(crate) fn learn(&mut self, challenges: &[Challenge], scopes: &Scopes) -> bool {
        let had_token = self.tokens.remove(&scopes.key()).is_some();
        let bearer = challenges.iter().find(|c| c.is_bearer());
        let new_scheme = if let Some(bearer) = bearer
            && let Some(realm) = bearer.param("realm")
        {
            Scheme::Bearer {
                realm: realm.to_owned(),
                service: bearer.param("service").map(str::to_owned),
            }
        } else if challenges.iter().any(Challenge::is_basic) {
            Scheme::Basic
        } else {
            return had_token;
        };
        let changed = new_scheme != self.scheme;
        self.scheme = new_scheme;
        changed || had_token
    }

    pub(crate) fn store_token(&mut self, scopes: &Scopes, value: String, lifetime: Duration) {
        let renew_at = Instant::now() + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN);
        self.tokens.insert(scopes.key(), Token { value, renew_at });
    }
}

pub(crate) fn basic_header(username: &str, password: &str) -> Option<HeaderValue> {
    let encoded = STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

pub(crate) fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Parses every `WWW-Authenticate` header of a response.
pub(crate) fn challenges_of(headers: &reqwest::header::HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// The token server's answer.
#[derive(Debug, serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Builds the HTTP request for `request` (GET for basic/anonymous, POST for identity tokens).
pub(crate) fn token_http_request(
    http: &reqwest::Client,
    registry: &str,
    request: &TokenRequest,
) -> Result<reqwest::RequestBuilder, RegistryError> {
    let mut url = reqwest::Url::parse(&request.realm).map_err(|err| RegistryError::BadUrl {
        registry: registry.to_owned(),
        url: request.realm.clone(),
        reason: err.to_string(),
    })?;
    if let Some(Credentials::IdentityToken(refresh)) = &request.credentials {
        let mut form = reqwest::Url::parse("http://form.invalid/").expect("static URL parses");
        {
            let mut pairs = form.query_pairs_mut();
            pairs.append_pair("grant_type", "refresh_token");
            pairs.append_pair("refresh_token", refresh);
            pairs.append_pair("client_id", OAUTH_CLIENT_ID);
            if let Some(service) = &request.service {
                pairs.append_pair("service", service);
            }
            if !request.scopes.0.is_empty() {
                pairs.append_pair("scope", &request.scopes.key());
            }
        }
        let body = form.query().unwrap_or_default().to_owned();
        return Ok(http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body));
    }
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(service) = &request.service {
            pairs.append_pair("service", service);
        }
        for scope in &request.scopes.0 {
            pairs.append_pair("scope", scope);
        }
    }
    let mut builder = http.get(url);
    if let Some(Credentials::Basic { username, password }) = &request.credentials
        && let Some(header) = basic_header(username, password)
    {
        builder = builder.header(reqwest::header::AUTHORIZATION, header);
    }
    Ok(builder)
}

/// Extracts the token and its lifetime from a token server's JSON.
pub(crate) fn parse_token_response(
    registry: &str,
    realm: &str,
    body: &[u8],
) -> Result<(String, Duration), RegistryError> {
    let parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|err| RegistryError::TokenServer {
            registry: registry.to_owned(),
            realm: realm.to_owned(),
            reason: format!("answer is not token JSON: {err}"),
        })?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| RegistryError::TokenServer {
            registry: registry.to_owned(),
            realm: realm.to_owned(),
            reason: "answer has neither `token` nor `access_token`".to_owned(),
        })?;
    let lifetime = parsed
        .expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_state_asks_for_a_token_then_uses_it() {
        let mut state = AuthState::new(None);
        let scopes = Scopes::pull("library/busybox");
        assert_eq!(state.authorization(&scopes).unwrap(), None);
        let challenges = parse_challenges(r#"Bearer realm="https://auth/token",service="reg""#);
        assert!(state.learn(&challenges, &scopes));
        let request = state.authorization(&scopes).unwrap_err();
        assert_eq!(request.realm, "https://auth/token");
        assert_eq!(request.service.as_deref(), Some("reg"));
        state.store_token(&scopes, "tok".to_owned(), Duration::from_mins(5));
        let header = state.authorization(&scopes).unwrap().unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer tok");
        // Another scope needs its own token.
        assert!(state.authorization(&Scopes::push("x", &[])).is_err());
        // A 401 with a cached token drops it, so the retry fetches a fresh one.
        assert!(state.learn(&challenges, &scopes));
        assert!(state.authorization(&scopes).is_err());
        // The same challenge again without a token to drop: nothing changed, do not loop.
        assert!(!state.learn(&challenges, &scopes));
    }

    #[test]
    fn short_lived_tokens_are_renewed_early() {
        let mut state = AuthState::new(None);
        let scopes = Scopes::pull("a");
        state.learn(&parse_challenges(r#"Bearer realm="https://t""#), &scopes);
        state.store_token(&scopes, "tok".to_owned(), Duration::from_secs(5));
        assert!(state.authorization(&scopes).is_err());
    }

    #[test]
    fn basic_state_sends_credentials() {
        let creds = Credentials::Basic {
            username: "u".to_owned(),
            password: "p".to_owned(),
        };
        let mut state = AuthState::new(Some(creds));
        let scopes = Scopes::pull("a");
        assert!(state.learn(&parse_challenges(r#"Basic realm="r""#), &scopes));
        let header = state.authorization(&scopes).unwrap().unwrap();
        assert_eq!(
            header.to_str().unwrap(),
            format!("Basic {}", STANDARD.encode("u:p"))
        );
        assert!(!state.learn(&parse_challenges(r#"Basic realm="r""#), &scopes));
    }

    #[test]
    fn push_scopes_include_mount_sources() {
        let scopes = Scopes::push("b/app", &["a/base".to_owned(), "b/app".to_owned()]);
        assert_eq!(
            scopes.key(),
            "repository:a/base:pull repository:b/app:pull,push"
        );
    }

    #[test]
    fn token_responses() {
        let (token, lifetime) =
            parse_token_response("r", "t", br#"{"token":"a","expires_in":300}"#).unwrap();
        assert_eq!((token.as_str(), lifetime), ("a", Duration::from_mins(5)));
        let (token, lifetime) = parse_token_response("r", "t", br#"{"access_token":"b"}"#).unwrap();
        assert_eq!((token.as_str(), lifetime), ("b", DEFAULT_TOKEN_LIFETIME));
        assert!(parse_token_response("r", "t", b"{}").is_err());
        assert!(parse_token_response("r", "t", b"<html>").is_err());
    }
}
