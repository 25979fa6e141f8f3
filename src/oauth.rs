//! OAuth 2.1 resource server (issue 24): `serve --http` accepts access tokens issued by an
//! existing authorization server (Keycloak, Auth0, Entra, Okta, oidc-provider, ...), beside the
//! static bearer token. We do not write an authorization server.
//!
//! - Discovery: the issuer's RFC 8414 metadata (`/.well-known/oauth-authorization-server`, with
//!   the issuer's path appended), else OpenID's `/.well-known/openid-configuration`; the document's
//!   `issuer` must be the configured one (RFC 8414 section 3.3). `jwks_uri` and the introspection
//!   endpoint may be set instead.
//! - JWT access tokens (RFC 9068): signature by a key of the JWKS (RS256/384/512, PS256/384/512,
//!   ES256/384 only: `none`, HS* and anything else are refused, so a token "signed" with the
//!   public key as an HMAC secret never verifies), `iss` exact, `aud` containing our resource
//!   (RFC 8707), `exp` required and `nbf` honoured with [`LEEWAY_S`], `sub` required, scopes.
//! - The JWKS is cached; an unknown `kid` refetches it, at most once per `min_refresh`; a JWKS
//!   that is down keeps the cached keys serving, and with nothing cached every token is refused
//!   (503: the token may be fine, the keys are not reachable).
//! - Opaque tokens (not three dot-separated parts) go to RFC 7662 introspection when configured.
//!
//! Tokens are never logged: refusals log a reason, never the credential.
//!
//! Signature checks use `ring` (already compiled for rustls): `jsonwebtoken` 10+ needs a second
//! crypto stack (aws-lc-rs or RustCrypto's rsa/p256/p384/ed25519), and the part we need (JWS
//! compact, a closed list of algorithms) is small enough to read in full here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, UnparsedPublicKey};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: i64 = 30;
/// The scope that sees every subject's tasks, unless configured otherwise.
pub const DEFAULT_ADMIN_SCOPE: &str = "i2v:admin";
/// Fewest time between two JWKS (or metadata) fetches caused by unknown keys or failures.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(30);
/// How long an active introspection answer is reused (never past the token's `exp`).
pub const INTROSPECTION_TTL: Duration = Duration::from_secs(30);
/// Most cached introspection answers (expired ones are dropped first, then all).
const INTROSPECTION_CACHE_MAX: usize = 10_000;
/// Cached keys older than this are refetched (and kept if the refetch fails).
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Largest metadata, JWKS or introspection answer read.
const MAX_DOC_BYTES: usize = 256 * 1024;
/// Time for one request to the authorization server.
const AS_TIMEOUT: Duration = Duration::from_secs(5);

/// The resolved `[oauth]` settings.
#[derive(Debug, Clone, Default)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier (turns OAuth on).
    pub issuer: String,
    /// The resource tokens must name in `aud`; default `<public_url>/mcp`.
    pub audience: Option<String>,
    /// Scopes every token must carry (403 `insufficient_scope` otherwise).
    pub required_scopes: Vec<String>,
    /// The scope that sees every subject's tasks.
    pub admin_scope: String,
    /// Use this JWKS instead of the discovered one.
    pub jwks_uri: Option<String>,
    /// RFC 7662 endpoint for opaque tokens (else the discovered `introspection_endpoint`, used
    /// only when client credentials are set).
    pub introspection_endpoint: Option<String>,
    /// Client credentials for introspection (HTTP Basic).
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
}

/// Who a request is on behalf of: the static-token owner, or an OAuth subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `""` for the static token (and an unauthenticated loopback server): the owner of every
    /// task from before tenancy. Else `<iss>#<sub>`.
    pub owner: String,
    /// Sees and acts on every owner's tasks (the static token, or the admin scope).
    pub admin: bool,
}

/// The operator: what the CLI and stdio are (the person at the machine). The HTTP face always
/// sets the principal of each request explicitly.
impl Default for Principal {
    fn default() -> Self {
        Principal::operator()
    }
}

