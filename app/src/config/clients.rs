//! Builds the channel clients of every configured merchant: reads the secret
//! files named in `paycode.toml` and hands the settings to the adapters, so
//! that a bad key or certificate stops the start with the setting's name.
//! With `[sandbox] in_process = true` the clients talk to a sandbox started
//! in this process instead ([`Channels::connect`]).

use std::sync::Arc;
use std::time::Duration;

use paycode_adapters::channel::rate_limit::RateLimits;
use paycode_adapters::clock::Clock;

use paycode_adapters::alipay::{AlipayClient, AlipayConfig, Secret};
use paycode_adapters::wechat::{
    ApiKey as WechatKey, ClientCertificate, SignType, WechatClient, WechatConfig,
};
use paycode_domain::MerchantId;

use super::embedded::{InProcessSandbox, SandboxOptions};
use super::{AlipaySettings, Config, ConfigError, SignTypeSetting, WechatSettings};
use crate::http::ApiKey;
use crate::http::auth;
use crate::service::runtime::Channels;
use secrecy::ExposeSecret;

/// The channel clients a configuration serves with, and the in-process
/// sandbox they talk to when it asks for one (kept alive as long as this).
#[derive(Debug)]
pub struct ConnectedChannels {
    pub channels: Channels,
    pub sandbox: Option<InProcessSandbox>,
}

impl ConnectedChannels {
    /// The configured merchants' clients, or the in-process sandbox and its
    /// clients for `[sandbox] in_process = true`.
    pub async fn connect(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        if !config.sandbox_in_process() {
            return Ok(ConnectedChannels {
                channels: build(config)?,
                sandbox: None,
            });
        }
        let merchants = merchant_ids(config)?;
        let sandbox =
            InProcessSandbox::start(&merchants, SandboxOptions::from_config(config), clock).await?;
        Ok(ConnectedChannels {
            channels: sandbox.channels.clone(),
            sandbox: Some(sandbox),
        })
    }
}

/// Every merchant's id, in the order of the file.
pub fn merchant_ids(config: &Config) -> Result<Vec<MerchantId>, ConfigError> {
    config
        .merchants
        .iter()
        .enumerate()
        .map(|(index, merchant)| {
            MerchantId::parse(&merchant.id).map_err(|error| {
                ConfigError::new(format!("merchants[{index}].id"), error.to_string())
            })
        })
        .collect()
}

/// Every merchant's API keys, by digest: the keys of `api_keys` (every
/// right, named `api_keys[N]`) and the `[[merchants.keys]]` (their name and
/// role; a `key_file` is read and hashed here). A key configured twice, in
/// any form, is refused.
pub fn api_keys(config: &Config) -> Result<Vec<ApiKey>, ConfigError> {
    let ids = merchant_ids(config)?;
    let mut keys = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for ((index, merchant), id) in config.merchants.iter().enumerate().zip(ids) {
        for (number, key) in merchant.api_keys.iter().enumerate() {
            keys.push(ApiKey::full(
                key.expose_secret(),
                id.clone(),
                format!("api_keys[{number}]"),
            ));
        }
        for (number, settings) in merchant.keys.iter().enumerate() {
            let sha256 = match (&settings.sha256, &settings.key_file) {
                (Some(hex), _) => super::parse_sha256(hex).ok_or_else(|| {
                    ConfigError::new(
                        format!("merchants[{index}].keys[{number}].sha256"),
                        "must be 64 hexadecimal digits (a SHA-256)",
                    )
                })?,
                (None, Some(path)) => {
                    let setting = format!("merchants[{index}].keys[{number}].key_file");
                    let key = text(read(config, path, setting.clone())?, &setting)?;
                    let key = key.trim_end_matches(['\n', '\r']);
                    super::check_api_key_text(key)
                        .map_err(|reason| ConfigError::new(&setting, reason))?;
                    let sha256 = auth::digest(key);
                    config.check_not_demo_key(&sha256, &setting)?;
                    sha256
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        format!("merchants[{index}].keys[{number}].sha256"),
                        "give exactly one of sha256 and key_file",
                    ));
                }
            };
            keys.push(ApiKey {
                sha256,
                merchant: id.clone(),
                name: settings.name.clone(),
                role: settings.role,
            });
        }
    }
    for key in &keys {
        if !seen.insert(key.sha256) {
            return Err(ConfigError::new(
                format!("merchants (key {})", key.name),
                "an API key may belong to one merchant only, and be configured once",
            ));
        }
    }
    Ok(keys)
}

