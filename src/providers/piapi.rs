//! PiAPI and Qubico: model `Qubico/wanx`, image-to-video task types chosen from the request, and
//! text-to-video (`txt2video-14b`, `-14b-lora`, `txt2video-1.3b`); on PiAPI also Wan 2.6
//! (`model: "Wan"`, in `wan26`).
//!
//! Docs: https://piapi.ai/docs/wanx-api/create-task, https://api.qubico.ai (WanX 2.1 img2video),
//! unified schema https://piapi.ai/docs/unified-api-schema. Pricing: $0.28 per 14B generation,
//! $0.12 per 1.3B generation (same pages). Contract: `shared/providers/CONTRACTS.md` section 1
//! (C.1 of CONTRACTS-2026-12.md: WanX still documented, liveness in late 2026 UNVERIFIED).

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{self, Api, Reply, Stage};
use super::{
    Auth, Build, CancelOutcome, Declaration, Provider, ProviderError, Snapshot, Submission,
    WebhookDecl,
};
use super::{ProviderConfig, RateLimits};
use crate::catalog::spec::{ImageDelivery, Lora, ModelSpec, Price, Range, range};
use crate::error::{Category, Error, snippet};
use crate::journal::TaskRow;
use crate::media::ImageInput;
use crate::model::{AspectRatio, CreateRequest, ProviderId, Status};

mod wan26;

const MODEL: &str = "Qubico/wanx";
const WANX_I2V: &str = "wan2.1-i2v-14b";
const WANX_T2V_14B: &str = "wan2.1-t2v-14b";
const WANX_T2V_1_3B: &str = "wan2.1-t2v-1.3b";

/// PiAPI and Qubico: one upstream, two hosts.
const WANX: &[ProviderId] = &[ProviderId::Piapi, ProviderId::Qubico];

/// CONTRACTS.md 1.8: the callback names the task at `data.task_id` and carries the secret of
/// `webhook_config` as a header.
const WEBHOOK: WebhookDecl = WebhookDecl {
    task_id_at: "/data/task_id",
    secret_header: Some("x-webhook-secret"),
};

pub static PIAPI: Declaration = PIAPI_DECL;

/// A `const` so that Qubico can start from it.
const PIAPI_DECL: Declaration = Declaration {
    id: ProviderId::Piapi,
    name: "PiAPI",
    key_env: Some("PIAPI_API_KEY"),
    default_base_url: Some("https://api.piapi.ai/api/v1"),
    auth: Auth::Header("x-api-key"),
    // PiAPI publishes no numbers (UNKNOWN): no client-side limit; its 429s are honoured.
    rate_limits: RateLimits::UNLIMITED,
    // WanX first: its image-to-video model stays the default, its 14B text-to-video model the
    // text-to-video default (first-hand documented, unlike Wan 2.6's fields).
    models: || {
        let mut m = wanx_models(ProviderId::Piapi);
        m.extend(wan26::models());
        m
    },
    loras: || loras(ProviderId::Piapi),
    lora_note: Some("PiAPI/Qubico take other LoRA type names as given"),
    check,
    preflight: super::no_preflight,
    cancels: true,
    webhook: Some(WEBHOOK),
    same_upstream: WANX,
    poll_interval: None,
    keyless_offer: None,
    build,
};

pub static QUBICO: Declaration = Declaration {
    id: ProviderId::Qubico,
    name: "Qubico",
    key_env: Some("QUBICO_API_KEY"),
    default_base_url: Some("https://api.qubico.ai/v1"),
    // CONTRACTS.md 1.11 (seed:qubico): 10 req/min, 100 req/h, 1000 req/day.
    rate_limits: RateLimits {
        per_10_seconds: None,
        per_minute: Some(10),
        per_hour: Some(100),
        per_day: Some(1000),
    },
    // Qubico documents WanX only: no Wan 2.6 there.
    models: || wanx_models(ProviderId::Qubico),
    loras: || loras(ProviderId::Qubico),
    lora_note: None,
    ..PIAPI_DECL
};

fn build(b: &Build<'_>) -> std::sync::Arc<dyn Provider> {
    std::sync::Arc::new(Client::new(b.id, b.provider, b.http.clone()))
}

/// PiAPI and Qubico: one adapter, two hosts.
fn decl(id: ProviderId) -> &'static Declaration {
    if id == ProviderId::Qubico {
        &QUBICO
    } else {
        &PIAPI
    }
}

