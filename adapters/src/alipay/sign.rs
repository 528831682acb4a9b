//! RSA2 signatures of Alipay OpenAPI: SHA256withRSA, PKCS#1 v1.5, base64.
//!
//! Requests: the string to sign is every parameter except `sign` whose key
//! and value are non-empty, sorted by key (byte order), joined as
//! `k=v&k=v` with raw values (no URL-encoding; `biz_content` is its exact
//! JSON text). `sign_type` is part of it, as in the official SDK's
//! `getSignContent` and `rsaCheckV2` (see the vectors in
//! `adapters/testdata/vectors/`). Responses: the signature covers the exact text of the
//! `*_response` node (see [`super::envelope`]).
//!
//! Both sides live here so that the sandbox, which plays Alipay, can verify
//! requests with the app's public key and sign its answers with its own key.
//! Only RSA2 is supported: the legacy SHA1 `RSA` type is refused.
//!
//! Keys are read from PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE
//! KEY`; SPKI `PUBLIC KEY` or PKCS#1 `RSA PUBLIC KEY`) or from the bare
//! base64 DER that Alipay's key tool prints. Errors never quote the key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

use super::envelope::{self, Envelope};

/// The only signature type this client sends and accepts.
pub const SIGN_TYPE_RSA2: &str = "RSA2";

/// The smallest RSA modulus accepted for either key, in bits.
pub const KEY_BITS_MIN: usize = 2048;

/// Why a key could not be used. The messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM or base64 DER RSA private key; fix the key file.
    #[error("not an RSA private key in PEM (PKCS#8 or PKCS#1) or base64 DER form")]
    UnreadablePrivateKey,
    /// Not a PEM or base64 DER RSA public key; fix the key file.
    #[error("not an RSA public key in PEM (SPKI or PKCS#1) or base64 DER form")]
    UnreadablePublicKey,
    /// A password-protected key; decrypt it first.
    #[error(
        "encrypted private keys are not supported; store the key unencrypted with restricted file permissions"
    )]
    Encrypted,
    /// A modulus below [`KEY_BITS_MIN`]; generate a 2048-bit key.
    #[error("the RSA key has {bits} bits; at least {KEY_BITS_MIN} are required")]
    TooShort { bits: usize },
    /// The private key's numbers do not form a valid RSA key.
    #[error("the RSA private key is not consistent")]
    Inconsistent,
}

/// Why a signature could not be made or did not verify. For a channel
/// answer, every variant means "not proven": the outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// No `sign` at all (or an empty one).
    #[error("the answer is not signed")]
    Missing,
    /// The signature is not base64.
    #[error("the signature is not base64")]
    NotBase64,
    /// A well-formed signature that does not match the content and key.
    #[error("the signature does not match")]
    Mismatch,
    /// `sign_type` is absent or not `RSA2`.
    #[error("sign_type {0:?} is not supported; only RSA2 is")]
    UnsupportedSignType(String),
    /// A request parameter appears twice: the signed content would be ambiguous.
    #[error("parameter {0} appears more than once")]
    DuplicateParameter(String),
    /// The private-key operation failed (a key that passed validation should not).
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Reads an RSA private key (PKCS#8 or PKCS#1, PEM or bare base64 DER) of at least 2048 bits.
pub fn private_key_from_pem(text: &str) -> Result<RsaPrivateKey, KeyError> {
    let text = text.trim();
    // PKCS#8 `ENCRYPTED PRIVATE KEY`, or PKCS#1 with `Proc-Type: 4,ENCRYPTED`.
    if text.starts_with("-----BEGIN") && text.contains("ENCRYPTED") {
        return Err(KeyError::Encrypted);
    }
    let der = der_of(text).ok_or(KeyError::UnreadablePrivateKey)?;
    let key = RsaPrivateKey::from_pkcs8_der(&der)
        .or_else(|_| RsaPrivateKey::from_pkcs1_der(&der))
        .map_err(|_| KeyError::UnreadablePrivateKey)?;
    check_bits(key.n().bits())?;
    key.validate().map_err(|_| KeyError::Inconsistent)?;
    Ok(key)
}

/// Reads an RSA public key (SPKI or PKCS#1, PEM or bare base64 DER) of at least 2048 bits.
pub fn public_key_from_pem(text: &str) -> Result<RsaPublicKey, KeyError> {
    let der = der_of(text.trim()).ok_or(KeyError::UnreadablePublicKey)?;
    let key = RsaPublicKey::from_public_key_der(&der)
        .or_else(|_| RsaPublicKey::from_pkcs1_der(&der))
        .map_err(|_| KeyError::UnreadablePublicKey)?;
    check_bits(key.n().bits())?;
    Ok(key)
}

/// The DER inside a PEM block, or of bare base64. PEM is read leniently
/// (any line length, CRLF), because keys copied from Alipay's console often
/// sit on one long line; the DER parsers then decide what the key is.
fn der_of(text: &str) -> Option<Vec<u8>> {
    let body = if let Some(rest) = text.strip_prefix("-----BEGIN ") {
        let (_, after_label) = rest.split_once("-----")?;
        let (body, _) = after_label.split_once("-----END ")?;
        body
    } else {
        text
    };
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    BASE64.decode(compact).ok()
}

fn check_bits(bits: usize) -> Result<(), KeyError> {
    if bits < KEY_BITS_MIN {
        return Err(KeyError::TooShort { bits });
    }
    Ok(())
}

/// The string to sign: non-empty parameters except `sign`, sorted by key, `k=v` joined by `&`.
pub fn sign_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut kept: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(key, value)| *key != "sign" && !key.is_empty() && !value.is_empty())
        .collect();
    kept.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut content = String::new();
    for (index, (key, value)) in kept.iter().enumerate() {
        if index > 0 {
            content.push('&');
        }
        content.push_str(key);
        content.push('=');
        content.push_str(value);
    }
    content
}

