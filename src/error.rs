//! The configuration error every builder returns.

use std::fmt;

/// A builder was given a setting it cannot honour.
///
/// The message names the setting, the value given and what to change; nothing
/// was created and nothing was lost.
///
/// ```
/// let err = sheaf::ShardedTable::<u64, u64>::builder().shards(3).build().unwrap_err();
/// assert_eq!(err.setting(), "shards");
/// assert!(err.to_string().contains("power of two"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: &'static str,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self {
            setting,
            message: message.into(),
        }
    }

    /// The same error, named after `setting`: for a builder that passes its
    /// setting on to an inner one under another name.
    pub(crate) fn for_setting(mut self, setting: &'static str) -> Self {
        self.setting = setting;
        self
    }

    /// The builder setting that was rejected, e.g. `"shards"`.
    pub fn setting(&self) -> &'static str {
        self.setting
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.setting, self.message)
    }
}

impl std::error::Error for ConfigError {}
