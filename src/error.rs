//! The one error type every tool and command answers with: a category an agent can branch on, a
//! message that says what to do next, and whether trying again may help.

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

/// What kind of failure this is; agents branch on it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Category {
    InvalidInput,
    Unsupported,
    Auth,
    Credits,
    RateLimited,
    Budget,
    NotFound,
    ProviderUnavailable,
    GenerationFailed,
    SubmitUnknown,
    Timeout,
    Internal,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Category> {
        s.parse().ok()
    }

    /// Whether the same call may succeed later without changing it. Exhaustive on purpose: a new
    /// category must decide.
    pub fn is_retryable(self) -> bool {
        match self {
            Category::RateLimited | Category::ProviderUnavailable | Category::Timeout => true,
            Category::InvalidInput
            | Category::Unsupported
            | Category::Auth
            | Category::Credits
            | Category::Budget
            | Category::NotFound
            | Category::GenerationFailed
            | Category::SubmitUnknown
            | Category::Internal => false,
        }
    }
}

/// A failure, as tools and commands report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// Failure kind.
    pub category: Category,
    /// What went wrong and what to do.
    pub message: String,
    /// True if the same call may succeed later.
    pub retryable: bool,
    /// Suggested next action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
}

impl Error {
    pub fn new(category: Category, message: impl Into<String>) -> Self {
        Error {
            category,
            message: message.into(),
            retryable: category.is_retryable(),
            next_step: None,
        }
    }

    pub fn with_next_step(mut self, step: impl Into<String>) -> Self {
        self.next_step = Some(step.into());
        self
    }

    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(Category::InvalidInput, message)
    }
    pub fn unsupported(message: impl Into<String>) -> Self {
        Error::new(Category::Unsupported, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(Category::NotFound, message)
    }
    pub fn budget(message: impl Into<String>) -> Self {
        Error::new(Category::Budget, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Category::Internal, message)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::internal(format!("journal error: {e}")).with_next_step(
            "check that the data dir is writable and not shared with another version",
        )
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(format!("file system error: {e}"))
    }
}

/// Keep the start of a raw provider body for error messages, on a char boundary.
pub fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use strum::VariantArray;

    #[test]
    fn category_strings_agree_with_json_and_parse_back() {
        for c in Category::VARIANTS {
            let json = serde_json::to_value(c).unwrap();
            assert_eq!(json.as_str(), Some(c.as_str()));
            assert_eq!(Category::parse(c.as_str()), Some(*c));
        }
        assert_eq!(Category::parse("no_such_category"), None);
        assert_eq!(Category::InvalidInput.as_str(), "invalid_input");
    }
}
