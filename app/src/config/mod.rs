//! `paycode.toml`: the configuration of docs/configuration.md, parsed strictly
//! (unknown keys are errors) with errors that name the key and the line.
//! Relative paths are relative to the configuration file's directory.

pub mod clients;
pub mod embedded;
pub mod store;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use paycode_adapters::ConfigError;
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_domain::Policy;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::http::limits::ServerLimits;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub merchants: Vec<MerchantConfig>,
    pub sandbox: Option<SandboxConfig>,
    /// The directory relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[server]`: where the API listens and the limits its clients are held
/// to (`ServerLimits`; the defaults are documented there and in
/// docs/configuration.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Where `/metrics` is served instead of `listen`, when set.
    pub metrics_listen: Option<SocketAddr>,
    /// Each merchant's sustained API request rate; beyond it requests get 429.
    pub requests_per_sec: u32,
    /// Requests a merchant may send at once above its rate.
    pub requests_burst: u32,
    /// Requests with a missing or wrong key per client address and minute.
    pub unauthenticated_per_min: u32,
    pub header_read_timeout_secs: u64,
    pub request_timeout_secs: u64,
    pub import_timeout_secs: u64,
    pub connections_max: usize,
    pub requests_in_flight_max: usize,
    pub shutdown_timeout_secs: u64,
    /// `text` (default) or `json` log lines.
    pub log_format: LogFormat,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let limits = ServerLimits::default();
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            requests_per_sec: limits.requests_per_sec,
            requests_burst: limits.requests_burst,
            unauthenticated_per_min: limits.unauthenticated_per_min,
            header_read_timeout_secs: limits.header_read_timeout.as_secs(),
            request_timeout_secs: limits.request_timeout.as_secs(),
            import_timeout_secs: limits.import_timeout.as_secs(),
            connections_max: limits.connections_max,
            requests_in_flight_max: limits.requests_in_flight_max,
            shutdown_timeout_secs: limits.shutdown_timeout.as_secs(),
            log_format: LogFormat::Text,
        }
    }
}

impl ServerConfig {
    /// The limits of the section, each checked to be greater than 0.
    pub fn limits(&self) -> Result<ServerLimits, ConfigError> {
        let positive = |name: &str, value: u64| {
            if value == 0 {
                Err(ConfigError::new(
                    format!("server.{name}"),
                    "must be greater than 0",
                ))
            } else {
                Ok(value)
            }
        };
        let secs = |name: &str, value: u64| positive(name, value).map(Duration::from_secs);
        positive("requests_per_sec", self.requests_per_sec.into())?;
        positive("requests_burst", self.requests_burst.into())?;
        positive(
            "unauthenticated_per_min",
            self.unauthenticated_per_min.into(),
        )?;
        positive("connections_max", self.connections_max as u64)?;
        positive("requests_in_flight_max", self.requests_in_flight_max as u64)?;
        if self.metrics_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(ConfigError::new(
                "server.metrics_listen",
                "must be another address than server.listen",
            ));
        }
        Ok(ServerLimits {
            requests_per_sec: self.requests_per_sec,
            requests_burst: self.requests_burst,
            unauthenticated_per_min: self.unauthenticated_per_min,
            header_read_timeout: secs("header_read_timeout_secs", self.header_read_timeout_secs)?,
            request_timeout: secs("request_timeout_secs", self.request_timeout_secs)?,
            import_timeout: secs("import_timeout_secs", self.import_timeout_secs)?,
            connections_max: self.connections_max,
            requests_in_flight_max: self.requests_in_flight_max,
            shutdown_timeout: secs("shutdown_timeout_secs", self.shutdown_timeout_secs)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Sqlite,
    Eventstoredb,
    Memory,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    pub path: PathBuf,
    pub url: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Sqlite,
            path: PathBuf::from("paycode.db"),
            url: None,
        }
    }
}

