//! How reconciliation events are stored: their names and schema version,
//! through the codec every aggregate shares ([`crate::stored`]), so one
//! store writes both.

use super::event::ReconciliationEvent;
use crate::stored::EventSchema;

/// Every stored reconciliation event name.
pub const STORED_NAMES: [&str; 1] = ["ReconciliationRecorded"];

impl EventSchema for ReconciliationEvent {
    /// Bump it when a payload changes, and teach `upcast` the old form.
    /// Version 1 is the first schema.
    const SCHEMA_VERSION: u32 = 1;
    const STORED_NAMES: &'static [&'static str] = &STORED_NAMES;

    fn stored_name(&self) -> &'static str {
        self.fact.stored_name()
    }
}

#[cfg(test)]
mod tests {
    //! Pins the stored form of every reconciliation event: a schema change
    //! shows up as a snapshot diff that must be reviewed.

    use chrono::{NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

    use serde_json::Value;

    use super::*;
    use crate::channel::Channel;
    use crate::ids::CommandId;
    use crate::reconciliation::{Finding, FindingKind, ReconciliationFact, ReconciliationRecorded};
    use crate::stored::{DecodeError, decode, encode};

    fn recorded() -> ReconciliationEvent {
        let money = |text: &str| text.parse().unwrap();
        ReconciliationEvent {
            at: Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 1).unwrap(),
            command_id: CommandId(Uuid::from_u128(0x0123_4567_89ab_cdef)),
            key_name: None,
            fact: ReconciliationFact::Recorded(ReconciliationRecorded {
                channel: Channel::Wechat,
                date: NaiveDate::from_ymd_opt(2026, 11, 21).unwrap(),
                statement_sha256:
                    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                statement_lines: 3,
                matched: 1,
                findings: vec![
                    Finding {
                        kind: FindingKind::AmountMismatch,
                        order_no: Some("A20261121-0002".into()),
                        refund_no: None,
                        ledger_amount: Some(money("10.00")),
                        statement_amount: Some(money("9.99")),
                        detail: "line 3: the payment is 9.99 on the statement, 10.00 in the ledger"
                            .into(),
                    },
                    Finding {
                        kind: FindingKind::MissingInLedger,
                        order_no: Some("X1".into()),
                        refund_no: Some("R1".into()),
                        ledger_amount: None,
                        statement_amount: Some(money("1.00")),
                        detail: "line 4: a refund of an order the ledger does not know".into(),
                    },
                ],
                revokes_settled: 1,
            }),
        }
    }

    #[test]
    fn every_stored_name_has_a_pinned_form() {
        // The stored form of ReconciliationRecorded is a contract: a change is a reviewed diff.
        let stored = encode(&recorded());
        assert_eq!(STORED_NAMES, [stored.name]);
        let value: Value = serde_json::from_slice(&stored.data).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let snapshot = format!(
            "name: {}\nschema_version: {}\n{pretty}",
            stored.name, stored.schema_version
        );
        insta::assert_snapshot!(stored.name, snapshot);
    }

    #[test]
    fn every_event_decodes_back_to_itself() {
        // Encoding then decoding loses nothing.
        let original = recorded();
        let stored = encode(&original);
        assert_eq!(
            decode::<ReconciliationEvent>(stored.name, stored.schema_version, &stored.data)
                .unwrap(),
            original
        );
    }

    #[test]
    fn unknown_names_future_versions_and_garbage_are_clear_errors() {
        // A stream that holds something this program cannot read says so.
        let stored = encode(&recorded());
        assert!(matches!(
            decode::<ReconciliationEvent>("Submitted", 1, &stored.data),
            Err(DecodeError::UnknownName(name)) if name == "Submitted"
        ));
        assert!(matches!(
            decode::<ReconciliationEvent>("ReconciliationRecorded", 2, &stored.data),
            Err(DecodeError::FutureVersion {
                version: 2,
                known: 1,
                ..
            })
        ));
        assert!(matches!(
            decode::<ReconciliationEvent>("ReconciliationRecorded", 1, b"{\"at\": 3}"),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