impl Provider for Client {
    fn submit<'a>(&'a self, s: &'a Submission<'a>) -> BoxFuture<'a, Result<String, ProviderError>> {
        Box::pin(Client::submit(self, s))
    }
    fn poll<'a>(&'a self, row: &'a TaskRow) -> BoxFuture<'a, Result<Snapshot, ProviderError>> {
        Box::pin(Client::poll(self, super::provider_task_id(row)))
    }
    fn cancel<'a>(
        &'a self,
        row: &'a TaskRow,
    ) -> BoxFuture<'a, Result<CancelOutcome, ProviderError>> {
        Box::pin(Client::cancel(self, super::provider_task_id(row)))
    }
}

/// The WanX models of `provider`, the image-to-video one first (the provider default).
fn wanx_models(provider: ProviderId) -> Vec<ModelSpec> {
    vec![
        wanx(provider),
        wanx_t2v_14b(provider),
        wanx_t2v_1_3b(provider),
    ]
}

fn wanx(provider: ProviderId) -> ModelSpec {
    ModelSpec {
        description: "Wan 2.1 14B (Qubico/wanx): 5 s, 480p. end_image -> keyframe, loras -> lora, camera_motion -> control-camera variant.".into(),
        image_delivery: ImageDelivery::InlineBase64,
        aspect_ratios: vec![AspectRatio::Landscape, AspectRatio::Portrait],
        // CONTRACTS.md 1.2: prompt and negative prompt limits are UNKNOWN; no local limit is
        // enforced beyond the generic one in `validate`.
        prompt_max: None,
        negative_prompt: true,
        negative_prompt_max: None,
        // CONTRACTS.md 1.2/1.3: only single-LoRA examples are documented; allowing one is the
        // defensive reading. Strength 0-1 is [SECONDARY].
        max_loras: 1,
        lora_strength: range(0.0, 1.0),
        // CONTRACTS.md 1.4: speed 0-10, default 0.2 [SECONDARY].
        camera_speed: range(0.0, 10.0),
        camera_motion: true,
        end_image: true,
        cancel: true,
        price: Price {
            usd_per_video: Some(0.28),
            usd_per_second: None,
            by_resolution: Vec::new(),
            source: "PiAPI/Qubico WanX docs: $0.28 per 14B generation".into(),
        },
        note: Some("One of end_image, loras, camera_motion per request. Cancel works only while queued (WanX support unconfirmed).".into()),
        ..ModelSpec::base(provider, WANX_I2V)
    }
}

/// CONTRACTS.md 1.2: `txt2video-14b` ($0.28) takes `prompt`, `negative_prompt`, `aspect_ratio`;
/// with LoRAs it becomes `txt2video-14b-lora`. Fixed 5 s (85 frames), 480p, like img2video.
fn wanx_t2v_14b(provider: ProviderId) -> ModelSpec {
    ModelSpec {
        description: "Wan 2.1 14B text-to-video (Qubico/wanx): 5 s, 480p. loras -> lora variant."
            .into(),
        aspect_ratios: vec![AspectRatio::Landscape, AspectRatio::Portrait],
        negative_prompt: true,
        // As for image-to-video (1.2/1.3): one LoRA, strength 0-1 [SECONDARY].
        max_loras: 1,
        lora_strength: range(0.0, 1.0),
        cancel: true,
        price: Price {
            usd_per_video: Some(0.28),
            source: "PiAPI/Qubico WanX docs: $0.28 per 14B generation".into(),
            ..Price::default()
        },
        note: Some("Cancel works only while queued (WanX support unconfirmed).".into()),
        ..ModelSpec::base(provider, WANX_T2V_14B)
    }
    .text_only()
}

/// CONTRACTS.md 1.2: `txt2video-1.3b`, $0.12 per generation; no LoRA variant.
fn wanx_t2v_1_3b(provider: ProviderId) -> ModelSpec {
    ModelSpec {
        description: "Wan 2.1 1.3B text-to-video (Qubico/wanx): 5 s, 480p, cheapest.".into(),
        max_loras: 0,
        lora_strength: None,
        price: Price {
            usd_per_video: Some(0.12),
            source: "PiAPI/Qubico WanX docs: $0.12 per 1.3B generation".into(),
            ..Price::default()
        },
        ..ModelSpec {
            model: WANX_T2V_1_3B.into(),
            ..wanx_t2v_14b(provider)
        }
    }
}

