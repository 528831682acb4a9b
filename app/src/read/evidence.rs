//! Evidence of one stream's history (an order's, usually), as one JSON
//! file that can be checked offline, without the ledger: `paycode history
//! ORDER_NO --evidence FILE` writes it, `paycode verify --file FILE` checks
//! it. The format is in `docs/auditing.md`.
//!
//! It holds every field the hash chain covers (`chain.rs`), so the check
//! recomputes each link exactly as `paycode verify` does on the ledger, and
//! folds the events through the payment rules: a changed byte, a removed or
//! reordered event is reported at its version. Each `payload` is the stored
//! payload as a JSON object: paycode stores payloads as compact JSON
//! (`serde_json` of a `Value`, keys in order), so writing the object back
//! compactly gives the stored bytes, which the hash covers; the file may be
//! re-indented without breaking anything. A payload that would not come
//! back byte for byte (never written by paycode) is given as `payload_hex`
//! instead. The evidence shows that its events are a chain from the
//! stream's start; it cannot show that no event came after its last one:
//! compare the last `hash` with the ledger's.

use chrono::{DateTime, Utc};
use paycode_adapters::store::chain::{from_hex, to_hex};
use paycode_adapters::store::{EventStore, RecordedEvent, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::read::verify::{StreamOrderVerifier, VerifyReport};

/// The `format` of an evidence file.
pub const FORMAT: &str = "paycode-evidence";
/// The `format_version` this program writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// One stream's events, as exported.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The stream's name, e.g. `payment-demo-C1` (covered by every hash).
    pub stream: String,
    /// Every event of the stream, by version from 0.
    pub events: Vec<EvidenceEvent>,
}

/// One stored event with every field its chain link covers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceEvent {
    pub version: u64,
    pub event_id: Uuid,
    /// The stored event name (`Submitted`, `Paid`, ...).
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    /// The stored payload (its compact JSON text is the stored bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The stored payload in hex, when it is not JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
    /// When the store recorded it (not covered by the hash).
    pub recorded_at: DateTime<Utc>,
    /// Lower-case hex SHA-256.
    pub previous_hash: String,
    /// Lower-case hex SHA-256.
    pub hash: String,
}

/// Why a file is not evidence this program can check. Nothing was checked.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("not an evidence file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("format: {found:?} is not {FORMAT:?} version {FORMAT_VERSION}")]
    Format { found: String },
    #[error("events: the evidence holds no event")]
    NoEvents,
    #[error("events[{index}].{field}: {reason}")]
    Field {
        index: usize,
        field: &'static str,
        reason: String,
    },
}

impl Evidence {
    /// The evidence of `stream`'s recorded events (all of them, in order).
    pub fn of(stream: &str, events: &[RecordedEvent]) -> Evidence {
        Evidence {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            stream: stream.to_owned(),
            events: events.iter().map(EvidenceEvent::of).collect(),
        }
    }

    /// The file's text: indented JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| unreachable!("evidence serialises: {error}"));
        text.push('\n');
        text
    }

    /// Reads an evidence file's bytes; the format must be this program's.
    pub fn parse(bytes: &[u8]) -> Result<Evidence, EvidenceError> {
        let evidence: Evidence = serde_json::from_slice(bytes)?;
        if evidence.format != FORMAT || evidence.format_version != FORMAT_VERSION {
            return Err(EvidenceError::Format {
                found: format!("{} version {}", evidence.format, evidence.format_version),
            });
        }
        if evidence.events.is_empty() {
            return Err(EvidenceError::NoEvents);
        }
        Ok(evidence)
    }

    /// Recomputes the chain and re-runs the rules over the events, in the
    /// file's order, as `paycode verify` does for a stream of the ledger.
    pub fn verify(&self) -> Result<VerifyReport, EvidenceError> {
        let mut verifier = StreamOrderVerifier::new();
        for (index, event) in self.events.iter().enumerate() {
            verifier.check(&event.recorded(&self.stream, index)?.borrowed());
        }
        Ok(verifier.finish())
    }
}

