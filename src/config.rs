//! Configuration: CLI flags > environment > TOML file > defaults. Unknown keys in the file are
//! errors. API keys are `SecretString`s: never logged, never echoed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::Error;
use crate::model::ProviderId;
use crate::providers::registry::{self, Declared};
pub use crate::providers::{ProviderConfig, RateLimits};

/// The file as written by the user. `deny_unknown_fields` everywhere: a typo is an error, not a
/// silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    /// PostgreSQL journal (`postgres://..`); the SQLite file in `data_dir` when unset.
    pub database_url: Option<SecretString>,
    pub allowed_dirs: Option<Vec<PathBuf>>,
    pub default_provider: Option<ProviderId>,
    pub max_wait_seconds: Option<u32>,
    /// Public base URL of this server in HTTP mode; providers call back to <public_url>/webhooks/<provider>.
    pub public_url: Option<String>,
    #[serde(default)]
    pub providers: BTreeMap<ProviderId, FileProvider>,
    #[serde(default)]
    pub pricing: BTreeMap<String, PriceOverride>,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default)]
    pub download: FileDownload,
    #[serde(default)]
    pub poll: FilePoll,
    #[serde(default)]
    pub http: FileHttp,
    #[serde(default)]
    pub preview: FilePreview,
    #[serde(default)]
    pub oauth: FileOAuth,
}

/// `[oauth]`: accept access tokens of an existing authorization server (issue 24).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileOAuth {
    /// The authorization server's issuer (env I2V_MCP_OAUTH_ISSUER); turns OAuth on.
    pub issuer: Option<String>,
    /// The resource tokens must be issued for (default `<public_url>/mcp`).
    pub audience: Option<String>,
    /// Scopes every token must carry.
    pub required_scopes: Option<Vec<String>>,
    /// The scope that sees every user's tasks (default `i2v:admin`; "" for none).
    pub admin_scope: Option<String>,
    /// JWKS location, instead of the discovered one.
    pub jwks_uri: Option<String>,
    /// RFC 7662 introspection endpoint, for opaque tokens.
    pub introspection_endpoint: Option<String>,
    /// Client credentials for introspection.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

// By hand, so the client secret never reaches a log through `{:?}`.
impl std::fmt::Debug for FileOAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileOAuth")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("required_scopes", &self.required_scopes)
            .field("admin_scope", &self.admin_scope)
            .field("jwks_uri", &self.jwks_uri)
            .field("introspection_endpoint", &self.introspection_endpoint)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// `[preview]`: the contact sheet made when a task succeeds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePreview {
    /// Make a contact sheet and return it as an image block (env I2V_MCP_CONTACT_SHEET).
    pub contact_sheet: Option<bool>,
    /// Longest the decoder child may run, in seconds.
    pub timeout_seconds: Option<u64>,
}

/// The resolved `[preview]` settings.
#[derive(Debug, Clone)]
pub struct PreviewConfig {
    /// Make sheets and return them as image blocks.
    pub contact_sheet: bool,
    /// Wall-clock limit of the decoder child.
    pub timeout: Duration,
    /// Address-space limit of the decoder child.
    pub memory_bytes: u64,
    /// The program run as the decoder child (default: this one). Tests point it at the built binary.
    pub helper: Option<PathBuf>,
    /// Test seam: the child sleeps this long first (to prove the timeout).
    pub child_delay: Option<Duration>,
}

impl Default for PreviewConfig {
    fn default() -> Self {
        PreviewConfig {
            contact_sheet: true,
            timeout: Duration::from_secs(20),
            memory_bytes: 1 << 30,
            helper: None,
            child_delay: None,
        }
    }
}

/// `[http]`: the HTTP face (`serve --http`).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHttp {
    /// Bearer token every MCP/SSE request must carry (env I2V_MCP_AUTH_TOKEN wins).
    pub auth_token: Option<String>,
    /// Extra `Host` names (or `host:port`) accepted besides loopback and public_url's host.
    pub allowed_hosts: Option<Vec<String>>,
    /// Extra browser origins accepted (e.g. "https://app.example.com:443", "http://localhost:*").
    pub allowed_origins: Option<Vec<String>>,
    /// Largest MCP request body in bytes (data: URIs travel in tool arguments).
    pub max_body_bytes: Option<usize>,
    /// Signs video links (env I2V_MCP_LINK_SECRET); default: a key file in the data dir.
    pub link_secret: Option<String>,
}