/// CONTRACTS.md 1.3: `ghibli` is official; `inflate-effect` is [SECONDARY]. Other names are
/// passed through as free strings, never refused locally. Which names work on txt2video and which
/// on img2video only is UNKNOWN, so both 14B models list both.
fn loras(provider: ProviderId) -> Vec<Lora> {
    let lora = |model: &str, name: &str, description: &str| Lora {
        provider,
        model: model.into(),
        name: name.into(),
        description: description.into(),
        default_strength: 1.0,
        strength_range: Range { min: 0.0, max: 1.0 },
    };
    [WANX_I2V, WANX_T2V_14B]
        .into_iter()
        .flat_map(|model| {
            [
                lora(model, "ghibli", "Studio Ghibli look"),
                lora(
                    model,
                    "inflate-effect",
                    "objects inflate like balloons (unconfirmed name)",
                ),
            ]
        })
        .collect()
}

/// The checks beyond `validate`: one WanX variant per request, and Wan 2.6's audio flags.
fn check(req: &CreateRequest, spec: &ModelSpec) -> Result<(), Error> {
    if wan26::is_wan26(&spec.model) {
        return wan26::check(req, spec);
    }
    one_variant(req, spec)
}

/// CONTRACTS.md 1.2: the variant is a task type; each takes one of end_image, loras and
/// camera_motion.
fn one_variant(req: &CreateRequest, spec: &ModelSpec) -> Result<(), Error> {
    let chosen: Vec<&str> = [
        ("end_image", req.end_image.is_some()),
        ("loras", !req.loras.is_empty()),
        ("camera_motion", req.camera_motion.is_some()),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| name)
    .collect();
    if chosen.len() > 1 {
        return Err(Error::unsupported(format!(
            "{} cannot combine {} in one request (each selects a different WanX task type): keep one",
            spec.key(),
            chosen.join(" and ")
        )));
    }
    Ok(())
}

pub struct Client {
    api: Api,
}

// ---- wire types (private to this provider) ----

#[derive(Debug, Serialize)]
pub(crate) struct CreateBody {
    model: &'static str,
    task_type: &'static str,
    input: Inputs,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<TaskConfig>,
}

/// The `input` of one model family.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Inputs {
    Wanx(Input),
    Wan26(wan26::Input),
}

#[derive(Debug, Default, Serialize)]
struct Input {
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_image: Option<String>,
    prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aspect_ratio: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    lora_settings: Vec<LoraSetting>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    control_camera_settings: Vec<CameraSetting>,
}

#[derive(Debug, Serialize)]
struct LoraSetting {
    lora_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lora_strength: Option<f64>,
}

/// CONTRACTS.md 1.4: the item shape is CONFLICTING; `{motion_type, motion_speed}` matches the
/// official wording ("Motion Type", "Motion Speed"), so that is what we send.
#[derive(Debug, Serialize)]
struct CameraSetting {
    motion_type: String,
    motion_speed: f64,
}

#[derive(Debug, Serialize)]
struct TaskConfig {
    webhook_config: WebhookConfig,
}

#[derive(Debug, Serialize)]
struct WebhookConfig {
    endpoint: String,
    secret: String,
}

