//! Request bodies: strict JSON objects. Malformed JSON, a non-object or an
//! unknown field is 400; a field of the wrong type or value is 422 naming it.
//! Validation happens before anything is written.

use serde_json::{Map, Value};

use super::error::ApiError;

/// A JSON object whose fields are taken one by one.
#[derive(Debug)]
pub struct Fields {
    object: Map<String, Value>,
}

impl Fields {
    /// Parses `bytes` as a JSON object with only the `allowed` fields.
    pub fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Fields, ApiError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| ApiError::malformed("the body is not valid UTF-8"))?;
        let value: Value = serde_json::from_str(text)
            .map_err(|error| ApiError::malformed(format!("the body is not valid JSON: {error}")))?;
        let Value::Object(object) = value else {
            return Err(ApiError::malformed("the body must be a JSON object"));
        };
        if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
            let mut error = ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "unknown_field",
                format!("unknown field {unknown:?}; allowed: {}", allowed.join(", ")),
            );
            error.field = Some(unknown.clone());
            return Err(error);
        }
        Ok(Fields { object })
    }

    /// A required string field.
    pub fn string(&self, name: &str) -> Result<&str, ApiError> {
        self.optional_string(name)?.ok_or_else(|| {
            ApiError::invalid(
                name,
                format!("missing_{name}"),
                format!("{name} is required"),
            )
        })
    }

    /// An optional string field (absent or null is `None`).
    pub fn optional_string(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.object.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(ApiError::invalid(
                name,
                format!("invalid_{name}"),
                format!("{name} must be a string"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_malformed_bodies_from_invalid_fields() {
        let allowed = ["amount", "subject"];
        assert_eq!(Fields::parse(b"{", &allowed).unwrap_err().status, 400);
        assert_eq!(Fields::parse(b"[1]", &allowed).unwrap_err().status, 400);
        assert_eq!(Fields::parse(b"\xff", &allowed).unwrap_err().status, 400);
        let unknown = Fields::parse(br#"{"amount":"1","tip":"2"}"#, &allowed).unwrap_err();
        assert_eq!(
            (unknown.status.as_u16(), unknown.field.as_deref()),
            (400, Some("tip"))
        );
        let fields = Fields::parse(br#"{"amount": 12.5, "subject": null}"#, &allowed).unwrap();
        let wrong_type = fields.string("amount").unwrap_err();
        assert_eq!(
            (wrong_type.status.as_u16(), wrong_type.field.as_deref()),
            (422, Some("amount"))
        );
        assert_eq!(fields.optional_string("subject").unwrap(), None);
        assert_eq!(
            fields.string("subject").unwrap_err().code,
            "missing_subject"
        );
    }
}