/// `[policy]`: every field optional; the defaults are the documented rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub poll_interval_secs: Option<u32>,
    pub pay_deadline_secs: Option<u32>,
    pub revoke_earliest_after_submit_secs: Option<u32>,
    pub revoke_retry_base_secs: Option<u32>,
    pub revoke_retry_cap_secs: Option<u32>,
    pub revoke_attempts_max: Option<u32>,
    pub refund_query_base_secs: Option<u32>,
    pub refund_query_cap_secs: Option<u32>,
    pub refund_attempts_max: Option<u32>,
    pub refund_settle_working_days: Option<u32>,
    pub refund_settle_max_secs: Option<u32>,
    pub wechat_refund_window_months: Option<u32>,
    pub alipay_refund_window_months: Option<u32>,
    pub refunds_per_order_max: Option<u32>,
}

impl PolicyConfig {
    /// The policy in force: defaults overridden by the file, then validated.
    pub fn policy(&self) -> Result<Policy, ConfigError> {
        let mut policy = Policy::default();
        let set = |target: &mut u32, value: Option<u32>| {
            if let Some(value) = value {
                *target = value;
            }
        };
        set(&mut policy.poll_interval_secs, self.poll_interval_secs);
        set(&mut policy.pay_deadline_secs, self.pay_deadline_secs);
        set(
            &mut policy.revoke_earliest_after_submit_secs,
            self.revoke_earliest_after_submit_secs,
        );
        set(
            &mut policy.revoke_retry_base_secs,
            self.revoke_retry_base_secs,
        );
        set(
            &mut policy.revoke_retry_cap_secs,
            self.revoke_retry_cap_secs,
        );
        set(&mut policy.revoke_attempts_max, self.revoke_attempts_max);
        set(
            &mut policy.refund_query_base_secs,
            self.refund_query_base_secs,
        );
        set(
            &mut policy.refund_query_cap_secs,
            self.refund_query_cap_secs,
        );
        set(&mut policy.refund_attempts_max, self.refund_attempts_max);
        set(
            &mut policy.refund_settle_working_days,
            self.refund_settle_working_days,
        );
        if self.refund_settle_max_secs.is_some() {
            policy.refund_settle_max_secs = self.refund_settle_max_secs;
        }
        set(
            &mut policy.wechat.refund_window_months,
            self.wechat_refund_window_months,
        );
        set(
            &mut policy.alipay.refund_window_months,
            self.alipay_refund_window_months,
        );
        if let Some(max) = self.refunds_per_order_max {
            policy.wechat.refunds_per_order_max = max;
            policy.alipay.refunds_per_order_max = max;
        }
        policy
            .validate()
            .map_err(|error| ConfigError::new(format!("policy.{}", error.field), error.reason))?;
        Ok(policy)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MerchantConfig {
    pub id: String,
    /// Keys with every role; secrets, never printed.
    pub api_keys: Vec<SecretString>,
    pub wechat: Option<WechatSettings>,
    pub alipay: Option<AlipaySettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SignTypeSetting {
    #[default]
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatSettings {
    pub appid: String,
    pub mch_id: String,
    /// The API v2 signing key, in a file (one line).
    pub key_file: PathBuf,
    #[serde(default)]
    pub sign_type: SignTypeSetting,
    #[serde(default = "wechat_base_url")]
    pub base_url: String,
    pub cert_file: Option<PathBuf>,
    pub cert_key_file: Option<PathBuf>,
    pub sub_mch_id: Option<String>,
    pub sub_appid: Option<String>,
    pub timeout_ms: Option<u64>,
    pub rate_limits: Option<RateLimits>,
}

fn wechat_base_url() -> String {
    "https://api.mch.weixin.qq.com".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlipaySettings {
    pub app_id: String,
    pub private_key_file: PathBuf,
    pub alipay_public_key_file: PathBuf,
    #[serde(default = "alipay_base_url")]
    pub base_url: String,
    pub app_auth_token: Option<String>,
    pub timeout_ms: Option<u64>,
    pub rate_limits: Option<RateLimits>,
}

fn alipay_base_url() -> String {
    "https://openapi.alipay.com/gateway.do".to_owned()
}

/// `[sandbox]`: the simulated channels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// The sandbox plays both channels inside `paycode serve` for every
    /// merchant, with credentials made at each start (the embedded
    /// defaults). The merchants then have no channel settings of their own.
    pub in_process: bool,
    /// Signs the sandbox's Alipay answers; generated (public half written to
    /// each merchant's `alipay_public_key_file`) when absent.
    pub alipay_private_key_file: Option<PathBuf>,
    /// The sandbox's own truth; in memory when absent.
    pub state_path: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub drop_per_mille: u16,
    pub slow_per_mille: u16,
    pub server_error_per_mille: u16,
    pub garbled_per_mille: u16,
    pub seed: u64,
    /// How long code `05` holds its answer, in milliseconds.
    pub slow_answer_ms: Option<u64>,
}

impl SandboxConfig {
    /// The misbehaviour the section asks for.
    pub fn faults(&self) -> paycode_sandbox::Faults {
        paycode_sandbox::Faults {
            drop_per_mille: self.drop_per_mille,
            slow_per_mille: self.slow_per_mille,
            server_error_per_mille: self.server_error_per_mille,
            garbled_per_mille: self.garbled_per_mille,
            ..paycode_sandbox::Faults::default()
        }
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                "--config",
                format!("cannot read {}: {error}", path.display()),
            )
        })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Config::parse(&text, base_dir)
    }

    /// Parses configuration text; `base_dir` anchors relative paths.
    pub fn parse(text: &str, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|error| {
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let message = error.message().to_owned();
            let setting = match line {
                Some(line) => format!("paycode.toml line {line}"),
                None => "paycode.toml".to_owned(),
            };
            ConfigError::new(setting, message)
        })?;
        config.base_dir = base_dir;
        config.check()?;
        Ok(config)
    }

