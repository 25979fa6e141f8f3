//! Apikley (a kie.ai-compatible market API): model `wan/2-2-a14b-image-to-video-turbo`, created
//! with `POST /api/v1/jobs/createTask` and read back with `GET /api/v1/jobs/recordInfo?taskId=`.
//! Local images are uploaded first through `POST /file-upload/api/file-base64-upload` (kept
//! 3 days upstream) and the upload is cached by sha256 in the journal.
//!
//! Docs: https://docs.apikley.ru/Wan/wan_2-2-a14b-image-to-video-turbo, task details
//! https://docs.apikley.ru/market/common/get-task-detail, upload
//! https://docs.apikley.ru/file-upload-api/file-upload-api_upload-file-base-64. Pricing: none
//! published by Apikley (third-party figures conflict, CONTRACTS.md 3.7), so the catalog leaves it
//! unset. Contract: `shared/providers/CONTRACTS.md` sections 0 and 3.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{self, Api, Reply, Stage};
use super::{
    Acceptance, Auth, Build, Declaration, Provider, ProviderError, Snapshot, Submission,
    WebhookDecl,
};
use super::{CancelOutcome, ProviderConfig, RateLimits};
use crate::catalog::spec::{ImageDelivery, ModelSpec, Price, range};
use crate::error::{Category, Error, snippet};
use crate::journal::{Journal, TaskRow};
use crate::media::{ImageInput, LocalImage};
use crate::model::{AspectRatio, ProviderId, Resolution, Status, now_ms};

const MODEL: &str = "wan/2-2-a14b-image-to-video-turbo";
const CREATE_PATH: &str = "/api/v1/jobs/createTask";
const RECORD_PATH: &str = "/api/v1/jobs/recordInfo";
const UPLOAD_PATH: &str = "/file-upload/api/file-base64-upload";
/// The folder uploads go to on Apikley's side.
const UPLOAD_DIR: &str = "i2v-mcp";
/// CONTRACTS.md 3.4: uploads are deleted after 3 days (kie.ai pages also say 24 h somewhere). We
/// reuse one for 2 days, so a task created at the end of that window still finds the file.
const UPLOAD_CACHE_MS: i64 = 2 * 24 * 60 * 60 * 1000;

pub static DECL: Declaration = Declaration {
    id: ProviderId::Apikley,
    name: "Apikley",
    key_env: Some("APIKLEY_API_KEY"),
    default_base_url: Some("https://api.apikley.ru"),
    auth: Auth::Bearer,
    // CONTRACTS.md 3.7 (kie.ai, which Apikley mirrors): 20 new requests per 10 s.
    rate_limits: RateLimits {
        per_10_seconds: Some(20),
        ..RateLimits::UNLIMITED
    },
    models: || vec![spec()],
    loras: Vec::new,
    lora_note: None,
    check: super::no_check,
    preflight: super::no_preflight,
    cancels: false,
    // CONTRACTS.md 3.5: the callback carries `data.taskId`, unsigned.
    webhook: Some(WebhookDecl {
        task_id_at: "/data/taskId",
        secret_header: None,
    }),
    same_upstream: &[ProviderId::Apikley],
    poll_interval: None,
    keyless_offer: None,
    build: |b: &Build<'_>| {
        std::sync::Arc::new(Client::new(b.provider, b.http.clone(), b.journal.clone()))
    },
};

/// CONTRACTS.md 3.2, 3.7
fn spec() -> ModelSpec {
    ModelSpec {
        description:
            "Wan 2.2 A14B turbo on Apikley: ~5 s, 480p/580p/720p, local images uploaded once."
                .into(),
        image_delivery: ImageDelivery::Upload,
        resolutions: vec![Resolution::P480, Resolution::P580, Resolution::P720],
        default_resolution: Resolution::P720,
        aspect_ratios: vec![
            AspectRatio::Auto,
            AspectRatio::Landscape,
            AspectRatio::Portrait,
            AspectRatio::Square,
        ],
        prompt_max: Some(5000),
        seed: range(0.0, 2_147_483_647.0),
        prompt_extend: true,
        acceleration: true,
        price: Price::unpublished(
            "unpublished by Apikley (third-party figures conflict); set [pricing.\"apikley/wan2.2-i2v-a14b-turbo\"]",
        ),
        ..ModelSpec::base(ProviderId::Apikley, "wan2.2-i2v-a14b-turbo")
    }
}