/// The clients of every merchant in `config`, from their channel settings.
pub fn build(config: &Config) -> Result<Channels, ConfigError> {
    let mut channels = Channels::default();
    // Alipay accounts by app id and token (the same token in two files is one account).
    let mut alipay_accounts = std::collections::HashMap::new();
    for ((index, merchant), id) in config
        .merchants
        .iter()
        .enumerate()
        .zip(merchant_ids(config)?)
    {
        let prefix = format!("merchants[{index}]");
        if let Some(wechat) = &merchant.wechat {
            channels.insert(
                id.clone(),
                Arc::new(wechat_client(config, wechat, &format!("{prefix}.wechat"))?),
            );
        }
        if let Some(alipay) = &merchant.alipay {
            let client = alipay_client(config, alipay, &format!("{prefix}.alipay"))?;
            let account = (alipay.app_id.clone(), client.app_auth_token_sha256());
            if let Some(first) = alipay_accounts.insert(account, index) {
                return Err(ConfigError::new(
                    format!("{prefix}.alipay.app_auth_token_file"),
                    format!(
                        "merchants[{first}] ({}) already uses this Alipay account (app_id {} with the same app_auth_token): the two merchants' order numbers would collide at the channel",
                        config.merchants[first].id, alipay.app_id
                    ),
                ));
            }
            channels.insert(id.clone(), Arc::new(client));
        }
    }
    Ok(channels)
}

fn read(config: &Config, path: &std::path::Path, setting: String) -> Result<Vec<u8>, ConfigError> {
    let path = config.resolve(path);
    std::fs::read(&path).map_err(|error| {
        ConfigError::new(setting, format!("cannot read {}: {error}", path.display()))
    })
}

fn text(bytes: Vec<u8>, setting: &str) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|_| ConfigError::new(setting, "the file is not UTF-8 text"))
}

fn wechat_client(
    config: &Config,
    settings: &WechatSettings,
    prefix: &str,
) -> Result<WechatClient, ConfigError> {
    let key_setting = format!("{prefix}.key_file");
    let key = text(
        read(config, &settings.key_file, key_setting.clone())?,
        &key_setting,
    )?;
    let mut wechat = WechatConfig::new(
        settings.appid.clone(),
        settings.mch_id.clone(),
        WechatKey::from(key.trim_end_matches(['\n', '\r'])),
        settings.base_url.clone(),
    );
    prefix.clone_into(&mut wechat.setting_prefix);
    wechat.sign_type = match settings.sign_type {
        SignTypeSetting::Md5 => SignType::Md5,
        SignTypeSetting::HmacSha256 => SignType::HmacSha256,
    };
    if let (Some(cert), Some(cert_key)) = (&settings.cert_file, &settings.cert_key_file) {
        let cert_pem = read(config, cert, format!("{prefix}.cert_file"))?;
        let key_pem = read(config, cert_key, format!("{prefix}.cert_key_file"))?;
        wechat.client_certificate = Some(ClientCertificate::from_pem(cert_pem, key_pem));
    }
    wechat.sub_mch_id.clone_from(&settings.sub_mch_id);
    wechat.sub_appid.clone_from(&settings.sub_appid);
    if let Some(timeout_ms) = settings.timeout_ms {
        wechat.timeout = Duration::from_millis(timeout_ms);
    }
    if let Some(limits) = checked_limits(settings.rate_limits, prefix)? {
        wechat.rate_limits = limits;
    }
    WechatClient::new(wechat)
}

/// The `rate_limits` table of a channel's settings, if given, every limit above 0.
fn checked_limits(
    limits: Option<RateLimits>,
    prefix: &str,
) -> Result<Option<RateLimits>, ConfigError> {
    let Some(limits) = limits else {
        return Ok(None);
    };
    limits.validate().map_err(|name| {
        ConfigError::new(
            format!("{prefix}.rate_limits.{name}"),
            "must be greater than 0",
        )
    })?;
    Ok(Some(limits))
}

