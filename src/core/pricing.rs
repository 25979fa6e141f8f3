//! Prices, quotes and budgets: what a request will cost on a model (the `[pricing]` override
//! first, then the catalog), the caps that refuse a create before anything is sent, and
//! `estimate_cost`.

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

use super::{CallCtx, Core};
use crate::catalog::{self, ModelSpec};
use crate::error::{Error, Result};
use crate::media;
use crate::model::{AspectRatio, CameraMotion, CreateRequest, LoraRef, ProviderId, Resolution};
use crate::validate;

/// What `estimate_cost` takes: the create arguments that decide the price and the model.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EstimateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<AspectRatio>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_motion: Option<CameraMotion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<bool>,
    /// Quote every model that can honour these arguments.
    #[serde(default)]
    pub compare: bool,
}

impl EstimateRequest {
    /// The create these arguments stand for on `spec`: an image-to-video model without a given
    /// image is quoted as if one were given; a text-to-video one gets only the image given.
    fn as_create(&self, spec: &ModelSpec) -> CreateRequest {
        let image = match (&self.image, spec.text_to_video) {
            (None, false) => Some("https://example.invalid/image.png".into()),
            (given, _) => given.clone(),
        };
        CreateRequest {
            image,
            prompt: self.prompt.clone().unwrap_or_else(|| "estimate".into()),
            negative_prompt: self.negative_prompt.clone(),
            provider: self.provider,
            model: self.model.clone(),
            resolution: self.resolution,
            aspect_ratio: self.aspect_ratio,
            duration_seconds: self.duration_seconds,
            loras: self.loras.clone(),
            camera_motion: self.camera_motion.clone(),
            end_image: self.end_image.clone(),
            audio: self.audio,
            ..CreateRequest::default()
        }
    }
}

/// One price quote.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Quote {
    pub provider: ProviderId,
    pub model: String,
    /// Null when nobody published a price and none is configured.
    pub usd: Option<f64>,
    /// How the figure is made up.
    pub basis: String,
    pub unpriced: bool,
    pub price_source: String,
    pub configured: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BudgetStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_task_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
    /// Estimated spend since 00:00 UTC.
    pub spent_today_usd: f64,
}

/// `estimate_cost` result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Estimate {
    pub quotes: Vec<Quote>,
    pub budget: BudgetStatus,
}

/// What decides a price besides the model: output length, resolution and audio.
#[derive(Debug, Clone, Copy)]
struct Billed {
    duration: u32,
    resolution: Resolution,
    audio: bool,
}

/// The cost of one video at `price`, and how it is made up: a per-video price, else the
/// per-second tier for its resolution (and audio), else the flat per-second price.
fn cost(price: &catalog::Price, b: Billed) -> (Option<f64>, String) {
    let per_second = |s: f64, tier: String| {
        let d = b.duration;
        (
            Some((s * d as f64 * 1e6).round() / 1e6),
            format!("${s} per second{tier} x {d} s"),
        )
    };
    if let Some(v) = price.usd_per_video {
        return (Some(v), format!("${v} per video"));
    }
    if let Some(t) = price.tier(b.resolution, b.audio) {
        let audio = match t.audio {
            Some(true) => " with audio",
            Some(false) => " silent",
            None => "",
        };
        return per_second(
            t.usd_per_second,
            format!(" at {}{audio}", t.resolution.as_str()),
        );
    }
    match price.usd_per_second {
        Some(s) => per_second(s, String::new()),
        None if !price.by_resolution.is_empty() => (
            None,
            format!("no published price for {}", b.resolution.as_str()),
        ),
        None => (None, "no published price".to_string()),
    }
}