/// SHA256withRSA (PKCS#1 v1.5) of `content`'s UTF-8 bytes, base64. The
/// private-key operation is blinded with a random factor (a timing
/// defence); PKCS#1 v1.5 is deterministic, so the signature is the same.
pub fn rsa2_sign(key: &RsaPrivateKey, content: &str) -> Result<String, SignError> {
    let digest = Sha256::digest(content.as_bytes());
    let signature = key
        .sign_with_rng(
            &mut rand::thread_rng(),
            Pkcs1v15Sign::new::<Sha256>(),
            &digest,
        )
        .map_err(|error| SignError::Signing(error.to_string()))?;
    Ok(BASE64.encode(signature))
}

/// Checks a base64 SHA256withRSA signature of `content`.
pub fn rsa2_verify(key: &RsaPublicKey, content: &str, sign: &str) -> Result<(), SignError> {
    if sign.is_empty() {
        return Err(SignError::Missing);
    }
    let signature = BASE64
        .decode(sign.trim())
        .map_err(|_| SignError::NotBase64)?;
    let digest = Sha256::digest(content.as_bytes());
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature)
        .map_err(|_| SignError::Mismatch)
}

/// The `sign` value for a request's parameters.
pub fn sign_params<'a>(
    key: &RsaPrivateKey,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<String, SignError> {
    rsa2_sign(key, &sign_content(params))
}

/// Verifies a received request (the sandbox's side): exactly one `sign`,
/// `sign_type=RSA2`, no parameter twice, and the signature over the rest
/// made by the app's key.
pub fn verify_request(
    app_public_key: &RsaPublicKey,
    params: &[(String, String)],
) -> Result<(), SignError> {
    for (index, (key, _)) in params.iter().enumerate() {
        if params[..index].iter().any(|(seen, _)| seen == key) {
            return Err(SignError::DuplicateParameter(key.clone()));
        }
    }
    let find = |name: &str| {
        params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    match find("sign_type") {
        Some(SIGN_TYPE_RSA2) => {}
        other => {
            return Err(SignError::UnsupportedSignType(
                other.unwrap_or_default().to_owned(),
            ));
        }
    }
    let sign = find("sign")
        .filter(|sign| !sign.is_empty())
        .ok_or(SignError::Missing)?;
    let content = sign_content(
        params
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str())),
    );
    rsa2_verify(app_public_key, &content, sign)
}

