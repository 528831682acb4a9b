//! The settings of one WeChat Pay v2 merchant, and their checks at start-up.
//! A bad setting fails [`super::WechatClient::new`] with a [`ConfigError`]
//! naming the setting (`merchants.wechat.cert_file`, ...) and never the
//! secret. Secrets (the API key, the certificate's private key) never print.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use secrecy::{ExposeSecret, SecretSlice};

use super::sign::{ApiKey, SignType, validate_api_key};
use crate::ConfigError;
use crate::channel::rate_limit::RateLimits;

/// The merchant's client certificate (`apiclient_cert.pem` and
/// `apiclient_key.pem`), needed by reverse and refund (mutual TLS).
#[derive(Clone)]
pub struct ClientCertificate {
    cert_pem: Vec<u8>,
    key_pem: SecretSlice<u8>,
}

impl ClientCertificate {
    /// From PEM bytes; checked by [`super::WechatClient::new`].
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> ClientCertificate {
        ClientCertificate {
            cert_pem,
            key_pem: key_pem.into(),
        }
    }

    /// Reads both PEM files; an unreadable file is an error naming
    /// `{setting_prefix}.cert_file` or `{setting_prefix}.cert_key_file`.
    pub fn load(
        cert_file: &Path,
        key_file: &Path,
        setting_prefix: &str,
    ) -> Result<ClientCertificate, ConfigError> {
        let cert_pem = read(cert_file, &format!("{setting_prefix}.cert_file"))?;
        let key_pem = read(key_file, &format!("{setting_prefix}.cert_key_file"))?;
        Ok(ClientCertificate::from_pem(cert_pem, key_pem))
    }

    /// The PEM of the certificate and its private key together, checked:
    /// the certificate file holds certificates only, the key file one
    /// unencrypted private key.
    pub(crate) fn identity_pem(&self, setting_prefix: &str) -> Result<Vec<u8>, ConfigError> {
        let cert_setting = format!("{setting_prefix}.cert_file");
        let key_setting = format!("{setting_prefix}.cert_key_file");
        let cert_labels =
            pem_labels(&self.cert_pem).map_err(|reason| ConfigError::new(&cert_setting, reason))?;
        if cert_labels.is_empty() || cert_labels.iter().any(|l| l != "CERTIFICATE") {
            return Err(ConfigError::new(
                cert_setting,
                "expected one or more PEM CERTIFICATE blocks",
            ));
        }
        let key_labels = pem_labels(self.key_pem.expose_secret())
            .map_err(|reason| ConfigError::new(&key_setting, reason))?;
        match key_labels.as_slice() {
            [label]
                if ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]
                    .contains(&label.as_str()) => {}
            [label] if label == "ENCRYPTED PRIVATE KEY" => {
                return Err(ConfigError::new(
                    key_setting,
                    "the private key is encrypted; export it without a password",
                ));
            }
            _ => {
                return Err(ConfigError::new(
                    key_setting,
                    "expected exactly one PEM PRIVATE KEY block",
                ));
            }
        }
        let mut pem = self.cert_pem.clone();
        pem.push(b'\n');
        pem.extend_from_slice(self.key_pem.expose_secret());
        Ok(pem)
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("key_pem", &self.key_pem)
            .finish()
    }
}

/// One merchant's WeChat Pay v2 settings.
#[derive(Debug, Clone)]
pub struct WechatConfig {
    /// Where these settings live in the configuration, e.g.
    /// `merchants.wechat`; errors name `{setting_prefix}.{field}`.
    pub setting_prefix: String,
    /// The app id bound to the merchant (`appid`).
    pub appid: String,
    /// The merchant number (`mch_id`).
    pub mch_id: String,
    /// The API key (32 characters) that signs requests and answers.
    pub key: ApiKey,
    pub sign_type: SignType,
    /// `https://api.mch.weixin.qq.com` in production; the sandbox's or a
    /// test peer's URL otherwise. Plain `http` only to a loopback address
    /// (`crate::channel::endpoint`).
    pub base_url: String,
    /// Required when `base_url` is https (reverse and refund use mutual TLS).
    pub client_certificate: Option<ClientCertificate>,
    /// Service-provider mode: the sub-merchant, sent as `sub_mch_id`.
    pub sub_mch_id: Option<String>,
    /// Service-provider mode: the sub-merchant's app, sent as `sub_appid`.
    pub sub_appid: Option<String>,
    /// The terminal's IP sent as micropay's required `spbill_create_ip`.
    pub spbill_create_ip: String,
    /// How long one call may take, connection included; past it the
    /// outcome is unknown.
    pub timeout: Duration,
    pub rate_limits: RateLimits,
}

