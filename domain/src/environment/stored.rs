//! How environment events are stored: their name and schema version,
//! through the codec every aggregate shares ([`crate::stored`]).

use super::EnvironmentEvent;
use crate::stored::EventSchema;

/// Every stored environment event name.
pub const STORED_NAMES: [&str; 1] = ["EnvironmentMarked"];

impl EventSchema for EnvironmentEvent {
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
    //! Pins the stored form of the environment mark: a schema change shows
    //! up as a snapshot diff that must be reviewed.

    use chrono::{TimeZone, Utc};
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::environment::{
        AlipayAccount, EnvironmentFact, EnvironmentMarked, MerchantAccounts, WechatAccount,
    };
    use crate::ids::{CommandId, MerchantId};
    use crate::stored::{DecodeError, decode, encode};

    fn marked() -> EnvironmentEvent {
        EnvironmentEvent {
            at: Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap(),
            command_id: CommandId(Uuid::from_u128(0x0123_4567_89ab_cdef)),
            fact: EnvironmentFact::Marked(EnvironmentMarked {
                sandbox: false,
                merchants: vec![
                    MerchantAccounts {
                        merchant_id: MerchantId::parse("shop").unwrap(),
                        wechat: Some(WechatAccount {
                            mch_id: "1900000109".into(),
                            sub_mch_id: Some("1900000110".into()),
                        }),
                        alipay: Some(AlipayAccount {
                            app_id: "2021000000000000".into(),
                            app_auth_token: true,
                        }),
                    },
                    MerchantAccounts::without_accounts(MerchantId::parse("cafe").unwrap()),
                ],
            }),
        }
    }

    #[test]
    fn every_stored_name_has_a_pinned_form() {
        // The stored form of EnvironmentMarked is a contract: a change is a reviewed diff.
        let stored = encode(&marked());
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
        let original = marked();
        let stored = encode(&original);
        assert_eq!(
            decode::<EnvironmentEvent>(stored.name, stored.schema_version, &stored.data).unwrap(),
            original
        );
    }

    #[test]
    fn unknown_names_future_versions_and_garbage_are_clear_errors() {
        // A payment event is not an environment event, and the other way round.
        let stored = encode(&marked());
        assert!(matches!(
            decode::<EnvironmentEvent>("Submitted", 1, &stored.data),
            Err(DecodeError::UnknownName(name)) if name == "Submitted"
        ));
        assert!(matches!(
            decode::<crate::payment::Event>(stored.name, 1, &stored.data),
            Err(DecodeError::UnknownName(_))
        ));
        assert!(matches!(
            decode::<EnvironmentEvent>("EnvironmentMarked", 2, &stored.data),
            Err(DecodeError::FutureVersion {
                version: 2,
                known: 1,
                ..
            })
        ));
        assert!(matches!(
            decode::<EnvironmentEvent>("EnvironmentMarked", 1, b"{\"at\": 3}"),
            Err(DecodeError::Malformed { .. })
        ));
    }
}