    /// The checks serde cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        self.policy.policy()?;
        self.server.limits()?;
        if self.store.kind == StoreKind::Eventstoredb && self.store.url.is_none() {
            return Err(ConfigError::new(
                "store.url",
                "required when store.kind = \"eventstoredb\"",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for (index, merchant) in self.merchants.iter().enumerate() {
            let at = |key: &str| format!("merchants[{index}].{key}");
            paycode_domain::MerchantId::parse(&merchant.id)
                .map_err(|error| ConfigError::new(at("id"), error.to_string()))?;
            if !ids.insert(merchant.id.as_str()) {
                return Err(ConfigError::new(
                    at("id"),
                    format!("merchant {:?} is configured twice", merchant.id),
                ));
            }
            if merchant.api_keys.is_empty() {
                return Err(ConfigError::new(
                    at("api_keys"),
                    "give at least one API key",
                ));
            }
            for key in merchant.api_keys.iter().map(ExposeSecret::expose_secret) {
                if key.len() < 12 || key.chars().any(char::is_whitespace) {
                    return Err(ConfigError::new(
                        at("api_keys"),
                        "each key must be at least 12 characters, without spaces",
                    ));
                }
                if !keys.insert(key) {
                    return Err(ConfigError::new(
                        at("api_keys"),
                        "an API key may belong to one merchant only",
                    ));
                }
            }
            let has_channels = merchant.wechat.is_some() || merchant.alipay.is_some();
            if self.sandbox_in_process() && has_channels {
                let channel = if merchant.wechat.is_some() {
                    "wechat"
                } else {
                    "alipay"
                };
                return Err(ConfigError::new(
                    at(channel),
                    "the in-process sandbox plays every channel ([sandbox] in_process = true); remove this section or the setting",
                ));
            }
            if !self.sandbox_in_process() && !has_channels {
                return Err(ConfigError::new(
                    at("wechat"),
                    "configure [merchants.wechat], [merchants.alipay] or both",
                ));
            }
            if let Some(wechat) = &merchant.wechat {
                if wechat.cert_file.is_some() != wechat.cert_key_file.is_some() {
                    return Err(ConfigError::new(
                        at("wechat.cert_key_file"),
                        "cert_file and cert_key_file go together",
                    ));
                }
            }
        }
        Ok(())
    }

    /// A path from the file, anchored at the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT_EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8080"

[store]
kind = "sqlite"
path = "paycode.db"

[policy]
poll_interval_secs = 5
pay_deadline_secs = 30
revoke_attempts_max = 5

[[merchants]]
id = "demo"
api_keys = ["sk_test_demo"]

[merchants.wechat]
appid = "wx0000000000000000"
mch_id = "1900000000"
key_file = "secrets/wechat_v2.key"
sign_type = "HMAC-SHA256"
base_url = "https://api.mch.weixin.qq.com"
cert_file = "secrets/apiclient_cert.pem"
cert_key_file = "secrets/apiclient_key.pem"

[merchants.alipay]
app_id = "2021000000000000"
private_key_file = "secrets/alipay_app_private_key.pem"
alipay_public_key_file = "secrets/alipay_public_key.pem"
base_url = "https://openapi.alipay.com/gateway.do"

[sandbox]
alipay_private_key_file = "secrets/sandbox_alipay_private_key.pem"
state_path = "sandbox.db"
"#;

    #[test]
    fn the_contract_example_parses() {
        let config = Config::parse(CONTRACT_EXAMPLE, PathBuf::from("/etc/paycode")).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.store.kind, StoreKind::Sqlite);
        assert_eq!(config.merchants[0].id, "demo");
        let wechat = config.merchants[0].wechat.as_ref().unwrap();
        assert_eq!(wechat.sign_type, SignTypeSetting::HmacSha256);
        assert_eq!(
            config.resolve(&wechat.key_file),
            PathBuf::from("/etc/paycode/secrets/wechat_v2.key")
        );
        assert_eq!(config.policy.policy().unwrap(), Policy::default());
        assert_eq!(
            config.sandbox.unwrap().state_path,
            Some(PathBuf::from("sandbox.db"))
        );
    }

    #[test]
    fn the_request_limit_is_on_by_default_at_a_realistic_rate() {
        let limits = Config::parse("", PathBuf::new())
            .unwrap()
            .server
            .limits()
            .unwrap();
        assert_eq!(limits, ServerLimits::default());
        assert_eq!((limits.requests_per_sec, limits.requests_burst), (200, 400));
        assert!(
            limits.request_timeout > Duration::from_secs(60),
            "beyond ?wait"
        );
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        let config = Config::parse("", PathBuf::new()).unwrap();
        assert_eq!(config.store.path, PathBuf::from("paycode.db"));
        assert!(config.merchants.is_empty());
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let unknown = Config::parse(
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            PathBuf::new(),
        )
        .unwrap_err();
        assert_eq!(unknown.setting, "paycode.toml line 3");
        assert!(unknown.reason.contains("lisen"), "{unknown}");
        let bad_value =
            Config::parse("[policy]\npoll_interval_secs = \"five\"\n", PathBuf::new()).unwrap_err();
        assert_eq!(bad_value.setting, "paycode.toml line 2");
        let zero = Config::parse("[policy]\npoll_interval_secs = 0\n", PathBuf::new()).unwrap_err();
        assert_eq!(zero.setting, "policy.poll_interval_secs");
        let half_cert =
            CONTRACT_EXAMPLE.replace("cert_key_file = \"secrets/apiclient_key.pem\"\n", "");
        assert_eq!(
            Config::parse(&half_cert, PathBuf::new())
                .unwrap_err()
                .setting,
            "merchants[0].wechat.cert_key_file"
        );
        for key in [
            "requests_per_sec",
            "requests_burst",
            "unauthenticated_per_min",
            "header_read_timeout_secs",
            "request_timeout_secs",
            "import_timeout_secs",
            "connections_max",
            "requests_in_flight_max",
            "shutdown_timeout_secs",
        ] {
            let zero = Config::parse(&format!("[server]\n{key} = 0\n"), PathBuf::new());
            assert_eq!(zero.unwrap_err().setting, format!("server.{key}"));
        }
        let same = Config::parse(
            "[server]\nlisten = \"127.0.0.1:1\"\nmetrics_listen = \"127.0.0.1:1\"\n",
            PathBuf::new(),
        );
        assert_eq!(same.unwrap_err().setting, "server.metrics_listen");
        let no_url =
            Config::parse("[store]\nkind = \"eventstoredb\"\n", PathBuf::new()).unwrap_err();
        assert_eq!(no_url.setting, "store.url");
        let bad_id = CONTRACT_EXAMPLE.replace("id = \"demo\"", "id = \"de mo\"");
        assert_eq!(
            Config::parse(&bad_id, PathBuf::new()).unwrap_err().setting,
            "merchants[0].id"
        );
    }
}
