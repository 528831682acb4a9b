//! `paycode.toml`: the configuration of docs/configuration.md, parsed strictly
//! (unknown keys are errors) with errors that name the key and the line.
//! Relative paths are relative to the configuration file's directory.
//!
//! Besides the shape, [`Config::check`] refuses what is unsafe to run
//! (docs/production.md): a secret written in the file, the public demo key
//! with the real channels, two merchants on one channel account.
//!
//! Two ways to load it: `Config::load`, the whole file with every check
//! (`serve`, `sandbox`, `migrate`, `resolve`, `reconcile`, which write), and
//! `LedgerConfig::load`, only `[store]` and `[policy]` (the commands that
//! only read the ledger: `verify`, `replay`, `history`): every other
//! section is skipped unread, so an auditor's copy of the file needs no
//! merchant, channel setting, API key or key file.

pub mod clients;
pub mod embedded;
pub mod secrets;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use paycode_adapters::ConfigError;
use paycode_adapters::channel::endpoint::is_loopback_url;
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_domain::environment::{
    AlipayAccount, EnvironmentMarked, MerchantAccounts, WechatAccount,
};
use paycode_domain::{MerchantId, Policy};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::http::auth::{self, Role};

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
    /// Whether this is [`Config::embedded`] (no `--config` given): such a
    /// configuration never marks a ledger that already holds events.
    #[serde(skip)]
    pub embedded: bool,
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
    /// Keys with every right, in the file (test and sandbox setups); secrets,
    /// never printed. Named `api_keys[N]` in events.
    #[serde(default)]
    pub api_keys: Vec<SecretString>,
    /// Keys with a name and a role, given by digest or file (`[[merchants.keys]]`).
    #[serde(default)]
    pub keys: Vec<KeySettings>,
    pub wechat: Option<WechatSettings>,
    pub alipay: Option<AlipaySettings>,
}

/// One `[[merchants.keys]]` entry: a key with a name and a role, given as
/// the SHA-256 of the key or a file holding it, never in plain text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// What the events this key causes record.
    pub name: String,
    pub role: Role,
    /// Lowercase (or uppercase) hex SHA-256 of the key.
    pub sha256: Option<String>,
    /// A file holding the key on one line.
    pub key_file: Option<PathBuf>,
    /// Refused: a key is never written in the file.
    #[serde(default)]
    pub key: Option<IgnoredAny>,
}

/// The longest key name.
pub const KEY_NAME_MAX: usize = 64;

/// The shortest API key accepted.
pub const API_KEY_LEN_MIN: usize = 12;

/// Checks an API key's text: at least [`API_KEY_LEN_MIN`] characters, no spaces.
pub fn check_api_key_text(key: &str) -> Result<(), &'static str> {
    if key.len() < API_KEY_LEN_MIN || key.chars().any(char::is_whitespace) {
        return Err("each key must be at least 12 characters, without spaces");
    }
    Ok(())
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
    /// Service-provider mode: a file holding the token to act for the merchant.
    pub app_auth_token_file: Option<PathBuf>,
    /// Refused: the token is a secret; it goes in `app_auth_token_file`.
    #[serde(default)]
    pub app_auth_token: Option<IgnoredAny>,
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
    /// Signs the sandbox's Alipay answers. When absent, `paycode sandbox`
    /// makes one once, beside `state_path`, and writes its public half to
    /// each merchant's `alipay_public_key_file` that does not exist yet.
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

/// The sections of `paycode.toml` the commands that only read the ledger
/// need: `[store]`, and `[policy]` (the payment rules in force). Every other section is skipped unread (see the module's
/// doc); these two are parsed and checked as strictly as `Config::load` does.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LedgerConfig {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The directory relative paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

impl LedgerConfig {
    /// Reads `[store]` and `[policy]` of a configuration file, and nothing else.
    pub fn load(path: &Path) -> Result<LedgerConfig, ConfigError> {
        let (text, base_dir) = read_file(path)?;
        LedgerConfig::parse(&text, base_dir)
    }

