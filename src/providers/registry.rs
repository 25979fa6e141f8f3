//! The registry: every provider's [`Declaration`], one line each, and what is read from all of
//! them. It names the provider modules, so it sits above them; everything that reads a
//! declaration (the catalog, the config, validation, the core) sits above it.

use super::{Declaration, ProviderId};

/// Every provider's declaration, one line each, in `ProviderId` order (tested).
static REGISTRY: &[&Declaration] = &[
    &super::piapi::PIAPI,
    &super::piapi::QUBICO,
    &super::novita::DECL,
    &super::apikley::DECL,
    &super::local::DECL,
    &super::dashscope::DECL,
    &super::fal::DECL,
    &super::replicate::DECL,
];

/// What a provider id declares, read from the registry (import this trait to read it).
pub trait Declared: Copy {
    /// What this provider declares about itself.
    fn decl(self) -> &'static Declaration;

    /// The environment variable holding this provider's key, if it needs one.
    fn key_env(self) -> Option<&'static str> {
        self.decl().key_env
    }

    fn default_base_url(self) -> Option<&'static str> {
        self.decl().default_base_url
    }

    /// The ids that reach the same upstream as this one (itself included): a webhook for one may
    /// name a task created through another.
    fn same_upstream(self) -> &'static [ProviderId] {
        self.decl().same_upstream
    }
}

impl Declared for ProviderId {
    fn decl(self) -> &'static Declaration {
        REGISTRY[self as usize]
    }
}

/// Every declaration, in `ProviderId` order.
pub fn declarations() -> impl Iterator<Item = &'static Declaration> {
    REGISTRY.iter().copied()
}

/// The provider used when none is asked for, configured or keyed: the first declared.
pub fn fallback() -> ProviderId {
    REGISTRY[0].id
}

/// The first provider that needs no key (offered when no key is set), if any.
pub fn keyless() -> Option<&'static Declaration> {
    declarations().find(|d| !d.needs_key())
}

/// The `auth` message when no provider has a key: every key variable, and the keyless provider.
pub fn no_key_message() -> String {
    let vars: Vec<&str> = declarations().filter_map(|d| d.key_env).collect();
    let vars = match vars.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => vars.join(""),
    };
    let offer = keyless()
        .map(|d| {
            format!(
                ", or pass provider \"{}\" for {}",
                d.id,
                d.keyless_offer.unwrap_or("a free preview")
            )
        })
        .unwrap_or_default();
    format!("no provider has an API key: set {vars}{offer}")
}

/// What `list_loras` says about LoRA names: each provider's note.
pub fn lora_note() -> String {
    let notes: Vec<&str> = declarations().filter_map(|d| d.lora_note).collect();
    format!("{}.", notes.join("; "))
}

/// The next step when `id` has no key: set its variable, or use the keyless provider.
pub fn no_key_step(id: ProviderId) -> String {
    let keyless = keyless().map_or(String::new(), |d| format!(" or use provider \"{}\"", d.id));
    format!("set {}{keyless}", id.key_env().unwrap_or_default())
}
