//! The provider ids: the closed list every layer names providers by (journal rows, config
//! sections, schemas, environment variables). Below everything that reads what a provider
//! declares; that is [`super::registry`].

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Provider id.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ProviderId {
    Piapi,
    Qubico,
    Novita,
    Apikley,
    Local,
    Dashscope,
    Fal,
    Replicate,
}

impl ProviderId {
    /// Every provider, in declaration order.
    pub const ALL: &'static [ProviderId] = <ProviderId as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The environment variable overriding this provider's base URL.
    pub fn base_url_env(self) -> String {
        format!("I2V_MCP_{}_BASE_URL", self.as_str().to_ascii_uppercase())
    }

    /// The environment variable that allows creates on this provider's retired models.
    pub fn allow_retired_env(self) -> String {
        format!(
            "I2V_MCP_{}_ALLOW_RETIRED",
            self.as_str().to_ascii_uppercase()
        )
    }
}

impl std::str::FromStr for ProviderId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        ProviderId::ALL
            .iter()
            .copied()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = ProviderId::ALL.iter().map(|p| p.as_str()).collect();
                Error::invalid_input(format!(
                    "unknown provider '{s}': use one of {}",
                    names.join(", ")
                ))
            })
    }
}