// By hand, so the token never reaches a log through `{:?}`.
impl std::fmt::Debug for FileHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHttp")
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "link_secret",
                &self.link_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// The resolved `[http]` settings.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    pub auth_token: Option<SecretString>,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: Option<usize>,
    /// `[oauth]`, when an issuer is set.
    pub oauth: Option<crate::oauth::OAuthConfig>,
    /// Signs `/videos` links; `None`: the data dir's key file.
    pub link_secret: Option<SecretString>,
}

/// Polling schedule overrides (milliseconds), for proxies, fake providers and benchmarks.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePoll {
    pub first_ms: Option<u64>,
    pub max_ms: Option<u64>,
    pub give_up_minutes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProvider {
    pub api_key: Option<SecretString>,
    /// Name of an environment variable holding the key, instead of the default one.
    pub api_key_env: Option<String>,
    pub base_url: Option<String>,
    /// Per-request timeout in seconds.
    pub timeout: Option<u64>,
    pub rate_limit: Option<RateLimits>,
    /// Create on models the provider retired (a proxy may still serve them).
    pub allow_retired: Option<bool>,
}

/// A price set by the user for a `provider/model` key, for prices nobody published: per video,
/// or per second (flat, and/or by output resolution and audio like the catalog's tiers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub per_video_usd: Option<f64>,
    pub per_second_usd: Option<f64>,
    #[serde(default)]
    pub by_resolution: Vec<TierOverride>,
}

/// One `by_resolution` entry: `{ resolution = "720p", per_second_usd = 0.1 }`, optionally
/// `audio = true|false` where sound is priced apart.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierOverride {
    pub resolution: crate::model::Resolution,
    pub audio: Option<bool>,
    pub per_second_usd: f64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub per_task_usd: Option<f64>,
    pub daily_usd: Option<f64>,
    /// Each OAuth subject's own daily spend cap (issue 24); the operator is held by `daily_usd`.
    pub per_user_daily_usd: Option<f64>,
    /// Each OAuth subject's own create windows (`[budget.per_user_rate_limit] per_minute = 5`),
    /// counted in the journal like the providers' so every replica holds them together; the
    /// operator has none.
    pub per_user_rate_limit: Option<RateLimits>,
    /// Ask the person (elicitation) before a create above this price, or unpriced.
    pub confirm_above_usd: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDownload {
    pub max_bytes: Option<u64>,
    pub timeout: Option<u64>,
}

/// What the command line can set; `None` leaves the lower layers in charge.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub output_dir: Option<PathBuf>,
    pub database_url: Option<SecretString>,
    pub allowed_dirs: Vec<PathBuf>,
    pub default_provider: Option<ProviderId>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub output_dir: PathBuf,
    /// The PostgreSQL journal shared by replicas; `None`: SQLite in `data_dir`.
    pub database_url: Option<SecretString>,
    pub allowed_dirs: Vec<PathBuf>,
    pub default_provider: Option<ProviderId>,
    pub max_wait_seconds: u32,
    /// Public base URL (HTTP mode) for provider webhooks; no trailing slash.
    pub public_url: Option<String>,
    pub providers: BTreeMap<ProviderId, ProviderConfig>,
    pub pricing: BTreeMap<String, PriceOverride>,
    pub budget: Budget,
    pub download_max_bytes: u64,
    pub download_timeout: Duration,
    /// Where the config was read from, if a file was read.
    pub source: Option<PathBuf>,
    /// Polling schedule; shortened by tests through `with_fast_polling`.
    pub poll: PollSchedule,
    /// HTTP face settings.
    pub http: HttpConfig,
    /// Contact sheet settings.
    pub preview: PreviewConfig,
}

