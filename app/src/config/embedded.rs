//! The embedded defaults, and the in-process sandbox they run on.
//!
//! Without `--config`, `paycode` runs on [`Config::embedded`]: an ordinary
//! configuration value (the TOML text below), so every command has one path
//! whether or not a file was given. It asks for SQLite in `./paycode.db`,
//! merchant `demo` with API key `sk_test_demo`, `127.0.0.1:8080`, and
//! `[sandbox] in_process = true`: the sandbox plays both channels inside
//! the process (its truth in `./sandbox.db`), for every configured merchant,
//! with credentials generated at each start. Nothing secret is written to
//! disk.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use paycode_adapters::alipay::{AlipayClient, AlipayConfig};
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::clock::Clock;
use paycode_adapters::wechat::{ApiKey as WechatKey, SignType, WechatClient, WechatConfig};
use paycode_domain::MerchantId;
use paycode_sandbox::{
    Faults, Sandbox, SandboxAlipay, SandboxConfig, SandboxMerchant, SandboxWechat,
    generate_rsa_key_pair_pem,
};

use super::Config;
use crate::service::runtime::Channels;

pub const DEMO_MERCHANT: &str = "demo";
pub const DEMO_API_KEY: &str = "sk_test_demo";
pub const DEMO_WECHAT_APPID: &str = "wx0000000000000000";
pub const DEMO_WECHAT_MCH_ID: &str = "1900000000";
pub const DEMO_ALIPAY_APP_ID: &str = "2021000000000000";

/// The embedded defaults, as the configuration file they amount to.
pub const EMBEDDED_CONFIG: &str = r#"[server]
listen = "127.0.0.1:8080"

[store]
kind = "sqlite"
path = "paycode.db"

[[merchants]]
id = "demo"
api_keys = ["sk_test_demo"]

[sandbox]
in_process = true
state_path = "sandbox.db"
"#;

impl Config {
    /// The configuration `paycode` runs on without `--config`: paths are
    /// relative to the current directory.
    pub fn embedded() -> Config {
        let mut config = Config::parse(EMBEDDED_CONFIG, PathBuf::new())
            .unwrap_or_else(|error| unreachable!("the embedded configuration parses: {error}"));
        config.embedded = true;
        config
    }

    /// Whether the channels are the in-process sandbox (`[sandbox] in_process`).
    pub fn sandbox_in_process(&self) -> bool {
        self.sandbox
            .as_ref()
            .is_some_and(|sandbox| sandbox.in_process)
    }
}

/// A 32-character WeChat API key for the in-process sandbox, fresh at each start.
fn fresh_wechat_key() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// How the in-process sandbox and its clients behave; tests shorten the waits.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The sandbox's truth; in memory when `None`.
    pub state_path: Option<PathBuf>,
    /// How long one channel call may take before its outcome is unknown.
    pub client_timeout: std::time::Duration,
    /// How long the sandbox holds the answer of code `05`.
    pub slow_answer: std::time::Duration,
    /// The clients' per-API limits; each channel's documented defaults when `None`.
    pub rate_limits: Option<RateLimits>,
    /// Whether the truth file is synced on every change (true by default).
    pub state_durable: bool,
    /// Misbehaviour and statement defects to plant (none by default).
    pub faults: Faults,
    /// The seed of the fault draws.
    pub seed: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            state_path: None,
            client_timeout: std::time::Duration::from_secs(10),
            slow_answer: paycode_sandbox::SLOW_ANSWER_DEFAULT,
            rate_limits: None,
            state_durable: true,
            faults: Faults::default(),
            seed: 0,
        }
    }
}

impl SandboxOptions {
    /// The options a configuration's `[sandbox]` section asks for.
    pub fn from_config(config: &Config) -> SandboxOptions {
        let sandbox = config.sandbox.clone().unwrap_or_default();
        let defaults = SandboxOptions::default();
        SandboxOptions {
            state_path: sandbox.state_path.as_ref().map(|path| config.resolve(path)),
            slow_answer: sandbox
                .slow_answer_ms
                .map_or(defaults.slow_answer, std::time::Duration::from_millis),
            faults: sandbox.faults(),
            seed: sandbox.seed,
            ..defaults
        }
    }
}