impl WechatConfig {
    /// WeChat's production endpoint.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.mch.weixin.qq.com";
    /// The per-call timeout when none is configured (the official PHP demo
    /// uses 10 s for micropay).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The configuration section used when none is given.
    pub const DEFAULT_SETTING_PREFIX: &'static str = "merchants.wechat";

    /// Settings with the defaults: MD5, 10 s timeout, WeChat's documented
    /// rate limits, no certificate, no sub-merchant.
    pub fn new(
        appid: impl Into<String>,
        mch_id: impl Into<String>,
        key: ApiKey,
        base_url: impl Into<String>,
    ) -> Self {
        WechatConfig {
            setting_prefix: WechatConfig::DEFAULT_SETTING_PREFIX.to_owned(),
            appid: appid.into(),
            mch_id: mch_id.into(),
            key,
            sign_type: SignType::Md5,
            base_url: base_url.into(),
            client_certificate: None,
            sub_mch_id: None,
            sub_appid: None,
            spbill_create_ip: "127.0.0.1".to_owned(),
            timeout: WechatConfig::DEFAULT_TIMEOUT,
            rate_limits: RateLimits::WECHAT,
        }
    }

    /// The full name of a setting, for error messages.
    pub fn setting(&self, name: &str) -> String {
        format!("{}.{}", self.setting_prefix, name)
    }

    /// Reads the secrets from files: the API key (`key_file`, one line)
    /// and, when given, the client certificate (`cert_file`, `cert_key_file`,
    /// both or neither). Each failure names its setting.
    pub fn load_files(
        &mut self,
        api_key_file: &Path,
        cert_and_key_files: Option<(&Path, &Path)>,
    ) -> Result<(), ConfigError> {
        let setting = self.setting("key_file");
        let bytes = read(api_key_file, &setting)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| ConfigError::new(&setting, "the file is not UTF-8 text"))?;
        // Editors add a final line break; the key itself has none.
        self.key = ApiKey::from(text.trim_end_matches(['\n', '\r']));
        validate_api_key(&self.key).map_err(|reason| ConfigError::new(&setting, reason))?;
        if let Some((cert_file, key_file)) = cert_and_key_files {
            self.client_certificate = Some(ClientCertificate::load(
                cert_file,
                key_file,
                &self.setting_prefix,
            )?);
        }
        Ok(())
    }

    /// Every check that needs no network: the first broken setting, named.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let plain = |name: &str, value: &str| -> Result<(), ConfigError> {
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ConfigError::new(
                    self.setting(name),
                    "must be a non-empty id of letters and digits",
                ));
            }
            Ok(())
        };
        plain("appid", &self.appid)?;
        plain("mch_id", &self.mch_id)?;
        validate_api_key(&self.key)
            .map_err(|reason| ConfigError::new(self.setting("key_file"), reason))?;
        if let Some(sub_mch_id) = &self.sub_mch_id {
            plain("sub_mch_id", sub_mch_id)?;
        }
        if let Some(sub_appid) = &self.sub_appid {
            plain("sub_appid", sub_appid)?;
            if self.sub_mch_id.is_none() {
                return Err(ConfigError::new(
                    self.setting("sub_appid"),
                    "needs sub_mch_id (service-provider mode)",
                ));
            }
        }
        self.spbill_create_ip.parse::<IpAddr>().map_err(|_| {
            ConfigError::new(self.setting("spbill_create_ip"), "must be an IP address")
        })?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                self.setting("timeout_ms"),
                "must be greater than 0",
            ));
        }
        if let Err(name) = self.rate_limits.validate() {
            return Err(ConfigError::new(
                self.setting(&format!("rate_limits.{name}")),
                "must be greater than 0",
            ));
        }
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| ConfigError::new(self.setting("base_url"), format!("not a URL: {e}")))?;
        if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
            return Err(ConfigError::new(
                self.setting("base_url"),
                "must be scheme://host[:port][/path] only",
            ));
        }
        crate::channel::endpoint::check_scheme(&url)
            .map_err(|reason| ConfigError::new(self.setting("base_url"), reason))?;
        match (url.scheme(), &self.client_certificate) {
            ("https", None) => {
                return Err(ConfigError::new(
                    self.setting("cert_file"),
                    "an https base_url needs the merchant's client certificate (reverse and refund use mutual TLS)",
                ));
            }
            ("https" | "http", Some(certificate)) => {
                certificate.identity_pem(&self.setting_prefix)?;
            }
            // `check_scheme` let through only https and loopback http.
            _ => {}
        }
        Ok(())
    }
}

