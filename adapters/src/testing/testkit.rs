//! Test support, not part of the adapters' API: keys generated at test
//! time, so that no private key or real API key lives in the repository,
//! and the protocol vectors (public samples from the channels'
//! documentation and SDKs) read from `adapters/testdata/vectors/`.
//! Compiled always (not only under `cfg(test)`) so that the integration
//! tests in `tests/` can use it too; hidden from the documentation.
//!
//! RSA keys are made once per process for each `(name, bits)` with
//! [`rand::rngs::OsRng`]. The vectors are read from [`VECTORS_DIR`], inside
//! this crate; `SOURCES.md` there says where each one came from. A missing
//! file fails the test with a message naming the path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rand::Rng as _;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

/// Where the protocol vectors live: `adapters/testdata/vectors/`, in the
/// repository itself.
pub const VECTORS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors/");

/// A PEM pair: the private key (PKCS#8) and its public key (SPKI).
type PemPair = (String, String);

/// One cell per `(name, bits)`: the map's lock is held only to find the
/// cell, so different keys are generated in parallel.
type KeyCells = Mutex<HashMap<(String, usize), Arc<OnceLock<PemPair>>>>;

/// A fresh RSA key pair of `bits` bits for `name` (e.g. `"app"`,
/// `"alipay"`), generated on first use and the same for the rest of the
/// process: `(private PKCS#8 PEM, public SPKI PEM)`, LF line endings.
pub fn rsa_key_pair_pem(name: &str, bits: usize) -> (String, String) {
    static KEYS: OnceLock<KeyCells> = OnceLock::new();
    let cell = KEYS
        .get_or_init(KeyCells::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry((name.to_owned(), bits))
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let key = RsaPrivateKey::new(&mut OsRng, bits).expect("RSA key generation");
        let private = key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 encoding")
            .to_string();
        let public = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("SPKI encoding");
        (private, public)
    })
    .clone()
}

/// The same private key as `pkcs8_pem` in PKCS#1 PEM form
/// (`-----BEGIN RSA ...`), for tests of that form.
pub fn pkcs1_private_pem(pkcs8_pem: &str) -> String {
    RsaPrivateKey::from_pkcs8_pem(pkcs8_pem)
        .expect("a PKCS#8 RSA private key")
        .to_pkcs1_pem(LineEnding::LF)
        .expect("PKCS#1 encoding")
        .to_string()
}

/// The base64 body of a PEM block on one line: the bare DER form that
/// Alipay's key tool prints.
pub fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|line| !line.starts_with("-----"))
        .collect()
}

/// A random 32-character alphanumeric WeChat Pay API key, new at each call.
pub fn random_api_key() -> String {
    OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The text of the protocol vector `name` (e.g.
/// `"wx_v2_sign_doc_example.json"`) from [`VECTORS_DIR`]. Panics naming the
/// path when the file is missing.
pub fn vector(name: &str) -> String {
    let path = Path::new(VECTORS_DIR).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read the protocol vector {} ({error}); the vectors live in \
             the repository, at {VECTORS_DIR}",
            path.display()
        )
    })
}

/// The protocol vector `name`, parsed as JSON.
pub fn vector_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&vector(name))
        .unwrap_or_else(|error| panic!("the protocol vector {name} is not JSON: {error}"))
}

/// A throwaway self-signed certificate and its private key (ECDSA P-256,
/// PKCS#8), made with rcgen (a dev-dependency, hence unit tests only; the
/// integration tests have their own copy in `tests/support/`):
/// `(certificate PEM, key PEM)`.
#[cfg(test)]
pub(crate) fn self_signed_client_certificate_pem() -> (String, String) {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["paycode-test-client".to_owned()])
            .expect("self-signed certificate");
    (cert.pem(), key_pair.serialize_pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pairs_are_cached_per_name_and_size() {
        let (private, public) = rsa_key_pair_pem("testkit", 1024);
        assert_eq!(rsa_key_pair_pem("testkit", 1024), (private.clone(), public));
        assert_ne!(rsa_key_pair_pem("testkit-other", 1024).0, private);
        let pkcs1 = pkcs1_private_pem(&private);
        assert!(pkcs1.starts_with("-----BEGIN RSA "), "PKCS#1 form");
        assert_ne!(pem_body(&pkcs1), pem_body(&private));
    }

    #[test]
    fn api_keys_are_fresh_alphanumerics() {
        let (a, b) = (random_api_key(), random_api_key());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    #[should_panic(expected = "adapters/testdata/vectors/no_such_vector.json")]
    fn a_missing_vector_names_its_path() {
        vector("no_such_vector.json");
    }
}
