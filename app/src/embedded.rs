//! The embedded defaults of `paycode serve` without a configuration file:
//! SQLite in `./paycode.db` (read models in `./paycode-views.db`), the
//! sandbox playing both channels in-process (its truth in `./sandbox.db`,
//! beside the ledger), merchant `demo` with API key `sk_test_demo`,
//! listening on 127.0.0.1:8080. Credentials between the
//! ledger and its in-process sandbox are generated at each start; nothing
//! secret is written to disk.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use paycode_adapters::alipay::{AlipayClient, AlipayConfig};
use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::clock::{Clock, SystemClock};
use paycode_adapters::lease::SqliteLeases;
use paycode_adapters::store::SqliteStore;
use paycode_adapters::wechat::{ApiKey as WechatKey, SignType, WechatClient, WechatConfig};
use paycode_domain::{MerchantId, Policy};
use paycode_sandbox::{
    Sandbox, SandboxAlipay, SandboxConfig, SandboxMerchant, SandboxWechat,
    generate_rsa_key_pair_pem,
};

use crate::http::ApiKey;
use crate::runtime::Channels;
use crate::service::{Parts, REQUESTS_PER_SEC_DEFAULT, Service};

pub const DEMO_MERCHANT: &str = "demo";
pub const DEMO_API_KEY: &str = "sk_test_demo";
pub const DEMO_WECHAT_APPID: &str = "wx0000000000000000";
pub const DEMO_WECHAT_MCH_ID: &str = "1900000000";
pub const DEMO_ALIPAY_APP_ID: &str = "2021000000000000";
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8080";

/// Where the embedded defaults keep their files.
#[derive(Debug, Clone)]
pub struct EmbeddedPaths {
    pub ledger: PathBuf,
    pub sandbox_state: PathBuf,
}

impl Default for EmbeddedPaths {
    fn default() -> Self {
        EmbeddedPaths {
            ledger: PathBuf::from("paycode.db"),
            sandbox_state: PathBuf::from("sandbox.db"),
        }
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
    pub faults: paycode_sandbox::Faults,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            state_path: None,
            client_timeout: std::time::Duration::from_secs(10),
            slow_answer: paycode_sandbox::SLOW_ANSWER_DEFAULT,
            rate_limits: None,
            state_durable: true,
            faults: paycode_sandbox::Faults::default(),
        }
    }
}

/// The sandbox and the demo merchant's clients pointing at it.
pub async fn sandbox_and_channels(
    options: SandboxOptions,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Sandbox, Channels, tokio::task::JoinHandle<()>, String)> {
    let wechat_key = fresh_wechat_key();
    let (app_private, app_public) = generate_rsa_key_pair_pem();
    let (sandbox_private, sandbox_public) = generate_rsa_key_pair_pem();
    let merchants = vec![SandboxMerchant {
        wechat: Some(SandboxWechat {
            appid: DEMO_WECHAT_APPID.into(),
            mch_id: DEMO_WECHAT_MCH_ID.into(),
            key: wechat_key.clone(),
            sign_type: SignType::HmacSha256,
        }),
        alipay: Some(SandboxAlipay {
            app_id: DEMO_ALIPAY_APP_ID.into(),
            app_public_key_pem: app_public,
        }),
    }];
    let mut config = SandboxConfig::new(merchants, sandbox_private);
    config.state_path = options.state_path;
    config.slow_answer = options.slow_answer;
    config.faults = options.faults;
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
    let mut wechat = WechatConfig::new(
        DEMO_WECHAT_APPID,
        DEMO_WECHAT_MCH_ID,
        WechatKey::new(wechat_key),
        base_url.clone(),
    );
    wechat.sign_type = SignType::HmacSha256;
    wechat.timeout = options.client_timeout;
    if let Some(limits) = options.rate_limits {
        wechat.rate_limits = limits;
    }
    let mut alipay = AlipayConfig::new(
        DEMO_ALIPAY_APP_ID,
        app_private,
        sandbox_public,
        format!("{base_url}/gateway.do"),
    );
    alipay.timeout = options.client_timeout;
    if let Some(limits) = options.rate_limits {
        alipay.rate_limits = limits;
    }
    let merchant = MerchantId::parse(DEMO_MERCHANT).expect("demo is a merchant id");
    let mut channels = Channels::default();
    channels.insert(merchant.clone(), Arc::new(WechatClient::new(wechat)?));
    channels.insert(merchant, Arc::new(AlipayClient::new(alipay)?));
    Ok((sandbox, channels, server, base_url))
}

/// `paycode serve` without a configuration file.
pub async fn serve(
    paths: EmbeddedPaths,
    listen: &str,
    log_format: crate::config::LogFormat,
) -> anyhow::Result<()> {
    crate::cli::init_logging(log_format);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(
        SqliteStore::open(&paths.ledger)
            .with_context(|| format!("opening the ledger {}", paths.ledger.display()))?,
    );
    let leases = Arc::new(SqliteLeases::open(&paths.ledger)?);
    let (_sandbox, channels, _sandbox_server, sandbox_url) = sandbox_and_channels(
        SandboxOptions {
            state_path: Some(paths.sandbox_state.clone()),
            ..SandboxOptions::default()
        },
        clock.clone(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let parts = Parts {
        store,
        channels,
        clock,
        policy: Policy::default(),
        api_keys: vec![ApiKey {
            key: DEMO_API_KEY.into(),
            merchant: MerchantId::parse(DEMO_MERCHANT)?,
        }],
        requests_per_sec: REQUESTS_PER_SEC_DEFAULT,
        leases,
    };
    let views_path =
        paycode_adapters::read_models::SqliteReadModelStore::path_beside(&paths.ledger);
    let views = crate::projection_runner::open_read_models(&views_path)
        .with_context(|| format!("opening the read models {}", views_path.display()))?;
    let service = Service::start_with_views(parts, Some(views))
        .await
        .context("recovering pending orders from the log")?;
    println!("paycode: no --config given, running on the embedded defaults:");
    println!("  ledger      SQLite {}", paths.ledger.display());
    println!("  read models SQLite {}", views_path.display());
    println!(
        "  channels    the sandbox, in-process at {sandbox_url} (its truth in {})",
        paths.sandbox_state.display()
    );
    println!("  merchant    {DEMO_MERCHANT}, API key {DEMO_API_KEY}");
    println!("  listening   http://{}", listener.local_addr()?);
    println!(
        "  resumed     {} pending order(s)",
        service.recovered_orders
    );
    println!(
        "try: curl -s -H 'Authorization: Bearer {DEMO_API_KEY}' -d '{{\"order_no\":\"A1\",\"auth_code\":\"134567890123456700\",\"amount\":\"12.34\",\"subject\":\"Coffee\"}}' 'http://{}/v1/payments?wait=10'",
        listener.local_addr()?
    );
    service
        .serve(listener, crate::cli::shutdown_signal())
        .await?;
    Ok(())
}
