//! The stored form of every event: a name, a schema version and a JSON
//! object. The one codec of paycode; each aggregate's events say how they
//! are named and versioned by implementing [`EventSchema`] (payments in
//! `payment/stored.rs`, reconciliations in `reconciliation/stored.rs`).
//!
//! Old schema versions are upcast before decoding, so every event ever
//! written still loads after the schema grows.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// An event ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub name: &'static str,
    pub schema_version: u32,
    pub data: Vec<u8>,
}

/// Why stored bytes do not decode into an event. A stream holding one
/// cannot be acted on: an operator must look (run `paycode verify`).
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

/// How one aggregate's events are written down. The event serialises (with
/// serde) to a JSON object whose `type` tag is the stored name; the stored
/// payload is that object without the tag.
pub trait EventSchema: Serialize + DeserializeOwned {
    /// The schema version every event is written with today. Bump it when a
    /// payload changes, and teach [`EventSchema::upcast`] the old form.
    const SCHEMA_VERSION: u32;
    /// Every stored event name of the aggregate.
    const STORED_NAMES: &'static [&'static str];

    /// This event's stored name (its `type` tag).
    fn stored_name(&self) -> &'static str;

    /// Brings a payload of an older `schema_version` up to
    /// [`EventSchema::SCHEMA_VERSION`]. The first schema has nothing to do.
    fn upcast(_name: &str, _schema_version: u32, _object: &mut Map<String, Value>) {}

    /// Decodes a payload of the current schema, whose `name` the caller has
    /// checked. Through a `serde_json::Value` unless the aggregate knows a
    /// faster way.
    fn decode_current(name: &str, data: &[u8]) -> Result<Self, serde_json::Error> {
        decode_object(name, serde_json::from_slice(data)?)
    }
}

/// Encodes an event for the store.
pub fn encode<E: EventSchema>(event: &E) -> StoredEvent {
    let mut object = match serde_json::to_value(event) {
        Ok(Value::Object(object)) => object,
        // Every field is a string, number, bool, map or list: serialising cannot fail.
        other => unreachable!("an event serialises to a JSON object, got {other:?}"),
    };
    object.remove("type");
    let data = serde_json::to_vec(&Value::Object(object))
        .unwrap_or_else(|error| unreachable!("a JSON value serialises: {error}"));
    StoredEvent {
        name: event.stored_name(),
        schema_version: E::SCHEMA_VERSION,
        data,
    }
}

/// Decodes a stored event, upcasting older schema versions first.
pub fn decode<E: EventSchema>(
    name: &str,
    schema_version: u32,
    data: &[u8],
) -> Result<E, DecodeError> {
    if !E::STORED_NAMES.contains(&name) {
        return Err(DecodeError::UnknownName(name.to_owned()));
    }
    if schema_version > E::SCHEMA_VERSION {
        return Err(DecodeError::FutureVersion {
            name: name.to_owned(),
            version: schema_version,
            known: E::SCHEMA_VERSION,
        });
    }
    let malformed = |source| DecodeError::Malformed {
        name: name.to_owned(),
        source,
    };
    if schema_version == E::SCHEMA_VERSION {
        return E::decode_current(name, data).map_err(malformed);
    }
    let mut object: Map<String, Value> = serde_json::from_slice(data).map_err(malformed)?;
    E::upcast(name, schema_version, &mut object);
    decode_object(name, object).map_err(malformed)
}

/// Decodes a payload object (without its tag) as the event `name`.
pub fn decode_object<E: EventSchema>(
    name: &str,
    mut object: Map<String, Value>,
) -> Result<E, serde_json::Error> {
    object.insert("type".to_owned(), Value::String(name.to_owned()));
    serde_json::from_value(Value::Object(object))
}
