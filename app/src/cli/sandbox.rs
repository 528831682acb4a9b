//! `paycode sandbox [--listen ADDR] [--config paycode.toml]`: only the
//! simulated channels, for the merchants of the configuration. One listener
//! serves both: WeChat at the real paths and Alipay at `/gateway.do`, so a
//! merchant's `base_url` is the sandbox's address. Without `--config` it
//! plays the demo merchant and writes that merchant's credentials, with a
//! ready `paycode.toml`, into `./sandbox-demo/` (local files, never secrets
//! of a real merchant).
//!
//! It never mixes with production: a configuration is played only when
//! every channel URL is this sandbox's ([`check_urls`]), and it never
//! writes over a file it did not create. Keys it makes are written with
//! mode 0600, to new files only; its own Alipay signing key (when
//! `[sandbox] alipay_private_key_file` is not given) is made once, beside
//! its state, and reused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paycode_adapters::alipay::sign::public_key_from_pem;
use paycode_adapters::channel::endpoint::is_loopback;
use paycode_adapters::clock::SystemClock;
use paycode_adapters::wechat::{ApiKey as WechatKey, SignType};
use paycode_sandbox::{
    Sandbox, SandboxAlipay, SandboxConfig, SandboxMerchant, SandboxWechat,
    generate_rsa_key_pair_pem, public_key_pem_of_private_pem,
};

use paycode::config::embedded::{
    DEMO_ALIPAY_APP_ID, DEMO_API_KEY, DEMO_MERCHANT, DEMO_WECHAT_APPID, DEMO_WECHAT_MCH_ID,
};
use paycode::config::secrets::{check_secret_files, create_private_file};
use paycode::config::{Config, ConfigError, SignTypeSetting};

/// Where the sandbox listens when neither `--listen` nor `[sandbox] listen` says.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8081";

/// The sandbox's truth when `[sandbox] state_path` is not given.
const STATE_DEFAULT: &str = "sandbox.db";