impl EvidenceEvent {
    fn of(event: &RecordedEvent) -> EvidenceEvent {
        // Only a payload that comes back byte for byte: the hash covers the bytes.
        let payload = serde_json::from_slice::<Value>(&event.data)
            .ok()
            .filter(|value| {
                serde_json::to_vec(value).ok().as_deref() == Some(event.data.as_slice())
            });
        EvidenceEvent {
            version: event.version,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            schema_version: event.schema_version,
            payload_hex: payload.is_none().then(|| hex::encode(&event.data)),
            payload,
            recorded_at: event.recorded_at,
            previous_hash: to_hex(&event.previous_hash),
            hash: to_hex(&event.hash),
        }
    }

    /// The event as a store would hand it over (its position is unknown
    /// here and not covered by the chain: `index + 1`).
    fn recorded(&self, stream: &str, index: usize) -> Result<RecordedEvent, EvidenceError> {
        let field = |field: &'static str, reason: &str| EvidenceError::Field {
            index,
            field,
            reason: reason.to_owned(),
        };
        let data = match (&self.payload, &self.payload_hex) {
            (Some(payload), None) => {
                serde_json::to_vec(payload).map_err(|error| field("payload", &error.to_string()))?
            }
            (None, Some(hex)) => {
                hex::decode(hex).map_err(|_| field("payload_hex", "not hex digits"))?
            }
            _ => {
                return Err(field(
                    "payload",
                    "give exactly one of payload and payload_hex",
                ));
            }
        };
        let hash = |name: &'static str, text: &str| {
            from_hex(text).ok_or_else(|| field(name, "not 64 hex digits"))
        };
        Ok(RecordedEvent {
            stream: stream.to_owned(),
            version: self.version,
            position: index as u64 + 1,
            event_id: self.event_id,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            data,
            recorded_at: self.recorded_at,
            previous_hash: hash("previous_hash", &self.previous_hash)?,
            hash: hash("hash", &self.hash)?,
        })
    }
}

/// Reads `stream` from `store` as evidence; `None` when it has no event.
pub async fn export(store: &dyn EventStore, stream: &str) -> Result<Option<Evidence>, StoreError> {
    let events = store.read_stream(stream).await?;
    Ok((!events.is_empty()).then(|| Evidence::of(stream, &events)))
}

#[cfg(test)]
mod tests {
    use paycode_adapters::store::{ExpectedVersion, MemoryStore, NewEvent};
    use paycode_domain::stored;

    use super::*;
    use crate::read::verify::ProblemKind;

    /// A sample order's history in a memory store (chained by the store).
    async fn sample_order() -> (MemoryStore, String) {
        let store = MemoryStore::new();
        let events = paycode_projections::sample::order_events("demo", 3, &mut {
            paycode_projections::sample::Rng::new(5)
        });
        assert!(events.len() >= 3, "{events:?}");
        let stream = paycode_projections::sample::stream("demo", 3);
        let batch = events
            .iter()
            .map(|event| NewEvent::encoded(Uuid::new_v4(), stored::encode(event)))
            .collect();
        store
            .append(&stream, ExpectedVersion::NoStream, batch)
            .await
            .unwrap();
        (store, stream)
    }

