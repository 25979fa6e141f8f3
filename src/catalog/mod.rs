//! Every provider x model the server knows, gathered from the providers' declarations (the
//! registry): lookups by provider and key. A price nobody published is `None` with a note, never a
//! guess; the user can set one under `[pricing]`. The types are in [`spec`], below the providers.

pub mod spec;

use std::sync::LazyLock;

pub use spec::*;

use crate::error::Error;
use crate::model::ProviderId;
use crate::providers::registry::{self, Declared};

static MODELS: LazyLock<Vec<ModelSpec>> = LazyLock::new(|| {
    registry::declarations()
        .flat_map(|d| (d.models)())
        .collect()
});

static LORAS: LazyLock<Vec<Lora>> =
    LazyLock::new(|| registry::declarations().flat_map(|d| (d.loras)()).collect());

pub fn models() -> &'static [ModelSpec] {
    &MODELS
}

pub fn loras() -> &'static [Lora] {
    &LORAS
}

/// The default model of a provider (its first in the catalog).
pub fn default_model(provider: ProviderId) -> &'static ModelSpec {
    // Every provider has at least one model (tested), so the fallback is never taken.
    MODELS
        .iter()
        .find(|m| m.provider == provider)
        .unwrap_or(&MODELS[0])
}

/// The default text-to-video model of a provider (its first one that is not retired), if it has one.
pub fn default_t2v_model(provider: ProviderId) -> Option<&'static ModelSpec> {
    MODELS
        .iter()
        .find(|m| m.provider == provider && m.text_to_video && m.retired_on.is_none())
}

pub fn find(provider: ProviderId, model: &str) -> Option<&'static ModelSpec> {
    MODELS
        .iter()
        .find(|m| m.provider == provider && m.model.eq_ignore_ascii_case(model.trim()))
}

/// Look up a `provider/model` key, as used under `[pricing]`.
pub fn find_key(key: &str) -> Option<&'static ModelSpec> {
    let (p, m) = key.split_once('/')?;
    find(p.parse().ok()?, m)
}

// Defined here, not in `spec`: it names the provider as the registry declares it.
impl ModelSpec {
    /// The refusal of a create on a retired model (`None` when it is not retired): the date, the
    /// replacement, and the setting that allows it anyway.
    pub fn retirement(&self) -> Option<Error> {
        let on = self.retired_on.as_deref()?;
        let instead = self
            .replacement
            .as_deref()
            .map(|r| format!("; its replacement: {r}"))
            .unwrap_or_default();
        Some(
            Error::unsupported(format!(
                "{} was retired by {} on {on}{instead}",
                self.key(),
                self.provider.decl().name
            ))
            .with_next_step(format!(
                "use the replacement or another model from list_models; if a proxy still serves it, set [providers.{p}] allow_retired = true (or {}=true)",
                self.provider.allow_retired_env(),
                p = self.provider,
            )),
        )
    }
}

/// `provider/model` keys of the models for which `has` holds, for "who supports it" messages.
pub fn who_supports(has: impl Fn(&ModelSpec) -> bool) -> String {
    who_supports_in(&MODELS, has)
}