fn read_text(config: &Config, path: &Path, setting: &str) -> anyhow::Result<String> {
    let path = config.resolve(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{setting}: cannot read {}", path.display()))?;
    Ok(text)
}

/// The rule that tells a sandbox configuration from a production one:
/// every merchant's `base_url` is plain `http` to a loopback host
/// (127.0.0.0/8, `::1`, `localhost`) on the port the sandbox listens on;
/// WeChat's with no path, Alipay's with the path `/gateway.do`. Anything
/// else (the real channels, another host, another port) is refused, naming
/// the setting.
pub fn check_urls(config: &Config, listen: SocketAddr) -> Result<(), ConfigError> {
    let check = |setting: String, base_url: &str, path: &str| {
        let expected = format!("http://127.0.0.1:{}{path}", listen.port());
        let refuse = |why: &str| {
            ConfigError::new(
                &setting,
                format!(
                    "{why}; paycode sandbox plays only configurations whose channels are this sandbox (like {expected}), never a production configuration"
                ),
            )
        };
        let url = reqwest::Url::parse(base_url.trim()).map_err(|_| refuse("not a URL"))?;
        if url.scheme() != "http" || !is_loopback(&url) {
            return Err(refuse("not plain http to a loopback address"));
        }
        if url.port_or_known_default() != Some(listen.port()) {
            return Err(refuse(&format!(
                "not the port the sandbox listens on ({})",
                listen.port()
            )));
        }
        let url_path = url.path().trim_end_matches('/');
        if url_path != path || url.query().is_some() {
            return Err(refuse(&format!("the path must be {path:?}")));
        }
        Ok(())
    };
    for (index, merchant) in config.merchants.iter().enumerate() {
        if let Some(wechat) = &merchant.wechat {
            check(
                format!("merchants[{index}].wechat.base_url"),
                &wechat.base_url,
                "",
            )?;
        }
        if let Some(alipay) = &merchant.alipay {
            check(
                format!("merchants[{index}].alipay.base_url"),
                &alipay.base_url,
                "/gateway.do",
            )?;
        }
    }
    Ok(())
}

/// The sandbox's truth file.
fn state_path(config: &Config) -> PathBuf {
    let sandbox = config.sandbox.clone().unwrap_or_default();
    config.resolve(
        &sandbox
            .state_path
            .unwrap_or_else(|| PathBuf::from(STATE_DEFAULT)),
    )
}

/// Where the sandbox keeps the Alipay key it made: beside its truth
/// (`sandbox.db` → `sandbox-alipay-key.pem`).
pub fn own_key_path(config: &Config) -> PathBuf {
    let state = state_path(config);
    let stem = state.file_stem().map_or_else(
        || "sandbox".into(),
        |stem| stem.to_string_lossy().into_owned(),
    );
    state.with_file_name(format!("{stem}-alipay-key.pem"))
}

/// The sandbox's Alipay signing key, private and public PEM: the configured
/// one, or its own (made once, to a new file, 0600).
fn signing_key(config: &Config, notes: &mut Vec<String>) -> anyhow::Result<(String, String)> {
    let configured = config
        .sandbox
        .as_ref()
        .and_then(|sandbox| sandbox.alipay_private_key_file.as_ref());
    let (private_pem, setting) = if let Some(path) = configured {
        (
            read_text(config, path, "sandbox.alipay_private_key_file")?,
            "sandbox.alipay_private_key_file".to_owned(),
        )
    } else {
        let path = own_key_path(config);
        let setting = format!("the sandbox's own key {}", path.display());
        if path.exists() {
            (
                std::fs::read_to_string(&path).with_context(|| format!("cannot read {setting}"))?,
                setting,
            )
        } else {
            let (private_pem, _) = generate_rsa_key_pair_pem();
            create_private_file(&path, private_pem.as_bytes())
                .with_context(|| format!("cannot create {setting}"))?;
            notes.push(format!(
                "made the sandbox's Alipay signing key in {}",
                path.display()
            ));
            (private_pem, setting)
        }
    };
    let public_pem = public_key_pem_of_private_pem(&private_pem)
        .map_err(|error| anyhow::anyhow!("{setting}: {error}"))?;
    Ok((private_pem, public_pem))
}

/// Hands a merchant the sandbox's public key: writes it to
/// `alipay_public_key_file` when that file does not exist (0600). An
/// existing file must already hold it: it is never written over.
fn hand_public_key(
    config: &Config,
    index: usize,
    file: &Path,
    public_pem: &str,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    let setting = format!("merchants[{index}].alipay.alipay_public_key_file");
    let target = config.resolve(file);
    match std::fs::read_to_string(&target) {
        Ok(existing) => {
            let same = public_key_from_pem(&existing)
                .ok()
                .zip(public_key_from_pem(public_pem).ok())
                .is_some_and(|(existing, ours)| existing == ours);
            anyhow::ensure!(
                same,
                "{setting}: {} holds another key than the sandbox's, and paycode sandbox never writes over a file it did not create. Give [sandbox] alipay_private_key_file (the key whose public half that file holds), or name a new file",
                target.display()
            );
            Ok(())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            create_private_file(&target, public_pem.as_bytes())
                .with_context(|| format!("{setting}: cannot create {}", target.display()))?;
            notes.push(format!(
                "wrote the sandbox's Alipay public key to {}",
                target.display()
            ));
            Ok(())
        }
        Err(error) => {
            Err(error).with_context(|| format!("{setting}: cannot read {}", target.display()))
        }
    }
}

/// The sandbox's view of the configured merchants, its signing key, and what it wrote.
fn from_config(config: &Config) -> anyhow::Result<(SandboxConfig, Vec<String>)> {
    let sandbox = config.sandbox.clone().unwrap_or_default();
    let mut notes = Vec::new();
    let (private_pem, public_pem) = signing_key(config, &mut notes)?;
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
                    // The merchant must verify the sandbox's answers with its key.
                    hand_public_key(
                        config,
                        index,
                        &settings.alipay_public_key_file,
                        &public_pem,
                        &mut notes,
                    )?;
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
    sandbox_config.state_path = Some(state_path(config));
    sandbox_config.faults = sandbox.faults();
    sandbox_config.seed = sandbox.seed;
    if let Some(ms) = sandbox.slow_answer_ms {
        sandbox_config.slow_answer = Duration::from_millis(ms);
    }
    Ok((sandbox_config, notes))
}

/// The demo merchant's configuration in `dir`: the one written there
/// before, or a new one with fresh credentials (each a new file, 0600;
/// nothing is ever written over).
fn write_demo(dir: &Path, listen: SocketAddr) -> anyhow::Result<Config> {
    use rand::Rng;
    let toml_path = dir.join("paycode.toml");
    if toml_path.exists() {
        return Config::load(&toml_path).map_err(anyhow::Error::from);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let (app_private, _) = generate_rsa_key_pair_pem();
    let create = |name: &str, contents: &[u8]| {
        let path = dir.join(name);
        create_private_file(&path, contents).with_context(|| {
            format!(
                "cannot create {} (paycode sandbox never writes over a file it did not create)",
                path.display()
            )
        })
    };
    create("wechat_v2.key", key.as_bytes())?;
    create("alipay_app_private_key.pem", app_private.as_bytes())?;
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
    create("paycode.toml", toml.as_bytes())?;
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
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--listen: cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let config = if let Some(config) = config {
        config
    } else {
        let dir = PathBuf::from("sandbox-demo");
        let config = write_demo(&dir, address)?;
        println!(
            "paycode sandbox: no --config given; playing the demo merchant, with its credentials and a ready paycode.toml in {}",
            dir.display()
        );
        config
    };
    // Nothing is read or written for a configuration that is not the sandbox's.
    check_urls(&config, address)?;
    for warning in check_secret_files(&config)? {
        eprintln!("warning: {warning}");
    }
    let (sandbox_config, notes) = from_config(&config)?;
    let state = sandbox_config.state_path.clone();
    let sandbox =
        Sandbox::open(sandbox_config, Arc::new(SystemClock)).context("opening the sandbox")?;
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

    const LISTEN: &str = "127.0.0.1:18081";

    fn listen() -> SocketAddr {
        LISTEN.parse().unwrap()
    }

    #[test]
    fn without_a_signing_key_it_makes_one_and_hands_the_merchant_its_public_half() {
        let dir = tempfile::tempdir().unwrap();
        let demo = write_demo(dir.path(), listen()).unwrap();
        assert_eq!(demo.merchants[0].id, DEMO_MERCHANT);
        check_urls(&demo, listen()).unwrap();
        let (sandbox, notes) = from_config(&demo).unwrap();
        let public_file = dir.path().join("alipay_public_key.pem");
        let written = std::fs::read_to_string(&public_file).unwrap();
        assert!(
            written.starts_with("-----BEGIN PUBLIC KEY-----"),
            "{written:.40}"
        );
        assert_eq!(notes.len(), 2, "it says what it made: {notes:?}");
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
        assert_eq!(keys[0].name, "api_keys[0]");
        let merchant = paycode_domain::MerchantId::parse(DEMO_MERCHANT).unwrap();
        assert!(
            channels
                .get(&merchant, paycode_domain::Channel::Alipay)
                .is_some()
        );
        // Run again: the same configuration and keys, nothing new written.
        let again = write_demo(dir.path(), listen()).unwrap();
        let (_, notes) = from_config(&again).unwrap();
        assert_eq!(notes, Vec::<String>::new());
        assert_eq!(std::fs::read_to_string(&public_file).unwrap(), written);
    }

    #[cfg(unix)]
    #[test]
    fn the_keys_it_makes_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let demo = write_demo(dir.path(), listen()).unwrap();
        from_config(&demo).unwrap();
        for name in [
            "wechat_v2.key",
            "alipay_app_private_key.pem",
            "alipay_public_key.pem",
            "sandbox-alipay-key.pem",
        ] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
        }
        assert!(check_secret_files(&demo).unwrap().is_empty());
    }

    #[test]
    fn it_never_writes_over_a_public_key_it_did_not_make() {
        // A production-like Alipay public key file (someone else's key) stays as it was,
        // and the sandbox refuses, naming the setting.
        let dir = tempfile::tempdir().unwrap();
        let demo = write_demo(dir.path(), listen()).unwrap();
        let public_file = dir.path().join("alipay_public_key.pem");
        let (_, real_alipay_public) = generate_rsa_key_pair_pem();
        std::fs::write(&public_file, &real_alipay_public).unwrap();
        let error = from_config(&demo).unwrap_err().to_string();
        assert!(
            error.starts_with("merchants[0].alipay.alipay_public_key_file: "),
            "{error}"
        );
        assert!(error.contains("never writes over"), "{error}");
        assert_eq!(
            std::fs::read_to_string(&public_file).unwrap(),
            real_alipay_public
        );
    }

    #[test]
    fn a_configuration_whose_channels_are_not_this_sandbox_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let demo = write_demo(dir.path(), listen()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("paycode.toml")).unwrap();
        let with = |from: &str, to: &str| {
            let config = Config::parse(&text.replace(from, to), dir.path().to_owned());
            check_urls(&config.unwrap(), listen()).unwrap_err().setting
        };
        // The real channels.
        let production = text
            .replace(
                &format!("http://{LISTEN}\""),
                "https://api.mch.weixin.qq.com\"",
            )
            .replace(
                &format!("http://{LISTEN}/gateway.do"),
                "https://openapi.alipay.com/gateway.do",
            )
            .replace("sk_test_demo", "sk_live_0123456789");
        let production = Config::parse(&production, dir.path().to_owned()).unwrap();
        assert_eq!(
            check_urls(&production, listen()).unwrap_err().setting,
            "merchants[0].wechat.base_url"
        );
        // Another port, another path, https to loopback.
        assert_eq!(
            with(&format!("http://{LISTEN}\""), "http://127.0.0.1:9\""),
            "merchants[0].wechat.base_url"
        );
        assert_eq!(
            with(
                &format!("http://{LISTEN}/gateway.do"),
                &format!("http://{LISTEN}/other.do")
            ),
            "merchants[0].alipay.base_url"
        );
        assert_eq!(
            with(
                &format!("http://{LISTEN}/gateway.do"),
                &format!("https://{LISTEN}/gateway.do")
            ),
            "merchants[0].alipay.base_url"
        );
        // localhost on the right port is this sandbox too.
        let local = Config::parse(
            &text.replace("127.0.0.1", "localhost"),
            dir.path().to_owned(),
        )
        .unwrap();
        assert_eq!(check_urls(&local, listen()), Ok(()));
        assert_eq!(check_urls(&demo, listen()), Ok(()));
    }
}