/// Unified envelope `{code, message, data}`; `code != 200` is an error even on HTTP 200.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    /// The flat create shape: `{task_id, status, ...}` (CONTRACTS.md 1.5).
    #[serde(default)]
    task_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireTask {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<WireError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireError {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    raw_message: Option<String>,
}

// ---- pure translation ----

/// The WanX task type a request needs (CONTRACTS.md 1.2). `validate` already refused combinations.
fn task_type(s: &Submission<'_>) -> &'static str {
    if s.spec.model == WANX_T2V_1_3B {
        "txt2video-1.3b"
    } else if s.spec.text_to_video && s.req.loras.is_empty() {
        "txt2video-14b"
    } else if s.spec.text_to_video {
        "txt2video-14b-lora"
    } else if s.end_image.is_some() {
        "img2video-14b-keyframe"
    } else if !s.req.loras.is_empty() {
        "img2video-14b-lora"
    } else if s.req.camera_motion.is_some() {
        "img2video-14b-control-camera"
    } else {
        "img2video-14b"
    }
}

/// CONTRACTS.md 1.2: `image` is "URL or base64 encoded string"; local bytes go as plain base64
/// (the documented form; whether a data URI prefix is accepted is not stated).
fn image_value(img: &ImageInput) -> String {
    match img {
        ImageInput::Url(u) => u.clone(),
        ImageInput::Local(l) => l.base64(),
    }
}

/// The create body for a submission.
pub(crate) fn create_body(s: &Submission<'_>) -> Result<CreateBody, Error> {
    if wan26::is_wan26(&s.spec.model) {
        return wan26::create_body(s);
    }
    let tt = task_type(s);
    let mut input = Input {
        prompt: s.req.prompt.clone(),
        negative_prompt: s.req.negative_prompt.clone(),
        aspect_ratio: s.req.aspect_ratio.map(|a| match a {
            AspectRatio::Portrait => "9:16",
            _ => "16:9",
        }),
        ..Input::default()
    };
    // Text-to-video models get no image field at all.
    if let Some(end) = s.end_image {
        input.start_image = s.image.map(image_value);
        input.end_image = Some(image_value(end));
    } else {
        input.image = s.image.map(image_value);
    }
    input.lora_settings = s
        .req
        .loras
        .iter()
        .map(|l| LoraSetting {
            lora_type: l.name.clone(),
            lora_strength: l.strength,
        })
        .collect();
    if let Some(cm) = &s.req.camera_motion {
        input.control_camera_settings = vec![CameraSetting {
            motion_type: cm.kind.clone(),
            // CONTRACTS.md 1.4: default 0.2.
            motion_speed: cm.speed.unwrap_or(0.2),
        }];
    }
    Ok(CreateBody {
        model: MODEL,
        task_type: tt,
        input: Inputs::Wanx(input),
        config: s.webhook.map(|w| TaskConfig {
            webhook_config: WebhookConfig {
                endpoint: w.url.clone(),
                secret: w.secret.clone(),
            },
        }),
    })
}

/// Where a finished task's video may be, in order: WanX documents `output.video_url` (1.6); the
/// Wan 2.6 key is UNKNOWN (C.4), so a few other likely keys are tried too.
const VIDEO_KEYS: [&str; 6] = ["video_url", "video", "url", "video_urls", "videos", "urls"];

/// The first http(s) URL in `v`: a string, the first hit under `VIDEO_KEYS` of an object, or the
/// first hit in an array.
fn video_url_in(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with("https://") || s.starts_with("http://") => {
            Some(s.clone())
        }
        Value::Object(m) => VIDEO_KEYS
            .iter()
            .find_map(|k| m.get(*k).and_then(video_url_in)),
        Value::Array(a) => a.iter().find_map(video_url_in),
        _ => None,
    }
}

/// The provider task id from either create shape (CONTRACTS.md 1.5).
pub(crate) fn parse_create(body: &[u8]) -> Result<String, Error> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| {
        Error::new(
            Category::SubmitUnknown,
            format!(
                "the create answer does not parse ({e}); it began: {}",
                snippet(body)
            ),
        )
    })?;
    if let Some(code) = env.code
        && code != 200
    {
        return Err(Error::new(
            Category::ProviderUnavailable,
            format!(
                "create refused (code {code}): {}",
                env.message.unwrap_or_default()
            ),
        ));
    }
    let id = env
        .data
        .as_ref()
        .and_then(|d| d.get("task_id"))
        .and_then(Value::as_str)
        .map(String::from)
        .or(env.task_id)
        .filter(|s| !s.is_empty());
    id.ok_or_else(|| {
        Error::new(
            Category::SubmitUnknown,
            format!(
                "the create answer has no task_id; it began: {}",
                snippet(body)
            ),
        )
    })
}

/// Map a task to a snapshot (CONTRACTS.md section 0: case-insensitive; unknown -> running).
pub(crate) fn parse_task(t: &WireTask) -> Snapshot {
    let raw = t.status.clone();
    let status = match raw.to_ascii_lowercase().as_str() {
        "pending" | "staged" => Status::Queued,
        "processing" => Status::Running,
        "completed" => Status::Succeeded,
        "failed" => Status::Failed,
        other => super::unknown_status(ProviderId::Piapi, other),
    };
    let mut snap = Snapshot::new(status, raw);
    if status == Status::Succeeded {
        let url = t.output.as_ref().and_then(video_url_in);
        snap.require_video(url, || {
            Error::new(
                Category::GenerationFailed,
                format!(
                    "the provider reported completion without a video URL (looked for output.{{{}}})",
                    VIDEO_KEYS.join(",")
                ),
            )
        });
    }
    if status == Status::Failed {
        let (code, message) = t
            .error
            .as_ref()
            .map(|e| {
                let msg = e
                    .message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .or_else(|| e.raw_message.clone())
                    .unwrap_or_default();
                (e.code.unwrap_or(0), msg)
            })
            .unwrap_or((0, String::new()));
        let message = if message.is_empty() {
            "the provider reported failure without a reason".to_string()
        } else {
            message
        };
        snap.error = Some(http::generation_failed(format!(
            "generation failed (code {code}): {message}"
        )));
    }
    snap
}