    #[tokio::test]
    async fn exported_evidence_round_trips_through_its_file_and_verifies_clean() {
        // Shows that the file holds every byte the chain covers: written,
        // read back and checked, it is clean, with the stream's counts.
        let (store, stream) = sample_order().await;
        let evidence = export(&store, &stream).await.unwrap().unwrap();
        let text = evidence.to_json();
        let read = Evidence::parse(text.as_bytes()).unwrap();
        let report = read.verify().unwrap();
        assert!(report.is_clean(), "{}", report.render());
        let stored = store.read_stream(&stream).await.unwrap();
        assert_eq!((report.streams, report.events), (1, stored.len() as u64));
        // The payload is readable in the file, and compact it is the stored bytes.
        assert!(text.contains("\"subject\": \"Sample\""), "{text}");
        assert_eq!(
            serde_json::to_vec(read.events[0].payload.as_ref().unwrap()).unwrap(),
            stored[0].data
        );
        // Re-indented (as a formatter would), it still verifies.
        let reindented: Value = serde_json::from_str(&text).unwrap();
        let compact = serde_json::to_string(&reindented).unwrap();
        assert!(
            Evidence::parse(compact.as_bytes())
                .unwrap()
                .verify()
                .unwrap()
                .is_clean()
        );
        assert!(export(&store, "payment-demo-NONE").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_tampered_evidence_file_is_reported_at_its_version() {
        // Shows the offline check catching an edited subject (that event's
        // hash), a dropped event (the gap and the broken link after it),
        // and refusing a file that is not evidence, naming the field.
        let (store, stream) = sample_order().await;
        let text = export(&store, &stream).await.unwrap().unwrap().to_json();
        let edited = text.replacen("\"subject\": \"Sample\"", "\"subject\": \"Simple\"", 1);
        assert_ne!(edited, text);
        let report = Evidence::parse(edited.as_bytes())
            .unwrap()
            .verify()
            .unwrap();
        assert_eq!(report.problems.len(), 1, "{}", report.render());
        assert_eq!(report.problems[0].version, 0);
        assert!(matches!(
            report.problems[0].kind,
            ProblemKind::HashMismatch { .. }
        ));

        let mut evidence = Evidence::parse(text.as_bytes()).unwrap();
        evidence.events.remove(1);
        let report = evidence.verify().unwrap();
        let at_2: Vec<&str> = report
            .problems
            .iter()
            .filter(|problem| problem.version == 2)
            .map(|problem| problem.kind.code())
            .collect();
        assert!(
            at_2.contains(&"version_out_of_sequence") && at_2.contains(&"previous_hash_mismatch"),
            "{}",
            report.render()
        );

        let bad_hash = text.replacen("\"hash\": \"", "\"hash\": \"zz", 1);
        let error = Evidence::parse(bad_hash.as_bytes())
            .unwrap()
            .verify()
            .unwrap_err();
        assert_eq!(error.to_string(), "events[0].hash: not 64 hex digits");
        let other = text.replace(FORMAT, "something-else");
        assert!(matches!(
            Evidence::parse(other.as_bytes()),
            Err(EvidenceError::Format { .. })
        ));
        assert!(matches!(
            Evidence::parse(b"{\"format\":1}"),
            Err(EvidenceError::Json(_))
        ));
    }

    #[test]
    fn a_payload_that_is_not_json_text_travels_as_hex() {
        // Shows that any stored bytes can be exported and still verified.
        let mut event = RecordedEvent {
            stream: "other-1".to_owned(),
            version: 0,
            position: 1,
            event_id: Uuid::from_u128(1),
            event_type: "SomethingElse".to_owned(),
            schema_version: 1,
            data: b" {\"a\":1}".to_vec(),
            recorded_at: DateTime::<Utc>::UNIX_EPOCH,
            previous_hash: paycode_adapters::store::GENESIS,
            hash: paycode_adapters::store::GENESIS,
        };
        event.hash = paycode_adapters::store::chain::recompute(&event);
        let evidence = Evidence::of("other-1", std::slice::from_ref(&event));
        assert!(evidence.events[0].payload.is_none());
        assert_eq!(
            evidence.events[0].payload_hex.as_deref(),
            Some(hex::encode(&event.data).as_str())
        );
        let read = Evidence::parse(evidence.to_json().as_bytes()).unwrap();
        assert!(read.verify().unwrap().is_clean());
    }
}