impl Principal {
    /// Nobody: sees no task (an HTTP request that somehow carries no principal).
    pub fn nobody() -> Principal {
        Principal {
            // No owner is this: subjects' owners start with their https (or loopback http)
            // issuer, the operator's is empty.
            owner: "!nobody".into(),
            admin: false,
        }
    }

    /// The static bearer token (or no auth at all on loopback): one owner that sees everything.
    pub fn operator() -> Principal {
        Principal {
            owner: String::new(),
            admin: true,
        }
    }

    /// An OAuth subject of `issuer`.
    pub fn subject(issuer: &str, sub: &str, admin: bool) -> Principal {
        Principal {
            owner: format!("{issuer}#{sub}"),
            admin,
        }
    }
}

/// Why a token was not accepted; each maps to the answer the MCP authorization spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token at all: 401 naming the metadata.
    Missing,
    /// Malformed, badly signed, expired, for someone else: 401 `invalid_token`.
    Invalid(String),
    /// Valid, but without these scopes: 403 `insufficient_scope`.
    Scope(Vec<String>),
    /// The keys (or the introspection endpoint) cannot be reached and nothing is cached: 503.
    Unavailable(String),
}

impl Refusal {
    fn invalid(why: impl Into<String>) -> Refusal {
        Refusal::Invalid(why.into())
    }