fn alipay_client(
    config: &Config,
    settings: &AlipaySettings,
    prefix: &str,
) -> Result<AlipayClient, ConfigError> {
    let private_setting = format!("{prefix}.private_key_file");
    let public_setting = format!("{prefix}.alipay_public_key_file");
    let private_key = text(
        read(config, &settings.private_key_file, private_setting.clone())?,
        &private_setting,
    )?;
    let public_key = text(
        read(
            config,
            &settings.alipay_public_key_file,
            public_setting.clone(),
        )?,
        &public_setting,
    )?;
    let mut alipay = AlipayConfig::new(
        settings.app_id.clone(),
        private_key,
        public_key,
        settings.base_url.clone(),
    );
    if let Some(path) = &settings.app_auth_token_file {
        let setting = format!("{prefix}.app_auth_token_file");
        let token = text(read(config, path, setting.clone())?, &setting)?;
        alipay.app_auth_token = Some(Secret::from(token.trim_end_matches(['\n', '\r'])));
    }
    if let Some(timeout_ms) = settings.timeout_ms {
        alipay.timeout = Duration::from_millis(timeout_ms);
    }
    if let Some(limits) = checked_limits(settings.rate_limits, prefix)? {
        alipay.rate_limits = limits;
    }
    AlipayClient::new(alipay).map_err(|error| {
        // The adapter names its settings without the merchant's index; add it.
        ConfigError {
            setting: error.setting.replacen("merchants.alipay", prefix, 1),
            ..error
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use paycode_adapters::testing::rsa_key_pair_pem;
    use paycode_domain::Channel;

    use super::*;

    /// A configuration whose secrets live in `dir`, with `edit` applied to its text.
    fn config_in(
        dir: &std::path::Path,
        edit: impl Fn(String) -> String,
    ) -> Result<Config, ConfigError> {
        let (app_private, _) = rsa_key_pair_pem("clients-app", 2048);
        let (_, alipay_public) = rsa_key_pair_pem("clients-alipay", 2048);
        std::fs::write(dir.join("wechat.key"), format!("{}\n", "k".repeat(32))).unwrap();
        std::fs::write(dir.join("app.pem"), app_private).unwrap();
        std::fs::write(dir.join("alipay.pem"), alipay_public).unwrap();
        let text = r#"
[[merchants]]
id = "shop"
api_keys = ["sk_test_shop_0001"]
[merchants.wechat]
appid = "wx0000000000000000"
mch_id = "1900000000"
key_file = "wechat.key"
base_url = "http://127.0.0.1:9"
[merchants.alipay]
app_id = "2021000000000000"
private_key_file = "app.pem"
alipay_public_key_file = "alipay.pem"
base_url = "http://127.0.0.1:9/gateway.do"
"#;
        Config::parse(&edit(text.to_owned()), PathBuf::from(dir))
    }

    fn setting_of(result: Result<Channels, ConfigError>) -> String {
        result.map(|_| ()).unwrap_err().setting
    }

    #[test]
    fn a_good_configuration_builds_both_clients_and_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), |text| text).unwrap();
        let channels = build(&config).unwrap();
        let keys = api_keys(&config).unwrap();
        let shop = MerchantId::parse("shop").unwrap();
        assert!(channels.get(&shop, Channel::Wechat).is_some());
        assert!(channels.get(&shop, Channel::Alipay).is_some());
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].merchant, shop);
    }

    #[test]
    fn bad_secrets_stop_the_start_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = config_in(dir.path(), |text| {
            text.replace("key_file = \"wechat.key\"", "key_file = \"nope.key\"")
        })
        .unwrap();
        assert_eq!(setting_of(build(&missing)), "merchants[0].wechat.key_file");

        let short = config_in(dir.path(), |text| text).unwrap();
        std::fs::write(dir.path().join("wechat.key"), "too-short").unwrap();
        let error = build(&short).map(|_| ()).unwrap_err();
        assert_eq!(error.setting, "merchants[0].wechat.key_file");
        assert!(
            !error.to_string().contains("too-short"),
            "the secret is never quoted: {error}"
        );

        let https = config_in(dir.path(), |text| {
            text.replace("http://127.0.0.1:9\"", "https://api.mch.weixin.qq.com\"")
        })
        .unwrap();
        assert_eq!(setting_of(build(&https)), "merchants[0].wechat.cert_file");

        let bad_pem = config_in(dir.path(), |text| text).unwrap();
        std::fs::write(dir.path().join("app.pem"), "-----BEGIN NOTHING-----\n").unwrap();
        assert_eq!(
            setting_of(build(&bad_pem)),
            "merchants[0].alipay.private_key_file"
        );
    }

    #[test]
    fn keys_with_roles_are_read_hashed_and_named() {
        // A key_file is read (its line break dropped) and kept as a digest; a sha256 is
        // taken as given; api_keys keep every right under the name api_keys[N].
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("audit.key"), "sk_live_audit_000001\n").unwrap();
        let reconciliation = hex::encode(auth::digest("sk_live_recon_000001"));
        let config = config_in(dir.path(), |text| {
            text.replace(
                "[merchants.wechat]",
                &format!(
                    "[[merchants.keys]]\nname = \"audit-team\"\nrole = \"auditor\"\nkey_file = \"audit.key\"\n[[merchants.keys]]\nname = \"recon\"\nrole = \"reconciliation\"\nsha256 = \"{}\"\n[merchants.wechat]",
                    reconciliation.to_uppercase()
                ),
            )
        })
        .unwrap();
        let keys = api_keys(&config).unwrap();
        let found =
            |presented: &str| auth::find(&keys, presented).map(|key| (key.name.as_str(), key.role));
        assert_eq!(
            found("sk_test_shop_0001"),
            Some(("api_keys[0]", auth::Role::Full))
        );
        assert_eq!(
            found("sk_live_audit_000001"),
            Some(("audit-team", auth::Role::Auditor))
        );
        assert_eq!(
            found("sk_live_recon_000001"),
            Some(("recon", auth::Role::Reconciliation))
        );
        // The same key in a file and in api_keys is one key configured twice.
        std::fs::write(dir.path().join("audit.key"), "sk_test_shop_0001").unwrap();
        assert!(api_keys(&config).is_err());
        std::fs::write(dir.path().join("audit.key"), "short").unwrap();
        let error = api_keys(&config).unwrap_err();
        assert_eq!(error.setting, "merchants[0].keys[0].key_file");
        assert!(!error.to_string().contains("short"), "{error}");
    }

    #[test]
    fn the_app_auth_token_comes_from_its_file_and_tells_accounts_apart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shop.token"), "202611BBshop\n").unwrap();
        std::fs::write(dir.path().join("copy.token"), "202611BBshop\n").unwrap();
        let with_token = |text: String| {
            text.replace(
                "alipay_public_key_file = \"alipay.pem\"",
                "alipay_public_key_file = \"alipay.pem\"\napp_auth_token_file = \"shop.token\"",
            )
        };
        let config = config_in(dir.path(), with_token).unwrap();
        assert!(build(&config).is_ok());
        let missing = config_in(dir.path(), |text| {
            with_token(text).replace("shop.token", "none.token")
        })
        .unwrap();
        assert_eq!(
            setting_of(build(&missing)),
            "merchants[0].alipay.app_auth_token_file"
        );
        // A second merchant with the same app and the same token (in another file) is
        // the same Alipay account.
        let twice = config_in(dir.path(), |text| {
            let shop = with_token(text);
            let cafe = shop
                .replace("id = \"shop\"", "id = \"cafe\"")
                .replace("sk_test_shop_0001", "sk_test_cafe_0001")
                .replace("mch_id = \"1900000000\"", "mch_id = \"1900000001\"")
                .replace("shop.token", "copy.token");
            format!("{shop}\n{cafe}")
        })
        .unwrap();
        assert_eq!(
            setting_of(build(&twice)),
            "merchants[1].alipay.app_auth_token_file"
        );
    }
}
