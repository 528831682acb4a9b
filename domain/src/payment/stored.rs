//! How payment events are stored: their names, their schema version, and
//! the fast decoding of the current schema (the codec itself is
//! [`crate::stored`], shared with every aggregate).

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::event::{Event, Fact};
use crate::ids::CommandId;
use crate::stored::{EventSchema, decode_object};

/// Every stored event name, in the order of a payment's life.
pub const STORED_NAMES: [&str; 20] = [
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
    "PayNotSent",
    "AnswerNoted",
    "RevokeSettled",
];

impl EventSchema for Event {
    /// Bump it for a stored name when its payload changes, and teach
    /// `upcast` the old form. Version 1 is the first schema; version 2
    /// added `Submitted.auth_code_fingerprint`.
    const SCHEMA_VERSION: u32 = 2;
    const STORED_NAMES: &'static [&'static str] = &STORED_NAMES;

    fn stored_name(&self) -> &'static str {
        self.fact.stored_name()
    }

    fn decode_current(name: &str, data: &[u8]) -> Result<Event, serde_json::Error> {
        decode_current(name, data)
    }

    /// Version 1 → 2: a `Submitted` of version 1 has no fingerprint of its
    /// code (`null`: creation then compares the masked code). No other
    /// payload changed.
    fn upcast(name: &str, schema_version: u32, object: &mut Map<String, Value>) {
        if schema_version < 2 && name == "Submitted" {
            object.entry("auth_code_fingerprint").or_insert(Value::Null);
        }
    }
}

/// Decodes a payload of the current schema straight into its types, with
/// no `serde_json::Value` in between, in one pass: the fact (named by
/// `name`, which the caller checked) is deserialized from the payload's
/// object while the envelope's fields (`at`, `command_id`, and the optional
/// `key_name`) are taken out of it on the way (`WithEnvelope`). Replays and
/// `paycode verify` decode every event ever written, so this is their
/// hottest path; older payloads are upcast the slow way.
fn decode_current(name: &str, data: &[u8]) -> Result<Event, serde_json::Error> {
    let mut envelope = EnvelopeSlots::default();
    let mut json = serde_json::Deserializer::from_slice(data);
    macro_rules! fact {
        ($($variant:ident),+ $(,)?) => {
            match name {
                $(stringify!($variant) => Fact::$variant(Deserialize::deserialize(WithEnvelope {
                    inner: &mut json,
                    slots: &mut envelope,
                })?),)+
                // A name added to `STORED_NAMES` but not here: the slow way.
                other => return decode_object(other, serde_json::from_slice(data)?),
            }
        };
    }
    let fact = fact!(
        Submitted,
        UserPaying,
        PayAnswerUnknown,
        QueryResult,
        Paid,
        PaymentFailed,
        RevokeRequested,
        RevokeRetryScheduled,
        Revoked,
        RevokeRejected,
        ManualReviewRequired,
        OperatorResolved,
        RefundRequested,
        RefundPending,
        Refunded,
        RefundFailed,
        StatementLineMatched,
        PayNotSent,
        AnswerNoted,
        RevokeSettled,
    );
    json.end()?;
    let missing = |field| <serde_json::Error as de::Error>::missing_field(field);
    Ok(Event {
        at: envelope.at.ok_or_else(|| missing("at"))?,
        command_id: envelope.command_id.ok_or_else(|| missing("command_id"))?,
        key_name: envelope.key_name,
        fact,
    })
}

/// The fields every stored payload holds beside its fact's own (`key_name`
/// only when an API key caused the event), as met.
#[derive(Default)]
struct EnvelopeSlots {
    at: Option<DateTime<Utc>>,
    command_id: Option<CommandId>,
    /// Optional in the payload (`null` or absent: `None`).
    key_name: Option<String>,
    /// Whether `key_name` was met (it may be met once).
    key_name_met: bool,
}

