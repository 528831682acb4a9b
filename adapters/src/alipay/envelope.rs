//! Alipay's response envelope, read without re-serialising anything.
//!
//! An answer looks like `{"alipay_trade_pay_response":{...},"sign":"..."}`.
//! Alipay signs the exact bytes of the node's value as they appear in the
//! body (escaped `\/`, key order and inner spacing included), so the node
//! must be sliced out of the raw text: parsing it into a map and printing it
//! again would change the bytes and break the signature. This module finds
//! the `<method with dots replaced by underscores>_response` member (or the
//! gateway's `error_response`) and the top-level `sign`, and lists the
//! members of a JSON object with their raw values so that numbers are read
//! as the exact text Alipay sent, never through a float.
//!
//! The whole body is first checked to be well-formed JSON, so a truncated
//! body is an error and the scanner below only walks valid text. A key that
//! appears twice at the level being read is an error too: a body that could
//! be read two ways is not trusted.

use serde::de::IgnoredAny;

/// The member the gateway uses instead of the method's node for errors it
/// raises itself (bad app id, bad signature, ...).
pub const ERROR_RESPONSE: &str = "error_response";

/// The name of `method`'s response node: `alipay.trade.pay` → `alipay_trade_pay_response`.
pub fn response_node_name(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// Why a body is not a readable Alipay envelope. Every variant means the
/// answer cannot be trusted: callers turn it into an unknown outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not well-formed JSON (truncated, garbage, an HTML error page).
    #[error("body is not well-formed JSON: {0}")]
    Malformed(String),
    /// Well-formed, but not a JSON object where one is required.
    #[error("{0} is not a JSON object")]
    NotAnObject(String),
    /// Neither the method's node nor `error_response` is present.
    #[error("body has neither {0} nor error_response")]
    MissingNode(String),
    /// The same key twice at one level: the body could be read two ways.
    #[error("key {0} appears more than once")]
    DuplicateKey(String),
    /// Both the method's node and `error_response`: which one is the answer?
    #[error("body has both {0} and error_response")]
    Ambiguous(String),
}

/// The parts of a response body that the signature covers and carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `<method>_response` or [`ERROR_RESPONSE`].
    pub node_name: String,
    /// The node's value exactly as in the body, from `{` to its matching `}`:
    /// the signed content.
    pub node_raw: &'a str,
    /// The top-level `sign`, when it is a non-empty string.
    pub sign: Option<String>,
}

impl Envelope<'_> {
    /// Whether the gateway answered with `error_response` instead of the method's node.
    pub fn is_error_response(&self) -> bool {
        self.node_name == ERROR_RESPONSE
    }
}

/// Finds `method`'s node (or `error_response`) and the `sign` in `body`.
pub fn extract<'a>(body: &'a str, method: &str) -> Result<Envelope<'a>, EnvelopeError> {
    let node_name = response_node_name(method);
    let members = object_members(body).map_err(|error| match error {
        EnvelopeError::NotAnObject(_) => EnvelopeError::NotAnObject("body".to_owned()),
        other => other,
    })?;
    let node = members.iter().find(|(key, _)| *key == node_name);
    let error_node = members.iter().find(|(key, _)| key == ERROR_RESPONSE);
    let (name, raw) = match (node, error_node) {
        (Some(_), Some(_)) => return Err(EnvelopeError::Ambiguous(node_name)),
        (Some((name, raw)), None) | (None, Some((name, raw))) => (name.clone(), *raw),
        (None, None) => return Err(EnvelopeError::MissingNode(node_name)),
    };
    if !raw.starts_with('{') {
        return Err(EnvelopeError::NotAnObject(name));
    }
    let sign = members
        .iter()
        .find(|(key, _)| key == "sign")
        .and_then(|(_, raw)| serde_json::from_str::<String>(raw).ok())
        .filter(|sign| !sign.is_empty());
    Ok(Envelope {
        node_name: name,
        node_raw: raw,
        sign,
    })
}