/// Verifies an answer's envelope with Alipay's public key: the signature
/// must be present and cover the node's exact text.
pub fn verify_response(
    alipay_public_key: &RsaPublicKey,
    envelope: &Envelope<'_>,
) -> Result<(), SignError> {
    let sign = envelope.sign.as_deref().ok_or(SignError::Missing)?;
    rsa2_verify(alipay_public_key, envelope.node_raw, sign)
}

/// The signature Alipay puts beside a node (the sandbox's side).
pub fn sign_response_node(
    alipay_private_key: &RsaPrivateKey,
    node_json: &str,
) -> Result<String, SignError> {
    rsa2_sign(alipay_private_key, node_json)
}

/// A complete signed answer body for `method`:
/// `{"<method>_response":<node_json>,"sign":"..."}`. `node_json` goes in
/// verbatim and is what the signature covers.
pub fn build_envelope(
    alipay_private_key: &RsaPrivateKey,
    method: &str,
    node_json: &str,
) -> Result<String, SignError> {
    build_named_envelope(
        alipay_private_key,
        &envelope::response_node_name(method),
        node_json,
    )
}

/// Like [`build_envelope`] with an explicit node name (e.g. [`envelope::ERROR_RESPONSE`]).
pub fn build_named_envelope(
    alipay_private_key: &RsaPrivateKey,
    node_name: &str,
    node_json: &str,
) -> Result<String, SignError> {
    let sign = sign_response_node(alipay_private_key, node_json)?;
    // Base64 has no character that JSON needs to escape.
    Ok(format!(
        "{{\"{node_name}\":{node_json},\"sign\":\"{sign}\"}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    // The protocol vectors in `adapters/testdata/vectors/`. They hold the
    // public half of Alipay's published SDK test key and the signatures the
    // SDK made with it; its private half is not in the repository. RSA
    // PKCS#1 v1.5 is deterministic (one key and one content give exactly one
    // valid signature), so a published signature that verifies over the
    // content we build proves both that content and the algorithm.
    const JAVA_SDK: &str = "ali_rsa_request_sign_java_sdk.json";
    const TRADE_PAY: &str = "ali_rsa2_trade_pay_request_computed.json";
    const NODEJS: &str = "ali_resp_envelope_verify_nodejs.json";

    fn json(name: &str) -> serde_json::Value {
        testing::vector_json(name)
    }

    fn params_of(value: &serde_json::Value) -> Vec<(String, String)> {
        value
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| (key.clone(), value.as_str().unwrap().to_owned()))
            .collect()
    }

    /// The public key of Alipay's published SDK test key pair.
    fn sdk_public_key(vector: &serde_json::Value) -> RsaPublicKey {
        public_key_from_pem(vector["public_key_pem"].as_str().unwrap()).unwrap()
    }

    /// A key pair generated for this test run: the signing side of the tests.
    fn generated_keys(name: &str) -> (RsaPrivateKey, RsaPublicKey) {
        let (private, public) = testing::rsa_key_pair_pem(name, KEY_BITS_MIN);
        (
            private_key_from_pem(&private).unwrap(),
            public_key_from_pem(&public).unwrap(),
        )
    }

    #[test]
    fn the_java_sdk_rsa2_cases_verify_over_our_string_to_sign() {
        // Alipay's own SDK test: our string to sign is its content exactly, and
        // its RSA2 signature of that content verifies under its public key.
        let vector = json(JAVA_SDK);
        let public = sdk_public_key(&vector);
        let mut rsa2_cases = 0;
        for case in vector["cases"].as_array().unwrap() {
            let params = params_of(&case["params"]);
            let content = sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            assert_eq!(
                content,
                case["expected_sign_content"].as_str().unwrap(),
                "{}",
                case["test"]
            );
            let expected = case["expected_sign"].as_str().unwrap();
            let mut signed = params.clone();
            signed.push(("sign".to_owned(), expected.to_owned()));
            if case["sign_type"] == "RSA2" {
                rsa2_cases += 1;
                assert_eq!(
                    rsa2_verify(&public, &content, expected),
                    Ok(()),
                    "{}",
                    case["test"]
                );
                assert_eq!(verify_request(&public, &signed), Ok(()));
                // One changed byte of the content and the same signature fails.
                let altered = content.replacen("2019", "2018", 1);
                assert_eq!(
                    rsa2_verify(&public, &altered, expected),
                    Err(SignError::Mismatch)
                );
            } else {
                // The legacy SHA1 "RSA" case: its content rule is the same, but the type is refused.
                assert_eq!(
                    verify_request(&public, &signed),
                    Err(SignError::UnsupportedSignType("RSA".to_owned()))
                );
                assert_eq!(
                    rsa2_verify(&public, &content, expected),
                    Err(SignError::Mismatch)
                );
            }
        }
        assert_eq!(
            rsa2_cases, 2,
            "both RSA2 cases, including the UTF-8 中文测试 one, ran"
        );
    }

    #[test]
    fn our_signer_makes_what_the_sdk_verified_verifier_accepts() {
        // rsa2_verify accepts the SDK's signatures (test above); what rsa2_sign
        // makes with any key verifies there too, and since PKCS#1 v1.5 allows one
        // signature per key and content, it is the SDK's signature for that key.
        let (private, public) = generated_keys("app");
        let content = json(JAVA_SDK)["cases"][1]["expected_sign_content"]
            .as_str()
            .unwrap()
            .to_owned();
        let sign = rsa2_sign(&private, &content).unwrap();
        assert_eq!(rsa2_verify(&public, &content, &sign), Ok(()));
        assert_eq!(
            rsa2_sign(&private, &content).unwrap(),
            sign,
            "deterministic"
        );
        assert_eq!(
            rsa2_verify(&public, &format!("{content}x"), &sign),
            Err(SignError::Mismatch)
        );
    }

    #[test]
    fn the_full_trade_pay_request_verifies_over_our_string_to_sign() {
        // Every common parameter plus biz_content's exact JSON text, signed with
        // the SDK test key when the vector was made.
        let vector = json(TRADE_PAY);
        let public = sdk_public_key(&vector);
        let params = params_of(&vector["params"]);
        let content = sign_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(content, vector["expected_sign_content"].as_str().unwrap());
        let expected = vector["expected_sign"].as_str().unwrap();
        assert_eq!(rsa2_verify(&public, &content, expected), Ok(()));
        let mut signed = params.clone();
        signed.push(("sign".to_owned(), expected.to_owned()));
        assert_eq!(verify_request(&public, &signed), Ok(()));
        // Any change to a signed parameter breaks it.
        signed[0].1.push('0');
        assert_eq!(verify_request(&public, &signed), Err(SignError::Mismatch));
        // sign_params over the same parameters makes a signature that verifies the same way.
        let (private, public) = generated_keys("app");
        let sign = sign_params(
            &private,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .unwrap();
        assert_eq!(rsa2_verify(&public, &content, &sign), Ok(()));
        let mut signed = params.clone();
        signed.push(("sign".to_owned(), sign));
        assert_eq!(verify_request(&public, &signed), Ok(()));
    }

    #[test]
    fn empty_values_and_sign_are_left_out_and_keys_sort_by_bytes() {
        let content = sign_content([
            ("b", "2"),
            ("sign", "zzz"),
            ("a", ""),
            ("B", "1"),
            ("", "x"),
            ("a_b", "3"),
        ]);
        assert_eq!(content, "B=1&a_b=3&b=2");
    }

    #[test]
    fn the_nodejs_answer_verifies_with_alipays_key_and_tampering_does_not() {
        // A real gateway answer: the extracted node verifies with the bundled Alipay public key.
        let vector = json(NODEJS);
        let public =
            public_key_from_pem(vector["alipay_public_key_pem"].as_str().unwrap()).unwrap();
        let body = vector["raw_response_body"].as_str().unwrap();
        let envelope = envelope::extract(body, "alipay.open.file.upload").unwrap();
        assert_eq!(verify_response(&public, &envelope), Ok(()));
        let tampered = body.replace("10000", "10001");
        let envelope = envelope::extract(&tampered, "alipay.open.file.upload").unwrap();
        assert_eq!(
            verify_response(&public, &envelope),
            Err(SignError::Mismatch)
        );
        let unsigned = Envelope {
            sign: None,
            ..envelope
        };
        assert_eq!(verify_response(&public, &unsigned), Err(SignError::Missing));
        assert_eq!(rsa2_verify(&public, "x", "***"), Err(SignError::NotBase64));
    }

    #[test]
    fn a_built_envelope_extracts_and_verifies() {
        // The sandbox's side and the client's side agree.
        let (private, public) = generated_keys("alipay");
        let node = r#"{"code":"10000","msg":"Success","url":"http:\/\/a\/b"}"#;
        let body = build_envelope(&private, "alipay.trade.pay", node).unwrap();
        let envelope = envelope::extract(&body, "alipay.trade.pay").unwrap();
        assert_eq!(envelope.node_raw, node);
        assert_eq!(verify_response(&public, &envelope), Ok(()));
        let error = build_named_envelope(&private, envelope::ERROR_RESPONSE, r#"{"code":"40002"}"#)
            .unwrap();
        let envelope = envelope::extract(&error, "alipay.trade.pay").unwrap();
        assert!(envelope.is_error_response());
        assert_eq!(verify_response(&public, &envelope), Ok(()));
    }

    #[test]
    fn requests_with_duplicate_or_missing_parts_are_refused() {
        let public = sdk_public_key(&json(JAVA_SDK));
        let base = vec![
            ("app_id".to_owned(), "1".to_owned()),
            ("sign_type".to_owned(), "RSA2".to_owned()),
        ];
        assert_eq!(verify_request(&public, &base), Err(SignError::Missing));
        let mut duplicate = base.clone();
        duplicate.push(("app_id".to_owned(), "2".to_owned()));
        assert_eq!(
            verify_request(&public, &duplicate),
            Err(SignError::DuplicateParameter("app_id".to_owned()))
        );
        let no_type = vec![
            ("app_id".to_owned(), "1".to_owned()),
            ("sign".to_owned(), "AAAA".to_owned()),
        ];
        assert_eq!(
            verify_request(&public, &no_type),
            Err(SignError::UnsupportedSignType(String::new()))
        );
    }

    #[test]
    fn keys_load_in_every_supported_form_and_weak_or_garbled_ones_do_not() {
        let vector = json(JAVA_SDK);
        // A generated key as PKCS#8 PEM, as PKCS#1 PEM and as bare base64 DER
        // (as Alipay's key tool prints it): one key.
        let (pem, public_pem) = testing::rsa_key_pair_pem("app", 2048);
        let pkcs8 = private_key_from_pem(&pem).unwrap();
        let pkcs1 = testing::pkcs1_private_pem(&pem);
        assert!(pkcs1.starts_with("-----BEGIN RSA "), "the PKCS#1 form");
        assert_eq!(private_key_from_pem(&pkcs1).unwrap(), pkcs8);
        assert_eq!(
            private_key_from_pem(&testing::pem_body(&pem)).unwrap(),
            pkcs8
        );
        assert_eq!(
            public_key_from_pem(&public_pem).unwrap(),
            pkcs8.to_public_key()
        );
        let (weak, _) = testing::rsa_key_pair_pem("weak", 1024);
        assert_eq!(
            private_key_from_pem(&weak).unwrap_err(),
            KeyError::TooShort { bits: 1024 }
        );
        assert_eq!(
            private_key_from_pem(&testing::pkcs1_private_pem(&weak)).unwrap_err(),
            KeyError::TooShort { bits: 1024 }
        );
        assert_eq!(
            private_key_from_pem("not a key").unwrap_err(),
            KeyError::UnreadablePrivateKey
        );
        assert_eq!(
            private_key_from_pem("").unwrap_err(),
            KeyError::UnreadablePrivateKey
        );
        let public_pem = vector["public_key_pem"].as_str().unwrap();
        let public_bare: String = public_pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert_eq!(
            public_key_from_pem(&public_bare).unwrap(),
            public_key_from_pem(public_pem).unwrap()
        );
        assert_eq!(
            public_key_from_pem(&pem).unwrap_err(),
            KeyError::UnreadablePublicKey
        );
        assert!(!KeyError::UnreadablePrivateKey.to_string().contains("MII"));
    }
}