/// Cheapest first, unpriced last; equal prices keep their order.
fn rank(quotes: &mut [Quote]) {
    quotes.sort_by(|a, b| match (a.usd, b.usd) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
}

/// Refuse when the quote breaks a per-task cap (`max_cost_usd`, `[budget].per_task_usd`), or
/// when a cap is set and the price is unknown.
fn check_caps(quote: &Quote, caps: [(Option<f64>, &str); 2]) -> Result<()> {
    for (cap, name) in caps {
        let Some(cap) = cap else { continue };
        match quote.usd {
            None if cap >= 0.0 => {
                return Err(Error::budget(format!(
                    "{name} is set to ${cap} but {}/{} has no known price ({}): set a price under [pricing] or drop the cap",
                    quote.provider, quote.model, quote.price_source
                )));
            }
            Some(usd) if usd > cap => {
                return Err(Error::budget(format!(
                    "estimated ${usd} ({}) is over {name} ${cap}: raise the cap or pick a cheaper model (estimate_cost with compare)",
                    quote.basis
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuse when this quote would bring today's spend over the daily budget.
fn check_daily(quote: &Quote, spent: f64, daily: f64) -> Result<()> {
    let usd = quote.usd.ok_or_else(|| {
        Error::budget(format!(
            "a daily budget is set but {}/{} has no known price: set one under [pricing]",
            quote.provider, quote.model
        ))
    })?;
    daily_budget(daily).check(spent, usd)
}

/// `[budget].daily_usd` for today, as the journal checks it again when it inserts the task.
pub(super) fn daily_budget(limit_usd: f64) -> crate::journal::DailyBudget {
    crate::journal::DailyBudget {
        since_ms: start_of_day_ms(),
        limit_usd,
    }
}

fn start_of_day_ms() -> i64 {
    let now = chrono::Utc::now();
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or(0)
}

impl Core {
    /// A model's price: the `[pricing]` override when configured, else the catalog's.
    pub fn price(&self, spec: &ModelSpec) -> catalog::Price {
        let key = spec.key();
        match self.cfg.pricing.get(&key) {
            Some(o) => catalog::Price {
                usd_per_video: o.per_video_usd,
                usd_per_second: o.per_second_usd,
                by_resolution: o
                    .by_resolution
                    .iter()
                    .map(|t| catalog::Tier {
                        resolution: t.resolution,
                        audio: t.audio,
                        usd_per_second: t.per_second_usd,
                    })
                    .collect(),
                source: format!("configured under [pricing.\"{key}\"]"),
            },
            None => spec.price.clone(),
        }
    }

    /// The price of one request on one model.
    pub fn quote(&self, spec: &ModelSpec, req: &CreateRequest) -> Quote {
        let billed = Billed {
            duration: req.duration_seconds.unwrap_or(spec.default_duration),
            resolution: req.resolution.unwrap_or(spec.default_resolution),
            // A model with audio makes it unless told not to (or unless it sends audio off by
            // default: `explicit_defaults`).
            audio: spec.audio && req.audio.unwrap_or(!spec.explicit_defaults),
        };
        let price = self.price(spec);
        let (mut usd, mut basis) = cost(&price, billed);
        if spec.explicit_defaults {
            basis.push_str(&format!(
                "; sends resolution {}, duration {} s, audio {}",
                billed.resolution.as_str(),
                billed.duration,
                if billed.audio { "on" } else { "off" }
            ));
        }
        // Reference videos: whether their input seconds are billed is UNVERIFIED and their
        // length is not known here, so the quote is the most it can be: output plus the model's
        // whole reference-video allowance at the output rate.
        let videos = crate::refs::count(req, crate::refs::RefKind::Video);
        if let (Some(limits), Some(out), None, true) =
            (spec.references, usd, price.usd_per_video, videos > 0)
        {
            let input = Billed {
                duration: limits.video_seconds,
                ..billed
            };
            if let (Some(extra), _) = cost(&price, input) {
                usd = Some(((out + extra) * 1e6).round() / 1e6);
                basis.push_str(&format!(
                    "; at most: plus up to {} s of reference video input (${extra}), in case input seconds are billed too (UNVERIFIED); output alone ${out}",
                    limits.video_seconds
                ));
            }
        }
        Quote {
            provider: spec.provider,
            model: spec.model.clone(),
            usd,
            basis,
            unpriced: usd.is_none(),
            price_source: price.source,
            configured: self.cfg.is_configured(spec.provider),
        }
    }

    /// Refuse before any paid call when the estimate breaks a cap.
    pub(super) async fn check_budget(&self, quote: &Quote, req: &CreateRequest) -> Result<()> {
        self.check_task_caps(quote, req)?;
        match self.cfg.budget.daily_usd {
            Some(daily) => check_daily(quote, self.spent_today().await?, daily),
            None => Ok(()),
        }
    }

    /// The per-task caps alone (`max_cost_usd`, `[budget].per_task_usd`).
    pub(super) fn check_task_caps(&self, quote: &Quote, req: &CreateRequest) -> Result<()> {
        check_caps(
            quote,
            [
                (req.max_cost_usd, "max_cost_usd"),
                (self.cfg.budget.per_task_usd, "[budget].per_task_usd"),
            ],
        )
    }

    pub(super) async fn spent_today(&self) -> Result<f64> {
        self.journal.spent_since(start_of_day_ms()).await
    }

    /// Quotes for `req`; its images are read and checked like create's (nothing is sent), from
    /// the allowed directories and `ctx`'s roots.
    pub async fn estimate(&self, req: &EstimateRequest, ctx: &CallCtx) -> Result<Estimate> {
        let specs = if req.compare {
            catalog::models()
                .iter()
                // Retired models are not ranked unless their provider allows them (as create).
                .filter(|m| self.cfg.check_retired(m).is_ok())
                .filter(|m| {
                    let mut c = req.as_create(m);
                    c.provider = Some(m.provider);
                    validate::check(&c, m).is_ok()
                })
                .collect()
        } else {
            let provider = match req.provider.or(self.cfg.default_provider) {
                Some(p) => p,
                None => self
                    .pick_provider(None, false)
                    .unwrap_or(ProviderId::ALL[0]),
            };
            let spec = self.pick_model(provider, req.model.as_deref(), false)?;
            self.cfg.check_retired(spec)?;
            validate::check(&req.as_create(spec), spec)?;
            vec![spec]
        };
        let specs = self.fitting_images(req, specs, ctx).await?;
        if specs.is_empty() {
            return Err(Error::unsupported(
                "no model can honour these arguments together: drop one (see list_models)",
            ));
        }
        let spent = self.spent_today().await?;
        let mut quotes: Vec<Quote> = specs
            .into_iter()
            .map(|s| self.quote(s, &req.as_create(s)))
            .collect();
        rank(&mut quotes);
        Ok(Estimate {
            quotes,
            budget: BudgetStatus {
                per_task_usd: self.cfg.budget.per_task_usd,
                daily_usd: self.cfg.budget.daily_usd,
                spent_today_usd: (spent * 1e6).round() / 1e6,
            },
        })
    }

    /// The models of `specs` that would take `req`'s images. When none would, the first model's
    /// reason is the answer (with one model, its own).
    async fn fitting_images(
        &self,
        req: &EstimateRequest,
        mut specs: Vec<&'static ModelSpec>,
        ctx: &CallCtx,
    ) -> Result<Vec<&'static ModelSpec>> {
        for (field, input) in [("image", &req.image), ("end_image", &req.end_image)] {
            let Some(input) = input else { continue };
            let verdicts = media::fits(
                input,
                field,
                &specs,
                self.allowed_dirs(ctx),
                catalog::models(),
            )
            .await;
            let mut first_err = None;
            let mut kept = Vec::new();
            for (spec, verdict) in specs.into_iter().zip(verdicts) {
                match verdict {
                    Ok(()) => kept.push(spec),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            if let (true, Some(e)) = (kept.is_empty(), first_err) {
                return Err(e);
            }
            specs = kept;
        }
        Ok(specs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Category;

    fn price(per_video: Option<f64>, per_second: Option<f64>) -> catalog::Price {
        catalog::Price {
            usd_per_video: per_video,
            usd_per_second: per_second,
            source: "test".into(),
            ..catalog::Price::default()
        }
    }

    fn billed(duration: u32, resolution: Resolution, audio: bool) -> Billed {
        Billed {
            duration,
            resolution,
            audio,
        }
    }

    fn tier(resolution: Resolution, audio: Option<bool>, usd: f64) -> catalog::Tier {
        catalog::Tier {
            resolution,
            audio,
            usd_per_second: usd,
        }
    }

    #[test]
    fn tiers_price_by_resolution_and_audio_and_say_which() {
        let p = catalog::Price {
            by_resolution: vec![
                tier(Resolution::P720, Some(true), 0.05),
                tier(Resolution::P720, Some(false), 0.025),
                tier(Resolution::P1080, None, 0.15),
            ],
            ..price(None, None)
        };
        let (usd, basis) = cost(&p, billed(10, Resolution::P720, true));
        assert_eq!(usd, Some(0.5));
        assert_eq!(basis, "$0.05 per second at 720p with audio x 10 s");
        let (usd, basis) = cost(&p, billed(10, Resolution::P720, false));
        assert_eq!(usd, Some(0.25));
        assert_eq!(basis, "$0.025 per second at 720p silent x 10 s");
        let (usd, basis) = cost(&p, billed(4, Resolution::P1080, false));
        assert_eq!(usd, Some(0.6));
        assert_eq!(basis, "$0.15 per second at 1080p x 4 s");
        let (usd, basis) = cost(&p, billed(5, Resolution::P480, false));
        assert_eq!(usd, None);
        assert_eq!(basis, "no published price for 480p");
        // A flat per-second price covers the resolutions no tier names.
        let flat = catalog::Price {
            usd_per_second: Some(0.2),
            ..p.clone()
        };
        assert_eq!(cost(&flat, billed(5, Resolution::P480, false)).0, Some(1.0));
        assert_eq!(
            cost(&flat, billed(5, Resolution::P1080, false)).0,
            Some(0.75)
        );
        assert!(p.is_known());
        assert_eq!(
            p.short(),
            "720p audio $0.05/s, 720p silent $0.025/s, 1080p $0.15/s"
        );
    }

    #[test]
    fn compare_ranks_cheapest_first_and_unpriced_last_keeping_ties_in_order() {
        let named = |model: &str, usd| Quote {
            model: model.into(),
            ..quote(usd)
        };
        let mut qs = vec![
            named("a", None),
            named("b", Some(0.5)),
            named("c", Some(0.1)),
            named("d", None),
            named("e", Some(0.5)),
        ];
        rank(&mut qs);
        let order: Vec<&str> = qs.iter().map(|q| q.model.as_str()).collect();
        assert_eq!(order, ["c", "b", "e", "a", "d"]);
    }

    fn quote(usd: Option<f64>) -> Quote {
        Quote {
            provider: ProviderId::ALL[0],
            model: "m".into(),
            usd,
            basis: "b".into(),
            unpriced: usd.is_none(),
            price_source: "nowhere".into(),
            configured: true,
        }
    }

    #[test]
    fn a_per_video_price_wins_over_per_second_and_seconds_multiply() {
        let b = |d| billed(d, Resolution::P480, false);
        assert_eq!(cost(&price(Some(0.28), Some(1.0)), b(5)).0, Some(0.28));
        let (usd, basis) = cost(&price(None, Some(0.1)), b(7));
        assert_eq!(usd, Some(0.7));
        assert_eq!(basis, "$0.1 per second x 7 s");
        assert_eq!(cost(&price(None, None), b(5)).0, None);
    }

    #[test]
    fn caps_refuse_over_and_unknown_prices_but_pass_at_the_cap() {
        let caps = |c| [(Some(c), "max_cost_usd"), (None, "[budget].per_task_usd")];
        assert!(check_caps(&quote(Some(0.5)), caps(0.5)).is_ok());
        let e = check_caps(&quote(Some(0.51)), caps(0.5)).unwrap_err();
        assert_eq!(e.category, Category::Budget);
        assert!(
            e.message.contains("over max_cost_usd $0.5"),
            "{}",
            e.message
        );
        let e = check_caps(&quote(None), caps(1.0)).unwrap_err();
        assert!(
            e.message.contains("no known price (nowhere)"),
            "{}",
            e.message
        );
        assert!(check_caps(&quote(None), [(None, "a"), (None, "b")]).is_ok());
    }

    #[test]
    fn the_daily_budget_counts_todays_spend() {
        assert!(check_daily(&quote(Some(1.0)), 4.0, 5.0).is_ok());
        let e = check_daily(&quote(Some(1.01)), 4.0, 5.0).unwrap_err();
        assert!(
            e.message.contains("today's spend to $5.01"),
            "{}",
            e.message
        );
        assert!(check_daily(&quote(None), 0.0, 5.0).is_err());
    }
}
