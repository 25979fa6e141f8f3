//! Spend consent (`[budget] confirm_above_usd`): between the quote and the journal, a create
//! whose quote is above the threshold, or has no known price, asks the person through the
//! caller's [`Consent`] (the MCP face: elicitation). Nothing is journaled or sent until they
//! accept. `max_cost_usd` at or above the quote is consent given in advance.

use futures::future::BoxFuture;

use super::{CallCtx, Core, Quote};
use crate::catalog::ModelSpec;
use crate::error::{Error, Result};
use crate::model::CreateRequest;

/// What the person is asked to approve.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendAsk {
    pub provider: String,
    pub model: String,
    pub duration_seconds: u32,
    pub resolution: String,
    /// `None`: nobody published a price and none is configured.
    pub usd: Option<f64>,
    pub basis: String,
    pub spent_today_usd: f64,
    pub threshold_usd: f64,
}

impl SpendAsk {
    /// One line for the person: what it is and what it costs.
    pub fn message(&self) -> String {
        let price = match self.usd {
            Some(usd) => format!("${usd:.2} ({})", self.basis),
            None => "an unknown price (none published or configured)".to_string(),
        };
        format!(
            "Create a {} s {} video with {}/{} for {price}? Spent today: ${:.2}. You are asked because the price is above ${} (confirm_above_usd) or unknown.",
            self.duration_seconds,
            self.resolution,
            self.provider,
            self.model,
            self.spent_today_usd,
            self.threshold_usd
        )
    }
}

/// The person's answer, as the face got it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Given,
    /// Declined or cancelled.
    Declined,
    /// The face cannot ask (the client offers no elicitation); the reason, for the error.
    Unavailable(String),
    /// The question went out and the answer comes with a retry of the same call (the
    /// 2026-07-28 multi-round-trip pattern); the face turns the error into its question.
    Pending,
}

/// How a face asks the person before a create spends money.
pub trait Consent: Send + Sync {
    fn ask<'a>(&'a self, ask: &'a SpendAsk) -> BoxFuture<'a, Answer>;
}

impl Core {
    /// Ask before spending when `confirm_above_usd` says so. No-op without the setting, or for
    /// a caller that is the person (`ctx.consent` is `None`: the CLI).
    pub(super) async fn confirm_spend(
        &self,
        quote: &Quote,
        req: &CreateRequest,
        spec: &ModelSpec,
        ctx: &CallCtx,
    ) -> Result<()> {
        let (Some(threshold), Some(consent)) = (self.cfg.budget.confirm_above_usd, &ctx.consent)
        else {
            return Ok(());
        };
        if let Some(usd) = quote.usd
            && (usd <= threshold || req.max_cost_usd.is_some_and(|cap| cap >= usd))
        {
            return Ok(());
        }
        let ask = SpendAsk {
            provider: quote.provider.to_string(),
            model: quote.model.clone(),
            duration_seconds: req.duration_seconds.unwrap_or(spec.default_duration),
            resolution: req
                .resolution
                .unwrap_or(spec.default_resolution)
                .as_str()
                .to_string(),
            usd: quote.usd,
            basis: quote.basis.clone(),
            spent_today_usd: (self.spent_today().await? * 100.0).round() / 100.0,
            threshold_usd: threshold,
        };
        match consent.ask(&ask).await {
            Answer::Given => Ok(()),
            Answer::Declined => Err(Error::budget(format!(
                "the create was declined when asked to approve {}; nothing was sent or charged",
                price(&ask)
            ))),
            Answer::Pending => Err(Error::budget(format!(
                "approval of {} was requested; nothing was sent",
                price(&ask)
            ))),
            Answer::Unavailable(why) => Err(Error::budget(format!(
                "this create costs {}, over [budget].confirm_above_usd ${threshold} (or unpriced), and needs the person's approval, but {why}; nothing was sent",
                price(&ask)
            ))
            .with_next_step(next_step(&ask))),
        }
    }
}

fn price(ask: &SpendAsk) -> String {
    ask.usd
        .map(|usd| format!("${usd:.2}"))
        .unwrap_or_else(|| "an unknown price".to_string())
}

fn next_step(ask: &SpendAsk) -> String {
    match ask.usd {
        Some(usd) => format!(
            "if the person already approved this spend, call again with max_cost_usd {usd} (or more): a cap at or above the quote counts as approval; or raise [budget].confirm_above_usd (I2V_MCP_CONFIRM_ABOVE_USD); or use a client that supports elicitation"
        ),
        None => "set this model's price under [pricing] (then max_cost_usd at or above the quote counts as approval), raise or unset [budget].confirm_above_usd (I2V_MCP_CONFIRM_ABOVE_USD), or use a client that supports elicitation".to_string(),
    }
}
