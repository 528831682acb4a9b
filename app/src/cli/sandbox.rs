//! `paycode sandbox [--listen ADDR] [--config paycode.toml]`: only the
//! simulated channels, for the merchants of the configuration. One listener
//! serves both: WeChat at the real paths and Alipay at `/gateway.do`, so a
//! merchant's `base_url` is the sandbox's address. Without `--config` it
//! plays the demo merchant and writes that merchant's credentials, with a
//! ready `paycode.toml`, into `./sandbox-demo/` (local files, never secrets
//! of a real merchant).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paycode_adapters::clock::SystemClock;
use paycode_adapters::wechat::{ApiKey as WechatKey, SignType};
use paycode_sandbox::{
    Sandbox, SandboxAlipay, SandboxConfig, SandboxMerchant, SandboxWechat,
    generate_rsa_key_pair_pem, public_key_pem_of_private_pem,
};

use paycode::config::embedded::{
    DEMO_ALIPAY_APP_ID, DEMO_API_KEY, DEMO_MERCHANT, DEMO_WECHAT_APPID, DEMO_WECHAT_MCH_ID,
};
use paycode::config::{Config, SignTypeSetting};

/// Where the sandbox listens when neither `--listen` nor `[sandbox] listen` says.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8081";

fn read_text(config: &Config, path: &Path, setting: &str) -> anyhow::Result<String> {
    let path = config.resolve(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{setting}: cannot read {}", path.display()))?;
    Ok(text)
}

/// The sandbox's view of the configured merchants, its signing key, and what it wrote.
fn from_config(config: &Config) -> anyhow::Result<(SandboxConfig, Vec<String>)> {
    let sandbox = config.sandbox.clone().unwrap_or_default();
    let mut notes = Vec::new();
    let (private_pem, public_pem) = match &sandbox.alipay_private_key_file {
        Some(path) => {
            let private_pem = read_text(config, path, "sandbox.alipay_private_key_file")?;
            let public_pem = public_key_pem_of_private_pem(&private_pem)
                .map_err(|error| anyhow::anyhow!("sandbox.alipay_private_key_file: {error}"))?;
            (private_pem, public_pem)
        }
        None => generate_rsa_key_pair_pem(),
    };
    let mut merchants = Vec::new();
    for (index, merchant) in config.merchants.iter().enumerate() {
        let wechat = match &merchant.wechat {
            Some(settings) => {
                let setting = format!("merchants[{index}].wechat.key_file");
                let key = read_text(config, &settings.key_file, &setting)?;
                Some(SandboxWechat {
                    appid: settings.appid.clone(),
                    mch_id: settings.mch_id.clone(),
                    key: WechatKey::from(key.trim_end_matches(['\n', '\r'])),
                    sign_type: match settings.sign_type {
                        SignTypeSetting::Md5 => SignType::Md5,
                        SignTypeSetting::HmacSha256 => SignType::HmacSha256,
                    },
                })
            }
            None => None,
        };
        let alipay = match &merchant.alipay {
            Some(settings) => {
                let setting = format!("merchants[{index}].alipay.private_key_file");
                let app_private = read_text(config, &settings.private_key_file, &setting)?;
                let app_public = public_key_pem_of_private_pem(&app_private)
                    .map_err(|error| anyhow::anyhow!("{setting}: {error}"))?;
                if sandbox.alipay_private_key_file.is_none() {
                    // The merchant must verify the sandbox's answers with the key just made.
                    let target = config.resolve(&settings.alipay_public_key_file);
                    std::fs::write(&target, &public_pem).with_context(|| {
                        format!(
                            "merchants[{index}].alipay.alipay_public_key_file: cannot write {}",
                            target.display()
                        )
                    })?;
                    notes.push(format!(
                        "wrote the sandbox's Alipay public key to {}",
                        target.display()
                    ));
                }
                Some(SandboxAlipay {
                    app_id: settings.app_id.clone(),
                    app_public_key_pem: app_public,
                })
            }
            None => None,
        };
        merchants.push(SandboxMerchant { wechat, alipay });
    }
    let mut sandbox_config = SandboxConfig::new(merchants, private_pem);
    sandbox_config.state_path = Some(
        config.resolve(
            &sandbox
                .state_path
                .clone()
                .unwrap_or_else(|| PathBuf::from("sandbox.db")),
        ),
    );
    sandbox_config.faults = sandbox.faults();
    sandbox_config.seed = sandbox.seed;
    if let Some(ms) = sandbox.slow_answer_ms {
        sandbox_config.slow_answer = Duration::from_millis(ms);
    }
    Ok((sandbox_config, notes))
}

/// Writes the demo merchant's credentials and a `paycode.toml` using them into `dir`.
fn write_demo(dir: &Path, listen: SocketAddr) -> anyhow::Result<Config> {
    use rand::Rng;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let (app_private, _) = generate_rsa_key_pair_pem();
    std::fs::write(dir.join("wechat_v2.key"), key)?;
    std::fs::write(dir.join("alipay_app_private_key.pem"), app_private)?;
    let toml = format!(
        r#"# Written by `paycode sandbox` for its demo merchant. Run the ledger against it with
# `paycode serve --config {dir}/paycode.toml` (after moving [server] listen if 8080 is taken).
[store]
path = "paycode.db"

[[merchants]]
id = "{DEMO_MERCHANT}"
api_keys = ["{DEMO_API_KEY}"]

[merchants.wechat]
appid = "{DEMO_WECHAT_APPID}"
mch_id = "{DEMO_WECHAT_MCH_ID}"
key_file = "wechat_v2.key"
sign_type = "HMAC-SHA256"
base_url = "http://{listen}"

[merchants.alipay]
app_id = "{DEMO_ALIPAY_APP_ID}"
private_key_file = "alipay_app_private_key.pem"
alipay_public_key_file = "alipay_public_key.pem"
base_url = "http://{listen}/gateway.do"

[sandbox]
state_path = "sandbox.db"
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("paycode.toml"), &toml)?;
    Config::parse(&toml, dir.to_owned()).map_err(anyhow::Error::from)
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
pub async fn run(config: Option<Config>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    paycode::service::init_logging(paycode::config::LogFormat::Text);
    let listen = listen
        .or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.sandbox.as_ref())
                .and_then(|s| s.listen)
        })
        .unwrap_or_else(|| LISTEN_DEFAULT.parse().expect("a socket address"));
    let config = if let Some(config) = config {
        config
    } else {
        let dir = PathBuf::from("sandbox-demo");
        let config = write_demo(&dir, listen)?;
        println!(
            "paycode sandbox: no --config given; playing the demo merchant, with its credentials and a ready paycode.toml in {}",
            dir.display()
        );
        config
    };
    let (sandbox_config, notes) = from_config(&config)?;
    let state = sandbox_config.state_path.clone();
    let sandbox =
        Sandbox::open(sandbox_config, Arc::new(SystemClock)).context("opening the sandbox")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    for note in notes {
        println!("paycode sandbox: {note}");
    }
    println!(
        "paycode sandbox: {} merchant(s); WeChat at http://{address} (/pay/micropay, ...), Alipay at http://{address}/gateway.do; truth in {}",
        config.merchants.len(),
        state.map_or_else(|| "memory".into(), |p| p.display().to_string()),
    );
    axum::serve(listener, sandbox.router())
        .with_graceful_shutdown(paycode::service::shutdown_signal())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_signing_key_it_makes_one_and_hands_the_merchant_its_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let demo = write_demo(dir.path(), "127.0.0.1:18081".parse().unwrap()).unwrap();
        assert_eq!(demo.merchants[0].id, DEMO_MERCHANT);
        let (sandbox, notes) = from_config(&demo).unwrap();
        let public_file = dir.path().join("alipay_public_key.pem");
        let written = std::fs::read_to_string(&public_file).unwrap();
        assert!(
            written.starts_with("-----BEGIN PUBLIC KEY-----"),
            "{written:.40}"
        );
        assert_eq!(notes.len(), 1, "it says so: {notes:?}");
        assert_eq!(sandbox.merchants.len(), 1);
        let wechat = sandbox.merchants[0].wechat.as_ref().unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&wechat.key).len(),
            32,
            "the merchant's key file, read"
        );
        assert_eq!(sandbox.state_path, Some(dir.path().join("sandbox.db")));
        // The written configuration is one the ledger accepts as it is.
        let channels = paycode::config::clients::build(&demo).unwrap();
        let keys = paycode::config::clients::api_keys(&demo).unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&keys[0].key),
            DEMO_API_KEY
        );
        let merchant = paycode_domain::MerchantId::parse(DEMO_MERCHANT).unwrap();
        assert!(
            channels
                .get(&merchant, paycode_domain::Channel::Alipay)
                .is_some()
        );
    }
}
