//! The per-ledger secret that fingerprints payment codes: HMAC-SHA256 of the
//! full code, recorded in `Submitted` so that a repeated creation can tell
//! the same code from another one whose mask (first two and last two
//! digits) is the same. The secret never leaves this module: not in events,
//! logs or the API; only the fingerprints do, and without the secret they
//! say nothing about the code.
//!
//! A ledger on disk keeps its secret beside it, in `<stem>-fingerprint.key`
//! (`paycode-fingerprint.key` beside `paycode.db`), made at the first start
//! with mode 0600 and read at every later one: losing it only makes repeats
//! of orders created before compare unequal (409). The memory store has a
//! fresh random secret per process.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use paycode_domain::{AuthCode, AuthCodeFingerprint};
use rand::RngCore as _;
use sha2::Sha256;

/// The secret's length in bytes (stored as 64 hex digits and a line break).
pub const KEY_BYTES: usize = 32;

/// The secret that fingerprints payment codes. `Debug` does not show it.
#[derive(Clone)]
pub struct FingerprintKey([u8; KEY_BYTES]);

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// Why the key file cannot be used; `path` names it.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintKeyError {
    #[error("{path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

impl FingerprintKey {
    /// A fresh random secret (the memory store; tests).
    pub fn random() -> FingerprintKey {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        FingerprintKey(bytes)
    }

    /// The secret `bytes` (simulations derive it from their seed, so that two
    /// runs of one seed write the same log).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> FingerprintKey {
        FingerprintKey(bytes)
    }

    /// The key file beside a ledger at `ledger`: `<stem>-fingerprint.key`.
    pub fn path_beside(ledger: &Path) -> PathBuf {
        let stem = ledger
            .file_stem()
            .map_or_else(|| "paycode".into(), |stem| stem.to_string_lossy());
        ledger.with_file_name(format!("{stem}-fingerprint.key"))
    }

    /// Reads the secret at `path`, or makes it there (mode 0600) when the
    /// file does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<FingerprintKey, FingerprintKeyError> {
        let unusable = |reason: String| FingerprintKeyError::Unusable {
            path: path.to_owned(),
            reason,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim_end_matches(['\n', '\r']))
                    .ok()
                    .and_then(|bytes| <[u8; KEY_BYTES]>::try_from(bytes).ok())
                    .ok_or_else(|| {
                        unusable(format!("not {} hex digits on one line", KEY_BYTES * 2))
                    })?;
                Ok(FingerprintKey(bytes))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = FingerprintKey::random();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options
                    .open(path)
                    .map_err(|error| unusable(format!("cannot create it: {error}")))?;
                writeln!(file, "{}", hex::encode(key.0))
                    .and_then(|()| file.sync_all())
                    .map_err(|error| unusable(format!("cannot write it: {error}")))?;
                Ok(key)
            }
            Err(error) => Err(unusable(format!("cannot read it: {error}"))),
        }
    }

    /// The fingerprint of `code`: lowercase hex HMAC-SHA256 of its digits.
    pub fn fingerprint(&self, code: &AuthCode) -> AuthCodeFingerprint {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(code.expose_for_pay_call().as_bytes());
        AuthCodeFingerprint::from_hex(hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_code_has_one_fingerprint_and_a_same_mask_code_another() {
        let key = FingerprintKey::random();
        let code = AuthCode::parse("134567890123456789").unwrap();
        let same_mask = AuthCode::parse("130000000000000089").unwrap();
        assert_eq!(code.masked(), same_mask.masked());
        assert_eq!(key.fingerprint(&code), key.fingerprint(&code));
        assert_ne!(key.fingerprint(&code), key.fingerprint(&same_mask));
        assert_ne!(
            key.fingerprint(&code),
            FingerprintKey::random().fingerprint(&code)
        );
        assert_eq!(format!("{key:?}"), "FingerprintKey(..)");
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = FingerprintKey::path_beside(&dir.path().join("paycode.db"));
        assert_eq!(path.file_name().unwrap(), "paycode-fingerprint.key");
        let code = AuthCode::parse("134567890123456789").unwrap();
        let created = FingerprintKey::load_or_create(&path).unwrap();
        let read = FingerprintKey::load_or_create(&path).unwrap();
        assert_eq!(created.fingerprint(&code), read.fingerprint(&code));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short\n").unwrap();
        let error = FingerprintKey::load_or_create(&path).unwrap_err();
        assert!(
            error.to_string().contains("paycode-fingerprint.key"),
            "{error}"
        );
    }
}
