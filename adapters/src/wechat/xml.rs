//! WeChat Pay v2's XML envelope: a flat `<xml><name>value</name>…</xml>`
//! map in both directions. CDATA and escaped text decode alike, and the
//! decoded values are what the signature covers. Anything that is not such a
//! flat map (nesting, duplicate names, a missing end, trailing text) is an
//! error, so that a truncated or forged body can never half-parse.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::Event;

/// The fields of one request or answer, by name. A `BTreeMap`, so iteration
/// is in the byte order the signature needs.
pub type Params = BTreeMap<String, String>;

/// Why a body is not a WeChat XML map. The message names the problem, never
/// a field's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WeChat XML answer: {0}")]
pub struct XmlError(String);

impl XmlError {
    fn new(reason: impl Into<String>) -> XmlError {
        XmlError(reason.into())
    }
}

/// Writes `params` as WeChat's request body. Numbers go as plain text and
/// everything else in CDATA, as the official SDKs do; a value containing
/// `]]>` is split across two CDATA sections so it cannot close the section.
///
/// Names must be XML names; the callers only use WeChat's `[a-z0-9_]` names.
pub fn to_xml(params: &Params) -> String {
    let mut body = String::from("<xml>");
    for (name, value) in params {
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "field names are plain ASCII"
        );
        body.push('<');
        body.push_str(name);
        body.push('>');
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            body.push_str(value);
        } else {
            body.push_str("<![CDATA[");
            body.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
            body.push_str("]]>");
        }
        body.push_str("</");
        body.push_str(name);
        body.push('>');
    }
    body.push_str("</xml>");
    body
}