impl Provider for Client {
    fn submit<'a>(&'a self, s: &'a Submission<'a>) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(Client::submit(self, s))
    }
    fn poll<'a>(&'a self, row: &'a TaskRow) -> BoxFuture<'a, Result<Snapshot, ProviderError>> {
        Box::pin(Client::poll(self, super::provider_task_id(row)))
    }
    fn cancel<'a>(&'a self, _: &'a TaskRow) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
        super::no_cancel(&DECL)
    }
}

fn key_env() -> &'static str {
    DECL.key_env.unwrap_or_default()
}

pub struct Client {
    api: Api,
    journal: Journal,
}

// ---- wire types (private to this provider) ----

/// CONTRACTS.md 3.2.
#[derive(Debug, Serialize)]
pub(crate) struct CreateBody {
    model: &'static str,
    #[serde(rename = "callBackUrl", skip_serializing_if = "Option::is_none")]
    call_back_url: Option<String>,
    input: Input,
}

#[derive(Debug, Serialize)]
struct Input {
    image_url: String,
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enable_prompt_expansion: Option<bool>,
    /// Omitted for a random seed ("If None, a random seed is chosen"); 0 is a fixed seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acceleration: Option<String>,
}

/// CONTRACTS.md 3.4 (field names from kie.ai, which Apikley mirrors).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UploadBody {
    base64_data: String,
    upload_path: &'static str,
    file_name: String,
}

/// `{code, msg, data}`; recordInfo may say `message` instead of `msg`. Two fields rather than a
/// serde alias: an alias fails on a body that carries both.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// The upload answer's flag (kie.ai).
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    data: Option<Value>,
}

impl Envelope {
    fn code(&self) -> Option<i64> {
        match self.code.as_ref()? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
    fn text(&self) -> String {
        [&self.msg, &self.message]
            .into_iter()
            .flatten()
            .find(|m| !m.trim().is_empty())
            .cloned()
            .unwrap_or_default()
    }
}

/// CONTRACTS.md 3.3: `data` of recordInfo (and, per secondary sources, of the callback).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    #[serde(default)]
    state: Option<String>,
    /// A string holding JSON (`{"resultUrls": [...]}`), "" or null until success.
    #[serde(default)]
    result_json: Option<Value>,
    /// Documented as a string; a number is tolerated.
    #[serde(default)]
    fail_code: Option<Value>,
    #[serde(default)]
    fail_msg: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultJson {
    #[serde(default)]
    result_urls: Option<Vec<String>>,
}

// ---- pure translation ----

/// The create body, with the image already a URL (uploaded or given).
pub(crate) fn create_body(s: &Submission<'_>, image_url: &str) -> CreateBody {
    let req = s.req;
    CreateBody {
        model: MODEL,
        call_back_url: s.webhook.map(|w| w.url.clone()),
        input: Input {
            image_url: image_url.to_string(),
            prompt: req.prompt.clone(),
            // Resolution and aspect strings are exactly Apikley's enums (480p/580p/720p;
            // auto/16:9/9:16/1:1); `validate` has refused anything else.
            resolution: req.resolution.map(|r| r.as_str()),
            aspect_ratio: req.aspect_ratio.map(|a| a.as_str()),
            enable_prompt_expansion: req.prompt_extend,
            seed: req.seed,
            acceleration: req.acceleration.clone(),
        },
    }
}

pub(crate) fn upload_body(img: &LocalImage) -> UploadBody {
    UploadBody {
        base64_data: img.data_uri(),
        upload_path: UPLOAD_DIR,
        file_name: img.file_name(),
    }
}

/// CONTRACTS.md 3.6: the category an Apikley code means, and whether a create answered with it
/// may have been accepted.
fn classify_code(code: i64) -> (Category, Acceptance) {
    match code {
        401 => (Category::Auth, Acceptance::Rejected),
        402 => (Category::Credits, Acceptance::Rejected),
        404 => (Category::NotFound, Acceptance::Rejected),
        422 => (Category::InvalidInput, Acceptance::Rejected),
        429 => (Category::RateLimited, Acceptance::Rejected),
        // Maintenance: the request was turned away at the door.
        455 => (Category::ProviderUnavailable, Acceptance::Rejected),
        // A server error: the task may have been created anyway.
        500 => (Category::ProviderUnavailable, Acceptance::Unknown),
        // "Generation failed" is a definite answer with no task id: nothing to be charged for.
        // Rejected also keeps the category (an Unknown create becomes submit_unknown).
        501 => (Category::GenerationFailed, Acceptance::Rejected),
        // Feature disabled: a definite refusal.
        505 => (Category::Unsupported, Acceptance::Rejected),
        other => {
            let status = u16::try_from(other).unwrap_or(500);
            let acceptance = if status >= 500 {
                Acceptance::Unknown
            } else {
                Acceptance::Rejected
            };
            (http::category_for_status(status), acceptance)
        }
    }
}

fn next_step(category: Category, stage: Stage) -> Option<String> {
    if let Some(s) = http::next_step(category, key_env()) {
        return Some(s);
    }
    match (category, stage) {
        (Category::InvalidInput, _) => {
            Some("fix the request as the message says, then create again".into())
        }
        (Category::NotFound, Stage::Poll) => {
            Some("Apikley does not know this task (it may have expired): create a new one".into())
        }
        (Category::NotFound, _) => {
            Some("check the Apikley base URL (I2V_MCP_APIKLEY_BASE_URL)".into())
        }
        (Category::GenerationFailed, _) => {
            Some("adjust the prompt or image and create a new task".into())
        }
        (Category::Unsupported, _) => Some(
            "Apikley has this feature switched off for now: try later or use another provider"
                .into(),
        ),
        _ => None,
    }
}

/// Read an answer: the body `code` first (Apikley answers errors with HTTP 200 too), then a
/// non-2xx HTTP status read the same way, then the envelope itself. An upload that fails is
/// always `Rejected`: nothing was created or paid.
fn check(reply: &Reply, stage: Stage) -> Result<Envelope, ProviderError> {
    let parsed: Result<Envelope, _> = serde_json::from_slice(&reply.body);
    let env = parsed.as_ref().ok();
    let body_code = env.and_then(Envelope::code).filter(|c| *c != 200);
    let code = body_code.or_else(|| (!reply.is_success()).then_some(i64::from(reply.status)));
    if let Some(code) = code {
        let (category, acceptance) = classify_code(code);
        let text = env
            .map(Envelope::text)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| snippet(&reply.body));
        let mut error = Error::new(
            category,
            format!(
                "{}: apikley answered {} {code}: {text}",
                stage.as_str(),
                if body_code.is_some() { "code" } else { "HTTP" }
            ),
        );
        error.next_step = next_step(category, stage);
        let maybe_taken =
            acceptance == Acceptance::Unknown && stage.acceptance(true) == Acceptance::Unknown;
        return Err(http::settle(error, maybe_taken, reply));
    }
    parsed.or_else(|_| http::parse(reply, stage, "Apikley"))
}