/// A deserializer of a payload's object that hands the fact's derived
/// `Deserialize` every key but the envelope's, which it keeps in `slots`.
struct WithEnvelope<'a, D> {
    inner: D,
    slots: &'a mut EnvelopeSlots,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for WithEnvelope<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.inner.deserialize_map(Intercept {
            visitor,
            slots: self.slots,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct enum identifier ignored_any
    }
}

/// The visitor of the payload's object: it hands the fact's visitor a map
/// without the envelope's keys.
struct Intercept<'a, V> {
    visitor: V,
    slots: &'a mut EnvelopeSlots,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Intercept<'_, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a stored payment event (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.visitor.visit_map(WithoutEnvelope {
            map,
            slots: self.slots,
        })
    }
}

/// The payload's entries but the envelope's.
struct WithoutEnvelope<'a, A> {
    map: A,
    slots: &'a mut EnvelopeSlots,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WithoutEnvelope<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        while let Some(key) = self.map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "at" if self.slots.at.is_none() => {
                    self.slots.at = Some(self.map.next_value_seed(StoredTime)?);
                }
                "command_id" if self.slots.command_id.is_none() => {
                    self.slots.command_id = Some(self.map.next_value()?);
                }
                "key_name" if !self.slots.key_name_met => {
                    self.slots.key_name_met = true;
                    self.slots.key_name = self.map.next_value()?;
                }
                "at" | "command_id" | "key_name" => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate field `{}`",
                        key.as_str()
                    )));
                }
                _ => return seed.deserialize(key.into_deserializer()).map(Some),
            }
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A key of the payload's object, borrowed from the input when it can be.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(key) => key,
            Key::Owned(key) => key,
        }
    }
}

impl<'de> Key<'de> {
    fn into_deserializer<E: de::Error>(self) -> KeyDeserializer<'de, E> {
        KeyDeserializer {
            key: self,
            error: PhantomData,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a field name")
            }

            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(key))
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(key.to_owned()))
            }

            fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(key))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Hands a key to the fact's field visitor.
struct KeyDeserializer<'de, E> {
    key: Key<'de>,
    error: PhantomData<E>,
}

impl<'de, E: de::Error> Deserializer<'de> for KeyDeserializer<'de, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.key {
            Key::Borrowed(key) => visitor.visit_borrowed_str(key),
            Key::Owned(key) => visitor.visit_string(key),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// `at`, read as every stored time is (`crate::utc`).
struct StoredTime;

impl<'de> DeserializeSeed<'de> for StoredTime {
    type Value = DateTime<Utc>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        crate::utc::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    //! Pins the stored form of every event: a schema change shows up as a
    //! snapshot diff that must be reviewed (and usually needs an upcaster).