/// How often the watcher polls a task: `first` after submit, growing by `factor` up to `max`,
/// for at most `give_up_after` in total.
#[derive(Debug, Clone, Copy)]
pub struct PollSchedule {
    pub first: Duration,
    pub max: Duration,
    pub factor: f64,
    pub give_up_after: Duration,
    /// Replicas (PostgreSQL journal): how long a task's lease lasts unrenewed; a replica that
    /// dies loses its tasks to the others after at most this (plus a sweep, a fifth of it).
    pub lease: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        // CONTRACTS.md (1.6, 3.3): providers advise 2-3 s at first, 5-10 s later, 15-30 s after
        // 2 min, give up after 10-15 min; one's own server polls for up to 15 min. We watch 30 min.
        PollSchedule {
            first: Duration::from_secs(2),
            max: Duration::from_secs(20),
            factor: 1.5,
            give_up_after: Duration::from_secs(30 * 60),
            lease: Duration::from_secs(20),
        }
    }
}

pub use crate::model::DEFAULT_MAX_WAIT_SECONDS;
pub const DEFAULT_DOWNLOAD_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Reads environment variables; a seam so tests need not touch the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned().filter(|v| !v.trim().is_empty())
    }
}

impl Config {
    /// Resolve from the process environment and the user's config file.
    pub fn load(overrides: &Overrides) -> Result<Config, Error> {
        Config::resolve(overrides, &ProcessEnv)
    }

    pub fn resolve(overrides: &Overrides, env: &dyn Env) -> Result<Config, Error> {
        let path = overrides
            .config_file
            .clone()
            .or_else(|| env.var("I2V_MCP_CONFIG").map(PathBuf::from))
            .or_else(|| {
                directories::ProjectDirs::from("", "", "i2v-mcp")
                    .map(|d| d.config_dir().join("config.toml"))
                    .filter(|p| p.is_file())
            });
        let (file, source) = match path {
            Some(p) => (read_file(&p)?, Some(p)),
            None => (FileConfig::default(), None),
        };
        Config::from_layers(file, source, overrides, env)
    }

    pub(crate) fn from_layers(
        file: FileConfig,
        source: Option<PathBuf>,
        overrides: &Overrides,
        env: &dyn Env,
    ) -> Result<Config, Error> {
        let (data_dir, output_dir, allowed_dirs) = dirs(&file, overrides, env)?;
        let default_provider = match overrides.default_provider {
            Some(p) => Some(p),
            None => match env.var("I2V_MCP_DEFAULT_PROVIDER") {
                Some(v) => Some(v.parse()?),
                None => file.default_provider,
            },
        };
        let providers = providers(file.providers, env)?;
        check_pricing(&file.pricing)?;
        let public_url = public_url(file.public_url, env)?;
        let database_url = database_url(overrides, env, file.database_url)?;
        Ok(Config {
            data_dir,
            output_dir,
            database_url,
            allowed_dirs,
            default_provider,
            max_wait_seconds: file.max_wait_seconds.unwrap_or(DEFAULT_MAX_WAIT_SECONDS),
            public_url,
            providers,
            pricing: file.pricing,
            budget: budget(file.budget, env)?,
            download_max_bytes: file
                .download
                .max_bytes
                .unwrap_or(DEFAULT_DOWNLOAD_MAX_BYTES),
            download_timeout: Duration::from_secs(file.download.timeout.unwrap_or(300)),
            source,
            poll: poll_schedule(&file.poll, env)?,
            http: http_config(file.http, file.oauth, env)?,
            preview: preview_config(&file.preview, env)?,
        })
    }

    pub fn provider(&self, id: ProviderId) -> Option<&ProviderConfig> {
        self.providers.get(&id)
    }

    /// Whether a provider can be used as configured (has its key, or needs none).
    pub fn is_configured(&self, id: ProviderId) -> bool {
        !id.decl().needs_key()
            || self
                .provider(id)
                .and_then(|p| p.api_key.as_ref())
                .is_some_and(|k| !k.expose_secret().is_empty())
    }

    /// Refuses a retired model unless its provider's `allow_retired` is set.
    pub fn check_retired(&self, spec: &crate::catalog::ModelSpec) -> Result<(), Error> {
        let allowed = self
            .provider(spec.provider)
            .is_some_and(|p| p.allow_retired);
        match spec.retirement() {
            Some(e) if !allowed => Err(e),
            _ => Ok(()),
        }
    }

    /// A shorter polling schedule, for tests and benchmarks against fake providers.
    pub fn with_fast_polling(mut self, first: Duration, max: Duration) -> Self {
        self.poll.first = first;
        self.poll.max = max;
        self
    }
}