/// The members of the JSON object `raw`, in order, each with its value's
/// exact text (strings still quoted and escaped, numbers as written).
/// Keys are decoded. A key that appears twice is an error.
pub fn object_members(raw: &str) -> Result<Vec<(String, &str)>, EnvelopeError> {
    serde_json::from_str::<IgnoredAny>(raw)
        .map_err(|error| EnvelopeError::Malformed(error.to_string()))?;
    let mut scanner = Scanner { text: raw, pos: 0 };
    scanner.skip_whitespace();
    if !scanner.eat(b'{') {
        return Err(EnvelopeError::NotAnObject("value".to_owned()));
    }
    let mut members: Vec<(String, &str)> = Vec::new();
    loop {
        scanner.skip_whitespace();
        if scanner.eat(b'}') {
            break;
        }
        let key_raw = scanner.string()?;
        let key: String = serde_json::from_str(key_raw)
            .map_err(|error| EnvelopeError::Malformed(error.to_string()))?;
        scanner.skip_whitespace();
        scanner.expect(b':')?;
        scanner.skip_whitespace();
        let value = scanner.value()?;
        if members.iter().any(|(seen, _)| *seen == key) {
            return Err(EnvelopeError::DuplicateKey(key));
        }
        members.push((key, value));
        scanner.skip_whitespace();
        if scanner.eat(b',') {
            continue;
        }
        scanner.expect(b'}')?;
        break;
    }
    Ok(members)
}

