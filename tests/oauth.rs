//! OAuth 2.1 resource server (issue 24), against a tiny issuer on 127.0.0.1 that serves RFC 8414
//! metadata, a JWKS of keys made here (ES256 generated per test, RS256 from
//! tests/fixtures/oauth-rsa-2048.der (PKCS#1)) and an RFC 7662 introspection endpoint; then the hostile
//! table: every row is a token that must not get in.
// resources/subscribe is legacy-only in 2026-07-28; the tenancy test checks it still refuses.
#![allow(deprecated)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use i2v_mcp::core::Core;
use i2v_mcp::http::{HttpOptions, ServerHandle};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use crate::http::{TOKEN, connect_http, start};
use crate::support::{Workspace, within};

// ---------------------------------------------------------------------------------------------
// Keys and tokens.

pub(crate) enum Signer {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl Signer {
    pub(crate) fn es256() -> Signer {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Signer::Es256(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
    }

    pub(crate) fn rs256() -> Signer {
        let der = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/oauth-rsa-2048.der"),
        )
        .unwrap();
        Signer::Rs256(RsaKeyPair::from_der(&der).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Es256(_) => "ES256",
            Signer::Rs256(_) => "RS256",
        }
    }

    /// The public JWK, named `kid`.
    pub(crate) fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                       "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])})
            }
            Signer::Rs256(k) => {
                let p: ring::rsa::PublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": B64.encode(&p.n), "e": B64.encode(&p.e)})
            }
        }
    }

    /// The public key bytes (what an HS256 confusion attack uses as the HMAC secret).
    fn public_bytes(&self) -> Vec<u8> {
        match self {
            Signer::Es256(k) => k.public_key().as_ref().to_vec(),
            Signer::Rs256(k) => k.public().as_ref().to_vec(),
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Signer::Es256(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Signer::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .unwrap();
                sig
            }
        }
    }

    /// A compact JWS of `claims` with this key's alg and `kid`.
    pub(crate) fn token(&self, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "typ": "at+jwt", "kid": kid});
        self.token_with_header(&header, claims)
    }

    fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64json(header), b64json(claims));
        let sig = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig))
    }
}