/// Reads a WeChat XML body into its fields. Text, entities and CDATA
/// sections decode to the same value; whitespace between fields is ignored,
/// whitespace inside a value is kept as sent.
pub fn parse(body: &str) -> Result<Params, XmlError> {
    // A byte-order mark is not text outside the root.
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let mut reader = Reader::from_str(body);
    let mut params = Params::new();
    // The field being read: its name and the text collected so far.
    let mut field: Option<(String, String)> = None;
    let mut in_root = false;
    let mut root_done = false;
    loop {
        let event = reader.read_event().map_err(|e| {
            XmlError::new(format!(
                "malformed XML at byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match event {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err(XmlError::new("a DOCTYPE is not allowed")),
            Event::Start(start) => {
                let name = element_name(start.name().as_ref())?;
                if root_done {
                    return Err(XmlError::new("content after the root element"));
                }
                if !in_root {
                    if name != "xml" {
                        return Err(XmlError::new("the root element must be <xml>"));
                    }
                    in_root = true;
                } else if field.is_some() {
                    return Err(XmlError::new(format!(
                        "nested element inside <{name}>'s parent"
                    )));
                } else {
                    field = Some((name, String::new()));
                }
            }
            Event::Empty(empty) => {
                let name = element_name(empty.name().as_ref())?;
                if !in_root || field.is_some() || root_done {
                    return Err(XmlError::new(format!("unexpected empty element <{name}/>")));
                }
                insert(&mut params, name, String::new())?;
            }
            Event::Text(text) => {
                let decoded = text
                    .unescape()
                    .map_err(|e| XmlError::new(format!("bad text or entity: {e}")))?;
                match field.as_mut() {
                    Some((_, value)) => value.push_str(&decoded),
                    None if decoded.trim().is_empty() => {}
                    None => return Err(XmlError::new("text outside a field")),
                }
            }
            Event::CData(cdata) => {
                let decoded = cdata
                    .decode()
                    .map_err(|e| XmlError::new(format!("CDATA is not UTF-8: {e}")))?;
                match field.as_mut() {
                    Some((_, value)) => value.push_str(&decoded),
                    None => return Err(XmlError::new("CDATA outside a field")),
                }
            }
            Event::End(_) => match field.take() {
                // quick-xml checks that the end name matches its start.
                Some((name, value)) => insert(&mut params, name, value)?,
                None if in_root && !root_done => root_done = true,
                None => return Err(XmlError::new("unbalanced end tag")),
            },
            Event::Eof => break,
        }
    }
    if !root_done {
        return Err(XmlError::new("the body ends before </xml>"));
    }
    Ok(params)
}

fn element_name(raw: &[u8]) -> Result<String, XmlError> {
    let name =
        std::str::from_utf8(raw).map_err(|_| XmlError::new("an element name is not UTF-8"))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(XmlError::new("an element name is not a WeChat field name"));
    }
    Ok(name.to_owned())
}

fn insert(params: &mut Params, name: String, value: String) -> Result<(), XmlError> {
    if params.contains_key(&name) {
        // Two values for one field: which one did the signer mean?
        return Err(XmlError::new(format!("field {name} appears twice")));
    }
    params.insert(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn cdata_and_plain_text_read_alike() {
        let cdata = parse(&crate::testing::vector(
            "wx_v2_micropay_resp_success_official.xml",
        ))
        .unwrap();
        assert_eq!(cdata["total_fee"], "1");
        assert_eq!(cdata["return_code"], "SUCCESS");
        assert_eq!(cdata["attach"], "订单额外描述");
        assert_eq!(cdata["time_end"], "20141111170043");
        let mixed = parse("<xml><a><![CDATA[x]]></a><b>x</b><c>&lt;1&amp;&#50;&gt;</c><d><![CDATA[p]]>q</d></xml>").unwrap();
        assert_eq!(
            mixed,
            params(&[("a", "x"), ("b", "x"), ("c", "<1&2>"), ("d", "pq")])
        );
    }

    #[test]
    fn empty_fields_and_declarations_are_accepted() {
        assert_eq!(
            parse("\u{feff}<xml><a>1</a></xml>").unwrap(),
            params(&[("a", "1")])
        );
        let answer = parse("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><a></a><b/><c><![CDATA[]]></c></xml>\n").unwrap();
        assert_eq!(answer, params(&[("a", ""), ("b", ""), ("c", "")]));
        let request = parse(&crate::testing::vector("wx_v2_refund_req_official.xml")).unwrap();
        assert_eq!(request["transaction_id"], "");
    }

    #[test]
    fn whitespace_inside_a_value_is_kept() {
        assert_eq!(parse("<xml>\n\t<a> 1 </a>\n</xml>").unwrap()["a"], " 1 ");
    }

    #[test]
    fn truncated_nested_duplicated_or_foreign_bodies_are_errors() {
        let full = &crate::testing::vector("wx_v2_micropay_resp_success_official.xml");
        for cut in [10, full.len() / 2, full.len() - 8] {
            assert!(parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        for bad in [
            "",
            "SUCCESS",
            "<html><body>502</body></html>",
            "<xml><a><b>1</b></a></xml>",
            "<xml><a>1</a><a>2</a></xml>",
            "<xml><a>1</b></xml>",
            "<xml>text<a>1</a></xml>",
            "<xml><a>1</a></xml><xml></xml>",
            "<!DOCTYPE xml [<!ENTITY e \"x\">]><xml><a>&e;</a></xml>",
            "<xml><a>&unknown;</a></xml>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn written_bodies_read_back_identically() {
        let original = params(&[
            ("total_fee", "100"),
            ("body", "付款码 <支付> & \"测试\""),
            ("attach", "a]]>b"),
            ("empty", ""),
            ("out_trade_no", "A-1_2"),
        ]);
        let body = to_xml(&original);
        assert!(body.starts_with("<xml>") && body.ends_with("</xml>"));
        assert!(body.contains("<total_fee>100</total_fee>"), "{body}");
        assert!(
            body.contains("<out_trade_no><![CDATA[A-1_2]]></out_trade_no>"),
            "{body}"
        );
        assert_eq!(parse(&body).unwrap(), original);
    }
}