    use chrono::{NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

    use serde_json::{Map, Value};

    use super::*;
    use crate::auth_code::{AuthCode, AuthCodeFingerprint};
    use crate::channel::{Channel, ChannelCodes};
    use crate::ids::{CommandId, MerchantId, OrderNo, RefundNo};
    use crate::money::{Currency, Money};
    use crate::payment::*;
    use crate::stored::{DecodeError, decode, encode};

    fn one_of_each() -> Vec<Fact> {
        let t = |secs| Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, secs).unwrap();
        let money = |text: &str| text.parse::<Money>().unwrap();
        let refund_no = RefundNo::parse("R1").unwrap();
        let wechat_codes = ChannelCodes::new()
            .with("return_code", "SUCCESS")
            .with("result_code", "FAIL");
        vec![
            Fact::Submitted(Submitted {
                merchant_id: MerchantId::parse("demo").unwrap(),
                order_no: OrderNo::parse("A20261122-0001").unwrap(),
                channel: Channel::Wechat,
                amount: money("12.34"),
                currency: Currency::Cny,
                subject: "Coffee".into(),
                auth_code: AuthCode::parse("134567890123456789").unwrap().masked(),
                auth_code_fingerprint: Some(AuthCodeFingerprint::from_hex(
                    "9b1f0c2e5d7a4b3c8e6f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d".into(),
                )),
                deadline_at: t(30),
                first_query_at: t(5),
                revoke_not_before: t(15),
            }),
            Fact::UserPaying(UserPaying {
                codes: wechat_codes.clone().with("err_code", "USERPAYING"),
                next_query_at: t(6),
            }),
            Fact::PayAnswerUnknown(PayAnswerUnknown {
                reason: "SYSTEMERROR".into(),
                codes: wechat_codes.clone().with("err_code", "SYSTEMERROR"),
                next_query_at: t(6),
            }),
            Fact::QueryResult(QueryResult {
                outcome: QueryOutcome::WaitingForPassword,
                codes: ChannelCodes::new().with("trade_state", "USERPAYING"),
                next_query_at: Some(t(11)),
            }),
            Fact::Paid(Paid {
                channel_trade_no: "4200000123202611220000000001".into(),
                paid_at: t(10),
                paid_at_stated: true,
                source: PaidSource::Query,
                codes: ChannelCodes::new().with("trade_state", "SUCCESS"),
            }),
            Fact::PaymentFailed(PaymentFailed {
                code: "NOTENOUGH".into(),
                codes: wechat_codes.clone().with("err_code", "NOTENOUGH"),
            }),
            Fact::RevokeRequested(RevokeRequested {
                reason: RevokeReason::DeadlineReached,
                not_before: t(30),
            }),
            Fact::RevokeRetryScheduled(RevokeRetryScheduled {
                attempt: 1,
                reason: "recall=Y".into(),
                codes: ChannelCodes::new().with("recall", "Y"),
                retry_at: Some(t(35)),
            }),
            Fact::Revoked(Revoked {
                result: RevokeResult::Refunded,
                attempt: 2,
                codes: ChannelCodes::new().with("action", "refund"),
            }),
            Fact::RevokeRejected(RevokeRejected {
                attempt: 1,
                code: "ACQ.TRADE_CANCEL_TIME_OUT".into(),
                codes: ChannelCodes::new()
                    .with("code", "40004")
                    .with("sub_code", "ACQ.TRADE_CANCEL_TIME_OUT"),
            }),
            Fact::ManualReviewRequired(ManualReviewRequired {
                refund_no: None,
                reason: ManualReviewReason::RevokeAttemptsExhausted { attempts: 5 },
                codes: ChannelCodes::new(),
            }),
            Fact::OperatorResolved(OperatorResolved {
                resolution: Resolution::Paid {
                    channel_trade_no: "4200000001".into(),
                    paid_at: t(12),
                },
                note: "confirmed in the merchant platform".into(),
                resolved_by: "api_keys[0]".into(),
            }),
            Fact::RefundRequested(RefundRequested {
                refund_no: refund_no.clone(),
                amount: money("2.00"),
                reason: "returned goods".into(),
                first_query_at: t(50),
                settle_by: t(59),
            }),
            Fact::RefundPending(RefundPending {
                refund_no: refund_no.clone(),
                outcome: RefundOutcome::Accepted {
                    channel_refund_no: Some("50000000382019052709732678859".into()),
                },
                codes: ChannelCodes::new().with("result_code", "SUCCESS"),
                next_query_at: Some(t(55)),
            }),
            Fact::Refunded(Refunded {
                refund_no: refund_no.clone(),
                amount: money("2.00"),
                channel_refund_no: Some("50000000382019052709732678859".into()),
                refunded_at: t(58),
                codes: ChannelCodes::new().with("refund_status_0", "SUCCESS"),
            }),
            Fact::RefundFailed(RefundFailed {
                refund_no,
                code: "FAIL".into(),
                codes: ChannelCodes::new().with("refund_status_0", "FAIL"),
            }),
            Fact::StatementLineMatched(StatementLineMatched {
                line: StatementLine {
                    channel: Channel::Wechat,
                    statement_date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
                    kind: StatementLineKind::Payment,
                    refund_no: None,
                    amount: money("12.34"),
                    channel_trade_no: "4200000123202611220000000001".into(),
                },
            }),
            Fact::PayNotSent(PayNotSent {
                reason: "no turn under the pay rate limit within 15000 ms".into(),
            }),
            Fact::AnswerNoted(AnswerNoted {
                answer: NotedAnswer::Query {
                    outcome: QueryOutcome::Paid {
                        channel_trade_no: "4200000123202611220000000001".into(),
                        paid_at: None,
                    },
                },
                codes: ChannelCodes::new().with("trade_state", "SUCCESS"),
            }),
            Fact::RevokeSettled(RevokeSettled {
                money_moved: false,
                by: SettledBy::Statement {
                    date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
                },
            }),
        ]
    }

