//! Who else can read the secret files a configuration names. A key file
//! readable by other users (group or others, `mode & 0o044`) is a warning
//! at start; a private key so readable (the Alipay app key, the WeChat
//! client certificate's key) stops the start, naming the setting: whoever
//! can read it can sign as the merchant. Files that do not exist are left
//! to the code that reads them (which names the setting too).
//!
//! Only Unix has such modes; elsewhere nothing is checked.

use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// How bad it is for other users to read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A private key: refused.
    PrivateKey,
    /// Another secret (an API key, a token): a warning.
    Secret,
}

/// One secret file a configuration names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub setting: String,
    pub path: PathBuf,
    pub exposure: Exposure,
}

/// Every secret file `config` names, with its setting.
pub fn secret_files(config: &Config) -> Vec<SecretFile> {
    let mut files = Vec::new();
    let mut add = |setting: String, path: &Path, exposure| {
        files.push(SecretFile {
            setting,
            path: config.resolve(path),
            exposure,
        });
    };
    for (index, merchant) in config.merchants.iter().enumerate() {
        let at = |key: &str| format!("merchants[{index}].{key}");
        for (number, key) in merchant.keys.iter().enumerate() {
            if let Some(path) = &key.key_file {
                add(
                    at(&format!("keys[{number}].key_file")),
                    path,
                    Exposure::Secret,
                );
            }
        }
        if let Some(wechat) = &merchant.wechat {
            add(at("wechat.key_file"), &wechat.key_file, Exposure::Secret);
            if let Some(path) = &wechat.cert_key_file {
                add(at("wechat.cert_key_file"), path, Exposure::PrivateKey);
            }
        }
        if let Some(alipay) = &merchant.alipay {
            add(
                at("alipay.private_key_file"),
                &alipay.private_key_file,
                Exposure::PrivateKey,
            );
            if let Some(path) = &alipay.app_auth_token_file {
                add(at("alipay.app_auth_token_file"), path, Exposure::Secret);
            }
        }
    }
    if let Some(path) = config
        .sandbox
        .as_ref()
        .and_then(|sandbox| sandbox.alipay_private_key_file.as_ref())
    {
        // The sandbox's own key signs nothing real: a warning is enough.
        add(
            "sandbox.alipay_private_key_file".to_owned(),
            path,
            Exposure::Secret,
        );
    }
    files
}

/// The permission bits of `path` that let users other than its owner read
/// it (`None`: none, or no such file, or not Unix).
pub fn readable_by_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o044 != 0).then_some(mode & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Checks every secret file of `config`: the warnings to print, or the
/// first private key other users can read.
pub fn check_secret_files(config: &Config) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    for file in secret_files(config) {
        let Some(mode) = readable_by_others(&file.path) else {
            continue;
        };
        let what = format!(
            "{} is readable by other users (mode {mode:04o}); make it readable by the service's user only (chmod 600)",
            file.path.display()
        );
        match file.exposure {
            Exposure::PrivateKey => {
                return Err(ConfigError::new(
                    file.setting,
                    format!("refusing a private key that {what}"),
                ));
            }
            Exposure::Secret => warnings.push(format!("{}: {what}", file.setting)),
        }
    }
    Ok(warnings)
}

/// Writes `contents` to a new file readable and writable by its owner only
/// (0600 on Unix); an existing file is never written over.
pub fn create_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A configuration naming four secret files in `dir`, all 0600.
    fn config(dir: &Path) -> Config {
        for name in ["wechat.key", "cert.pem", "cert_key.pem", "app.pem", "token"] {
            create_private_file(&dir.join(name), b"x").unwrap();
        }
        let text = r#"
[[merchants]]
id = "shop"
api_keys = ["sk_live_shop_0001"]
[merchants.wechat]
appid = "wx0000000000000000"
mch_id = "1900000000"
key_file = "wechat.key"
cert_file = "cert.pem"
cert_key_file = "cert_key.pem"
[merchants.alipay]
app_id = "2021000000000000"
private_key_file = "app.pem"
alipay_public_key_file = "alipay.pem"
app_auth_token_file = "token"
"#;
        Config::parse(text, dir.to_owned()).unwrap()
    }

    #[test]
    fn secret_files_readable_by_others_warn_and_private_keys_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        assert_eq!(check_secret_files(&config).unwrap(), Vec::<String>::new());

        chmod(&dir.path().join("wechat.key"), 0o644);
        chmod(&dir.path().join("token"), 0o640);
        let warnings = check_secret_files(&config).unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("merchants[0].wechat.key_file: ")
                && warnings[0].contains("mode 0644"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("merchants[0].alipay.app_auth_token_file: "),
            "{warnings:?}"
        );

        chmod(&dir.path().join("app.pem"), 0o604);
        let error = check_secret_files(&config).unwrap_err();
        assert_eq!(error.setting, "merchants[0].alipay.private_key_file");
        chmod(&dir.path().join("app.pem"), 0o600);
        chmod(&dir.path().join("cert_key.pem"), 0o640);
        let error = check_secret_files(&config).unwrap_err();
        assert_eq!(error.setting, "merchants[0].wechat.cert_key_file");
        assert!(error.reason.contains("chmod 600"), "{error}");
    }

    #[test]
    fn private_files_are_created_0600_and_never_over_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("made.pem");
        create_private_file(&path, b"first").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_private_file(&path, b"second").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
    }
}