/// Map an error answer: the unified envelope's message when there is one.
fn failure(id: ProviderId, reply: &Reply, what: &str) -> ProviderError {
    let env: Option<Envelope> = serde_json::from_slice(&reply.body).ok();
    let message = env
        .and_then(|e| e.message)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| snippet(&reply.body));
    let status = reply.status;
    let category = http::category_for_status(status);
    let hint = match status {
        413 => " (the image is over 10 MB)",
        _ => "",
    };
    http::failure(
        reply,
        category,
        format!("{what}: {id} answered HTTP {status}: {message}{hint}"),
        decl(id).key_env.unwrap_or_default(),
    )
}

impl Client {
    pub fn new(id: ProviderId, cfg: &ProviderConfig, http: http::HttpClient) -> Self {
        Client {
            api: Api::new(id, cfg, http),
        }
    }

    pub async fn submit(&self, s: &Submission<'_>) -> Result<String, ProviderError> {
        let body = create_body(s).map_err(ProviderError::rejected)?;
        let reply = self.api.post("/task", &body, Stage::Create).await?;
        if !reply.is_success() {
            return Err(failure(self.api.id, &reply, "create"));
        }
        parse_create(&reply.body).map_err(|e| match e.category {
            // A 2xx whose body we cannot read: the task may exist upstream.
            Category::SubmitUnknown => http::unreadable(Stage::Create, e.message),
            _ => ProviderError::rejected(e),
        })
    }

    pub async fn poll(&self, ptid: &str) -> Result<Snapshot, ProviderError> {
        let path = format!("/task/{ptid}");
        let reply = self.api.get(&path, &[], Stage::Poll).await?;
        if !reply.is_success() {
            return Err(failure(self.api.id, &reply, "poll"));
        }
        let env: Envelope = reply.json("poll").map_err(ProviderError::unknown)?;
        if let Some(code) = env.code
            && code != 200
        {
            return Err(ProviderError::unknown(Error::new(
                Category::ProviderUnavailable,
                format!("poll: code {code}: {}", env.message.unwrap_or_default()),
            )));
        }
        let data = env.data.unwrap_or(Value::Null);
        let task: WireTask = serde_json::from_value(data).map_err(|e| {
            ProviderError::unknown(Error::new(
                Category::ProviderUnavailable,
                format!(
                    "poll: unexpected task shape ({e}); it began: {}",
                    snippet(&reply.body)
                ),
            ))
        })?;
        Ok(parse_task(&task))
    }