    /// Parses `[store]` and `[policy]` of configuration text.
    pub fn parse(text: &str, base_dir: PathBuf) -> Result<LedgerConfig, ConfigError> {
        let mut config: LedgerConfig = from_toml(text)?;
        config.base_dir = base_dir;
        config.policy.policy()?;
        config.store.check()?;
        Ok(config)
    }

    /// A path from the file, anchored at the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }

    /// A whole configuration of these sections and defaults elsewhere (no
    /// merchant): what opening a store that is not a SQLite file takes.
    pub fn into_config(self) -> Config {
        Config {
            server: ServerConfig::default(),
            store: self.store,
            policy: self.policy,
            merchants: Vec::new(),
            sandbox: None,
            base_dir: self.base_dir,
            embedded: false,
        }
    }
}

impl StoreConfig {
    /// The checks of `[store]` serde cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        if self.kind == StoreKind::Eventstoredb && self.url.is_none() {
            return Err(ConfigError::new(
                "store.url",
                "required when store.kind = \"eventstoredb\"",
            ));
        }
        Ok(())
    }
}

/// The text of a configuration file and the directory it is in.
fn read_file(path: &Path) -> Result<(String, PathBuf), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::new(
            "--config",
            format!("cannot read {}: {error}", path.display()),
        )
    })?;
    Ok((text, path.parent().map(Path::to_owned).unwrap_or_default()))
}

/// Deserialises configuration text, errors naming the line.
fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        let message = error.message().to_owned();
        let setting = match line {
            Some(line) => format!("paycode.toml line {line}"),
            None => "paycode.toml".to_owned(),
        };
        ConfigError::new(setting, message)
    })
}

fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base_dir.join(path)
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (text, base_dir) = read_file(path)?;
        Config::parse(&text, base_dir)
    }

    /// Parses configuration text; `base_dir` anchors relative paths.
    pub fn parse(text: &str, base_dir: PathBuf) -> Result<Config, ConfigError> {
        let mut config: Config = from_toml(text)?;
        config.base_dir = base_dir;
        config.check()?;
        Ok(config)
    }

    /// The checks serde cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        self.policy.policy()?;
        self.server.limits()?;
        self.store.check()?;
        let mut ids = HashSet::new();
        let mut digests: HashMap<auth::KeyDigest, String> = HashMap::new();
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
            if merchant.api_keys.is_empty() && merchant.keys.is_empty() {
                return Err(ConfigError::new(
                    at("api_keys"),
                    "give at least one API key: api_keys, or [[merchants.keys]]",
                ));
            }
            for key in merchant.api_keys.iter().map(ExposeSecret::expose_secret) {
                check_api_key_text(key)
                    .map_err(|reason| ConfigError::new(at("api_keys"), reason))?;
                self.check_not_demo_key(&auth::digest(key), &at("api_keys"))?;
                if digests.insert(auth::digest(key), at("api_keys")).is_some() {
                    return Err(ConfigError::new(
                        at("api_keys"),
                        "an API key may belong to one merchant only, and be configured once",
                    ));
                }
            }
            self.check_keys(index, merchant, &mut digests)?;
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
            if let Some(wechat) = &merchant.wechat
                && wechat.cert_file.is_some() != wechat.cert_key_file.is_some()
            {
                return Err(ConfigError::new(
                    at("wechat.cert_key_file"),
                    "cert_file and cert_key_file go together",
                ));
            }
            if merchant
                .alipay
                .as_ref()
                .is_some_and(|alipay| alipay.app_auth_token.is_some())
            {
                return Err(ConfigError::new(
                    at("alipay.app_auth_token"),
                    "a secret is never written in paycode.toml: put the token in a file readable by the service only and name it with app_auth_token_file",
                ));
            }
        }
        self.check_shared_accounts()
    }

    /// The `[[merchants.keys]]` of merchant `index`: named, with a role,
    /// given by digest or file (never in the file), each key once.
    fn check_keys(
        &self,
        index: usize,
        merchant: &MerchantConfig,
        digests: &mut HashMap<auth::KeyDigest, String>,
    ) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for (number, key) in merchant.keys.iter().enumerate() {
            let at = |field: &str| format!("merchants[{index}].keys[{number}].{field}");
            let name_ok = !key.name.is_empty()
                && key.name.len() <= KEY_NAME_MAX
                && key
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !name_ok {
                return Err(ConfigError::new(
                    at("name"),
                    format!("must be 1-{KEY_NAME_MAX} characters of [A-Za-z0-9_.-]"),
                ));
            }
            if !names.insert(key.name.as_str()) {
                return Err(ConfigError::new(
                    at("name"),
                    format!("the key name {:?} is used twice by this merchant", key.name),
                ));
            }
            if key.key.is_some() {
                return Err(ConfigError::new(
                    at("key"),
                    "a key is never written in paycode.toml: give its SHA-256 (sha256 = \"<hex>\", from `printf %s \"$KEY\" | sha256sum`) or a key_file",
                ));
            }
            match (&key.sha256, &key.key_file) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err(ConfigError::new(
                        at("sha256"),
                        "give exactly one of sha256 and key_file",
                    ));
                }
                (Some(hex), None) => {
                    let digest = parse_sha256(hex).ok_or_else(|| {
                        ConfigError::new(at("sha256"), "must be 64 hexadecimal digits (a SHA-256)")
                    })?;
                    self.check_not_demo_key(&digest, &at("sha256"))?;
                    if digests.insert(digest, at("sha256")).is_some() {
                        return Err(ConfigError::new(
                            at("sha256"),
                            "an API key may belong to one merchant only, and be configured once",
                        ));
                    }
                }
                // The file is read at start (`clients::api_keys`).
                (None, Some(_)) => {}
            }
        }
        Ok(())
    }

    /// The public demo key is refused with the real channels.
    pub(crate) fn check_not_demo_key(
        &self,
        digest: &auth::KeyDigest,
        setting: &str,
    ) -> Result<(), ConfigError> {
        if self.talks_to_real_channels() && *digest == auth::digest(embedded::DEMO_API_KEY) {
            return Err(ConfigError::new(
                setting,
                format!(
                    "{} is the public demo key; it is refused in a configuration that talks to the real channels",
                    embedded::DEMO_API_KEY
                ),
            ));
        }
        Ok(())
    }

    /// Two merchants on one channel account would send the same order
    /// numbers to one account: refused, naming the second.
    fn check_shared_accounts(&self) -> Result<(), ConfigError> {
        let mut wechat: HashMap<(&str, Option<&str>), usize> = HashMap::new();
        let mut alipay: HashMap<(&str, Option<PathBuf>), usize> = HashMap::new();
        for (index, merchant) in self.merchants.iter().enumerate() {
            if let Some(settings) = &merchant.wechat {
                let account = (settings.mch_id.as_str(), settings.sub_mch_id.as_deref());
                if let Some(first) = wechat.insert(account, index) {
                    return Err(ConfigError::new(
                        format!("merchants[{index}].wechat.mch_id"),
                        format!(
                            "merchants[{first}] ({}) already uses this WeChat account (mch_id {}, sub_mch_id {}): the two merchants' order numbers would collide at the channel",
                            self.merchants[first].id,
                            settings.mch_id,
                            settings.sub_mch_id.as_deref().unwrap_or("none")
                        ),
                    ));
                }
            }
            if let Some(settings) = &merchant.alipay {
                let token = settings
                    .app_auth_token_file
                    .as_ref()
                    .map(|path| self.resolve(path));
                let setting = if token.is_some() {
                    "app_auth_token_file"
                } else {
                    "app_id"
                };
                if let Some(first) = alipay.insert((settings.app_id.as_str(), token), index) {
                    return Err(ConfigError::new(
                        format!("merchants[{index}].alipay.{setting}"),
                        format!(
                            "merchants[{first}] ({}) already uses this Alipay account (app_id {} with the same app_auth_token): the two merchants' order numbers would collide at the channel",
                            self.merchants[first].id, settings.app_id
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the configuration talks to the real channels: not the
    /// in-process sandbox, and some channel `base_url` is not a loopback
    /// address. (Loopback URLs are the sandbox's or a local test peer's.)
    pub fn talks_to_real_channels(&self) -> bool {
        !self.sandbox_in_process() && self.first_real_channel_setting().is_some()
    }

    /// The first channel `base_url` setting that is not a loopback address.
    pub fn first_real_channel_setting(&self) -> Option<String> {
        self.merchants
            .iter()
            .enumerate()
            .find_map(|(index, merchant)| {
                let wechat = merchant
                    .wechat
                    .as_ref()
                    .filter(|wechat| !is_loopback_url(&wechat.base_url))
                    .map(|_| format!("merchants[{index}].wechat.base_url"));
                let alipay = merchant
                    .alipay
                    .as_ref()
                    .filter(|alipay| !is_loopback_url(&alipay.base_url))
                    .map(|_| format!("merchants[{index}].alipay.base_url"));
                wechat.or(alipay)
            })
    }

    /// The environment this configuration works in, as the ledger's mark
    /// records it: the sandbox or the real channels, and each merchant's
    /// channel accounts.
    pub fn environment_mark(&self) -> Result<EnvironmentMarked, ConfigError> {
        let merchants = self
            .merchants
            .iter()
            .enumerate()
            .map(|(index, merchant)| {
                let merchant_id = MerchantId::parse(&merchant.id).map_err(|error| {
                    ConfigError::new(format!("merchants[{index}].id"), error.to_string())
                })?;
                Ok(MerchantAccounts {
                    merchant_id,
                    wechat: merchant.wechat.as_ref().map(|wechat| WechatAccount {
                        mch_id: wechat.mch_id.clone(),
                        sub_mch_id: wechat.sub_mch_id.clone(),
                    }),
                    alipay: merchant.alipay.as_ref().map(|alipay| AlipayAccount {
                        app_id: alipay.app_id.clone(),
                        app_auth_token: alipay.app_auth_token_file.is_some(),
                    }),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        Ok(EnvironmentMarked {
            sandbox: !self.talks_to_real_channels(),
            merchants,
        })
    }

    /// A path from the file, anchored at the file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        resolve(&self.base_dir, path)
    }
}

/// A SHA-256 digest written as 64 hex digits (either case).
fn parse_sha256(text: &str) -> Option<auth::KeyDigest> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
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

[[merchants.keys]]
name = "audit-team"
role = "auditor"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

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

    /// The contract's example with a key of its own instead of the demo key.
    fn example() -> String {
        CONTRACT_EXAMPLE.replace("sk_test_demo", "sk_live_0123456789abcdef")
    }

    fn refused(text: &str) -> ConfigError {
        Config::parse(text, PathBuf::from("/etc/paycode")).unwrap_err()
    }

    #[test]
    fn the_contract_example_parses() {
        let config = Config::parse(&example(), PathBuf::from("/etc/paycode")).unwrap();
        let key = &config.merchants[0].keys[0];
        assert_eq!((key.name.as_str(), key.role), ("audit-team", Role::Auditor));
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
        let half_cert = example().replace("cert_key_file = \"secrets/apiclient_key.pem\"\n", "");
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
        let bad_id = example().replace("id = \"demo\"", "id = \"de mo\"");
        assert_eq!(
            Config::parse(&bad_id, PathBuf::new()).unwrap_err().setting,
            "merchants[0].id"
        );
    }

    #[test]
    fn the_demo_key_is_refused_with_the_real_channels() {
        // The contract's example as written: sk_test_demo with https channel URLs.
        let error = refused(CONTRACT_EXAMPLE);
        assert_eq!(error.setting, "merchants[0].api_keys");
        assert!(error.reason.contains("public demo key"), "{error}");
        // Given by its SHA-256 it is the same key.
        let by_digest = example().replace(
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            &hex::encode(auth::digest(embedded::DEMO_API_KEY)),
        );
        assert_eq!(refused(&by_digest).setting, "merchants[0].keys[0].sha256");
        // With the sandbox (in-process, or channels on loopback addresses) it is the demo key.
        assert!(Config::embedded().merchants[0].api_keys.len() == 1);
        let loopback = CONTRACT_EXAMPLE
            .replace("https://api.mch.weixin.qq.com", "http://127.0.0.1:8081")
            .replace(
                "https://openapi.alipay.com/gateway.do",
                "http://localhost:8081/gateway.do",
            );
        assert!(Config::parse(&loopback, PathBuf::new()).is_ok());
    }

    #[test]
    fn keys_have_a_name_a_role_and_never_their_text_in_the_file() {
        let keys = |entry: &str| {
            example().replace(
                "name = \"audit-team\"\nrole = \"auditor\"\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
                entry,
            )
        };
        let plain = refused(&keys(
            "name = \"till\"\nrole = \"payments\"\nkey = \"sk_live_plain_text\"\n",
        ));
        assert_eq!(plain.setting, "merchants[0].keys[0].key");
        assert!(plain.reason.contains("sha256sum"), "{plain}");
        assert!(!plain.to_string().contains("sk_live_plain_text"), "{plain}");
        assert_eq!(
            refused(&keys("name = \"till\"\nrole = \"payments\"\n")).setting,
            "merchants[0].keys[0].sha256"
        );
        assert_eq!(
            refused(&keys(
                "name = \"till\"\nrole = \"payments\"\nsha256 = \"00\"\nkey_file = \"k\"\n"
            ))
            .setting,
            "merchants[0].keys[0].sha256"
        );
        assert_eq!(
            refused(&keys(
                "name = \"till\"\nrole = \"payments\"\nsha256 = \"abc\"\n"
            ))
            .setting,
            "merchants[0].keys[0].sha256"
        );
        assert_eq!(
            refused(&keys(
                "name = \"a b\"\nrole = \"payments\"\nkey_file = \"k\"\n"
            ))
            .setting,
            "merchants[0].keys[0].name"
        );
        let bad_role = refused(&keys(
            "name = \"till\"\nrole = \"admin\"\nkey_file = \"k\"\n",
        ));
        assert!(
            bad_role.setting.starts_with("paycode.toml line "),
            "{bad_role}"
        );
        assert!(bad_role.reason.contains("reconciliation"), "{bad_role}");
        let full = refused(&keys(
            "name = \"till\"\nrole = \"full\"\nkey_file = \"k\"\n",
        ));
        assert!(full.setting.starts_with("paycode.toml line "), "{full}");
        let twice = keys(
            "name = \"till\"\nrole = \"payments\"\nkey_file = \"k1\"\n\n[[merchants.keys]]\nname = \"till\"\nrole = \"auditor\"\nkey_file = \"k2\"\n",
        );
        assert_eq!(refused(&twice).setting, "merchants[0].keys[1].name");
        // A key only in [[merchants.keys]] is enough.
        let only_keys = example().replace("api_keys = [\"sk_live_0123456789abcdef\"]\n", "");
        assert!(Config::parse(&only_keys, PathBuf::new()).is_ok());
        let none = format!(
            "[[merchants]]\nid = \"shop\"\n{}",
            wechat("1900000000", None)
        );
        assert_eq!(refused(&none).setting, "merchants[0].api_keys");
    }

    #[test]
    fn the_app_auth_token_is_never_written_in_the_file() {
        let token = example().replace(
            "base_url = \"https://openapi.alipay.com/gateway.do\"",
            "base_url = \"https://openapi.alipay.com/gateway.do\"\napp_auth_token = \"202611BBa1b2c3\"",
        );
        let error = refused(&token);
        assert_eq!(error.setting, "merchants[0].alipay.app_auth_token");
        assert!(error.reason.contains("app_auth_token_file"), "{error}");
        assert!(!error.to_string().contains("202611BBa1b2c3"), "{error}");
        let file = token.replace("app_auth_token = ", "app_auth_token_file = ");
        let config = Config::parse(&file, PathBuf::from("/etc/paycode")).unwrap();
        assert_eq!(
            config.merchants[0]
                .alipay
                .as_ref()
                .unwrap()
                .app_auth_token_file,
            Some(PathBuf::from("202611BBa1b2c3"))
        );
    }

    /// Two merchants, `shop` then `cafe`, with the channel sections given.
    fn two_merchants(shop: &str, cafe: &str) -> String {
        format!(
            "[[merchants]]\nid = \"shop\"\napi_keys = [\"sk_live_shop_00001\"]\n{shop}\n[[merchants]]\nid = \"cafe\"\napi_keys = [\"sk_live_cafe_00001\"]\n{cafe}"
        )
    }

    fn wechat(mch_id: &str, sub_mch_id: Option<&str>) -> String {
        let sub = sub_mch_id.map_or(String::new(), |sub| format!("sub_mch_id = \"{sub}\"\n"));
        format!(
            "[merchants.wechat]\nappid = \"wx0000000000000000\"\nmch_id = \"{mch_id}\"\nkey_file = \"k\"\n{sub}"
        )
    }

    fn alipay(app_id: &str, token_file: Option<&str>) -> String {
        let token = token_file.map_or(String::new(), |file| {
            format!("app_auth_token_file = \"{file}\"\n")
        });
        format!(
            "[merchants.alipay]\napp_id = \"{app_id}\"\nprivate_key_file = \"p\"\nalipay_public_key_file = \"a\"\n{token}"
        )
    }

    #[test]
    fn two_merchants_on_one_channel_account_are_refused() {
        let parse = |text: String| Config::parse(&text, PathBuf::from("/etc/paycode"));
        let same = parse(two_merchants(
            &wechat("1900000000", None),
            &wechat("1900000000", None),
        ))
        .unwrap_err();
        assert_eq!(same.setting, "merchants[1].wechat.mch_id");
        assert!(same.reason.contains("merchants[0] (shop)"), "{same}");
        let same_sub = parse(two_merchants(
            &wechat("1900000000", Some("1900000109")),
            &wechat("1900000000", Some("1900000109")),
        ));
        assert_eq!(same_sub.unwrap_err().setting, "merchants[1].wechat.mch_id");
        // Service-provider mode: one mch_id, two sub-merchants, are two accounts.
        assert!(
            parse(two_merchants(
                &wechat("1900000000", Some("1900000109")),
                &wechat("1900000000", Some("1900000110")),
            ))
            .is_ok()
        );
        let same_app = parse(two_merchants(
            &alipay("2021000000000000", None),
            &alipay("2021000000000000", None),
        ));
        assert_eq!(same_app.unwrap_err().setting, "merchants[1].alipay.app_id");
        let same_token = parse(two_merchants(
            &alipay("2021000000000000", Some("shop.token")),
            &alipay("2021000000000000", Some("./shop.token")),
        ));
        assert_eq!(
            same_token.unwrap_err().setting,
            "merchants[1].alipay.app_auth_token_file"
        );
        assert!(
            parse(two_merchants(
                &alipay("2021000000000000", Some("shop.token")),
                &alipay("2021000000000000", Some("cafe.token")),
            ))
            .is_ok()
        );
    }

    #[test]
    fn the_environment_a_configuration_marks() {
        let real = Config::parse(&example(), PathBuf::new()).unwrap();
        let mark = real.environment_mark().unwrap();
        assert!(!mark.sandbox);
        assert_eq!(mark.merchants[0].merchant_id.as_str(), "demo");
        assert_eq!(
            mark.merchants[0].wechat,
            Some(WechatAccount {
                mch_id: "1900000000".to_owned(),
                sub_mch_id: None
            })
        );
        assert_eq!(
            mark.merchants[0].alipay,
            Some(AlipayAccount {
                app_id: "2021000000000000".to_owned(),
                app_auth_token: false
            })
        );
        assert!(Config::embedded().environment_mark().unwrap().sandbox);
        let loopback = example()
            .replace("https://api.mch.weixin.qq.com", "http://127.0.0.1:8081")
            .replace(
                "https://openapi.alipay.com/gateway.do",
                "http://127.0.0.1:8081/gateway.do",
            );
        let loopback = Config::parse(&loopback, PathBuf::new()).unwrap();
        assert!(loopback.environment_mark().unwrap().sandbox);
        assert_eq!(loopback.first_real_channel_setting(), None);
        assert_eq!(
            real.first_real_channel_setting().as_deref(),
            Some("merchants[0].wechat.base_url")
        );
    }
}