fn data_str<'a>(env: &'a Envelope, field: &str) -> Option<&'a str> {
    env.data
        .as_ref()?
        .get(field)?
        .as_str()
        .filter(|s| !s.trim().is_empty())
}

/// The task id from a create answer `{"code":200,"msg":"success","data":{"taskId":"..."}}`.
pub(crate) fn parse_create(reply: &Reply) -> Result<String, ProviderError> {
    let env = check(reply, Stage::Create)?;
    data_str(&env, "taskId").map(String::from).ok_or_else(|| {
        ProviderError::unknown(Error::new(
            Category::SubmitUnknown,
            format!(
                "create: the Apikley answer has no data.taskId; it began: {}",
                snippet(&reply.body)
            ),
        ))
    })
}

/// The file URL from an upload answer (`data.downloadUrl`, CONTRACTS.md 3.4).
pub(crate) fn parse_upload(reply: &Reply) -> Result<String, ProviderError> {
    let env = check(reply, Stage::Upload)?;
    let url = data_str(&env, "downloadUrl").filter(|_| env.success != Some(false));
    url.map(String::from).ok_or_else(|| {
        ProviderError::rejected(
            Error::new(
                Category::ProviderUnavailable,
                format!(
                    "image upload: the Apikley answer has no data.downloadUrl ({}); it began: {}",
                    env.text(),
                    snippet(&reply.body)
                ),
            )
            .with_next_step("try again in a minute, or pass the image as an https URL"),
        )
    })
}