    /// CONTRACTS.md 1.7: `DELETE /task/{id}`, only while pending; WanX support is unconfirmed, so
    /// anything but `code == 200` means "not cancelled" and the task keeps being watched.
    pub async fn cancel(&self, ptid: &str) -> Result<CancelOutcome, ProviderError> {
        let reply = self
            .api
            .delete(&format!("/task/{ptid}"), Stage::Cancel)
            .await?;
        let env: Option<Envelope> = serde_json::from_slice(&reply.body).ok();
        let ok = reply.is_success() && env.as_ref().and_then(|e| e.code).unwrap_or(200) == 200;
        if ok {
            Ok(CancelOutcome::Cancelled)
        } else {
            let msg = env
                .and_then(|e| e.message)
                .unwrap_or_else(|| snippet(&reply.body));
            Ok(CancelOutcome::NotCancelled(format!(
                "{} refused the cancel (HTTP {}: {msg}); only queued tasks can be cancelled",
                self.api.id, reply.status
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::LocalImage;
    use crate::model::{CameraMotion, CreateRequest, LoraRef};
    use std::sync::Arc;

    /// The body as sent, for comparing with the contract's JSON.
    fn create_body(s: &Submission<'_>) -> Value {
        serde_json::to_value(super::create_body(s).unwrap()).unwrap()
    }

    fn sub<'a>(
        req: &'a CreateRequest,
        image: &'a ImageInput,
        end: Option<&'a ImageInput>,
    ) -> Submission<'a> {
        crate::providers::submission("piapi/wan2.1-i2v-14b", req, Some(image), end, None)
    }

    #[test]
    fn task_types_follow_the_request() {
        let url = ImageInput::Url("https://x.test/a.jpg".into());
        let mut req = CreateRequest {
            image: Some("https://x.test/a.jpg".into()),
            prompt: "p".into(),
            aspect_ratio: Some(AspectRatio::Portrait),
            ..CreateRequest::default()
        };
        let b = create_body(&sub(&req, &url, None));
        assert_eq!(
            b,
            serde_json::json!({"model":"Qubico/wanx","task_type":"img2video-14b",
                "input":{"image":"https://x.test/a.jpg","prompt":"p","aspect_ratio":"9:16"}})
        );
        req.camera_motion = Some(CameraMotion {
            kind: "zoom_in".into(),
            speed: None,
        });
        let b = create_body(&sub(&req, &url, None));
        assert_eq!(b["task_type"], "img2video-14b-control-camera");
        assert_eq!(
            b["input"]["control_camera_settings"],
            serde_json::json!([{"motion_type":"zoom_in","motion_speed":0.2}])
        );
        req.camera_motion = None;
        req.loras = vec![LoraRef {
            name: "ghibli".into(),
            strength: Some(0.8),
        }];
        let b = create_body(&sub(&req, &url, None));
        assert_eq!(b["task_type"], "img2video-14b-lora");
        assert_eq!(
            b["input"]["lora_settings"],
            serde_json::json!([{"lora_type":"ghibli","lora_strength":0.8}])
        );
        req.loras.clear();
        let end = ImageInput::Url("https://x.test/b.jpg".into());
        let b = create_body(&sub(&req, &url, Some(&end)));
        assert_eq!(b["task_type"], "img2video-14b-keyframe");
        assert_eq!(b["input"]["start_image"], "https://x.test/a.jpg");
        assert_eq!(b["input"]["end_image"], "https://x.test/b.jpg");
        assert!(b["input"].get("image").is_none());
    }

    #[test]
    fn text_to_video_task_types_follow_the_model_and_loras() {
        let mut req = CreateRequest {
            prompt: "p".into(),
            negative_prompt: Some("blur".into()),
            ..CreateRequest::default()
        };
        let t2v = |key: &str, req: &CreateRequest| {
            create_body(&crate::providers::submission(key, req, None, None, None))
        };
        assert_eq!(
            t2v("qubico/wan2.1-t2v-14b", &req),
            serde_json::json!({"model":"Qubico/wanx","task_type":"txt2video-14b",
                "input":{"prompt":"p","negative_prompt":"blur"}})
        );
        assert_eq!(
            t2v("piapi/wan2.1-t2v-1.3b", &req)["task_type"],
            "txt2video-1.3b"
        );
        req.loras = vec![LoraRef {
            name: "ghibli".into(),
            strength: None,
        }];
        req.aspect_ratio = Some(AspectRatio::Landscape);
        assert_eq!(
            t2v("piapi/wan2.1-t2v-14b", &req),
            serde_json::json!({"model":"Qubico/wanx","task_type":"txt2video-14b-lora",
                "input":{"prompt":"p","negative_prompt":"blur","aspect_ratio":"16:9",
                    "lora_settings":[{"lora_type":"ghibli"}]}})
        );
    }

    #[test]
    fn text_to_video_models_per_host() {
        let keys = |p: ProviderId| -> Vec<String> {
            crate::catalog::models()
                .iter()
                .filter(|m| m.provider == p)
                .map(|m| format!("{}{}", m.model, if m.text_to_video { "*" } else { "" }))
                .collect()
        };
        assert_eq!(
            keys(ProviderId::Piapi),
            [
                "wan2.1-i2v-14b",
                "wan2.1-t2v-14b*",
                "wan2.1-t2v-1.3b*",
                "wan2.6-i2v",
                "wan2.6-t2v*"
            ]
        );
        assert_eq!(
            keys(ProviderId::Qubico),
            ["wan2.1-i2v-14b", "wan2.1-t2v-14b*", "wan2.1-t2v-1.3b*"]
        );
        let t2v = crate::catalog::default_t2v_model(ProviderId::Piapi).unwrap();
        assert_eq!(t2v.model, "wan2.1-t2v-14b");
        let lora_models: Vec<String> = loras(ProviderId::Qubico)
            .into_iter()
            .filter(|l| l.name == "ghibli")
            .map(|l| l.model)
            .collect();
        assert_eq!(lora_models, ["wan2.1-i2v-14b", "wan2.1-t2v-14b"]);
    }

    #[test]
    fn the_video_url_is_read_from_any_likely_key() {
        let url = |output: Value| {
            let v = serde_json::json!({"status":"completed","output":output});
            parse_task(&serde_json::from_value(v).unwrap()).video_url
        };
        let u = "https://img.theapi.app/temp/v.mp4";
        for output in [
            serde_json::json!({"video_url": u}),
            serde_json::json!({"video": u}),
            serde_json::json!({"video": {"url": u}}),
            serde_json::json!({"videos": [{"video_url": u}]}),
            serde_json::json!({"video_urls": [u]}),
            serde_json::json!({"thumbnail": "x", "url": u}),
            serde_json::json!(u),
        ] {
            assert_eq!(url(output.clone()).as_deref(), Some(u), "{output}");
        }
        let none = serde_json::json!({"status":"completed","output":{"video_url":"","note":"x"}});
        let snap = parse_task(&serde_json::from_value(none).unwrap());
        assert_eq!(snap.status, Status::Failed);
        assert!(snap.error.unwrap().message.contains("output.{video_url,"));
    }

    #[test]
    fn local_images_go_inline_as_base64() {
        let img = ImageInput::Local(Arc::new(LocalImage {
            bytes: vec![1, 2, 3],
            format: crate::media::Format::Png,
            width: 1,
            height: 1,
            has_alpha: false,
            sha256: "0".repeat(64),
            origin: "x".into(),
        }));
        let req = CreateRequest {
            prompt: "p".into(),
            ..CreateRequest::default()
        };
        assert_eq!(
            create_body(&sub(&req, &img, None))["input"]["image"],
            "AQID"
        );
    }

    #[test]
    fn both_create_shapes() {
        let unified =
            br#"{"code":200,"data":{"task_id":"abc","status":"pending"},"message":"success"}"#;
        assert_eq!(parse_create(unified).unwrap(), "abc");
        let flat = br#"{"task_id":"def","status":"pending","created_at":"2025-05-01T10:00:00Z"}"#;
        assert_eq!(parse_create(flat).unwrap(), "def");
        let refused = br#"{"code":400,"data":null,"message":"invalid params"}"#;
        assert!(
            parse_create(refused)
                .unwrap_err()
                .message
                .contains("invalid params")
        );
        let garbled = br#"{"code":200,"data":{"task_"#;
        assert_eq!(
            parse_create(garbled).unwrap_err().category,
            Category::SubmitUnknown
        );
    }

    #[test]
    fn statuses_map_per_contract() {
        let t = |s: &str, output: Value, error: Value| {
            let v = serde_json::json!({"task_id":"a","status":s,"output":output,"error":error});
            parse_task(&serde_json::from_value(v).unwrap())
        };
        assert_eq!(
            t("pending", Value::Null, Value::Null).status,
            Status::Queued
        );
        assert_eq!(
            t("Processing", Value::Null, Value::Null).status,
            Status::Running
        );
        assert_eq!(t("staged", Value::Null, Value::Null).status, Status::Queued);
        assert_eq!(
            t("brand-new", Value::Null, Value::Null).status,
            Status::Running
        );
        let done = t(
            "completed",
            serde_json::json!({"video_url":"https://img.theapi.app/temp/v.mp4"}),
            Value::Null,
        );
        assert_eq!(done.status, Status::Succeeded);
        assert_eq!(
            done.video_url.as_deref(),
            Some("https://img.theapi.app/temp/v.mp4")
        );
        let failed = t(
            "failed",
            Value::Null,
            serde_json::json!({"code":10000,"raw_message":"upstream","message":"nsfw content","detail":null}),
        );
        assert_eq!(failed.status, Status::Failed);
        let e = failed.error.unwrap();
        assert_eq!(e.category, Category::GenerationFailed);
        assert!(e.message.contains("nsfw content"));
    }
}