/// The sandbox running in this process, and the clients that talk to it.
#[derive(Debug)]
pub struct InProcessSandbox {
    pub sandbox: Sandbox,
    /// Each merchant's WeChat and Alipay clients, pointing at the sandbox.
    pub channels: Channels,
    /// Where it listens: `http://127.0.0.1:PORT`.
    pub base_url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for InProcessSandbox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl InProcessSandbox {
    /// Starts the sandbox on 127.0.0.1 (a free port) for `merchants`, each
    /// with fresh credentials shared with its clients. The first merchant
    /// gets the demo merchant's account numbers; the next ones count up.
    pub async fn start(
        merchants: &[MerchantId],
        options: SandboxOptions,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<InProcessSandbox> {
        let (sandbox_private, sandbox_public) = generate_rsa_key_pair_pem();
        let mut played = Vec::with_capacity(merchants.len());
        let mut credentials = Vec::with_capacity(merchants.len());
        for index in 0..merchants.len() as u64 {
            let account = Account::numbered(index);
            let wechat_key = fresh_wechat_key();
            let (app_private, app_public) = generate_rsa_key_pair_pem();
            played.push(SandboxMerchant {
                wechat: Some(SandboxWechat {
                    appid: account.wechat_appid.clone(),
                    mch_id: account.wechat_mch_id.clone(),
                    key: WechatKey::from(wechat_key.clone()),
                    sign_type: SignType::HmacSha256,
                }),
                alipay: Some(SandboxAlipay {
                    app_id: account.alipay_app_id.clone(),
                    app_public_key_pem: app_public,
                }),
            });
            credentials.push((account, wechat_key, app_private));
        }
        let mut config = SandboxConfig::new(played, sandbox_private);
        config.state_path = options.state_path;
        config.slow_answer = options.slow_answer;
        config.faults = options.faults;
        config.seed = options.seed;
        config.state_durable = options.state_durable;
        let sandbox = Sandbox::open(config, clock).context("opening the sandbox")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the sandbox")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let router = sandbox.router();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let mut channels = Channels::default();
        for (merchant, (account, wechat_key, app_private)) in merchants.iter().zip(credentials) {
            let mut wechat = WechatConfig::new(
                account.wechat_appid,
                account.wechat_mch_id,
                WechatKey::from(wechat_key),
                base_url.clone(),
            );
            wechat.sign_type = SignType::HmacSha256;
            wechat.timeout = options.client_timeout;
            let mut alipay = AlipayConfig::new(
                account.alipay_app_id,
                app_private,
                sandbox_public.clone(),
                format!("{base_url}/gateway.do"),
            );
            alipay.timeout = options.client_timeout;
            if let Some(limits) = options.rate_limits {
                wechat.rate_limits = limits;
                alipay.rate_limits = limits;
            }
            channels.insert(merchant.clone(), Arc::new(WechatClient::new(wechat)?));
            channels.insert(merchant.clone(), Arc::new(AlipayClient::new(alipay)?));
        }
        Ok(InProcessSandbox {
            sandbox,
            channels,
            base_url,
            server,
        })
    }

    /// The demo merchant alone, as the demo, the benchmarks and the tests run it.
    pub async fn for_demo(
        options: SandboxOptions,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<InProcessSandbox> {
        InProcessSandbox::start(&[demo_merchant()], options, clock).await
    }
}

/// The demo merchant's id.
pub fn demo_merchant() -> MerchantId {
    MerchantId::parse(DEMO_MERCHANT).unwrap_or_else(|_| unreachable!("demo is a merchant id"))
}

/// The channel account numbers the in-process sandbox gives a merchant.
#[derive(Debug, Clone)]
struct Account {
    wechat_appid: String,
    wechat_mch_id: String,
    alipay_app_id: String,
}

impl Account {
    /// The `index`-th merchant's: the demo's numbers, plus `index`.
    fn numbered(index: u64) -> Account {
        let bump = |base: &str| {
            let number: u64 = base
                .trim_start_matches("wx")
                .parse()
                .unwrap_or_else(|_| unreachable!("the demo account numbers are digits"));
            number + index
        };
        Account {
            wechat_appid: format!("wx{:016}", bump(DEMO_WECHAT_APPID)),
            wechat_mch_id: bump(DEMO_WECHAT_MCH_ID).to_string(),
            alipay_app_id: bump(DEMO_ALIPAY_APP_ID).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn the_embedded_defaults_are_a_configuration_like_any_other() {
        // Parsed from their TOML text: SQLite in ./paycode.db, the demo merchant, the in-process sandbox.
        let config = Config::embedded();
        assert_eq!(config.store.path, PathBuf::from("paycode.db"));
        assert_eq!(config.merchants[0].id, DEMO_MERCHANT);
        let keys = &config.merchants[0].api_keys;
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].expose_secret(), DEMO_API_KEY);
        assert!(config.sandbox_in_process());
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        let options = SandboxOptions::from_config(&config);
        assert_eq!(options.state_path, Some(PathBuf::from("sandbox.db")));
    }

    #[test]
    fn each_merchant_of_the_in_process_sandbox_has_its_own_accounts() {
        // The first is the demo's; the next ones count up, so no two share an account.
        let first = Account::numbered(0);
        assert_eq!(
            (
                first.wechat_appid.as_str(),
                first.wechat_mch_id.as_str(),
                first.alipay_app_id.as_str()
            ),
            (DEMO_WECHAT_APPID, DEMO_WECHAT_MCH_ID, DEMO_ALIPAY_APP_ID)
        );
        let second = Account::numbered(1);
        assert_eq!(
            (
                second.wechat_appid.as_str(),
                second.wechat_mch_id.as_str(),
                second.alipay_app_id.as_str()
            ),
            ("wx0000000000000001", "1900000001", "2021000000000001")
        );
    }
}
