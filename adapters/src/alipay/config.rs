//! The settings of one merchant's Alipay app, and their validation.
//!
//! Keys are kept as PEM text here and parsed by `AlipayClient::new`, which
//! refuses what it cannot use (unreadable PEM, a key under 2048 bits, an
//! empty app id, a base URL that is not https or loopback http, a zero limit) with a
//! [`ConfigError`] naming the setting, never quoting a secret.

use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::ConfigError;
use crate::channel::rate_limit::RateLimits;

/// The configuration keys named in errors, so an operator knows what to fix.
pub mod setting {
    /// The app id Alipay gave the merchant's app.
    pub const APP_ID: &str = "merchants.alipay.app_id";
    /// The app's RSA private key (PEM file).
    pub const PRIVATE_KEY_FILE: &str = "merchants.alipay.private_key_file";
    /// Alipay's RSA public key for this app (PEM file).
    pub const ALIPAY_PUBLIC_KEY_FILE: &str = "merchants.alipay.alipay_public_key_file";
    /// The gateway URL.
    pub const BASE_URL: &str = "merchants.alipay.base_url";
    /// The file holding the service provider's token to act for the merchant.
    pub const APP_AUTH_TOKEN: &str = "merchants.alipay.app_auth_token_file";
    /// The per-call timeout.
    pub const TIMEOUT_MS: &str = "merchants.alipay.timeout_ms";
    /// The statement download timeout.
    pub const STATEMENT_TIMEOUT_MS: &str = "merchants.alipay.statement_timeout_ms";
    /// The per-API call limits.
    pub const RATE_LIMITS: &str = "merchants.alipay.rate_limits";
}

/// The production gateway.
pub const PRODUCTION_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";
/// The default timeout of one API call: the pay call is synchronous, and
/// anything slower is an unknown outcome that the query loop resolves.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// The default timeout of a statement download (a zip that can be large).
pub const STATEMENT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// A secret string (a private key, a token): `secrecy`'s, which never
/// prints and is read only through `expose_secret`.
pub type Secret = SecretString;

/// One merchant's Alipay app.
#[derive(Debug, Clone)]
pub struct AlipayConfig {
    /// Alipay's app id (`app_id` on the wire).
    pub app_id: String,
    /// The app's RSA private key, PEM (PKCS#8 or PKCS#1) or bare base64.
    pub app_private_key: Secret,
    /// Alipay's RSA public key for this app, PEM (SPKI or PKCS#1) or bare base64.
    pub alipay_public_key: String,
    /// The gateway, e.g. [`PRODUCTION_GATEWAY`] or the sandbox's `http://127.0.0.1:PORT/gateway.do`.
    pub base_url: String,
    /// Service-provider mode: the token to act for the merchant.
    pub app_auth_token: Option<Secret>,
    /// The timeout of one API call.
    pub timeout: Duration,
    /// The timeout of a statement download.
    pub statement_timeout: Duration,
    /// Calls per second per API.
    pub rate_limits: RateLimits,
}

impl AlipayConfig {
    /// A configuration with the default timeouts and Alipay's default limits.
    pub fn new(
        app_id: impl Into<String>,
        app_private_key_pem: impl Into<String>,
        alipay_public_key_pem: impl Into<String>,
        base_url: impl Into<String>,
    ) -> Self {
        AlipayConfig {
            app_id: app_id.into(),
            app_private_key: Secret::from(app_private_key_pem.into()),
            alipay_public_key: alipay_public_key_pem.into(),
            base_url: base_url.into(),
            app_auth_token: None,
            timeout: TIMEOUT_DEFAULT,
            statement_timeout: STATEMENT_TIMEOUT_DEFAULT,
            rate_limits: RateLimits::ALIPAY,
        }
    }

    /// Like [`AlipayConfig::new`], reading both keys from PEM files; a file
    /// that cannot be read is an error naming its setting and path.
    pub fn load_files(
        app_id: impl Into<String>,
        private_key_file: &Path,
        alipay_public_key_file: &Path,
        base_url: impl Into<String>,
    ) -> Result<Self, ConfigError> {
        let read = |setting: &str, path: &Path| {
            std::fs::read_to_string(path).map_err(|error| {
                ConfigError::new(setting, format!("cannot read {}: {error}", path.display()))
            })
        };
        let private_key = read(setting::PRIVATE_KEY_FILE, private_key_file)?;
        let public_key = read(setting::ALIPAY_PUBLIC_KEY_FILE, alipay_public_key_file)?;
        Ok(AlipayConfig::new(app_id, private_key, public_key, base_url))
    }

    /// The checks that need no key parsing, in the order an operator would fix them.
    pub(super) fn validate_plain(&self) -> Result<(), ConfigError> {
        let app_id = self.app_id.trim();
        if app_id.is_empty() || app_id != self.app_id || app_id.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                setting::APP_ID,
                "must be the app id Alipay assigned, without spaces",
            ));
        }
        if self
            .app_auth_token
            .as_ref()
            .is_some_and(|token| token.expose_secret().trim().is_empty())
        {
            return Err(ConfigError::new(
                setting::APP_AUTH_TOKEN,
                "must not be empty when set",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                setting::TIMEOUT_MS,
                "must be greater than 0",
            ));
        }
        if self.statement_timeout.is_zero() {
            return Err(ConfigError::new(
                setting::STATEMENT_TIMEOUT_MS,
                "must be greater than 0",
            ));
        }
        if let Err(name) = self.rate_limits.validate() {
            return Err(ConfigError::new(
                format!("{}.{name}", setting::RATE_LIMITS),
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        // A generated key (made once per test process): none of it may show.
        let (private_pem, _) = crate::testing::rsa_key_pair_pem("app", 2048);
        let mut config = AlipayConfig::new("2019", private_pem.as_str(), "pub", "http://x");
        config.app_auth_token = Some(Secret::from("token-value"));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("MII") && !shown.contains("token-value"),
            "{shown}"
        );
        for line in private_pem.lines() {
            assert!(!shown.contains(line), "{shown}");
        }
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn plain_settings_are_checked_and_named() {
        let good = AlipayConfig::new("2019", "k", "p", "http://x");
        assert_eq!(good.validate_plain(), Ok(()));
        let named = |config: AlipayConfig| config.validate_plain().unwrap_err().setting;
        assert_eq!(
            named(AlipayConfig {
                app_id: String::new(),
                ..good.clone()
            }),
            setting::APP_ID
        );
        assert_eq!(
            named(AlipayConfig {
                app_id: " 2019".to_owned(),
                ..good.clone()
            }),
            setting::APP_ID
        );
        let token = Some(Secret::from(" "));
        assert_eq!(
            named(AlipayConfig {
                app_auth_token: token,
                ..good.clone()
            }),
            setting::APP_AUTH_TOKEN
        );
        assert_eq!(
            named(AlipayConfig {
                timeout: Duration::ZERO,
                ..good.clone()
            }),
            setting::TIMEOUT_MS
        );
        let limits = RateLimits {
            query_per_sec: 0,
            ..RateLimits::ALIPAY
        };
        assert_eq!(
            named(AlipayConfig {
                rate_limits: limits,
                ..good
            }),
            "merchants.alipay.rate_limits.query_per_sec"
        );
    }
}