    #[test]
    fn a_payment_recorded_before_paid_at_stated_existed_had_the_channels_time() {
        let mut value: Value =
            serde_json::from_slice(&encode(&event(one_of_each().remove(4))).data).unwrap();
        value.as_object_mut().unwrap().remove("paid_at_stated");
        let data = serde_json::to_vec(&value).unwrap();
        let decoded =
            decode::<Event>("Paid", <Event as EventSchema>::SCHEMA_VERSION, &data).unwrap();
        match decoded.fact {
            Fact::Paid(paid) => assert!(paid.paid_at_stated),
            other => panic!("{other:?}"),
        }
    }

    fn event(fact: Fact) -> Event {
        Event {
            at: Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 1).unwrap(),
            command_id: CommandId(Uuid::from_u128(0x0123_4567_89ab_cdef)),
            key_name: None,
            fact,
        }
    }

    #[test]
    fn every_stored_name_has_a_pinned_form() {
        let facts = one_of_each();
        let names: Vec<&str> = facts.iter().map(Fact::stored_name).collect();
        assert_eq!(names, STORED_NAMES, "one example per stored name, in order");
        for fact in facts {
            let stored = encode(&event(fact));
            let value: Value = serde_json::from_slice(&stored.data).unwrap();
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let snapshot = format!(
                "name: {}\nschema_version: {}\n{pretty}",
                stored.name, stored.schema_version
            );
            insta::assert_snapshot!(stored.name, snapshot);
        }
    }

    #[test]
    fn the_serde_tag_is_the_stored_name() {
        for fact in one_of_each() {
            let value = serde_json::to_value(&fact).unwrap();
            assert_eq!(value["type"], fact.stored_name());
        }
    }

    #[test]
    fn one_of_each_covers_every_stored_name() {
        let names: Vec<_> = one_of_each().iter().map(Fact::stored_name).collect();
        assert_eq!(names, STORED_NAMES);
    }

    #[test]
    fn the_direct_decoding_equals_the_decoding_through_a_value() {
        for fact in one_of_each() {
            let stored = encode(&event(fact));
            assert_eq!(
                decode_current(stored.name, &stored.data).unwrap(),
                decode_object::<Event>(stored.name, serde_json::from_slice(&stored.data).unwrap())
                    .unwrap(),
                "{}",
                stored.name
            );
        }
    }

    #[test]
    fn a_payload_without_its_envelope_or_fields_is_malformed() {
        let stored = encode(&event(one_of_each().remove(0)));
        let mut object: Map<String, Value> = serde_json::from_slice(&stored.data).unwrap();
        for field in ["at", "command_id", "order_no"] {
            let mut cut = object.clone();
            cut.remove(field);
            let data = serde_json::to_vec(&cut).unwrap();
            let error = decode::<Event>(stored.name, stored.schema_version, &data).unwrap_err();
            assert!(
                matches!(&error, DecodeError::Malformed { name, .. } if name == "Submitted"),
                "{field}: {error}"
            );
            assert!(error.to_string().contains(field), "{field}: {error}");
        }
        object.insert("at".into(), Value::String("yesterday".into()));
        let data = serde_json::to_vec(&object).unwrap();
        assert!(decode::<Event>(stored.name, stored.schema_version, &data).is_err());
    }

    #[test]
    fn every_event_decodes_back_to_itself() {
        for fact in one_of_each() {
            let original = event(fact);
            let stored = encode(&original);
            assert_eq!(
                decode::<Event>(stored.name, stored.schema_version, &stored.data).unwrap(),
                original
            );
        }
    }

    #[test]
    fn the_key_name_is_stored_when_a_key_caused_the_event_and_absent_otherwise() {
        // Absent, the payload is exactly what it was before keys were named, so the
        // events written then decode unchanged (with no name).
        let runtime_step = encode(&event(one_of_each().remove(0)));
        let object: Map<String, Value> = serde_json::from_slice(&runtime_step.data).unwrap();
        assert!(!object.contains_key("key_name"), "{object:?}");
        let original = Event {
            key_name: Some("till-1".to_owned()),
            ..event(one_of_each().remove(0))
        };
        let stored = encode(&original);
        let object: Map<String, Value> = serde_json::from_slice(&stored.data).unwrap();
        assert_eq!(object["key_name"], "till-1");
        assert_eq!(
            decode::<Event>(stored.name, stored.schema_version, &stored.data).unwrap(),
            original
        );
        assert_eq!(
            decode_object::<Event>(stored.name, object).unwrap(),
            original
        );
    }

    #[test]
    fn an_operator_resolution_stored_before_resolved_by_still_decodes() {
        // Schema 1 gained `resolved_by` with a default: a payload without it decodes as `""`.
        let resolved = one_of_each()
            .into_iter()
            .find(|fact| fact.stored_name() == "OperatorResolved")
            .unwrap();
        let stored = encode(&event(resolved));
        let mut object: Map<String, Value> = serde_json::from_slice(&stored.data).unwrap();
        assert_eq!(
            object.remove("resolved_by"),
            Some(Value::from("api_keys[0]"))
        );
        let old = serde_json::to_vec(&object).unwrap();
        let decoded = decode::<Event>(stored.name, stored.schema_version, &old).unwrap();
        let Fact::OperatorResolved(decoded) = decoded.fact else {
            panic!("decoded as {}", decoded.fact.stored_name());
        };
        assert_eq!(decoded.resolved_by, "");
        assert_eq!(decoded.note, "confirmed in the merchant platform");
    }

    #[test]
    fn unknown_names_future_versions_and_garbage_are_clear_errors() {
        let stored = encode(&event(one_of_each().remove(0)));
        let err = decode::<Event>("Teleported", 1, &stored.data).unwrap_err();
        assert_eq!(err.to_string(), "unknown stored event name \"Teleported\"");
        let err = decode::<Event>("Submitted", 3, &stored.data).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::FutureVersion {
                    version: 3,
                    known: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = decode::<Event>("Submitted", 2, b"{\"at\": 3}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("event Submitted does not decode"),
            "{err}"
        );
    }

    /// A `Submitted` as schema version 1 wrote it: no fingerprint.
    const SUBMITTED_V1: &str = r#"{"at":"2026-11-22T02:00:01Z","command_id":"00000000-0000-0000-0123-456789abcdef","merchant_id":"demo","order_no":"A20261122-0001","channel":"wechat","amount":"12.34","currency":"CNY","subject":"Coffee","auth_code":"13**************89","deadline_at":"2026-11-22T02:00:30Z","first_query_at":"2026-11-22T02:00:05Z","revoke_not_before":"2026-11-22T02:00:15Z"}"#;

    #[test]
    fn a_version_1_submitted_loads_without_a_fingerprint() {
        let loaded = decode::<Event>("Submitted", 1, SUBMITTED_V1.as_bytes()).unwrap();
        let Fact::Submitted(submitted) = &loaded.fact else {
            panic!("{loaded:?}")
        };
        assert_eq!(submitted.auth_code.as_str(), "13**************89");
        assert_eq!(submitted.auth_code_fingerprint, None);
        // Every other version-1 payload is already its version-2 form.
        for fact in one_of_each().into_iter().skip(1) {
            let stored = encode(&event(fact));
            assert_eq!(
                decode::<Event>(stored.name, 1, &stored.data).unwrap(),
                decode::<Event>(stored.name, 2, &stored.data).unwrap(),
                "{}",
                stored.name
            );
        }
    }
}