/// The journal's database URL: CLI > env > file; only `postgres://` or `postgresql://`.
fn database_url(
    overrides: &Overrides,
    env: &dyn Env,
    file: Option<SecretString>,
) -> Result<Option<SecretString>, Error> {
    let url = overrides
        .database_url
        .clone()
        .or_else(|| env.var("I2V_MCP_DATABASE_URL").map(SecretString::from))
        .or(file)
        .filter(|u| !u.expose_secret().trim().is_empty());
    if let Some(u) = &url {
        let u = u.expose_secret().trim();
        if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
            return Err(Error::invalid_input(
                "database_url must be a postgres:// or postgresql:// URL",
            )
            .with_next_step("set I2V_MCP_DATABASE_URL=postgres://user:password@host/db, or unset it to use SQLite in the data dir"));
        }
    }
    Ok(url)
}

/// Data, output and allowed directories: CLI > env > file > defaults; all absolute.
fn dirs(
    file: &FileConfig,
    overrides: &Overrides,
    env: &dyn Env,
) -> Result<(PathBuf, PathBuf, Vec<PathBuf>), Error> {
    let dirs = directories::ProjectDirs::from("", "", "i2v-mcp");
    let default_data = dirs
        .as_ref()
        .map(|d| d.data_dir().to_path_buf())
        .or_else(|| std::env::temp_dir().join("i2v-mcp").into())
        .unwrap_or_else(|| PathBuf::from("/tmp/i2v-mcp"));

    let data_dir = overrides
        .data_dir
        .clone()
        .or_else(|| env.var("I2V_MCP_DATA_DIR").map(PathBuf::from))
        .or(file.data_dir.clone())
        .unwrap_or_else(|| default_data.clone());
    let output_dir = overrides
        .output_dir
        .clone()
        .or_else(|| env.var("I2V_MCP_OUTPUT_DIR").map(PathBuf::from))
        .or(file.output_dir.clone())
        .unwrap_or_else(|| data_dir.join("videos"));

    let allowed_dirs = if !overrides.allowed_dirs.is_empty() {
        overrides.allowed_dirs.clone()
    } else if let Some(list) = env.var("I2V_MCP_ALLOWED_DIRS") {
        std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    } else {
        file.allowed_dirs.clone().unwrap_or_default()
    };
    for dir in [&data_dir, &output_dir]
        .into_iter()
        .chain(allowed_dirs.iter())
    {
        if dir.is_relative() {
            return Err(Error::invalid_input(format!(
                "directory '{}' is relative: use an absolute path (servers are often started in '/')",
                dir.display()
            )));
        }
    }
    Ok((data_dir, output_dir, allowed_dirs))
}

/// Every declared provider's settings: env > file > its declaration.
fn providers(
    mut file_providers: BTreeMap<ProviderId, FileProvider>,
    env: &dyn Env,
) -> Result<BTreeMap<ProviderId, ProviderConfig>, Error> {
    let mut providers = BTreeMap::new();
    for &id in ProviderId::ALL {
        let decl = id.decl();
        let fp = file_providers.remove(&id).unwrap_or_default();
        let key_env = fp.api_key_env.clone().or(decl.key_env.map(String::from));
        let api_key = key_env
            .as_deref()
            .and_then(|name| env.var(name))
            .map(SecretString::from)
            .or(fp.api_key)
            .map(|k| SecretString::from(k.expose_secret().trim()));
        let base_url = env
            .var(&id.base_url_env())
            .or(fp.base_url)
            .or(decl.default_base_url.map(String::from))
            .unwrap_or_default();
        let base_url = base_url.trim_end_matches('/').to_string();
        if decl.default_base_url.is_some() {
            url::Url::parse(&base_url).map_err(|e| {
                Error::invalid_input(format!(
                    "base URL for {id} '{base_url}' is not a URL ({e}): set {} or [providers.{id}].base_url",
                    id.base_url_env()
                ))
            })?;
        }
        providers.insert(
            id,
            ProviderConfig {
                api_key,
                base_url,
                timeout: Duration::from_secs(fp.timeout.unwrap_or(60).max(1)),
                rate_limit: fp.rate_limit.unwrap_or(decl.rate_limits),
                allow_retired: env_bool(env, &id.allow_retired_env())?
                    .or(fp.allow_retired)
                    .unwrap_or(false),
                auth: decl.auth,
                no_key: registry::no_key_step(id),
            },
        );
    }
    Ok(providers)
}

