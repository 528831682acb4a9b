//! WeChat Pay v2 signatures, exactly as documented (安全规范; docs/rules.md):
//! every field except `sign` and empty values, sorted by name in byte order,
//! joined `k=v&…`, then `&key=API_KEY` appended; MD5 or HMAC-SHA256 (keyed
//! with the API key) of that text, in upper-case hex. Used by the client for
//! requests and answers, and by the sandbox for the other direction.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::xml::Params;

/// The signature algorithm, chosen per merchant. Answers are signed with the
/// algorithm of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SignType {
    /// WeChat's default; a request without `sign_type` is MD5.
    #[default]
    Md5,
    /// `sign_type=HMAC-SHA256`, sent in the request and signed with it.
    HmacSha256,
}

impl SignType {
    /// The wire value of the `sign_type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }

    /// Parses a wire value (`MD5`, `HMAC-SHA256`).
    pub fn parse(text: &str) -> Option<SignType> {
        match text {
            "MD5" => Some(SignType::Md5),
            "HMAC-SHA256" => Some(SignType::HmacSha256),
            _ => None,
        }
    }
}

/// The merchant's API key (商户平台 → API安全), a shared secret held in
/// `secrecy`'s secret string: it never prints, and is read only through
/// `expose_secret` (for signing and nothing else).
pub type ApiKey = SecretString;

/// The length WeChat issues API keys with.
pub const API_KEY_LEN: usize = 32;

/// Why `key` cannot be WeChat's: empty, not 32 characters, or not printable
/// ASCII (a stray newline from a key file is the usual cause). The message
/// never contains the key.
pub fn validate_api_key(key: &ApiKey) -> Result<(), String> {
    let key = key.expose_secret();
    if key.is_empty() {
        return Err("the API key is empty".to_owned());
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the API key must be printable ASCII without spaces or line breaks".to_owned());
    }
    if key.len() != API_KEY_LEN {
        return Err(format!(
            "the API key must be {API_KEY_LEN} characters, this one has {}",
            key.len()
        ));
    }
    Ok(())
}

/// `stringA` of the documentation: the signed fields, sorted, joined.
/// Values are raw (no URL or XML escaping).
pub fn string_a(params: &Params) -> String {
    // `Params` is a BTreeMap<String, String>: iteration is in byte order of
    // the names, which is the documented ASCII, case-sensitive order.
    let mut text = String::new();
    for (name, value) in params {
        if name == "sign" || value.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push('&');
        }
        text.push_str(name);
        text.push('=');
        text.push_str(value);
    }
    text
}

/// `stringSignTemp`: `stringA` followed by `&key=API_KEY`. Contains the key:
/// never log it.
fn string_sign_temp(params: &Params, key: &ApiKey) -> String {
    let mut text = string_a(params);
    text.push_str("&key=");
    text.push_str(key.expose_secret());
    text
}

/// The `sign` value for `params` (any `sign` already in it is ignored).
pub fn sign(params: &Params, key: &ApiKey, sign_type: SignType) -> String {
    let message = string_sign_temp(params, key);
    match sign_type {
        SignType::Md5 => upper_hex(&Md5::digest(message.as_bytes())),
        SignType::HmacSha256 => {
            let mut mac = hmac_sha256(key);
            mac.update(message.as_bytes());
            upper_hex(&mac.finalize().into_bytes())
        }
    }
}

/// Adds `sign` (and `sign_type` for HMAC-SHA256, before signing, since it is
/// an ordinary signed field) to a request.
pub fn sign_request(params: &mut Params, key: &ApiKey, sign_type: SignType) {
    params.remove("sign");
    if sign_type == SignType::HmacSha256 {
        params.insert("sign_type".to_owned(), sign_type.as_str().to_owned());
    }
    let signature = sign(params, key, sign_type);
    params.insert("sign".to_owned(), signature);
}

/// Whether `params` carries a `sign` that matches its other fields. Unknown
/// extra fields are part of the signed set, as the documentation requires.
/// The comparison takes the same time wherever the first difference is.
pub fn verify(params: &Params, key: &ApiKey, sign_type: SignType) -> bool {
    let Some(received) = params.get("sign") else {
        return false;
    };
    let expected = sign(params, key, sign_type);
    // Hex case carries no meaning; WeChat sends upper case.
    let received = received.to_ascii_uppercase();
    expected.as_bytes().ct_eq(received.as_bytes()).into()
}

/// The length of the nonces this module makes (WeChat allows up to 32).
pub const NONCE_LEN: usize = 32;

/// A fresh `nonce_str`: 32 random letters and digits from the thread's
/// cryptographically secure generator.
pub fn new_nonce() -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(NONCE_LEN)
        .map(char::from)
        .collect()
}

fn hmac_sha256(key: &ApiKey) -> Hmac<Sha256> {
    // HMAC is defined for keys of every length (long keys are hashed), so
    // `new_from_slice` cannot fail for SHA-256.
    <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length")
}