    /// Short reason for the log and `error_description` (never the token).
    pub fn reason(&self) -> String {
        match self {
            Refusal::Missing => "no bearer token".into(),
            Refusal::Invalid(w) => w.clone(),
            Refusal::Scope(m) => format!("missing scope {}", m.join(" ")),
            Refusal::Unavailable(w) => w.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum Key {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
    P384(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Jwk {
    key: Key,
    /// The JWK's own `alg`, if it names one: the token's must then be the same.
    alg: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Endpoints {
    jwks_uri: Option<String>,
    introspection: Option<String>,
}

#[derive(Default)]
struct Cache {
    endpoints: Option<Endpoints>,
    keys: Option<HashMap<String, Jwk>>,
    keys_at: Option<Instant>,
    /// Last fetch (metadata or JWKS) that was not a routine refresh of fresh keys.
    last_attempt: Option<Instant>,
}

/// Checks access tokens for one resource. Cheap to share (`Arc`).
pub struct ResourceServer {
    cfg: OAuthConfig,
    audience: String,
    metadata_url: String,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cache>,
    /// Active introspection answers by sha256 of the token, until `min(exp, INTROSPECTION_TTL)`:
    /// a chat host sends its token with every request, and asking the AS each time would put
    /// its latency on every tool call. The token itself is never kept.
    introspected: std::sync::Mutex<HashMap<[u8; 32], (Claims, Instant)>>,
    /// Fewest time between fetches caused by unknown keys or failures (tests shorten it).
    pub min_refresh: Duration,
}

impl std::fmt::Debug for ResourceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceServer")
            .field("issuer", &self.cfg.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl ResourceServer {
    /// `base`: where this server is reached (the public URL, else `http://<addr>`), no trailing
    /// slash; the resource is `<base>/mcp` unless `audience` says otherwise.
    pub fn new(cfg: OAuthConfig, base: &str) -> Result<ResourceServer, Error> {
        check_as_url("issuer", &cfg.issuer)?;
        for (what, u) in [
            ("jwks_uri", &cfg.jwks_uri),
            ("introspection_endpoint", &cfg.introspection_endpoint),
        ] {
            if let Some(u) = u {
                check_as_url(what, u)?;
            }
        }
        let audience = cfg
            .audience
            .clone()
            .unwrap_or_else(|| format!("{}/mcp", base.trim_end_matches('/')));
        let metadata_url = metadata_url_for(&audience)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(AS_TIMEOUT)
            .timeout(AS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("i2v-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::internal(format!("cannot build the OAuth HTTP client: {e}")))?;
        Ok(ResourceServer {
            cfg,
            audience,
            metadata_url,
            http,
            cache: tokio::sync::Mutex::new(Cache::default()),
            introspected: std::sync::Mutex::default(),
            min_refresh: DEFAULT_MIN_REFRESH,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.cfg.issuer
    }

    /// The resource identifier tokens must be issued for.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Where the RFC 9728 metadata is (named in `WWW-Authenticate`).
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    pub fn required_scopes(&self) -> &[String] {
        &self.cfg.required_scopes
    }

    /// The RFC 9728 protected-resource metadata document.
    pub fn metadata(&self) -> Value {
        let mut scopes = self.cfg.required_scopes.clone();
        if !self.cfg.admin_scope.is_empty() && !scopes.contains(&self.cfg.admin_scope) {
            scopes.push(self.cfg.admin_scope.clone());
        }
        serde_json::json!({
            "resource": self.audience,
            "authorization_servers": [self.cfg.issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": "i2v-mcp",
        })
    }

    /// The principal a bearer token stands for, or why not.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, Refusal> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Refusal::Missing);
        }
        let claims = if token.split('.').count() == 3 {
            self.verify_jwt(token).await?
        } else {
            self.introspect(token).await?
        };
        self.principal(&claims)
    }

    /// Scopes, admin, owner from checked claims.
    fn principal(&self, claims: &Claims) -> Result<Principal, Refusal> {
        let admin =
            !self.cfg.admin_scope.is_empty() && claims.scopes.contains(&self.cfg.admin_scope);
        let missing: Vec<String> = self
            .cfg
            .required_scopes
            .iter()
            .filter(|s| !claims.scopes.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(Refusal::Scope(missing));
        }
        Ok(Principal::subject(&self.cfg.issuer, &claims.sub, admin))
    }

    async fn verify_jwt(&self, token: &str) -> Result<Claims, Refusal> {
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Refusal::invalid("not a JWT"));
        };
        let header: Value = decode_json(h64).ok_or_else(|| Refusal::invalid("bad JWT header"))?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::invalid("JWT without alg"))?;
        let Some(family) = AlgFamily::of(alg) else {
            return Err(Refusal::Invalid(format!(
                "JWT alg {} is not accepted (RS*, PS*, ES256, ES384 only)",
                printable(alg)
            )));
        };
        if header.get("crit").is_some() {
            return Err(Refusal::invalid("JWT with crit header parameters"));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let sig = URL_SAFE_NO_PAD
            .decode(s64)
            .map_err(|_| Refusal::invalid("bad JWT signature encoding"))?;
        let jwk = self.key_for(kid).await?;
        if jwk.alg.as_deref().is_some_and(|a| a != alg) {
            return Err(Refusal::invalid("JWT alg does not match its key"));
        }
        let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        if !family.verify(&jwk.key, signed, &sig) {
            return Err(Refusal::invalid("bad JWT signature"));
        }
        let payload: Value = decode_json(p64).ok_or_else(|| Refusal::invalid("bad JWT payload"))?;
        self.check_claims(&payload, true)
    }

    /// `iss`, `aud`, `exp`, `nbf`, `sub`, scopes. `jwt`: `exp` is required (RFC 9068); an
    /// introspection answer may leave it out.
    fn check_claims(&self, c: &Value, jwt: bool) -> Result<Claims, Refusal> {
        match c.get("iss").and_then(Value::as_str) {
            Some(iss) if iss == self.cfg.issuer => {}
            None if !jwt => {}
            _ => return Err(Refusal::invalid("token from another issuer")),
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => self.audience_matches(a),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audience_matches(a)),
            None => !jwt,
            _ => false,
        };
        if !aud_ok {
            return Err(Refusal::invalid("token issued for another resource (aud)"));
        }
        let now = chrono::Utc::now().timestamp();
        match c.get("exp").and_then(Value::as_f64) {
            Some(exp) if (exp as i64) + LEEWAY_S < now => {
                return Err(Refusal::invalid("token expired"));
            }
            Some(_) => {}
            None if jwt => return Err(Refusal::invalid("token without exp")),
            None => {}
        }
        if let Some(nbf) = c.get("nbf").and_then(Value::as_f64)
            && (nbf as i64) > now + LEEWAY_S
        {
            return Err(Refusal::invalid("token not valid yet (nbf)"));
        }
        let sub = c
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Refusal::invalid("token without sub"))?;
        let mut scopes: Vec<String> = Vec::new();
        if let Some(s) = c.get("scope").and_then(Value::as_str) {
            scopes.extend(s.split_whitespace().map(str::to_string));
        }
        match c.get("scp") {
            Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(a)) => {
                scopes.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
        Ok(Claims {
            sub: sub.to_string(),
            scopes,
        })
    }

    /// Exact, or differing only by a trailing slash (`https://h/mcp` vs `https://h/mcp/`).
    fn audience_matches(&self, a: &str) -> bool {
        a == self.audience || a.trim_end_matches('/') == self.audience.trim_end_matches('/')
    }

    /// The key a token names: cached, or after one (rate-limited) refetch of the JWKS.
    async fn key_for(&self, kid: Option<&str>) -> Result<Jwk, Refusal> {
        let mut cache = self.cache.lock().await;
        let stale = cache.keys_at.is_none_or(|at| at.elapsed() > MAX_KEY_AGE);
        if let Some(k) = cache.keys.as_ref().and_then(|keys| pick(keys, kid))
            && !stale
        {
            return Ok(k);
        }
        // Unknown kid, nothing cached, or old keys: refetch, unless one was tried just now.
        let may_fetch = cache
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.min_refresh);
        let mut fetch_error = None;
        if may_fetch {
            cache.last_attempt = Some(Instant::now());
            match self.fetch_keys(&mut cache).await {
                Ok(keys) => {
                    cache.keys = Some(keys);
                    cache.keys_at = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(issuer = %self.cfg.issuer, error = %e, "cannot fetch the authorization server's keys; serving the cached ones, if any");
                    fetch_error = Some(e);
                }
            }
        }
        match &cache.keys {
            Some(keys) => pick(keys, kid).ok_or_else(|| {
                Refusal::invalid(
                    "JWT signed by a key the authorization server does not publish (kid)",
                )
            }),
            None => Err(Refusal::Unavailable(format!(
                "the authorization server's keys cannot be fetched{}",
                fetch_error.map(|e| format!(" ({e})")).unwrap_or_default()
            ))),
        }
    }

    async fn endpoints(&self, cache: &mut Cache) -> Result<Endpoints, String> {
        if let Some(e) = &cache.endpoints {
            return Ok(e.clone());
        }
        let needs_discovery = self.cfg.jwks_uri.is_none()
            || (self.cfg.introspection_endpoint.is_none() && self.cfg.client_id.is_some());
        let mut e = Endpoints {
            jwks_uri: self.cfg.jwks_uri.clone(),
            introspection: self.cfg.introspection_endpoint.clone(),
        };
        if needs_discovery {
            let doc = self.discover().await?;
            let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
            e.jwks_uri = e.jwks_uri.or_else(|| field("jwks_uri"));
            e.introspection = e.introspection.or_else(|| field("introspection_endpoint"));
            for u in [&e.jwks_uri, &e.introspection].into_iter().flatten() {
                check_as_url("a discovered endpoint", u).map_err(|err| err.message)?;
            }
        }
        cache.endpoints = Some(e.clone());
        Ok(e)
    }

    /// RFC 8414 first, then OpenID Connect Discovery (both placements of the well-known part).
    async fn discover(&self) -> Result<Value, String> {
        let issuer = url::Url::parse(&self.cfg.issuer).map_err(|e| e.to_string())?;
        let origin = issuer.origin().ascii_serialization();
        let path = issuer.path().trim_end_matches('/');
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!(
                "{}/.well-known/openid-configuration",
                self.cfg.issuer.trim_end_matches('/')
            ),
            format!("{origin}/.well-known/openid-configuration{path}"),
        ];
        let mut last = String::from("no metadata");
        for url in candidates.iter() {
            match self.get_json(url).await {
                Ok(doc) => {
                    let named = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
                    if named != self.cfg.issuer {
                        return Err(format!(
                            "the metadata at {url} names issuer '{}', not the configured '{}': set [oauth] issuer to exactly the authorization server's issuer",
                            printable(named),
                            self.cfg.issuer
                        ));
                    }
                    return Ok(doc);
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(format!("no authorization server metadata ({last})"))
    }

    async fn fetch_keys(&self, cache: &mut Cache) -> Result<HashMap<String, Jwk>, String> {
        let endpoints = self.endpoints(cache).await?;
        let Some(jwks_uri) = endpoints.jwks_uri else {
            return Err(
                "the authorization server publishes no jwks_uri; set [oauth] jwks_uri".into(),
            );
        };
        let doc = self.get_json(&jwks_uri).await?;
        let keys = parse_jwks(&doc);
        if keys.is_empty() {
            return Err(format!("{jwks_uri} holds no usable signing key"));
        }
        Ok(keys)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("unreachable ({})", e.without_url()))?;
        read_json(resp).await
    }

    /// RFC 7662, answered from the cache while a recent answer said `active` (a revoked token
    /// keeps working at most `INTROSPECTION_TTL`; inactive answers are not cached).
    async fn introspect(&self, token: &str) -> Result<Claims, Refusal> {
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        {
            let mut seen = self.introspected.lock().unwrap_or_else(|p| p.into_inner());
            match seen.get(&digest) {
                Some((claims, until)) if *until > now => return Ok(claims.clone()),
                Some(_) => {
                    seen.remove(&digest);
                }
                None => {}
            }
        }
        let (claims, exp) = self.introspect_remote(token).await?;
        let mut ttl = INTROSPECTION_TTL;
        if let Some(exp) = exp {
            let left = exp.saturating_sub(chrono::Utc::now().timestamp());
            ttl = ttl.min(Duration::from_secs(left.max(0) as u64));
        }
        let mut seen = self.introspected.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= INTROSPECTION_CACHE_MAX {
            seen.retain(|_, (_, until)| *until > now);
            if seen.len() >= INTROSPECTION_CACHE_MAX {
                seen.clear();
            }
        }
        seen.insert(digest, (claims.clone(), now + ttl));
        Ok(claims)
    }

    /// RFC 7662: `active`, then the same claim checks (iss and aud when present); the claims and
    /// the answer's `exp`.
    async fn introspect_remote(&self, token: &str) -> Result<(Claims, Option<i64>), Refusal> {
        let endpoint = {
            let mut cache = self.cache.lock().await;
            if self.cfg.introspection_endpoint.is_none() && self.cfg.client_id.is_none() {
                return Err(Refusal::invalid(
                    "not a JWT, and no introspection endpoint is configured",
                ));
            }
            match self.endpoints(&mut cache).await {
                Ok(e) => e.introspection,
                Err(e) => return Err(Refusal::Unavailable(e)),
            }
        };
        let Some(endpoint) = endpoint else {
            return Err(Refusal::invalid(
                "not a JWT, and the authorization server offers no introspection",
            ));
        };
        let mut req = self
            .http
            .post(&endpoint)
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", token)
                    .append_pair("token_type_hint", "access_token")
                    .finish(),
            );
        if let Some(id) = &self.cfg.client_id {
            req = req.basic_auth(
                id,
                self.cfg.client_secret.as_ref().map(|s| s.expose_secret()),
            );
        }
        let resp = req.send().await.map_err(|e| {
            Refusal::Unavailable(format!("introspection unreachable ({})", e.without_url()))
        })?;
        let doc = read_json(resp)
            .await
            .map_err(|e| Refusal::Unavailable(format!("introspection: {e}")))?;
        if doc.get("active").and_then(Value::as_bool) != Some(true) {
            return Err(Refusal::invalid("token is not active (introspection)"));
        }
        let exp = doc.get("exp").and_then(Value::as_f64).map(|e| e as i64);
        Ok((self.check_claims(&doc, false)?, exp))
    }
}

/// What the checks leave of a token.
#[derive(Debug, Clone)]
struct Claims {
    sub: String,
    scopes: Vec<String>,
}

#[derive(Clone, Copy)]
enum AlgFamily {
    Rs(&'static signature::RsaParameters),
    Es256,
    Es384,
}

impl AlgFamily {
    fn of(alg: &str) -> Option<AlgFamily> {
        Some(match alg {
            "RS256" => AlgFamily::Rs(&signature::RSA_PKCS1_2048_8192_SHA256),
            "RS384" => AlgFamily::Rs(&signature::RSA_PKCS1_2048_8192_SHA384),
            "RS512" => AlgFamily::Rs(&signature::RSA_PKCS1_2048_8192_SHA512),
            "PS256" => AlgFamily::Rs(&signature::RSA_PSS_2048_8192_SHA256),
            "PS384" => AlgFamily::Rs(&signature::RSA_PSS_2048_8192_SHA384),
            "PS512" => AlgFamily::Rs(&signature::RSA_PSS_2048_8192_SHA512),
            "ES256" => AlgFamily::Es256,
            "ES384" => AlgFamily::Es384,
            _ => return None,
        })
    }

    /// The signature under this algorithm and key; a key of another type never verifies.
    fn verify(self, key: &Key, msg: &[u8], sig: &[u8]) -> bool {
        match (self, key) {
            (AlgFamily::Rs(params), Key::Rsa { n, e }) => signature::RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(params, msg, sig)
            .is_ok(),
            (AlgFamily::Es256, Key::P256(point)) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            (AlgFamily::Es384, Key::P384(point)) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            _ => false,
        }
    }
}

/// The key named `kid`; a token without `kid` only when the set holds exactly one key.
fn pick(keys: &HashMap<String, Jwk>, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(k) => keys.get(k).cloned(),
        None if keys.len() == 1 => keys.values().next().cloned(),
        None => None,
    }
}

/// The signing keys of a JWKS (RSA and EC P-256/P-384); encryption keys and others skipped.
fn parse_jwks(doc: &Value) -> HashMap<String, Jwk> {
    #[derive(Deserialize)]
    struct RawJwk {
        kty: String,
        kid: Option<String>,
        #[serde(rename = "use")]
        use_: Option<String>,
        alg: Option<String>,
        n: Option<String>,
        e: Option<String>,
        crv: Option<String>,
        x: Option<String>,
        y: Option<String>,
    }
    let mut out = HashMap::new();
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return out;
    };
    for raw in keys {
        let Ok(j) = serde_json::from_value::<RawJwk>(raw.clone()) else {
            continue;
        };
        if j.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let b = |s: &Option<String>| s.as_deref().and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
        let key = match (j.kty.as_str(), j.crv.as_deref()) {
            ("RSA", _) => match (b(&j.n), b(&j.e)) {
                (Some(n), Some(e)) => Key::Rsa { n, e },
                _ => continue,
            },
            ("EC", Some(crv @ ("P-256" | "P-384"))) => match (b(&j.x), b(&j.y)) {
                (Some(x), Some(y)) => {
                    let mut point = vec![0x04];
                    point.extend(x);
                    point.extend(y);
                    if crv == "P-256" {
                        Key::P256(point)
                    } else {
                        Key::P384(point)
                    }
                }
                _ => continue,
            },
            _ => continue,
        };
        out.insert(j.kid.unwrap_or_default(), Jwk { key, alg: j.alg });
    }
    out
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.is_object().then_some(v)
}

async fn read_json(resp: reqwest::Response) -> Result<Value, String> {
    use futures::StreamExt;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("HTTP {}", status.as_u16()));
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("cut off ({})", e.without_url()))?;
        if body.len() + chunk.len() > MAX_DOC_BYTES {
            return Err(format!("answer larger than {MAX_DOC_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not JSON ({e})"))
}

/// https, or http on a loopback host (tests, a local AS).
fn check_as_url(what: &str, u: &str) -> Result<(), Error> {
    let parsed = url::Url::parse(u).map_err(|e| {
        Error::invalid_input(format!("[oauth] {what} '{u}' is not a URL ({e})")).with_next_step(
            "use the authorization server's https URL, e.g. https://auth.example.com/realms/main",
        )
    })?;
    let loopback = matches!(parsed.host(), Some(url::Host::Domain("localhost")))
        || matches!(parsed.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(Error::invalid_input(format!(
            "[oauth] {what} '{u}' must be an https URL (http only on localhost)"
        ))),
    }
}

/// RFC 9728 section 3.1: the well-known part goes between the host and the resource's path.
fn metadata_url_for(resource: &str) -> Result<String, Error> {
    let u = url::Url::parse(resource).map_err(|e| {
        Error::invalid_input(format!(
            "[oauth] audience '{resource}' is not a URL ({e})"
        ))
        .with_next_step("set [oauth] audience to this server's MCP URL, e.g. https://mcp.example.com/mcp, or set public_url")
    })?;
    let path = u.path().trim_end_matches('/');
    Ok(format!(
        "{}/.well-known/oauth-protected-resource{path}",
        u.origin().ascii_serialization()
    ))
}

/// A value from a token shown in a message: short, printable, no quotes.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(32)
        .collect()
}

/// The `WWW-Authenticate` value for a refusal (RFC 6750 section 3, RFC 9728 section 5.1).
pub fn challenge(rs: &ResourceServer, refusal: &Refusal) -> String {
    let meta = format!("resource_metadata=\"{}\"", rs.metadata_url());
    let scope = if rs.required_scopes().is_empty() {
        String::new()
    } else {
        format!(", scope=\"{}\"", rs.required_scopes().join(" "))
    };
    match refusal {
        Refusal::Missing => format!("Bearer {meta}{scope}"),
        Refusal::Scope(_) => {
            format!("Bearer error=\"insufficient_scope\"{scope}, {meta}")
        }
        Refusal::Invalid(why) | Refusal::Unavailable(why) => format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\", {meta}",
            why.chars()
                .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
                .collect::<String>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_inserts_the_well_known_part() {
        assert_eq!(
            metadata_url_for("https://mcp.example.com/mcp").unwrap(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            metadata_url_for("https://h.example:8443/i2v/mcp/").unwrap(),
            "https://h.example:8443/.well-known/oauth-protected-resource/i2v/mcp"
        );
    }

    #[test]
    fn as_urls_must_be_https_except_loopback() {
        assert!(check_as_url("issuer", "https://auth.example.com").is_ok());
        assert!(check_as_url("issuer", "http://127.0.0.1:9000").is_ok());
        assert!(check_as_url("issuer", "http://localhost:9000/x").is_ok());
        assert!(check_as_url("issuer", "http://auth.example.com").is_err());
        assert!(check_as_url("issuer", "auth.example.com").is_err());
    }

    #[test]
    fn only_asymmetric_algorithms() {
        for alg in ["none", "HS256", "HS384", "HS512", "EdDSA", "RS1", ""] {
            assert!(AlgFamily::of(alg).is_none(), "{alg}");
        }
        for alg in ["RS256", "PS256", "ES256", "ES384"] {
            assert!(AlgFamily::of(alg).is_some(), "{alg}");
        }
    }

    #[test]
    fn challenge_never_breaks_the_header() {
        let rs = ResourceServer::new(
            OAuthConfig {
                issuer: "https://auth.example.com".into(),
                required_scopes: vec!["mcp".into()],
                ..Default::default()
            },
            "https://mcp.example.com",
        )
        .unwrap();
        let c = challenge(&rs, &Refusal::Invalid("bad \"quote\" \\ \n".into()));
        assert!(!c.contains("\\"), "{c}");
        assert_eq!(c.matches('"').count(), 6, "{c}");
        assert_eq!(
            challenge(&rs, &Refusal::Missing),
            "Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
        );
    }
}