/// `resultJson` is JSON inside a string: decode it in a second step. `""` and null mean "no
/// result yet"; an object already decoded is accepted too.
fn result_urls(raw: Option<&Value>) -> Result<Vec<String>, String> {
    let parsed: ResultJson = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
            format!(
                "resultJson does not parse ({e}); it began: {}",
                snippet(s.as_bytes())
            )
        })?,
        Some(v @ Value::Object(_)) => serde_json::from_value(v.clone())
            .map_err(|e| format!("resultJson has an unexpected shape ({e})"))?,
        Some(other) => {
            return Err(format!(
                "resultJson is neither a string nor an object: {other}"
            ));
        }
    };
    Ok(parsed
        .result_urls
        .unwrap_or_default()
        .into_iter()
        .filter(|u| !u.trim().is_empty())
        .collect())
}

/// A recordInfo answer as a snapshot (CONTRACTS.md section 0 and 3.3).
pub(crate) fn parse_task(reply: &Reply) -> Result<Snapshot, ProviderError> {
    let env = check(reply, Stage::Poll)?;
    let unreadable = |why: String| {
        ProviderError::unknown(Error::new(
            Category::ProviderUnavailable,
            format!(
                "poll: the Apikley task record {why}; it began: {}",
                snippet(&reply.body)
            ),
        ))
    };
    let data = env.data.clone().unwrap_or(Value::Null);
    if data.is_null() {
        return Err(unreadable("has no data".into()));
    }
    let record: Record = serde_json::from_value(data)
        .map_err(|e| unreadable(format!("has an unexpected shape ({e})")))?;
    let raw = record.state.clone().unwrap_or_default();
    let status = match raw.as_str() {
        "waiting" | "queuing" => Status::Queued,
        "generating" => Status::Running,
        "success" => Status::Succeeded,
        "fail" => Status::Failed,
        other => super::unknown_status(ProviderId::Apikley, other),
    };
    let mut snap = Snapshot::new(status, raw);
    match status {
        Status::Succeeded => {
            // A result we cannot read is an error (polling goes on), not a failed task: the
            // video exists and was paid for.
            let urls = result_urls(record.result_json.as_ref()).map_err(unreadable)?;
            snap.require_video(urls.into_iter().next(), || {
                http::no_video(
                    "Apikley reported success without a result URL (resultJson.resultUrls is empty)",
                    "create a new task; if it happens again, contact Apikley support",
                )
            });
        }
        Status::Failed => {
            let code = match &record.fail_code {
                Some(Value::String(s)) if !s.trim().is_empty() => format!(" (code {s})"),
                Some(Value::Number(n)) => format!(" (code {n})"),
                _ => String::new(),
            };
            snap.error = Some(http::failed_because("Apikley", &code, record.fail_msg));
        }
        Status::Queued | Status::Running | Status::Cancelled => {}
    }
    Ok(snap)
}

impl Client {
    pub fn new(cfg: &ProviderConfig, http: http::HttpClient, journal: Journal) -> Self {
        Client {
            api: Api::new(ProviderId::Apikley, cfg, http),
            journal,
        }
    }

