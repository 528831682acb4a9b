//! The stored form of events: a name, a schema version and a JSON object.
//!
//! This is the one place that knows how events are written down. Old schema
//! versions are upcast here before decoding, so every event ever written
//! still loads after the schema grows.

use serde_json::{Map, Value};

use super::event::Event;

/// The schema version every event is written with today. Bump it for a
/// stored name when its payload changes, and teach [`upcast`] the old form.
pub const SCHEMA_VERSION: u32 = 1;

/// Every stored event name, in the order of a payment's life.
pub const STORED_NAMES: [&str; 17] = [
    "Submitted",
    "UserPaying",
    "PayAnswerUnknown",
    "QueryResult",
    "Paid",
    "PaymentFailed",
    "RevokeRequested",
    "RevokeRetryScheduled",
    "Revoked",
    "RevokeRejected",
    "ManualReviewRequired",
    "OperatorResolved",
    "RefundRequested",
    "RefundPending",
    "Refunded",
    "RefundFailed",
    "StatementLineMatched",
];

/// An event ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub name: &'static str,
    pub schema_version: u32,
    pub data: Vec<u8>,
}

/// Why stored bytes do not decode into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown stored event name {0:?}")]
    UnknownName(String),
    #[error("event {name} has schema version {version}, newer than this program knows ({known})")]
    FutureVersion {
        name: String,
        version: u32,
        known: u32,
    },
    #[error("event {name} does not decode: {source}")]
    Malformed {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Encodes an event for the store.
pub fn encode(event: &Event) -> StoredEvent {
    let mut object = match serde_json::to_value(event) {
        Ok(Value::Object(object)) => object,
        // Every field is a string, number, bool, map or list: serialising cannot fail.
        other => unreachable!("an event serialises to a JSON object, got {other:?}"),
    };
    object.remove("type");
    let data = serde_json::to_vec(&Value::Object(object)).expect("a JSON value serialises");
    StoredEvent {
        name: event.fact.stored_name(),
        schema_version: SCHEMA_VERSION,
        data,
    }
}

/// Decodes a stored event, upcasting older schema versions first.
pub fn decode(name: &str, schema_version: u32, data: &[u8]) -> Result<Event, DecodeError> {
    if !STORED_NAMES.contains(&name) {
        return Err(DecodeError::UnknownName(name.to_owned()));
    }
    if schema_version > SCHEMA_VERSION {
        return Err(DecodeError::FutureVersion {
            name: name.to_owned(),
            version: schema_version,
            known: SCHEMA_VERSION,
        });
    }
    let malformed = |source| DecodeError::Malformed {
        name: name.to_owned(),
        source,
    };
    let mut object: Map<String, Value> = serde_json::from_slice(data).map_err(malformed)?;
    upcast(name, schema_version, &mut object);
    object.insert("type".to_owned(), Value::String(name.to_owned()));
    serde_json::from_value(Value::Object(object)).map_err(malformed)
}

/// Brings an older payload up to [`SCHEMA_VERSION`]. Version 1 is the first
/// schema, so there is nothing to do yet; each future bump adds a step here.
fn upcast(_name: &str, _schema_version: u32, _object: &mut Map<String, Value>) {}