fn upper_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::wechat::xml::parse;
    use serde_json::Value;

    /// The protocol vector `name`, read at test time from
    /// `adapters/testdata/vectors/` (with the documentation's published
    /// example key, which signs nothing but the examples).
    fn vector(name: &str) -> Value {
        testing::vector_json(name)
    }

    fn params_of(value: &Value) -> Params {
        value
            .as_object()
            .expect("params are an object")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("string values").to_owned()))
            .collect()
    }

    #[test]
    fn the_documented_example_signs_byte_for_byte() {
        // wx_v2_sign_doc_example.json: the official MD5 and the HMAC-SHA256 of WxJava's test.
        let v = vector("wx_v2_sign_doc_example.json");
        let key = ApiKey::from(v["key"].as_str().unwrap());
        let params = params_of(&v["params"]);
        assert_eq!(
            string_a(&params),
            v["expected"]["string_a"].as_str().unwrap()
        );
        assert_eq!(
            string_sign_temp(&params, &key),
            v["expected"]["string_sign_temp"].as_str().unwrap()
        );
        assert_eq!(
            sign(&params, &key, SignType::Md5),
            v["expected"]["MD5"].as_str().unwrap()
        );
        assert_eq!(
            sign(&params, &key, SignType::HmacSha256),
            v["expected"]["HMAC-SHA256"].as_str().unwrap()
        );
    }

    #[test]
    fn the_documented_xml_verifies_and_a_changed_field_does_not() {
        // wx_v2_verify_xml_doc_example.json: the corrected official XML.
        let v = vector("wx_v2_verify_xml_doc_example.json");
        let key = ApiKey::from(v["key"].as_str().unwrap());
        let mut params = parse(v["raw_xml"].as_str().unwrap()).unwrap();
        assert!(verify(&params, &key, SignType::Md5));
        assert!(
            !verify(&params, &key, SignType::HmacSha256),
            "the algorithm is part of the check"
        );
        params.insert("body".to_owned(), "test2".to_owned());
        assert!(!verify(&params, &key, SignType::Md5));
        params.remove("sign");
        assert!(!verify(&params, &key, SignType::Md5), "no sign, no trust");
    }

    #[test]
    fn the_signed_round_trips_reproduce_every_request_sign_and_verify_every_answer() {
        // gochat's tests, signed with the documented key: requests signed by us
        // must equal theirs, and their raw answers must verify after our XML parse.
        let fixtures = [
            "wx_v2_micropay_roundtrip_gochat.json",
            "wx_v2_orderquery_roundtrip_gochat.json",
            "wx_v2_refund_roundtrip_gochat.json",
            "wx_v2_downloadbill_request_gochat.json",
        ];
        let mut requests_checked = 0;
        for name in fixtures {
            let v = vector(name);
            let key = ApiKey::from(v["key"].as_str().unwrap());
            for request in v["requests"].as_array().unwrap() {
                let params = params_of(&request["params"]);
                assert_eq!(
                    string_a(&params),
                    request["expected_string_a"].as_str().unwrap()
                );
                let expected = request["expected_sign_md5"].as_str().unwrap();
                assert_eq!(
                    sign(&params, &key, SignType::Md5),
                    expected,
                    "{}",
                    request["test"]
                );
                assert!(verify(&params, &key, SignType::Md5));
                let mut resigned = params.clone();
                sign_request(&mut resigned, &key, SignType::Md5);
                assert_eq!(resigned, params, "MD5 requests carry no sign_type");
                requests_checked += 1;
            }
            if let Some(raw) = v["response_raw_xml"].as_str() {
                let answer = parse(raw).unwrap();
                assert_eq!(answer, params_of(&v["response_fields"]), "{}", v["id"]);
                assert!(verify(&answer, &key, SignType::Md5), "{}", v["id"]);
                let mut tampered = answer.clone();
                tampered.insert("total_fee".to_owned(), "2".to_owned());
                assert!(!verify(&tampered, &key, SignType::Md5));
            }
        }
        assert_eq!(requests_checked, 6);
    }

    #[test]
    fn empty_values_and_sign_are_left_out_and_names_sort_case_sensitively() {
        let params: Params = [
            ("b", "2"),
            ("B", "1"),
            ("a", ""),
            ("sign", "X"),
            ("c_1", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(string_a(&params), "B=1&b=2&c_1=3");
    }

    #[test]
    fn hmac_requests_sign_their_sign_type_and_lowercase_hex_still_verifies() {
        let key = ApiKey::from(testing::random_api_key());
        let mut params: Params = [("appid", "wx1"), ("nonce_str", "n")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        sign_request(&mut params, &key, SignType::HmacSha256);
        assert_eq!(params["sign_type"], "HMAC-SHA256");
        assert_eq!(params["sign"].len(), 64);
        assert!(verify(&params, &key, SignType::HmacSha256));
        let lower = params["sign"].to_ascii_lowercase();
        params.insert("sign".to_owned(), lower);
        assert!(verify(&params, &key, SignType::HmacSha256));
        assert!(!verify(
            &params,
            &ApiKey::from("0".repeat(32)),
            SignType::HmacSha256
        ));
    }

    #[test]
    fn the_key_never_prints_and_bad_keys_are_named_without_the_key() {
        let secret = testing::random_api_key();
        let key = ApiKey::from(secret.as_str());
        assert_eq!(format!("{key:?}"), "SecretBox<str>([REDACTED])");
        assert!(validate_api_key(&key).is_ok());
        assert!(validate_api_key(&ApiKey::from("")).is_err());
        let short = validate_api_key(&ApiKey::from("secret-but-short")).unwrap_err();
        assert!(!short.contains("secret"), "{short}");
        let newline = validate_api_key(&ApiKey::from(format!("{secret}\n"))).unwrap_err();
        assert!(newline.contains("line breaks"), "{newline}");
        assert!(!newline.contains(&secret), "{newline}");
    }

    #[test]
    fn nonces_are_32_fresh_alphanumerics() {
        let (a, b) = (new_nonce(), new_nonce());
        assert_eq!(a.len(), NONCE_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn sign_types_round_trip_their_wire_names() {
        for t in [SignType::Md5, SignType::HmacSha256] {
            assert_eq!(SignType::parse(t.as_str()), Some(t));
        }
        assert_eq!(SignType::parse("SHA1"), None);
    }
}
