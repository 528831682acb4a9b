//! A configuration that cannot be used. `setting` names the key as the
//! operator wrote it (`merchants[0].wechat.key_file`, `store.url`,
//! `paycode.toml line 12`) so they know what to fix; `reason` says what is
//! wrong and never contains the secret itself. Every part of paycode that
//! reads settings (the channel clients here, the app's `paycode.toml`)
//! answers with this one type.

/// A setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    pub setting: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}