fn b64json(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---------------------------------------------------------------------------------------------
// The issuer.

#[derive(Default)]
pub(crate) struct IssuerState {
    url: Mutex<String>,
    jwks: Mutex<Vec<Value>>,
    /// JWKS and metadata answer 503.
    pub(crate) down: AtomicBool,
    pub(crate) jwks_hits: AtomicUsize,
    /// Opaque token -> introspection answer.
    introspect: Mutex<HashMap<String, Value>>,
    introspect_hits: AtomicUsize,
}

pub(crate) struct Issuer {
    pub(crate) url: String,
    pub(crate) state: Arc<IssuerState>,
    _task: tokio::task::JoinHandle<()>,
}

impl Issuer {
    pub(crate) async fn start(keys: Vec<Value>) -> Issuer {
        let state = Arc::new(IssuerState::default());
        *state.jwks.lock().unwrap() = keys;
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            // The path-suffixed form answers too, naming the root issuer (a mismatch for any
            // configured issuer with a path).
            .route(
                "/.well-known/oauth-authorization-server/{*rest}",
                get(metadata),
            )
            .route("/jwks", get(jwks))
            .route("/introspect", post(introspect))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *state.url.lock().unwrap() = url.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Issuer {
            url,
            state,
            _task: task,
        }
    }

    pub(crate) fn set_keys(&self, keys: Vec<Value>) {
        *self.state.jwks.lock().unwrap() = keys;
    }

    /// Claims of a good token for the server at `addr`.
    pub(crate) fn claims(&self, addr: SocketAddr, sub: &str, scope: &str) -> Value {
        json!({"iss": self.url, "sub": sub, "aud": format!("http://{addr}/mcp"),
               "exp": now() + 300, "iat": now(), "nbf": now() - 5, "scope": scope,
               "client_id": "test-client"})
    }
}

async fn metadata(State(s): State<Arc<IssuerState>>) -> Response {
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let url = s.url.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": url,
        "authorization_endpoint": format!("{url}/authorize"),
        "token_endpoint": format!("{url}/token"),
        "jwks_uri": format!("{url}/jwks"),
        "introspection_endpoint": format!("{url}/introspect"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<IssuerState>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = s.jwks.lock().unwrap().clone();
    axum::Json(json!({ "keys": keys })).into_response()
}

/// RFC 7662: client `rs:rs-secret` by HTTP Basic; unknown tokens are inactive.
async fn introspect(
    State(s): State<Arc<IssuerState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    s.introspect_hits.fetch_add(1, Ordering::SeqCst);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("rs:rs-secret")
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let answer = s
        .introspect
        .lock()
        .unwrap()
        .get(&token)
        .cloned()
        .unwrap_or_else(|| json!({"active": false}));
    axum::Json(answer).into_response()
}

// ---------------------------------------------------------------------------------------------
// The server and raw requests.

/// A server with `I2V_MCP_OAUTH_ISSUER` (and `extra`) set, the static token beside it.
pub(crate) async fn serve_with(
    ws: &Workspace,
    issuer: &Issuer,
    extra: &[(&str, &str)],
    edit: impl FnOnce(&mut HttpOptions, SocketAddr),
) -> (SocketAddr, ServerHandle) {
    let mut env = vec![("I2V_MCP_OAUTH_ISSUER", issuer.url.as_str())];
    env.extend_from_slice(extra);
    let core = Core::start(ws.config(&env)).unwrap();
    start(core, |o, a| {
        o.jwks_min_refresh = Duration::from_millis(300);
        edit(o, a)
    })
    .await
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `POST /mcp` initialize with `token` as the bearer (if any).
pub(crate) async fn post_init(addr: SocketAddr, token: Option<&str>) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let mut req = http()
        .post(format!("http://{addr}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    within(10, "POST /mcp", req.send()).await.unwrap()
}

fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metadata_names_the_issuer_and_a_tokenless_post_is_401() {
    let es = Signer::es256();
    let issuer = Issuer::start(vec![es.jwk("k1")]).await;
    let ws = Workspace::new();
    let (addr, handle) = serve_with(
        &ws,
        &issuer,
        &[("I2V_MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools")],
        |_, _| {},
    )
    .await;
    let resource = format!("http://{addr}/mcp");
    let meta_url = format!("http://{addr}/.well-known/oauth-protected-resource/mcp");
    for url in [
        meta_url.clone(),
        format!("http://{addr}/.well-known/oauth-protected-resource"),
    ] {
        let r = http().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let m: Value = r.json().await.unwrap();
        assert_eq!(m["resource"], resource.as_str(), "{m}");
        assert_eq!(m["authorization_servers"], json!([issuer.url]), "{m}");
        assert_eq!(
            m["scopes_supported"],
            json!(["mcp:tools", "i2v:admin"]),
            "{m}"
        );
        assert_eq!(m["bearer_methods_supported"], json!(["header"]), "{m}");
    }

    // No token: 401 naming the metadata (and the scope to ask for), as the MCP spec says.
    let r = post_init(addr, None).await;
    assert_eq!(r.status(), 401);
    let c = challenge(&r);
    assert!(
        c.starts_with("Bearer ") && c.contains(&format!("resource_metadata=\"{meta_url}\"")),
        "{c}"
    );
    assert!(c.contains("scope=\"mcp:tools\""), "{c}");
    assert!(!c.contains("error="), "no credentials, no error code: {c}");

    // The static token keeps working beside OAuth, and a good access token gets in.
    assert_eq!(post_init(addr, Some(TOKEN)).await.status(), 200);
    let good = es.token("k1", &issuer.claims(addr, "alice", "mcp:tools"));
    assert_eq!(post_init(addr, Some(&good)).await.status(), 200);
    // A whole MCP session with the access token (rmcp's client), tools listed.
    let (s, _) = connect_http(addr, Some(&good)).await.unwrap();
    let tools = within(10, "tools/list", s.list_all_tools()).await.unwrap();
    assert!(tools.iter().any(|t| t.name == "create_i2v_task"));
    s.cancel().await.unwrap();

    // Without an issuer the metadata does not exist.
    let ws2 = Workspace::new();
    let (addr2, h2) = start(Core::start(ws2.config(&[])).unwrap(), |_, _| {}).await;
    let r = http()
        .get(format!(
            "http://{addr2}/.well-known/oauth-protected-resource"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    h2.shutdown().await;
    handle.shutdown().await;
}

#[tokio::test]
async fn hostile_tokens_are_refused() {
    let es = Signer::es256();
    let rs = Signer::rs256();
    let stranger = Signer::es256(); // not in the JWKS
    let issuer = Issuer::start(vec![es.jwk("ec1"), rs.jwk("rsa1")]).await;
    let ws = Workspace::new();
    let (addr, handle) = serve_with(
        &ws,
        &issuer,
        &[("I2V_MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools")],
        |_, _| {},
    )
    .await;
    let good = issuer.claims(addr, "alice", "mcp:tools");
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };

    // Both key types verify.
    for (name, token) in [
        ("ES256", es.token("ec1", &good)),
        ("RS256", rs.token("rsa1", &good)),
        (
            "aud as an array",
            es.token(
                "ec1",
                &with("aud", json!(["other", format!("http://{addr}/mcp")])),
            ),
        ),
        (
            "scp instead of scope",
            es.token(
                "ec1",
                &with("scope", json!(null))
                    .as_object()
                    .map(|o| {
                        let mut o = o.clone();
                        o.remove("scope");
                        o.insert("scp".into(), json!(["mcp:tools"]));
                        Value::Object(o)
                    })
                    .unwrap(),
            ),
        ),
        (
            "expired within the leeway",
            es.token("ec1", &with("exp", json!(now() - 5))),
        ),
    ] {
        let r = post_init(addr, Some(&token)).await;
        assert_eq!(r.status(), 200, "{name} should pass");
    }

    let hs256_with = |secret: &[u8]| {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa1"});
        let input = format!("{}.{}", b64json(&header), b64json(&good));
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            input.as_bytes(),
        );
        format!("{input}.{}", B64.encode(tag.as_ref()))
    };
    let alg_none = |alg: &str| {
        let header = json!({"alg": alg, "typ": "JWT"});
        format!("{}.{}.", b64json(&header), b64json(&good))
    };
    let tampered = {
        let t = es.token("ec1", &good);
        let parts: Vec<&str> = t.split('.').collect();
        let admin = with("scope", json!("mcp:tools i2v:admin"));
        format!("{}.{}.{}", parts[0], b64json(&admin), parts[2])
    };
    let rsa_jwk_json = serde_json::to_vec(&rs.jwk("rsa1")).unwrap();
    let rows: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            es.token("ec1", &with("exp", json!(now() - 120))),
            401,
            "expired",
        ),
        (
            "not valid yet",
            es.token("ec1", &with("nbf", json!(now() + 600))),
            401,
            "nbf",
        ),
        ("no exp", es.token("ec1", &without("exp")), 401, "exp"),
        ("no sub", es.token("ec1", &without("sub")), 401, "sub"),
        (
            "wrong audience (the client's id)",
            es.token("ec1", &with("aud", json!("test-client"))),
            401,
            "aud",
        ),
        ("no audience", es.token("ec1", &without("aud")), 401, "aud"),
        (
            "token for another resource",
            es.token("ec1", &with("aud", json!("https://other.example/mcp"))),
            401,
            "aud",
        ),
        (
            "same host, another path",
            es.token("ec1", &with("aud", json!(format!("http://{addr}/other")))),
            401,
            "aud",
        ),
        (
            "wrong issuer",
            es.token("ec1", &with("iss", json!("https://evil.example"))),
            401,
            "issuer",
        ),
        (
            "issuer with a trailing slash",
            es.token("ec1", &with("iss", json!(format!("{}/", issuer.url)))),
            401,
            "issuer",
        ),
        ("alg none", alg_none("none"), 401, "alg"),
        ("alg None", alg_none("None"), 401, "alg"),
        (
            "HS256 signed with the RSA public key",
            hs256_with(&rs.public_bytes()),
            401,
            "alg",
        ),
        (
            "HS256 signed with the JWK",
            hs256_with(&rsa_jwk_json),
            401,
            "alg",
        ),
        ("unknown kid", stranger.token("nope", &good), 401, "kid"),
        (
            "known kid, foreign key",
            stranger.token("ec1", &good),
            401,
            "signature",
        ),
        (
            "RS256 header on the EC key",
            {
                let header = json!({"alg": "RS256", "kid": "ec1"});
                rs.token_with_header(&header, &good)
            },
            401,
            "alg",
        ),
        (
            "ES256 header on the RSA key",
            {
                let header = json!({"alg": "ES256", "kid": "rsa1"});
                es.token_with_header(&header, &good)
            },
            401,
            "alg",
        ),
        ("payload swapped after signing", tampered, 401, "signature"),
        (
            "crit header",
            es.token_with_header(
                &json!({"alg": "ES256", "kid": "ec1", "crit": ["exp"]}),
                &good,
            ),
            401,
            "crit",
        ),
        ("garbage", "a.b.c".to_string(), 401, "header"),
        (
            "opaque without introspection",
            "opaque-token-123".to_string(),
            401,
            "introspection",
        ),
        (
            "missing scope",
            es.token("ec1", &with("scope", json!("profile"))),
            403,
            "mcp:tools",
        ),
        (
            "scope as a prefix only",
            es.token("ec1", &with("scope", json!("mcp:tool"))),
            403,
            "mcp:tools",
        ),
    ];
    for (name, token, status, why) in rows {
        let r = post_init(addr, Some(&token)).await;
        let c = challenge(&r);
        assert_eq!(r.status().as_u16(), status, "{name}: {c}");
        assert!(
            c.contains(&format!(
                "resource_metadata=\"http://{addr}/.well-known/oauth-protected-resource/mcp\""
            )),
            "{name}: {c}"
        );
        if status == 403 {
            assert!(c.contains("error=\"insufficient_scope\""), "{name}: {c}");
            assert!(c.contains("scope=\"mcp:tools\""), "{name}: {c}");
        } else {
            assert!(c.contains("error=\"invalid_token\""), "{name}: {c}");
        }
        let body = r.text().await.unwrap();
        assert!(
            body.contains(why),
            "{name}: body {body:?} should say why ({why})"
        );
        // The answer never echoes the token.
        assert!(!body.contains(&token) && !c.contains(&token), "{name}");
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn jwks_down_serves_cached_keys_and_fails_closed_without() {
    let es = Signer::es256();
    let issuer = Issuer::start(vec![es.jwk("k1")]).await;
    let ws = Workspace::new();
    let (addr, handle) = serve_with(&ws, &issuer, &[], |_, _| {}).await;
    let token = es.token("k1", &issuer.claims(addr, "alice", ""));
    assert_eq!(post_init(addr, Some(&token)).await.status(), 200);

    // The issuer goes down: the cached key keeps serving, even past the refetch interval.
    issuer.state.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(post_init(addr, Some(&token)).await.status(), 200);
    // An unknown key cannot be fetched: refused as invalid (we have keys; it is not one).
    let other = Signer::es256().token("k2", &issuer.claims(addr, "alice", ""));
    assert_eq!(post_init(addr, Some(&other)).await.status(), 401);
    handle.shutdown().await;

    // A server that never fetched the keys: fail closed (503 with the challenge, not 200).
    let ws2 = Workspace::new();
    let (addr2, handle2) = serve_with(&ws2, &issuer, &[], |_, _| {}).await;
    let token2 = es.token("k1", &issuer.claims(addr2, "alice", ""));
    let r = post_init(addr2, Some(&token2)).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert!(
        challenge(&r).contains("resource_metadata="),
        "{}",
        challenge(&r)
    );
    // Retried at once: not refetched (rate limited), still refused.
    let hits = issuer.state.jwks_hits.load(Ordering::SeqCst);
    assert_eq!(post_init(addr2, Some(&token2)).await.status(), 503);
    assert_eq!(issuer.state.jwks_hits.load(Ordering::SeqCst), hits);
    // Back up: after the refetch interval the same token gets in.
    issuer.state.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(post_init(addr2, Some(&token2)).await.status(), 200);
    handle2.shutdown().await;
}

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_at_a_limited_rate() {
    let old = Signer::es256();
    let new = Signer::rs256();
    let issuer = Issuer::start(vec![old.jwk("2026-11")]).await;
    let ws = Workspace::new();
    let (addr, handle) = serve_with(&ws, &issuer, &[], |_, _| {}).await;
    let claims = issuer.claims(addr, "alice", "");
    assert_eq!(
        post_init(addr, Some(&old.token("2026-11", &claims)))
            .await
            .status(),
        200
    );
    assert_eq!(issuer.state.jwks_hits.load(Ordering::SeqCst), 1);
    // Cached: more requests fetch nothing.
    for _ in 0..3 {
        assert_eq!(
            post_init(addr, Some(&old.token("2026-11", &claims)))
                .await
                .status(),
            200
        );
    }
    assert_eq!(issuer.state.jwks_hits.load(Ordering::SeqCst), 1);

    // The issuer rotates: a token with the new kid refetches once and gets in.
    issuer.set_keys(vec![old.jwk("2026-11"), new.jwk("2026-12")]);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        post_init(addr, Some(&new.token("2026-12", &claims)))
            .await
            .status(),
        200
    );
    assert_eq!(issuer.state.jwks_hits.load(Ordering::SeqCst), 2);

    // A burst of made-up kids: refused, and the JWKS is not hammered: at most one fetch per
    // interval (300 ms here) however many requests come.
    let forged: Vec<String> = (0..30)
        .map(|i| Signer::es256().token(&format!("forged-{i}"), &claims))
        .collect();
    let t0 = std::time::Instant::now();
    for t in &forged {
        assert_eq!(post_init(addr, Some(t)).await.status(), 401);
    }
    let intervals = (t0.elapsed().as_millis() / 300) as usize + 1;
    let fetched = issuer.state.jwks_hits.load(Ordering::SeqCst) - 2;
    assert!(
        fetched <= intervals && fetched < forged.len() / 2,
        "{fetched} JWKS fetches for {} forged kids in {:?}",
        forged.len(),
        t0.elapsed()
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn opaque_tokens_go_through_introspection() {
    let issuer = Issuer::start(vec![Signer::es256().jwk("k1")]).await;
    let ws = Workspace::new();
    let (addr, handle) = serve_with(
        &ws,
        &issuer,
        &[
            ("I2V_MCP_OAUTH_CLIENT_ID", "rs"),
            ("I2V_MCP_OAUTH_CLIENT_SECRET", "rs-secret"),
            ("I2V_MCP_OAUTH_REQUIRED_SCOPES", "mcp:tools"),
        ],
        |_, _| {},
    )
    .await;
    let aud = format!("http://{addr}/mcp");
    {
        let mut m = issuer.state.introspect.lock().unwrap();
        m.insert("good-opaque".into(), json!({"active": true, "sub": "bob", "iss": issuer.url, "aud": aud, "scope": "mcp:tools", "exp": now() + 60}));
        m.insert("other-resource".into(), json!({"active": true, "sub": "bob", "aud": "https://other.example/mcp", "scope": "mcp:tools"}));
        m.insert("other-issuer".into(), json!({"active": true, "sub": "bob", "iss": "https://evil.example", "scope": "mcp:tools"}));
        m.insert(
            "no-scope".into(),
            json!({"active": true, "sub": "bob", "aud": aud}),
        );
        m.insert("expired".into(), json!({"active": true, "sub": "bob", "aud": aud, "scope": "mcp:tools", "exp": now() - 600}));
    }
    assert_eq!(post_init(addr, Some("good-opaque")).await.status(), 200);
    // An active answer is reused (INTROSPECTION_TTL, never past exp): no second question.
    let hits = issuer.state.introspect_hits.load(Ordering::SeqCst);
    assert_eq!(post_init(addr, Some("good-opaque")).await.status(), 200);
    assert_eq!(issuer.state.introspect_hits.load(Ordering::SeqCst), hits);
    for (token, status) in [
        ("revoked-or-unknown", 401),
        ("other-resource", 401),
        ("other-issuer", 401),
        ("expired", 401),
        ("no-scope", 403),
    ] {
        assert_eq!(
            post_init(addr, Some(token)).await.status().as_u16(),
            status,
            "{token}"
        );
    }
    assert!(issuer.state.introspect_hits.load(Ordering::SeqCst) >= 6);
    // Inactive answers are not cached: asked again, and refused again.
    let hits = issuer.state.introspect_hits.load(Ordering::SeqCst);
    assert_eq!(post_init(addr, Some("expired")).await.status(), 401);
    assert_eq!(
        issuer.state.introspect_hits.load(Ordering::SeqCst),
        hits + 1
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn a_bad_issuer_setting_is_refused_at_start() {
    let ws = Workspace::new();
    let core =
        Core::start(ws.config(&[("I2V_MCP_OAUTH_ISSUER", "http://auth.example.com")])).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let opts = HttpOptions::from_config(&core.cfg, "127.0.0.1:0");
    let err = i2v_mcp::http::serve(listener, core, opts).err().unwrap();
    assert!(err.message.contains("https"), "{}", err.message);

    // An issuer whose metadata names another issuer: tokens are refused (503: no keys).
    let es = Signer::es256();
    let issuer = Issuer::start(vec![es.jwk("k1")]).await;
    let ws2 = Workspace::new();
    let wrong = format!("{}/realms/x", issuer.url);
    let core = Core::start(ws2.config(&[("I2V_MCP_OAUTH_ISSUER", wrong.as_str())])).unwrap();
    let (addr, handle) = start(core, |_, _| {}).await;
    let mut claims = issuer.claims(addr, "alice", "");
    claims["iss"] = json!(wrong);
    let r = post_init(addr, Some(&es.token("k1", &claims))).await;
    assert_eq!(r.status(), 503);
    handle.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Tenancy: a task belongs to who created it.

fn ids(list: &Value) -> std::collections::BTreeSet<String> {
    list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&Value]) -> std::collections::BTreeSet<String> {
    ids.iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn each_subject_sees_only_its_own_tasks_and_the_admin_sees_all() {
    use crate::support::fakes::{FakeProvider, Kind};
    use crate::support::{call, err, ok};
    use rmcp::model::{ReadResourceRequestParams, SubscribeRequestParams};

    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    // $0.28 a task: two per user per day.
    std::fs::write(
        ws.path("no-config.toml"),
        "[budget]\nper_user_daily_usd = 0.6\n",
    )
    .unwrap();
    let img = ws.png("cat.png", 640, 360);
    let es = Signer::es256();
    let issuer = Issuer::start(vec![es.jwk("k1")]).await;
    let mut env = crate::mcp_flow::env_for(&fake, "piapi");
    env.extend([
        ("I2V_MCP_POLL_FIRST_MS".into(), "30".into()),
        ("I2V_MCP_POLL_MAX_MS".into(), "150".into()),
        ("I2V_MCP_OAUTH_ISSUER".into(), issuer.url.clone()),
    ]);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let core = Core::start(ws.config(&pairs)).unwrap();
    let (addr, handle) = start(core, |o, _| o.jwks_min_refresh = Duration::from_millis(300)).await;
    let token = |sub: &str, scope: &str| es.token("k1", &issuer.claims(addr, sub, scope));
    let (alice, _) = connect_http(addr, Some(&token("alice", ""))).await.unwrap();
    let (bob, _) = connect_http(addr, Some(&token("bob", ""))).await.unwrap();
    let (carol, _) = connect_http(addr, Some(&token("carol", "i2v:admin")))
        .await
        .unwrap();
    let (operator, _) = connect_http(addr, Some(TOKEN)).await.unwrap();

    // The operator's task (as every task from before tenancy): not the users'.
    let args = json!({"image": img, "prompt": "the cat turns", "provider": "piapi"});
    let op = ok(&call(&operator, "create_i2v_task", args.clone()).await);
    // The same idempotency key from two users: two tasks, each the user's own.
    let mut keyed = args.clone();
    keyed["idempotency_key"] = json!("same-key");
    let a = ok(&call(&alice, "create_i2v_task", keyed.clone()).await);
    let b = ok(&call(&bob, "create_i2v_task", keyed.clone()).await);
    assert_ne!(a["task_id"], b["task_id"]);
    assert_ne!(b["deduplicated"], true, "{b}");
    let again = ok(&call(&alice, "create_i2v_task", keyed.clone()).await);
    assert_eq!(again["task_id"], a["task_id"]);
    assert_eq!(again["deduplicated"], true);
    assert_eq!(fake.creates(), 3);

    let list = |s| async move { ok(&call(s, "list_tasks", json!({})).await) };
    assert_eq!(ids(&list(&alice).await), set(&[&a["task_id"]]));
    assert_eq!(ids(&list(&bob).await), set(&[&b["task_id"]]));
    let all = set(&[&a["task_id"], &b["task_id"], &op["task_id"]]);
    assert_eq!(ids(&list(&carol).await), all, "the admin scope sees all");
    assert_eq!(
        ids(&list(&operator).await),
        all,
        "the static token sees all"
    );

    // Another user's task is not_found, worded like an unknown id.
    let a_id = a["task_id"].as_str().unwrap();
    let unknown = err(&call(&bob, "get_task", json!({"task_id": "tsk_0000"})).await);
    for tool in ["get_task", "cancel_task"] {
        let e = err(&call(&bob, tool, json!({"task_id": a_id})).await);
        assert_eq!(e["category"], "not_found", "{tool}: {e}");
        assert_eq!(
            e["message"].as_str().unwrap().replace(a_id, "ID"),
            unknown["message"]
                .as_str()
                .unwrap()
                .replace("tsk_0000", "ID"),
            "{tool}"
        );
    }
    let uri = format!("i2v://tasks/{a_id}");
    assert!(
        bob.read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
            .is_err()
    );
    assert!(
        bob.subscribe(SubscribeRequestParams::new(uri.clone()))
            .await
            .is_err()
    );
    let listed = bob.list_all_resources().await.unwrap();
    assert!(!listed.iter().any(|r| r.uri == uri), "{listed:?}");
    alice
        .read_resource(ReadResourceRequestParams::new(uri.clone()))
        .await
        .unwrap();
    alice
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();

    // The video: its owner and the admin get it; another user gets 404.
    let done = ok(&call(
        &alice,
        "get_task",
        json!({"task_id": a_id, "wait_seconds": 30}),
    )
    .await);
    assert_eq!(done["status"], "succeeded", "{done}");
    let video = format!("http://{addr}/videos/{a_id}.mp4");
    let get_video = |t: String| {
        let url = video.clone();
        async move {
            http()
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(get_video(token("bob", "")).await, 404);
    assert_eq!(get_video(token("alice", "")).await, 200);
    assert_eq!(get_video(token("carol", "i2v:admin")).await, 200);
    assert_eq!(get_video(TOKEN.to_string()).await, 200);

    // The result's link is signed: it opens with no header (a `<video>` tag), for this file
    // only, until it expires; it carries no token.
    let r = call(&alice, "get_task", json!({"task_id": a_id})).await;
    let link = r
        .content
        .iter()
        .find_map(|c| c.as_resource_link().cloned())
        .expect("a video link")
        .uri;
    assert!(
        link.starts_with(&format!("http://{addr}/videos/s/")),
        "{link}"
    );
    assert!(link.ends_with(&format!("/{a_id}.mp4")), "{link}");
    assert!(!link.contains(&token("alice", "")) && !link.contains(TOKEN));
    let anon = |url: String| async move { http().get(url).send().await.unwrap().status() };
    assert_eq!(anon(link.clone()).await, 200);
    assert_eq!(anon(video.clone()).await, 401, "unsigned, no token");
    let b_id = b["task_id"].as_str().unwrap();
    assert_eq!(anon(link.replace(a_id, b_id)).await, 403, "another file");
    let signer = i2v_mcp::links::LinkSigner::load(&ws.data(), None).unwrap();
    let file = format!("{a_id}.mp4");
    let expired = signer.path_until(&file, chrono::Utc::now().timestamp() - 1);
    assert_eq!(
        anon(format!("http://{addr}{expired}")).await,
        403,
        "expired"
    );
    let fresh = signer.path_until(&file, chrono::Utc::now().timestamp() + 60);
    assert_eq!(anon(format!("http://{addr}{fresh}")).await, 200);
    // resources/read of the signed link: still per subject.
    assert!(
        bob.read_resource(ReadResourceRequestParams::new(link.clone()))
            .await
            .is_err()
    );
    alice
        .read_resource(ReadResourceRequestParams::new(link.clone()))
        .await
        .unwrap();

    // A session belongs to who opened it: bob presenting alice's session id is told it does
    // not exist (he would hear her subscriptions' news).
    let init = post_init(addr, Some(&token("alice", ""))).await;
    let sid = init.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let in_session = |t: String| {
        let sid = sid.clone();
        async move {
            http()
                .post(format!("http://{addr}/mcp"))
                .bearer_auth(t)
                .header("mcp-session-id", sid)
                .header("mcp-protocol-version", "2025-06-18")
                .header("accept", "application/json, text/event-stream")
                .header("content-type", "application/json")
                .body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(in_session(token("bob", "")).await, 404);
    assert_eq!(
        in_session(token("carol", "i2v:admin")).await,
        404,
        "not even the admin"
    );
    assert_eq!(in_session(token("alice", "")).await, 202);

    // [budget] per_user_daily_usd: alice's second task fits, her third does not; bob's does.
    let mut other = args.clone();
    other["prompt"] = json!("the cat sleeps");
    ok(&call(&alice, "create_i2v_task", other.clone()).await);
    let e = err(&call(&alice, "create_i2v_task", other.clone()).await);
    assert_eq!(e["category"], "budget", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("per_user_daily_usd"),
        "{e}"
    );
    ok(&call(&bob, "create_i2v_task", other.clone()).await);
    assert_eq!(fake.creates(), 5);

    for s in [alice, bob, carol, operator] {
        s.cancel().await.unwrap();
    }
    handle.shutdown().await;
}

/// `[budget.per_user_rate_limit]`: each subject answers to its own windows, counted in the
/// journal; a refused create reaches no provider; the operator is not held.
#[tokio::test]
async fn each_subject_has_its_own_create_rate() {
    use crate::support::fakes::{FakeProvider, Kind};
    use crate::support::{call, err, ok};

    let fake = FakeProvider::start(Kind::Piapi).await;
    let ws = Workspace::new();
    std::fs::write(
        ws.path("no-config.toml"),
        "[budget.per_user_rate_limit]\nper_minute = 1\n",
    )
    .unwrap();
    let img = ws.png("cat.png", 640, 360);
    let es = Signer::es256();
    let issuer = Issuer::start(vec![es.jwk("k1")]).await;
    let mut env = crate::mcp_flow::env_for(&fake, "piapi");
    env.push(("I2V_MCP_OAUTH_ISSUER".into(), issuer.url.clone()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let core = Core::start(ws.config(&pairs)).unwrap();
    let (addr, handle) = start(core, |o, _| o.jwks_min_refresh = Duration::from_millis(300)).await;
    let token = |sub: &str| es.token("k1", &issuer.claims(addr, sub, ""));
    let (alice, _) = connect_http(addr, Some(&token("alice"))).await.unwrap();
    let (bob, _) = connect_http(addr, Some(&token("bob"))).await.unwrap();
    let (operator, _) = connect_http(addr, Some(TOKEN)).await.unwrap();

    let args = |p: &str| json!({"image": img, "prompt": p, "provider": "piapi"});
    ok(&call(&alice, "create_i2v_task", args("one")).await);
    let e = err(&call(&alice, "create_i2v_task", args("two")).await);
    assert_eq!(e["category"], "rate_limited", "{e}");
    assert_eq!(e["retryable"], true, "{e}");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("[budget.per_user_rate_limit]") && msg.contains("per minute"),
        "{msg}"
    );
    assert_eq!(fake.creates(), 1, "a refused create reaches no provider");
    ok(&call(&bob, "create_i2v_task", args("three")).await);
    for p in ["four", "five"] {
        ok(&call(&operator, "create_i2v_task", args(p)).await);
    }
    assert_eq!(fake.creates(), 4);

    for s in [alice, bob, operator] {
        s.cancel().await.unwrap();
    }
    handle.shutdown().await;
}

/// Tasks from before tenancy (a journal written by main at 161175c) stay with the operator: the
/// static token sees them, an OAuth subject does not.
#[tokio::test]
async fn tasks_from_before_stay_with_the_operator() {
    use i2v_mcp::core::Principal;
    let ws = Workspace::new();
    let path = ws.data().join("journal.sqlite");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/journal-161175c.sqlite"
        ),
        &path,
    )
    .unwrap();
    let core = Core::start(ws.config(&[])).unwrap();
    let all = core.list(None, None, Some(50)).await.unwrap();
    assert_eq!(all.tasks.len(), 6);
    let rows = core
        .journal()
        .list(&i2v_mcp::journal::ListFilter {
            limit: 50,
            owner: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.rows.len(), 6, "every old row belongs to the operator");
    let alice = Principal::subject("https://as.example", "alice", false);
    let mine = core.list_as(&alice, None, None, Some(50)).await.unwrap();
    assert!(mine.tasks.is_empty());
    let id = &all.tasks[0].task_id;
    let e = core.task_as(id, &alice).await.unwrap_err();
    assert_eq!(e.category, i2v_mcp::error::Category::NotFound);
    assert!(
        core.video_path_as(id, &alice).await.unwrap_err().category
            == i2v_mcp::error::Category::NotFound
    );
    core.task_as(id, &Principal::subject("https://as.example", "root", true))
        .await
        .unwrap();
}

/// The same on PostgreSQL: a journal from before the owner column migrates, its task is the
/// operator's.
#[tokio::test]
async fn a_postgres_journal_from_before_owners_keeps_its_tasks_with_the_operator() {
    use i2v_mcp::core::Principal;
    use i2v_mcp::journal::Journal;
    let Some(server) = crate::support::postgres::server("a_postgres_journal_from_before_owners")
    else {
        return;
    };
    let url = server.database();
    drop(Journal::open_postgres(&url).unwrap());
    let before = i2v_mcp::journal::POSTGRES_MIGRATIONS.len() - 1;
    server.psql(
        &url,
        &format!(
            "ALTER TABLE tasks DROP COLUMN owner; UPDATE schema_version SET version = {before};
             INSERT INTO tasks (id, provider, model, provider_task_id, status, request, fingerprint,
                created_at, updated_at) VALUES ('old', 'dashscope', 'wan2.2-i2v-flash', 'up',
                'running', '{{}}', 'fp', 1, 1)"
        ),
    );
    let j = Journal::open_postgres(&url).unwrap();
    let row = j.get("old").await.unwrap().unwrap();
    assert_eq!(row.owner, "");
    assert!(i2v_mcp::core::Core::visible(&row, &Principal::operator()));
    assert!(!i2v_mcp::core::Core::visible(
        &row,
        &Principal::subject("https://as.example", "alice", false)
    ));
}