fn read(path: &Path, setting: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(setting, format!("cannot read {}: {e}", path.display())))
}

/// The labels of the PEM blocks in `pem` (`CERTIFICATE`, `PRIVATE KEY`...),
/// each block's base64 checked. Text outside blocks is allowed (OpenSSL
/// writes `Bag Attributes` headers there).
fn pem_labels(pem: &[u8]) -> Result<Vec<String>, String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file (not text)".to_owned())?;
    let mut labels = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if open.is_some() {
                return Err("not a PEM file (a BEGIN line inside a block)".to_owned());
            }
            open = Some((label.to_owned(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let (begun, body) = open
                .take()
                .ok_or("not a PEM file (an END line without BEGIN)")?;
            if begun != label {
                return Err(format!(
                    "not a PEM file (BEGIN {begun} ends with END {label})"
                ));
            }
            let der = STANDARD
                .decode(body.as_bytes())
                .map_err(|_| format!("the PEM {label} block is not base64"))?;
            if der.is_empty() {
                return Err(format!("the PEM {label} block is empty"));
            }
            labels.push(label.to_owned());
        } else if let Some((_, body)) = open.as_mut() {
            body.push_str(line);
        }
    }
    if open.is_some() {
        return Err("not a PEM file (a block without END)".to_owned());
    }
    if labels.is_empty() {
        return Err("not a PEM file (no BEGIN line)".to_owned());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::testing;

    /// A throwaway self-signed certificate and its key, made at test time:
    /// `(certificate PEM, key PEM)`.
    fn cert_and_key() -> (String, String) {
        testing::self_signed_client_certificate_pem()
    }

    /// Settings with a random API key, made at test time.
    fn config(base_url: &str) -> WechatConfig {
        WechatConfig::new(
            "wx2421b1c4370ec43b",
            "10000100",
            ApiKey::from(testing::random_api_key()),
            base_url,
        )
    }

    fn setting_of(config: &WechatConfig) -> String {
        config.validate().unwrap_err().setting
    }

    #[test]
    fn good_settings_pass() {
        let (cert, key) = cert_and_key();
        assert_eq!(config("http://127.0.0.1:8080").validate(), Ok(()));
        let mut https = config(WechatConfig::DEFAULT_BASE_URL);
        https.client_certificate = Some(ClientCertificate::from_pem(cert.into(), key.into()));
        assert_eq!(https.validate(), Ok(()));
    }

    #[test]
    fn each_bad_setting_is_named() {
        let mut c = config("http://127.0.0.1:8080");
        c.appid = String::new();
        assert_eq!(setting_of(&c), "merchants.wechat.appid");
        let mut c = config("http://127.0.0.1:8080");
        c.key = ApiKey::from("short");
        assert_eq!(setting_of(&c), "merchants.wechat.key_file");
        let mut c = config("ftp://example.com");
        c.setting_prefix = "merchants.m1.wechat".to_owned();
        assert_eq!(setting_of(&c), "merchants.m1.wechat.base_url");
        assert_eq!(
            setting_of(&config("not a url")),
            "merchants.wechat.base_url"
        );
        assert_eq!(
            setting_of(&config("http://h/?a=1")),
            "merchants.wechat.base_url"
        );
        // Plain http only to a loopback address: never a signed body in clear over a network.
        let clear = config("http://api.mch.weixin.qq.com")
            .validate()
            .unwrap_err();
        assert_eq!(clear.setting, "merchants.wechat.base_url");
        assert!(clear.reason.contains("loopback"), "{clear}");
        assert_eq!(
            setting_of(&config("http://192.168.1.20:8081")),
            "merchants.wechat.base_url"
        );
        assert_eq!(config("http://localhost:8081").validate(), Ok(()));
        assert_eq!(
            setting_of(&config("https://api.mch.weixin.qq.com")),
            "merchants.wechat.cert_file"
        );
        let mut c = config("http://127.0.0.1:8080");
        c.sub_appid = Some("wxsub".to_owned());
        assert_eq!(setting_of(&c), "merchants.wechat.sub_appid");
        let mut c = config("http://127.0.0.1:8080");
        c.timeout = Duration::ZERO;
        assert_eq!(setting_of(&c), "merchants.wechat.timeout_ms");
        let mut c = config("http://127.0.0.1:8080");
        c.rate_limits.refund_per_sec = 0;
        assert_eq!(
            setting_of(&c),
            "merchants.wechat.rate_limits.refund_per_sec"
        );
        let mut c = config("http://127.0.0.1:8080");
        c.spbill_create_ip = "localhost".to_owned();
        assert_eq!(setting_of(&c), "merchants.wechat.spbill_create_ip");
    }

    #[test]
    fn malformed_pem_names_the_file_setting() {
        let (cert, key) = cert_and_key();
        // The key's label with ENCRYPTED in front, as a password-protected key has.
        let encrypted = key
            .replace("-----BEGIN ", "-----BEGIN ENCRYPTED ")
            .replace("-----END ", "-----END ENCRYPTED ");
        assert_ne!(encrypted, key);
        let cases = [
            (
                "garbage".to_owned(),
                key.clone(),
                "merchants.wechat.cert_file",
            ),
            (key.clone(), key.clone(), "merchants.wechat.cert_file"),
            (
                cert.replace("MII", "M!I"),
                key.clone(),
                "merchants.wechat.cert_file",
            ),
            (cert.clone(), cert.clone(), "merchants.wechat.cert_key_file"),
            (
                cert.clone(),
                String::new(),
                "merchants.wechat.cert_key_file",
            ),
            (
                cert.clone(),
                key.replace("-----END", "-----FIN"),
                "merchants.wechat.cert_key_file",
            ),
            (cert.clone(), encrypted, "merchants.wechat.cert_key_file"),
        ];
        for (cert, key, setting) in cases {
            let mut c = config("https://api.mch.weixin.qq.com");
            c.client_certificate = Some(ClientCertificate::from_pem(cert.into(), key.into()));
            assert_eq!(setting_of(&c), setting);
        }
    }

    #[test]
    fn secrets_never_print() {
        let (cert, key) = cert_and_key();
        let mut c = config("http://127.0.0.1:8080");
        c.client_certificate = Some(ClientCertificate::from_pem(cert.into(), key.clone().into()));
        let shown = format!("{c:?}");
        assert!(!shown.contains(c.key.expose_secret()), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        for line in key.lines() {
            assert!(!shown.contains(line), "{shown}");
        }
        assert!(shown.contains("key: SecretBox<str>([REDACTED])"), "{shown}");
    }

    #[test]
    fn files_are_read_and_a_missing_one_is_named() {
        let (cert_pem, key_pem) = cert_and_key();
        let secret = testing::random_api_key();
        let dir = tempfile::tempdir().unwrap();
        let api_key = dir.path().join("api_key");
        std::fs::write(&api_key, format!("{secret}\n")).unwrap();
        let cert = dir.path().join("apiclient_cert.pem");
        std::fs::write(&cert, cert_pem).unwrap();
        let key = dir.path().join("apiclient_key.pem");
        std::fs::write(&key, key_pem).unwrap();
        let mut c = config(WechatConfig::DEFAULT_BASE_URL);
        c.key = ApiKey::from("");
        c.load_files(&api_key, Some((&cert, &key))).unwrap();
        assert_eq!(c.key.expose_secret(), secret);
        assert_eq!(c.validate(), Ok(()));
        let missing = dir.path().join("missing.pem");
        let error = c.load_files(&api_key, Some((&cert, &missing))).unwrap_err();
        assert_eq!(error.setting, "merchants.wechat.cert_key_file");
        let error = c.load_files(&missing, None).unwrap_err();
        assert_eq!(error.setting, "merchants.wechat.key_file");
        std::fs::write(&api_key, "0123").unwrap();
        let error = c.load_files(&api_key, None).unwrap_err();
        assert_eq!(error.setting, "merchants.wechat.key_file");
        assert!(!error.to_string().contains("0123"), "{error}");
    }
}