fn check_pricing(pricing: &BTreeMap<String, PriceOverride>) -> Result<(), Error> {
    for (key, price) in pricing {
        if crate::catalog::find_key(key).is_none() {
            return Err(Error::invalid_input(format!(
                "[pricing] key '{key}' is not a provider/model pair: use e.g. \"{}\" (see list_models)",
                pricing_example()
            )));
        }
        let per_second = price.per_second_usd.is_some() || !price.by_resolution.is_empty();
        if price.per_video_usd.is_some() == per_second {
            return Err(Error::invalid_input(format!(
                "[pricing.\"{key}\"] needs either per_video_usd, or per_second_usd and/or by_resolution"
            )));
        }
        let figures = price
            .per_video_usd
            .into_iter()
            .chain(price.per_second_usd)
            .chain(price.by_resolution.iter().map(|t| t.per_second_usd));
        for usd in figures {
            if !usd.is_finite() || usd < 0.0 {
                return Err(Error::invalid_input(format!(
                    "[pricing.\"{key}\"] has price {usd}: prices are USD amounts of 0 or more"
                )));
            }
        }
    }
    Ok(())
}

/// The `[pricing]` example: the newest (last listed) unpriced model of the first provider with one.
fn pricing_example() -> String {
    let unpriced = || {
        crate::catalog::models()
            .iter()
            .filter(|m| !m.price.is_known())
    };
    let Some(first) = unpriced().next() else {
        return String::new();
    };
    unpriced()
        .rfind(|m| m.provider == first.provider)
        .map(|m| m.key())
        .unwrap_or_default()
}

fn public_url(file: Option<String>, env: &dyn Env) -> Result<Option<String>, Error> {
    let public_url = env
        .var("I2V_MCP_PUBLIC_URL")
        .or(file)
        .map(|u| u.trim().trim_end_matches('/').to_string());
    if let Some(u) = &public_url {
        let parsed = url::Url::parse(u)
            .map_err(|e| Error::invalid_input(format!("public_url '{u}' is not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid_input(format!(
                "public_url '{u}' must be an http(s) URL"
            )));
        }
    }
    Ok(public_url)
}

fn poll_schedule(file: &FilePoll, env: &dyn Env) -> Result<PollSchedule, Error> {
    let mut p = PollSchedule::default();
    let ms = |name: &str, file: Option<u64>| -> Result<Option<u64>, Error> {
        match env.var(name) {
            Some(v) => v.trim().parse::<u64>().map(Some).map_err(|_| {
                Error::invalid_input(format!("{name}='{v}' is not a number of milliseconds"))
            }),
            None => Ok(file),
        }
    };
    if let Some(first) = ms("I2V_MCP_POLL_FIRST_MS", file.first_ms)? {
        p.first = Duration::from_millis(first.max(10));
    }
    if let Some(max) = ms("I2V_MCP_POLL_MAX_MS", file.max_ms)? {
        p.max = Duration::from_millis(max.max(10));
    }
    p.max = p.max.max(p.first);
    if let Some(lease) = ms("I2V_MCP_LEASE_MS", None)? {
        p.lease = Duration::from_millis(lease.max(500));
    }
    if let Some(m) = file.give_up_minutes {
        p.give_up_after = Duration::from_secs(m.max(1) * 60);
    }
    Ok(p)
}

/// `[budget]`, with `confirm_above_usd` under I2V_MCP_CONFIRM_ABOVE_USD (a price in USD).
fn budget(mut b: Budget, env: &dyn Env) -> Result<Budget, Error> {
    if let Some(v) = env.var("I2V_MCP_CONFIRM_ABOVE_USD") {
        let usd = v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|u| u.is_finite() && *u >= 0.0);
        b.confirm_above_usd = Some(usd.ok_or_else(|| {
            Error::invalid_input(format!(
                "I2V_MCP_CONFIRM_ABOVE_USD='{v}' is not a price in USD (e.g. 0.5)"
            ))
        })?);
    }
    if b.confirm_above_usd
        .is_some_and(|u| !u.is_finite() || u < 0.0)
    {
        return Err(Error::invalid_input(
            "[budget].confirm_above_usd must be a price in USD, 0 or more",
        ));
    }
    Ok(b)
}