    /// A URL Apikley can read for a local image: cached while the upload lives, else uploaded.
    /// Every failure is `Rejected`: nothing has been created or paid yet.
    async fn image_url(&self, img: &LocalImage) -> Result<String, ProviderError> {
        let now = now_ms();
        match self
            .journal
            .upload_get(ProviderId::Apikley, &img.sha256, now)
            .await
        {
            Ok(Some(url)) => return Ok(url),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "upload cache unreadable; uploading again"),
        }
        let reply = self
            .api
            .post(UPLOAD_PATH, &upload_body(img), Stage::Upload)
            .await?;
        let url = parse_upload(&reply)?;
        if let Err(e) = self
            .journal
            .upload_put(
                ProviderId::Apikley,
                &img.sha256,
                &url,
                now + UPLOAD_CACHE_MS,
            )
            .await
        {
            tracing::warn!(error = %e, "cannot cache the upload; the next task uploads again");
        }
        Ok(url)
    }

    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        let image = s.image_required().map_err(ProviderError::rejected)?;
        let image_url = match image {
            ImageInput::Url(u) => u.clone(),
            ImageInput::Local(img) => self.image_url(img).await?,
        };
        let reply = self
            .api
            .post(CREATE_PATH, &create_body(s, &image_url), Stage::Create)
            .await?;
        parse_create(&reply)
    }

    pub async fn poll(&self, ptid: &str) -> Result<Snapshot, ProviderError> {
        let reply = self
            .api
            .get(RECORD_PATH, &[("taskId", ptid)], Stage::Poll)
            .await?;
        parse_task(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Format;
    use crate::model::{AspectRatio, CreateRequest, Resolution};
    use crate::providers::Webhook;
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// The bodies as sent, for comparing with the contract's JSON.
    fn create_body(s: &Submission<'_>, image_url: &str) -> Value {
        serde_json::to_value(super::create_body(s, image_url)).unwrap()
    }

    fn upload_body(img: &LocalImage) -> Value {
        serde_json::to_value(super::upload_body(img)).unwrap()
    }

    fn sub<'a>(
        req: &'a CreateRequest,
        image: &'a ImageInput,
        webhook: Option<&'a Webhook>,
    ) -> Submission<'a> {
        crate::providers::submission(
            "apikley/wan2.2-i2v-a14b-turbo",
            req,
            Some(image),
            None,
            webhook,
        )
    }

    fn local() -> Arc<LocalImage> {
        Arc::new(LocalImage {
            bytes: vec![0xFF, 0xD8, 0xFF, 0xE0],
            format: Format::Jpeg,
            width: 640,
            height: 480,
            has_alpha: false,
            sha256: "0123456789abcdef".repeat(4),
            origin: "x".into(),
        })
    }

    use crate::providers::http::reply;

    fn ok(body: &str) -> Reply {
        reply(200, body)
    }

    #[test]
    fn create_body_with_an_uploaded_url() {
        let req = CreateRequest {
            prompt: "the man walks forward".into(),
            resolution: Some(Resolution::P580),
            aspect_ratio: Some(AspectRatio::Portrait),
            prompt_extend: Some(false),
            seed: Some(0),
            acceleration: Some("regular".into()),
            ..CreateRequest::default()
        };
        let img = ImageInput::Local(local());
        let hook = Webhook {
            url: "https://me.test/webhooks/apikley".into(),
            secret: "s".into(),
        };
        let body = create_body(
            &sub(&req, &img, Some(&hook)),
            "https://tempfile.test/i2v-mcp/0123456789abcdef.jpg",
        );
        assert_eq!(
            body,
            json!({
                "model": "wan/2-2-a14b-image-to-video-turbo",
                "callBackUrl": "https://me.test/webhooks/apikley",
                "input": {
                    "image_url": "https://tempfile.test/i2v-mcp/0123456789abcdef.jpg",
                    "prompt": "the man walks forward",
                    "resolution": "580p",
                    "aspect_ratio": "9:16",
                    "enable_prompt_expansion": false,
                    "seed": 0,
                    "acceleration": "regular"
                }
            })
        );
        // Nothing optional given: nothing optional sent (no seed = random).
        let req = CreateRequest {
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        let url = ImageInput::Url("https://x.test/a.png".into());
        assert_eq!(
            create_body(&sub(&req, &url, None), "https://x.test/a.png"),
            json!({"model": "wan/2-2-a14b-image-to-video-turbo",
                   "input": {"image_url": "https://x.test/a.png", "prompt": "p"}})
        );
    }

    #[test]
    fn upload_body_and_answer() {
        assert_eq!(
            upload_body(&local()),
            json!({"base64Data": "data:image/jpeg;base64,/9j/4A==",
                   "uploadPath": "i2v-mcp",
                   "fileName": "0123456789abcdef.jpg"})
        );
        let answer = r#"{"success":true,"code":200,"msg":"File uploaded successfully","data":{"fileName":"0123456789abcdef.jpg","filePath":"i2v-mcp/0123456789abcdef.jpg","downloadUrl":"https://tempfile.test/i2v-mcp/0123456789abcdef.jpg","fileSize":4,"mimeType":"image/jpeg","uploadedAt":"2026-11-22T10:00:00.000Z"}}"#;
        assert_eq!(
            parse_upload(&ok(answer)).unwrap(),
            "https://tempfile.test/i2v-mcp/0123456789abcdef.jpg"
        );
        // Every upload failure is Rejected, even a 500 or a garbled 2xx: nothing was paid.
        for r in [
            reply(500, r#"{"code":500,"msg":"boom"}"#),
            ok(r#"{"code":500,"msg":"boom"}"#),
            ok(r#"{"success":false,"code":200,"msg":"nope","data":{"downloadUrl":"https://x"}}"#),
            ok(r#"{"code":200,"msg":"ok","data":{}}"#),
            ok("<html>"),
        ] {
            let pe = parse_upload(&r).unwrap_err();
            assert_eq!(pe.acceptance, Acceptance::Rejected, "{}", pe.error.message);
        }
    }

    #[test]
    fn create_answers() {
        let r = ok(r#"{"code":200,"msg":"success","data":{"taskId":"task_wan_1765172522239"}}"#);
        assert_eq!(parse_create(&r).unwrap(), "task_wan_1765172522239");
        // 2xx without a readable task id: may have been accepted.
        for body in [
            r#"{"code":200,"msg":"success","data":{}}"#,
            "{\"code\":200,",
            "",
        ] {
            let pe = parse_create(&ok(body)).unwrap_err();
            assert_eq!(pe.acceptance, Acceptance::Unknown, "{body}");
            assert_eq!(pe.error.category, Category::SubmitUnknown, "{body}");
        }
        assert!(
            parse_create(&ok("{\"code\":200,"))
                .unwrap_err()
                .error
                .message
                .contains("{\"code\":200,")
        );
    }

    #[test]
    fn body_codes_map_even_on_http_200() {
        let cases: &[(i64, Category, Acceptance)] = &[
            (401, Category::Auth, Acceptance::Rejected),
            (402, Category::Credits, Acceptance::Rejected),
            (404, Category::NotFound, Acceptance::Rejected),
            (422, Category::InvalidInput, Acceptance::Rejected),
            (429, Category::RateLimited, Acceptance::Rejected),
            (455, Category::ProviderUnavailable, Acceptance::Rejected),
            (500, Category::ProviderUnavailable, Acceptance::Unknown),
            (501, Category::GenerationFailed, Acceptance::Rejected),
            (505, Category::Unsupported, Acceptance::Rejected),
            (403, Category::Auth, Acceptance::Rejected),
            (503, Category::ProviderUnavailable, Acceptance::Unknown),
        ];
        for (code, category, acceptance) in cases {
            let body = format!(r#"{{"code":{code},"msg":"the reason","data":null}}"#);
            // In the body of an HTTP 200, and as the HTTP status itself.
            for r in [ok(&body), reply(*code as u16, &body)] {
                let pe = parse_create(&r).unwrap_err();
                assert_eq!(pe.error.category, *category, "{code}");
                assert_eq!(pe.acceptance, *acceptance, "{code}");
                assert!(
                    pe.error.message.contains("the reason"),
                    "{}",
                    pe.error.message
                );
                assert!(pe.error.next_step.is_some(), "{code}: no next step");
            }
        }
        // Maintenance may be retried; a server error on create may not (it could charge twice).
        assert!(
            parse_create(&ok(r#"{"code":455,"msg":"maintenance"}"#))
                .unwrap_err()
                .create_may_retry()
        );
        assert!(
            !parse_create(&ok(r#"{"code":500,"msg":"x"}"#))
                .unwrap_err()
                .create_may_retry()
        );
        // A non-2xx whose body is not JSON goes by its status and quotes the body.
        let pe = parse_create(&reply(502, "<html>bad gateway</html>")).unwrap_err();
        assert_eq!(pe.acceptance, Acceptance::Unknown);
        assert!(
            pe.error.message.contains("bad gateway"),
            "{}",
            pe.error.message
        );
        // A 429 keeps Retry-After and may be retried.
        let mut r = reply(429, r#"{"code":429,"msg":"too many"}"#);
        r.headers.insert("retry-after", "3".parse().unwrap());
        let pe = parse_create(&r).unwrap_err();
        assert_eq!(pe.retry_after, Some(Duration::from_secs(3)));
        assert!(pe.create_may_retry());
        // The body code wins over a 2xx status, and a string code is read too.
        let pe = parse_create(&ok(r#"{"code":"402","msg":"no credits"}"#)).unwrap_err();
        assert_eq!(pe.error.category, Category::Credits);
    }

    #[test]
    fn contract_examples_for_every_state() {
        let waiting = r#"{"code":200,"msg":"success","data":{"taskId":"task_wan_1765172522239","model":"wan/2-2-a14b-image-to-video-turbo","state":"waiting","param":"{\"model\":\"wan/2-2-a14b-image-to-video-turbo\",\"input\":{}}","resultJson":"","failCode":"","failMsg":"","costTime":0,"completeTime":0,"createTime":1765172522239,"updateTime":1765172522239}}"#;
        let s = parse_task(&ok(waiting)).unwrap();
        assert_eq!(
            (s.status, s.raw_status.as_str()),
            (Status::Queued, "waiting")
        );
        let queuing = waiting.replace("\"waiting\"", "\"queuing\"");
        assert_eq!(parse_task(&ok(&queuing)).unwrap().status, Status::Queued);

        let generating = r#"{"code":200,"msg":"success","data":{"taskId":"task_wan_1765172522239","state":"generating","resultJson":"","failCode":"","failMsg":"","createTime":1765172522239,"updateTime":1765172530000}}"#;
        assert_eq!(parse_task(&ok(generating)).unwrap().status, Status::Running);

        let success = r#"{"code":200,"msg":"success","data":{"taskId":"task_wan_1765172522239","model":"wan/2-2-a14b-image-to-video-turbo","state":"success","param":"{}","resultJson":"{\"resultUrls\":[\"https://tempfile.aiquickdraw.com/v.mp4\",\"https://tempfile.aiquickdraw.com/w.mp4\"]}","failCode":"","failMsg":"","costTime":45000,"completeTime":1765172567239,"createTime":1765172522239,"updateTime":1765172567239}}"#;
        let s = parse_task(&ok(success)).unwrap();
        assert_eq!(s.status, Status::Succeeded);
        assert_eq!(
            s.video_url.as_deref(),
            Some("https://tempfile.aiquickdraw.com/v.mp4")
        );
        assert_eq!(s.url_expires_at, None);

        let fail = r#"{"code":200,"msg":"success","data":{"taskId":"task_wan_1765172522239","state":"fail","resultJson":"","failCode":"500","failMsg":"content policy","completeTime":1765172560000,"createTime":1765172522239,"updateTime":1765172560000}}"#;
        let s = parse_task(&ok(fail)).unwrap();
        assert_eq!(s.status, Status::Failed);
        let e = s.error.unwrap();
        assert_eq!(e.category, Category::GenerationFailed);
        assert!(
            e.message.contains("(code 500): content policy"),
            "{}",
            e.message
        );

        // `message` instead of `msg`, an unknown state, and both names at once.
        let s = parse_task(&ok(
            r#"{"code":200,"message":"success","msg":"success","data":{"state":"postprocessing"}}"#,
        ))
        .unwrap();
        assert_eq!(
            (s.status, s.raw_status.as_str()),
            (Status::Running, "postprocessing")
        );
        let pe = parse_task(&ok(r#"{"code":404,"message":"task not found"}"#)).unwrap_err();
        assert_eq!(pe.error.category, Category::NotFound);
        assert!(pe.error.message.contains("task not found"));
    }

    #[test]
    fn result_json_is_decoded_twice() {
        let success = |result: &str| {
            format!(
                r#"{{"code":200,"msg":"success","data":{{"state":"success","resultJson":{result}}}}}"#
            )
        };
        for empty in [r#""""#, "null", r#""{\"resultUrls\":[]}""#, r#""{}""#] {
            let s = parse_task(&ok(&success(empty))).unwrap();
            assert_eq!(s.status, Status::Failed, "{empty}");
            let e = s.error.unwrap();
            assert!(e.message.contains("without a result URL"), "{}", e.message);
        }
        let s = parse_task(&ok(&success(r#"{"resultUrls":["https://x.test/o.mp4"]}"#))).unwrap();
        assert_eq!(s.video_url.as_deref(), Some("https://x.test/o.mp4"));
        // Garbled inner JSON: a poll error quoting it (polling goes on), never a panic.
        let pe = parse_task(&ok(&success(r#""{\"resultUrls\":[\"https://x""#))).unwrap_err();
        assert_eq!(pe.acceptance, Acceptance::Unknown);
        assert!(
            pe.error.message.contains("resultJson does not parse"),
            "{}",
            pe.error.message
        );
        // Unfinished states carry "" or null and must not fail.
        let running =
            r#"{"code":200,"msg":"success","data":{"state":"generating","resultJson":null}}"#;
        assert_eq!(parse_task(&ok(running)).unwrap().status, Status::Running);
        assert_eq!(result_urls(None).unwrap(), Vec::<String>::new());
        assert_eq!(
            result_urls(Some(&json!(" "))).unwrap(),
            Vec::<String>::new()
        );
        assert!(result_urls(Some(&json!(7))).is_err());
    }

    #[test]
    fn unreadable_poll_answers_are_errors() {
        for body in [
            "<html>",
            r#"{"code":200,"msg":"success","data":null}"#,
            r#"{"code":200,"data":{"state":5}}"#,
        ] {
            let pe = parse_task(&ok(body)).unwrap_err();
            assert_eq!(pe.error.category, Category::ProviderUnavailable, "{body}");
            assert!(
                pe.error.message.contains("it began"),
                "{}",
                pe.error.message
            );
        }
    }

    #[derive(Default)]
    struct Seen {
        uploads: AtomicUsize,
        creates: std::sync::Mutex<Vec<Value>>,
    }

    /// A loopback stand-in for upload and create that records what it was sent.
    fn stand_in(seen: Arc<Seen>) -> axum::Router {
        use axum::extract::{Json, State};
        use axum::routing::post;
        axum::Router::new()
            .route(
                "/file-upload/api/file-base64-upload",
                post(|State(s): State<Arc<Seen>>, Json(b): Json<Value>| async move {
                    s.uploads.fetch_add(1, Ordering::SeqCst);
                    let ok = b["base64Data"] == "data:image/jpeg;base64,/9j/4A==";
                    if ok {
                        r#"{"success":true,"code":200,"msg":"ok","data":{"downloadUrl":"https://files.test/u.jpg"}}"#
                    } else {
                        r#"{"success":false,"code":422,"msg":"bad upload body"}"#
                    }
                }),
            )
            .route(
                "/api/v1/jobs/createTask",
                post(|State(s): State<Arc<Seen>>, Json(b): Json<Value>| async move {
                    s.creates.lock().unwrap().push(b);
                    r#"{"code":200,"msg":"success","data":{"taskId":"task_wan_1"}}"#
                }),
            )
            .with_state(seen)
    }

    /// A client for `addr` with a fresh journal in `dir`.
    fn client_at(addr: std::net::SocketAddr, dir: &tempfile::TempDir) -> (Client, Journal) {
        let journal = Journal::open(&dir.path().join("journal.sqlite")).unwrap();
        let cfg = ProviderConfig {
            api_key: Some("k".to_string().into()),
            base_url: format!("http://{addr}"),
            timeout: Duration::from_secs(5),
            rate_limit: Default::default(),
            allow_retired: false,
            auth: DECL.auth,
            no_key: String::new(),
        };
        (
            Client::new(&cfg, http::client().unwrap(), journal.clone()),
            journal,
        )
    }

    /// The async part against a loopback stand-in: a local image is uploaded once, its URL is
    /// reused from the journal for the next task, and the create carries it.
    #[tokio::test]
    async fn local_images_are_uploaded_once() {
        let seen = Arc::new(Seen::default());
        let app = stand_in(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = tempfile::tempdir().unwrap();
        let (client, journal) = client_at(addr, &dir);
        let img = ImageInput::Local(local());
        let req = CreateRequest {
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        let run = async {
            let a = client.submit(&sub(&req, &img, None)).await.unwrap();
            let b = client.submit(&sub(&req, &img, None)).await.unwrap();
            (a, b)
        };
        let (a, b) = tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .expect("the fake Apikley did not answer within 20 s");
        assert_eq!((a.as_str(), b.as_str()), ("task_wan_1", "task_wan_1"));
        assert_eq!(seen.uploads.load(Ordering::SeqCst), 1, "uploaded twice");
        let creates = seen.creates.lock().unwrap().clone();
        assert_eq!(creates.len(), 2);
        for c in &creates {
            assert_eq!(c["input"]["image_url"], "https://files.test/u.jpg");
        }
        let cached = journal
            .upload_get(
                ProviderId::Apikley,
                &local().sha256,
                now_ms() + UPLOAD_CACHE_MS - 60_000,
            )
            .await
            .unwrap();
        assert_eq!(cached.as_deref(), Some("https://files.test/u.jpg"));
        let expired = journal
            .upload_get(
                ProviderId::Apikley,
                &local().sha256,
                now_ms() + UPLOAD_CACHE_MS + 60_000,
            )
            .await
            .unwrap();
        assert_eq!(expired, None, "the cache outlives its 2-day window");
    }

    /// An upload that cannot even connect is Rejected: the create was never sent.
    #[tokio::test]
    async fn failed_upload_is_rejected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let dir = tempfile::tempdir().unwrap();
        let (client, _journal) = client_at(addr, &dir);
        let img = ImageInput::Local(local());
        let req = CreateRequest::default();
        let pe = tokio::time::timeout(
            Duration::from_secs(20),
            client.submit(&sub(&req, &img, None)),
        )
        .await
        .expect("submit hung")
        .unwrap_err();
        assert_eq!(pe.acceptance, Acceptance::Rejected, "{}", pe.error.message);
    }
}