/// A cursor over text already known to be well-formed JSON; it only finds
/// where each value starts and ends.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), EnvelopeError> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn unexpected(&self) -> EnvelopeError {
        EnvelopeError::Malformed(format!("unexpected input at byte {}", self.pos))
    }

    /// A string, quotes included. Escapes are skipped over, not decoded.
    fn string(&mut self) -> Result<&'a str, EnvelopeError> {
        let start = self.pos;
        self.expect(b'"')?;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(&self.text[start..self.pos]);
                }
                // The escaped character (for `\u`, the `u`; the hex digits follow as plain text).
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
                None => return Err(self.unexpected()),
            }
        }
    }

    /// Any value: its exact text.
    fn value(&mut self) -> Result<&'a str, EnvelopeError> {
        let start = self.pos;
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        Some(b'"') => {
                            self.string()?;
                            continue;
                        }
                        Some(b'{' | b'[') => depth += 1,
                        Some(b'}' | b']') => {
                            depth -= 1;
                            if depth == 0 {
                                self.pos += 1;
                                break;
                            }
                        }
                        Some(_) => {}
                        None => return Err(self.unexpected()),
                    }
                    self.pos += 1;
                }
            }
            Some(_) => {
                // A number, true, false or null: runs to the next delimiter.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
            }
            None => return Err(self.unexpected()),
        }
        if self.pos == start {
            return Err(self.unexpected());
        }
        Ok(&self.text[start..self.pos])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol vector, read at test time from `adapters/testdata/vectors/`.
    const VECTOR: &str = "ali_resp_envelope_verify_nodejs.json";

    #[test]
    fn the_nodejs_vector_node_is_extracted_byte_for_byte() {
        // The SDK vector: a real gateway answer; the extracted text is what Alipay signed.
        let vector: serde_json::Value = crate::testing::vector_json(VECTOR);
        let body = vector["raw_response_body"].as_str().unwrap();
        let envelope = extract(body, "alipay.open.file.upload").unwrap();
        assert_eq!(
            envelope.node_name,
            vector["response_node_name"].as_str().unwrap()
        );
        assert_eq!(
            envelope.node_raw,
            vector["expected_extracted_content"].as_str().unwrap()
        );
        assert_eq!(envelope.sign.as_deref(), vector["expected_sign"].as_str());
        assert!(!envelope.is_error_response());
    }

    #[test]
    fn escaped_slashes_spacing_and_inner_sign_stay_as_sent() {
        // The node is sliced, not re-serialised: `\/`, inner spaces and a nested "sign" are content.
        let body = "{ \"alipay_trade_query_response\" :  {\"code\": \"10000\",\"url\":\"http:\\/\\/x\\/y\",\"sign\":\"inner\",\"n\":{\"a\":[1,{\"b\":\"}\"}]}} ,\"sign\":\"outer\"}";
        let envelope = extract(body, "alipay.trade.query").unwrap();
        assert_eq!(
            envelope.node_raw,
            "{\"code\": \"10000\",\"url\":\"http:\\/\\/x\\/y\",\"sign\":\"inner\",\"n\":{\"a\":[1,{\"b\":\"}\"}]}}"
        );
        assert_eq!(envelope.sign.as_deref(), Some("outer"));
    }

    #[test]
    fn sign_may_come_before_the_node() {
        // Slicing "from _response to ,sign" would break here; brace matching does not.
        let body = r#"{"sign":"abc","alipay_trade_pay_response":{"code":"10003","msg":"x\"y"},"alipay_cert_sn":"1"}"#;
        let envelope = extract(body, "alipay.trade.pay").unwrap();
        assert_eq!(envelope.node_raw, r#"{"code":"10003","msg":"x\"y"}"#);
        assert_eq!(envelope.sign.as_deref(), Some("abc"));
    }

    #[test]
    fn gateway_errors_come_as_error_response_and_may_be_unsigned() {
        let body = r#"{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.code-invalid"},"sign":""}"#;
        let envelope = extract(body, "alipay.trade.pay").unwrap();
        assert!(envelope.is_error_response());
        assert_eq!(envelope.sign, None, "an empty sign is no sign");
        let unsigned = r#"{"alipay_trade_query_response":{"code":"40002"}}"#;
        assert_eq!(extract(unsigned, "alipay.trade.query").unwrap().sign, None);
    }

    #[test]
    fn truncated_duplicate_missing_and_ambiguous_bodies_are_errors() {
        let truncated = r#"{"alipay_trade_pay_response":{"code":"10000","msg":"Succ"#;
        assert!(matches!(
            extract(truncated, "alipay.trade.pay"),
            Err(EnvelopeError::Malformed(_))
        ));
        let html = "<html>502 Bad Gateway</html>";
        assert!(matches!(
            extract(html, "alipay.trade.pay"),
            Err(EnvelopeError::Malformed(_))
        ));
        let duplicate = r#"{"alipay_trade_pay_response":{"code":"40004"},"alipay_trade_pay_response":{"code":"10000"}}"#;
        assert_eq!(
            extract(duplicate, "alipay.trade.pay"),
            Err(EnvelopeError::DuplicateKey(
                "alipay_trade_pay_response".to_owned()
            ))
        );
        let other_method = r#"{"alipay_trade_query_response":{"code":"10000"},"sign":"x"}"#;
        assert!(matches!(
            extract(other_method, "alipay.trade.pay"),
            Err(EnvelopeError::MissingNode(_))
        ));
        let both = r#"{"alipay_trade_pay_response":{},"error_response":{}}"#;
        assert!(matches!(
            extract(both, "alipay.trade.pay"),
            Err(EnvelopeError::Ambiguous(_))
        ));
        let not_object = r#"{"alipay_trade_pay_response":"10000"}"#;
        assert!(matches!(
            extract(not_object, "alipay.trade.pay"),
            Err(EnvelopeError::NotAnObject(_))
        ));
        assert!(matches!(
            extract("[1]", "alipay.trade.pay"),
            Err(EnvelopeError::NotAnObject(_))
        ));
    }

    #[test]
    fn members_keep_numbers_as_written() {
        // Amounts sometimes come as numbers; they are read as their exact text, never a float.
        let members =
            object_members(r#"{"total_amount": 88.88 ,"n":null,"ok":true,"s":"\u0041","list":[]}"#)
                .unwrap();
        let find = |name: &str| {
            members
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, raw)| *raw)
        };
        assert_eq!(find("total_amount"), Some("88.88"));
        assert_eq!(find("n"), Some("null"));
        assert_eq!(find("ok"), Some("true"));
        assert_eq!(find("s"), Some(r#""\u0041""#));
        assert_eq!(find("list"), Some("[]"));
        assert_eq!(object_members("{}").unwrap(), vec![]);
    }
}