/// A boolean environment variable (true/false, 1/0, on/off, yes/no), if set.
fn env_bool(env: &dyn Env, name: &str) -> Result<Option<bool>, Error> {
    let Some(v) = env.var(name) else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Ok(Some(true)),
        "false" | "0" | "off" | "no" => Ok(Some(false)),
        _ => Err(Error::invalid_input(format!(
            "{name}='{v}' is not true or false"
        ))),
    }
}

/// `[preview]` under I2V_MCP_CONTACT_SHEET (true/false, 1/0, on/off).
fn preview_config(file: &FilePreview, env: &dyn Env) -> Result<PreviewConfig, Error> {
    let mut p = PreviewConfig::default();
    let on = env_bool(env, "I2V_MCP_CONTACT_SHEET")?.or(file.contact_sheet);
    p.contact_sheet = on.unwrap_or(true);
    if let Some(s) = file.timeout_seconds {
        p.timeout = Duration::from_secs(s.max(1));
    }
    Ok(p)
}

/// `[http]` under I2V_MCP_AUTH_TOKEN, I2V_MCP_ALLOWED_HOSTS / I2V_MCP_ALLOWED_ORIGINS
/// (comma-separated) and I2V_MCP_MAX_BODY_BYTES.
fn http_config(file: FileHttp, oauth: FileOAuth, env: &dyn Env) -> Result<HttpConfig, Error> {
    let list = |name: &str, file: Option<Vec<String>>| -> Vec<String> {
        env.var(name)
            .map(|v| v.split(',').map(str::to_string).collect())
            .or(file)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let max_body_bytes = match env.var("I2V_MCP_MAX_BODY_BYTES") {
        Some(v) => Some(v.trim().parse::<usize>().map_err(|_| {
            Error::invalid_input(format!(
                "I2V_MCP_MAX_BODY_BYTES='{v}' is not a number of bytes"
            ))
        })?),
        None => file.max_body_bytes,
    };
    let auth_token = env
        .var("I2V_MCP_AUTH_TOKEN")
        .or(file.auth_token)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(SecretString::from);
    Ok(HttpConfig {
        auth_token,
        allowed_hosts: list("I2V_MCP_ALLOWED_HOSTS", file.allowed_hosts),
        allowed_origins: list("I2V_MCP_ALLOWED_ORIGINS", file.allowed_origins),
        max_body_bytes,
        oauth: oauth_config(oauth, env),
        link_secret: env
            .var("I2V_MCP_LINK_SECRET")
            .or(file.link_secret)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .map(SecretString::from),
    })
}

/// `[oauth]` under I2V_MCP_OAUTH_ISSUER, _AUDIENCE, _REQUIRED_SCOPES (comma- or space-separated),
/// _ADMIN_SCOPE, _JWKS_URI, _INTROSPECTION_ENDPOINT, _CLIENT_ID, _CLIENT_SECRET. `None` without
/// an issuer. URLs are checked when the server starts ([`crate::oauth::ResourceServer::new`]).
fn oauth_config(file: FileOAuth, env: &dyn Env) -> Option<crate::oauth::OAuthConfig> {
    let get = |name: &str, file: Option<String>| {
        env.var(name)
            .or(file)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let issuer = get("I2V_MCP_OAUTH_ISSUER", file.issuer)?;
    let required_scopes = match env.var("I2V_MCP_OAUTH_REQUIRED_SCOPES") {
        Some(v) => v
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => file.required_scopes.unwrap_or_default(),
    };
    let admin_scope = env
        .var("I2V_MCP_OAUTH_ADMIN_SCOPE")
        .or(file.admin_scope)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| crate::oauth::DEFAULT_ADMIN_SCOPE.to_string());
    Some(crate::oauth::OAuthConfig {
        issuer,
        audience: get("I2V_MCP_OAUTH_AUDIENCE", file.audience),
        required_scopes,
        admin_scope,
        jwks_uri: get("I2V_MCP_OAUTH_JWKS_URI", file.jwks_uri),
        introspection_endpoint: get(
            "I2V_MCP_OAUTH_INTROSPECTION_ENDPOINT",
            file.introspection_endpoint,
        ),
        client_id: get("I2V_MCP_OAUTH_CLIENT_ID", file.client_id),
        client_secret: get("I2V_MCP_OAUTH_CLIENT_SECRET", file.client_secret)
            .map(SecretString::from),
    })
}

pub(crate) fn read_file(path: &Path) -> Result<FileConfig, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::invalid_input(format!("cannot read config file '{}': {e}", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        Error::invalid_input(format!(
            "config file '{}' is invalid {}",
            path.display(),
            describe_toml_error(&e, &text)
        ))
    })
}

/// Where a config file is wrong and what is wrong, never its text: toml's own message quotes the
/// offending line, and an unquoted `api_key = sk-...` would print the key. A value quoted in the
/// message (`invalid type: string "..."`) is hidden too when the error is about a value; key names
/// (`unknown field`, `duplicate key`) are kept, since they say what to fix.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', "; ");
    let Some(span) = e.span() else {
        return format!("({})", hide_quoted(&message));
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    let on_key = !before[line_start..].contains('=');
    let message = if on_key {
        message
    } else {
        hide_quoted(&message)
    };
    format!("at line {line}, column {column}: {message} (the line is not shown: it may hold a key)")
}

/// Replace every `"..."` and `` `...` `` in a message with `(hidden)`, but for one or two
/// characters (toml's "expected `\"`" is no secret).
fn hide_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = if rest[open..].starts_with('"') {
            '"'
        } else {
            '`'
        };
        out.push_str(&rest[..open]);
        let inner = &rest[open + 1..];
        let len = inner.find(quote).unwrap_or(inner.len());
        if inner[..len].chars().count() <= 2 {
            out.push_str(&rest[open..(open + 1 + len + 1).min(rest.len())]);
        } else {
            out.push_str("(hidden)");
        }
        rest = inner.get(len + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The configuration with no file, flags or environment.
    pub(crate) fn defaults() -> Config {
        Config::from_layers(
            FileConfig::default(),
            None,
            &Overrides::default(),
            &env(&[]),
        )
        .unwrap()
    }

    pub(crate) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn relative_dirs_and_bad_pricing_are_errors() {
        let e = env(&[("I2V_MCP_OUTPUT_DIR", "videos")]);
        let err = Config::from_layers(FileConfig::default(), None, &Overrides::default(), &e)
            .unwrap_err();
        assert!(err.message.contains("relative"), "{}", err.message);
        let file: FileConfig =
            toml::from_str("[pricing.\"nope/x\"]\nper_video_usd = 1.0\n").unwrap();
        let err = Config::from_layers(file, None, &Overrides::default(), &env(&[])).unwrap_err();
        assert!(err.message.contains("nope/x"), "{}", err.message);
    }

    #[test]
    fn preview_section_and_env_switch() {
        let c = defaults();
        assert!(c.preview.contact_sheet, "on by default");
        let file: FileConfig =
            toml::from_str("[preview]\ncontact_sheet = false\ntimeout_seconds = 5\n").unwrap();
        let c = Config::from_layers(file, None, &Overrides::default(), &env(&[])).unwrap();
        assert!(!c.preview.contact_sheet);
        assert_eq!(c.preview.timeout, Duration::from_secs(5));
        let file: FileConfig = toml::from_str("[preview]\ncontact_sheet = true\n").unwrap();
        let e = env(&[("I2V_MCP_CONTACT_SHEET", "false")]);
        let c = Config::from_layers(file, None, &Overrides::default(), &e).unwrap();
        assert!(!c.preview.contact_sheet, "env wins over the file");
        let e = env(&[("I2V_MCP_CONTACT_SHEET", "maybe")]);
        assert!(
            Config::from_layers(FileConfig::default(), None, &Overrides::default(), &e).is_err()
        );
        let err = toml::from_str::<FileConfig>("[preview]\nsheet = false").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn http_section_env_over_file_and_token_hidden() {
        let file: FileConfig = toml::from_str(
            "[http]\nauth_token = \"file-token-value\"\nallowed_hosts = [\"mcp.example.com\"]\nmax_body_bytes = 1024\n",
        )
        .unwrap();
        assert!(!format!("{file:?}").contains("file-token-value"));
        let e = env(&[(
            "I2V_MCP_ALLOWED_ORIGINS",
            "https://a.example:443, http://localhost:*",
        )]);
        let c = Config::from_layers(file, None, &Overrides::default(), &e).unwrap();
        assert_eq!(
            c.http.auth_token.as_ref().unwrap().expose_secret(),
            "file-token-value"
        );
        assert_eq!(c.http.allowed_hosts, ["mcp.example.com"]);
        assert_eq!(
            c.http.allowed_origins,
            ["https://a.example:443", "http://localhost:*"]
        );
        assert_eq!(c.http.max_body_bytes, Some(1024));
        assert!(!format!("{c:?}").contains("file-token-value"));
        let err = toml::from_str::<FileConfig>("[http]\ntoken = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn oauth_section_env_over_file_and_secret_hidden() {
        let file = || {
            toml::from_str::<FileConfig>(
                "[oauth]\nissuer = \"https://auth.example.com\"\nrequired_scopes = [\"mcp\"]\nclient_id = \"rs\"\nclient_secret = \"file-secret-value\"\n",
            )
            .unwrap()
        };
        assert!(!format!("{:?}", file()).contains("file-secret-value"));
        let c = Config::from_layers(file(), None, &Overrides::default(), &env(&[])).unwrap();
        let o = c.http.oauth.as_ref().unwrap();
        assert_eq!(o.issuer, "https://auth.example.com");
        assert_eq!(o.required_scopes, ["mcp"]);
        assert_eq!(o.admin_scope, crate::oauth::DEFAULT_ADMIN_SCOPE);
        assert_eq!(
            o.client_secret.as_ref().unwrap().expose_secret(),
            "file-secret-value"
        );
        assert!(!format!("{c:?}").contains("file-secret-value"));
        let e = env(&[
            ("I2V_MCP_OAUTH_ISSUER", "https://other.example"),
            ("I2V_MCP_OAUTH_REQUIRED_SCOPES", "a, b c"),
            ("I2V_MCP_OAUTH_ADMIN_SCOPE", "ops"),
        ]);
        let c = Config::from_layers(file(), None, &Overrides::default(), &e).unwrap();
        let o = c.http.oauth.as_ref().unwrap();
        assert_eq!(o.issuer, "https://other.example");
        assert_eq!(o.required_scopes, ["a", "b", "c"]);
        assert_eq!(o.admin_scope, "ops");
        // No issuer: off.
        let c = Config::from_layers(
            FileConfig::default(),
            None,
            &Overrides::default(),
            &env(&[]),
        )
        .unwrap();
        assert!(c.http.oauth.is_none());
        let err = toml::from_str::<FileConfig>("[oauth]\nissuers = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn confirm_above_usd_from_file_and_env() {
        assert_eq!(defaults().budget.confirm_above_usd, None, "off by default");
        let file = || toml::from_str::<FileConfig>("[budget]\nconfirm_above_usd = 0.5\n").unwrap();
        let c = Config::from_layers(file(), None, &Overrides::default(), &env(&[])).unwrap();
        assert_eq!(c.budget.confirm_above_usd, Some(0.5));
        let e = env(&[("I2V_MCP_CONFIRM_ABOVE_USD", "2")]);
        let c = Config::from_layers(file(), None, &Overrides::default(), &e).unwrap();
        assert_eq!(
            c.budget.confirm_above_usd,
            Some(2.0),
            "env wins over the file"
        );
        for bad in ["cheap", "-1", "NaN"] {
            let e = env(&[("I2V_MCP_CONFIRM_ABOVE_USD", bad)]);
            let err = Config::from_layers(FileConfig::default(), None, &Overrides::default(), &e)
                .unwrap_err();
            assert!(
                err.message.contains("I2V_MCP_CONFIRM_ABOVE_USD"),
                "{}",
                err.message
            );
        }
        let file = toml::from_str::<FileConfig>("[budget]\nconfirm_above_usd = -3\n").unwrap();
        assert!(Config::from_layers(file, None, &Overrides::default(), &env(&[])).is_err());
    }
}
