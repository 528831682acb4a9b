//! The ledger's environment mark: whether a ledger is written on the
//! sandbox or against the real channels, and which channel account each
//! merchant uses. It lives on one stream of its own,
//! [`ENVIRONMENT_STREAM`], so that every store (memory, SQLite,
//! EventStoreDB) carries it with the events it describes.
//!
//! The first start with a configuration marks the ledger
//! (`EnvironmentMarked`); every later start compares its configuration with
//! the mark before anything else is read or written. A mark binds once and
//! never changes: another environment, or another account for a merchant
//! the mark knows, is refused ([`EnvironmentRejection`]). A merchant, or a
//! channel of a merchant, that the mark does not know yet is added by a new
//! `EnvironmentMarked` listing only what it adds.
//!
//! A merchant's order numbers belong to the account that took them: the
//! same order number sent to another account (or to the sandbox) is another
//! order there, so a ledger resumed against other accounts would query,
//! revoke and close orders it never paid there.

pub mod stored;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::channel::Channel;
use crate::decider::{Decider, Refused};
use crate::ids::{CommandId, MerchantId};
use crate::invariants::Violation;

/// The stream that holds the ledger's environment mark. Not a payment or a
/// reconciliation stream: recovery, the index and the read models pass it by.
pub const ENVIRONMENT_STREAM: &str = "ledger-environment";

/// One recorded fact of the environment stream, with its time and cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentEvent {
    /// When it happened (the clock of the decision, not of the store).
    pub at: DateTime<Utc>,
    /// The start (or command run) that marked the ledger.
    pub command_id: CommandId,
    #[serde(flatten)]
    pub fact: EnvironmentFact,
}

/// Every fact the environment stream can hold. The `rename` is the stored name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EnvironmentFact {
    /// The ledger was marked with an environment and channel accounts.
    #[serde(rename = "EnvironmentMarked")]
    Marked(EnvironmentMarked),
}

impl EnvironmentFact {
    /// The stored event name.
    pub fn stored_name(&self) -> &'static str {
        match self {
            EnvironmentFact::Marked(_) => "EnvironmentMarked",
        }
    }
}

/// The environment a ledger is written in. As an event: the accounts it
/// binds (the first mark lists every merchant; a later one only what it
/// adds). As a command's content: what a configuration says, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentMarked {
    /// `true`: the sandbox plays the channels (in-process, or every channel
    /// URL a loopback address); `false`: the real channels.
    pub sandbox: bool,
    pub merchants: Vec<MerchantAccounts>,
}

/// One merchant's channel accounts. `None`: no account of that channel
/// (in an event: none bound by this event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantAccounts {
    pub merchant_id: MerchantId,
    pub wechat: Option<WechatAccount>,
    pub alipay: Option<AlipayAccount>,
}

impl MerchantAccounts {
    /// A merchant with no channel account (the in-process sandbox's).
    pub fn without_accounts(merchant_id: MerchantId) -> Self {
        MerchantAccounts {
            merchant_id,
            wechat: None,
            alipay: None,
        }
    }
}

/// A WeChat Pay merchant account: the merchant number, and the
/// sub-merchant in service-provider mode. Order numbers are unique per
/// (`mch_id`, `sub_mch_id`) at WeChat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WechatAccount {
    pub mch_id: String,
    pub sub_mch_id: Option<String>,
}

/// An Alipay app, and whether it acts for another merchant with an
/// `app_auth_token` (service-provider mode; the token itself is a secret
/// and never recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlipayAccount {
    pub app_id: String,
    pub app_auth_token: bool,
}

/// The mark folded: the environment (`None`: not marked yet) and every
/// merchant's bound accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentState {
    pub sandbox: Option<bool>,
    pub merchants: BTreeMap<MerchantId, MerchantAccounts>,
}

impl EnvironmentState {
    /// Whether the ledger carries a mark.
    pub fn is_marked(&self) -> bool {
        self.sandbox.is_some()
    }
}

/// Mark the ledger with what a configuration says (or check it against the mark).
#[derive(Debug, Clone)]
pub struct MarkEnvironment {
    /// The start or run that marks; the event id derives from it.
    pub id: CommandId,
    /// The configuration's whole environment: every configured merchant.
    pub mark: EnvironmentMarked,
}

/// Which part of a channel account differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountField {
    /// WeChat `mch_id`.
    MchId,
    /// WeChat `sub_mch_id`.
    SubMchId,
    /// Alipay `app_id`.
    AppId,
    /// Whether an Alipay `app_auth_token` is used.
    AppAuthToken,
}

impl AccountField {
    /// The channel the field belongs to.
    pub fn channel(self) -> Channel {
        match self {
            AccountField::MchId | AccountField::SubMchId => Channel::Wechat,
            AccountField::AppId | AccountField::AppAuthToken => Channel::Alipay,
        }
    }

    /// The field's name in a channel's settings.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountField::MchId => "mch_id",
            AccountField::SubMchId => "sub_mch_id",
            AccountField::AppId => "app_id",
            AccountField::AppAuthToken => "app_auth_token",
        }
    }
}

/// Why a configuration may not work on this ledger. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvironmentRejection {
    /// The ledger was written in the other environment.
    #[error("this ledger was written {}; the configuration {}", on(*ledger_sandbox), says(!*ledger_sandbox))]
    EnvironmentDiffers { ledger_sandbox: bool },
    /// A merchant's channel account is not the one the ledger was written with.
    #[error("merchant {merchant_id}: this ledger was written with {} {} {ledger}, the configuration says {configured}", field.channel().display_name(), field.as_str())]
    AccountDiffers {
        merchant_id: MerchantId,
        field: AccountField,
        /// What the mark holds (`none` for an absent value).
        ledger: String,
        /// What the configuration says.
        configured: String,
    },
}

fn on(sandbox: bool) -> &'static str {
    if sandbox {
        "on the sandbox"
    } else {
        "against the real channels"
    }
}

fn says(sandbox: bool) -> &'static str {
    if sandbox {
        "plays the sandbox"
    } else {
        "talks to the real channels"
    }
}

trait DisplayName {
    fn display_name(self) -> &'static str;
}

impl DisplayName for Channel {
    fn display_name(self) -> &'static str {
        match self {
            Channel::Wechat => "WeChat",
            Channel::Alipay => "Alipay",
        }
    }
}

/// An optional value as the mark shows it.
struct Shown<'a>(Option<&'a str>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.unwrap_or("none"))
    }
}

fn presence(present: bool) -> String {
    if present { "set" } else { "none" }.to_owned()
}

/// The first field in which a bound account and a configured one differ.
fn wechat_difference(
    bound: &WechatAccount,
    configured: &WechatAccount,
) -> Option<(AccountField, String, String)> {
    if bound.mch_id != configured.mch_id {
        return Some((
            AccountField::MchId,
            bound.mch_id.clone(),
            configured.mch_id.clone(),
        ));
    }
    if bound.sub_mch_id != configured.sub_mch_id {
        return Some((
            AccountField::SubMchId,
            Shown(bound.sub_mch_id.as_deref()).to_string(),
            Shown(configured.sub_mch_id.as_deref()).to_string(),
        ));
    }
    None
}

fn alipay_difference(
    bound: &AlipayAccount,
    configured: &AlipayAccount,
) -> Option<(AccountField, String, String)> {
    if bound.app_id != configured.app_id {
        return Some((
            AccountField::AppId,
            bound.app_id.clone(),
            configured.app_id.clone(),
        ));
    }
    if bound.app_auth_token != configured.app_auth_token {
        return Some((
            AccountField::AppAuthToken,
            presence(bound.app_auth_token),
            presence(configured.app_auth_token),
        ));
    }
    None
}

/// The first difference between what is bound for a merchant and what is
/// configured; a channel bound on one side only is no difference.
fn difference(
    bound: &MerchantAccounts,
    configured: &MerchantAccounts,
) -> Option<(AccountField, String, String)> {
    if let (Some(bound), Some(configured)) = (&bound.wechat, &configured.wechat)
        && let Some(found) = wechat_difference(bound, configured)
    {
        return Some(found);
    }
    if let (Some(bound), Some(configured)) = (&bound.alipay, &configured.alipay) {
        return alipay_difference(bound, configured);
    }
    None
}

/// What `configured` adds to what is bound (`None`: nothing).
fn addition(
    bound: Option<&MerchantAccounts>,
    configured: &MerchantAccounts,
) -> Option<MerchantAccounts> {
    let Some(bound) = bound else {
        return Some(configured.clone());
    };
    let wechat = configured.wechat.clone().filter(|_| bound.wechat.is_none());
    let alipay = configured.alipay.clone().filter(|_| bound.alipay.is_none());
    (wechat.is_some() || alipay.is_some()).then(|| MerchantAccounts {
        merchant_id: configured.merchant_id.clone(),
        wechat,
        alipay,
    })
}

/// The decider of the environment stream ([`ENVIRONMENT_STREAM`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvironmentDecider;

impl Decider for EnvironmentDecider {
    type State = EnvironmentState;
    type Command = MarkEnvironment;
    type Event = EnvironmentEvent;
    type Rejection = EnvironmentRejection;

    fn initial_state(&self) -> EnvironmentState {
        EnvironmentState::default()
    }

    /// An unmarked ledger is marked with the whole configuration. A marked
    /// one: the configuration must be of the same environment and use the
    /// bound account of every merchant it shares with the mark; what it
    /// adds (merchants, channels) is recorded, and nothing when it adds
    /// nothing.
    fn decide(
        &self,
        state: &EnvironmentState,
        command: &MarkEnvironment,
        now: DateTime<Utc>,
    ) -> Result<Vec<EnvironmentEvent>, EnvironmentRejection> {
        let mark = &command.mark;
        let event = |mark: EnvironmentMarked| EnvironmentEvent {
            at: now,
            command_id: command.id,
            fact: EnvironmentFact::Marked(mark),
        };
        let Some(sandbox) = state.sandbox else {
            return Ok(vec![event(mark.clone())]);
        };
        if sandbox != mark.sandbox {
            return Err(EnvironmentRejection::EnvironmentDiffers {
                ledger_sandbox: sandbox,
            });
        }
        let mut added = Vec::new();
        for configured in &mark.merchants {
            let bound = state.merchants.get(&configured.merchant_id);
            if let Some((field, ledger, configured_value)) =
                bound.and_then(|bound| difference(bound, configured))
            {
                return Err(EnvironmentRejection::AccountDiffers {
                    merchant_id: configured.merchant_id.clone(),
                    field,
                    ledger,
                    configured: configured_value,
                });
            }
            added.extend(addition(bound, configured));
        }
        if added.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![event(EnvironmentMarked {
            sandbox,
            merchants: added,
        })])
    }

    /// A mark of the other environment, or another account for a bound
    /// merchant channel, is refused: a mark binds once.
    fn evolve(
        &self,
        mut state: EnvironmentState,
        event: &EnvironmentEvent,
    ) -> Result<EnvironmentState, Refused<EnvironmentState>> {
        let EnvironmentFact::Marked(mark) = &event.fact;
        let contradicted = |state, what: String| {
            Err(Refused {
                state,
                violation: Violation::EnvironmentContradicted { what },
            })
        };
        if let Some(sandbox) = state.sandbox
            && sandbox != mark.sandbox
        {
            let what = format!("the ledger was marked {}", on(sandbox));
            return contradicted(state, what);
        }
        for merchant in &mark.merchants {
            if let Some((field, bound, marked)) = state
                .merchants
                .get(&merchant.merchant_id)
                .and_then(|bound| difference(bound, merchant))
            {
                let what = format!(
                    "merchant {} {} {} {bound} marked {marked}",
                    merchant.merchant_id,
                    field.channel().display_name(),
                    field.as_str()
                );
                return contradicted(state, what);
            }
        }
        state.sandbox = Some(mark.sandbox);
        for merchant in &mark.merchants {
            let entry = state
                .merchants
                .entry(merchant.merchant_id.clone())
                .or_insert_with(|| {
                    MerchantAccounts::without_accounts(merchant.merchant_id.clone())
                });
            if entry.wechat.is_none() {
                entry.wechat.clone_from(&merchant.wechat);
            }
            if entry.alipay.is_none() {
                entry.alipay.clone_from(&merchant.alipay);
            }
        }
        Ok(state)
    }

    /// Merchants and channels may always be added.
    fn is_terminal(&self, _state: &EnvironmentState) -> bool {
        false
    }

    fn command_id(command: &MarkEnvironment) -> CommandId {
        command.id
    }
}

#[cfg(test)]
mod tests {
    //! Given marks, when a configuration starts, then the exact events or
    //! the rejection.

    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap()
    }

    fn merchant(id: &str, mch_id: &str, app_id: Option<&str>) -> MerchantAccounts {
        MerchantAccounts {
            merchant_id: MerchantId::parse(id).unwrap(),
            wechat: Some(WechatAccount {
                mch_id: mch_id.to_owned(),
                sub_mch_id: None,
            }),
            alipay: app_id.map(|app_id| AlipayAccount {
                app_id: app_id.to_owned(),
                app_auth_token: false,
            }),
        }
    }

    fn mark(sandbox: bool, merchants: Vec<MerchantAccounts>) -> MarkEnvironment {
        MarkEnvironment {
            id: CommandId(Uuid::from_u128(1)),
            mark: EnvironmentMarked { sandbox, merchants },
        }
    }

    /// The state after deciding and applying each command in turn.
    fn given(commands: &[MarkEnvironment]) -> EnvironmentState {
        let decider = EnvironmentDecider;
        let mut state = decider.initial_state();
        for command in commands {
            for event in decider.decide(&state, command, now()).unwrap() {
                state = decider.evolve(state, &event).unwrap();
            }
        }
        state
    }

    fn facts(events: Vec<EnvironmentEvent>) -> Vec<EnvironmentMarked> {
        events
            .into_iter()
            .map(|event| match event.fact {
                EnvironmentFact::Marked(mark) => mark,
            })
            .collect()
    }

    #[test]
    fn an_unmarked_ledger_is_marked_with_the_whole_configuration() {
        let shop = merchant("shop", "1900000001", Some("2021000000000001"));
        let command = mark(false, vec![shop.clone()]);
        let events = EnvironmentDecider
            .decide(&EnvironmentState::default(), &command, now())
            .unwrap();
        assert_eq!(facts(events), vec![command.mark.clone()]);
        let state = given(&[command]);
        assert_eq!(state.sandbox, Some(false));
        assert_eq!(state.merchants[&shop.merchant_id], shop);
    }

    #[test]
    fn the_same_configuration_again_records_nothing() {
        let command = mark(false, vec![merchant("shop", "1900000001", None)]);
        let state = given(std::slice::from_ref(&command));
        assert_eq!(
            EnvironmentDecider.decide(&state, &command, now()).unwrap(),
            vec![]
        );
    }

    #[test]
    fn the_other_environment_is_refused_both_ways() {
        // A production ledger opened on the sandbox, and a sandbox ledger opened against real channels.
        for ledger_sandbox in [false, true] {
            let state = given(&[mark(ledger_sandbox, vec![])]);
            let rejection = EnvironmentDecider
                .decide(&state, &mark(!ledger_sandbox, vec![]), now())
                .unwrap_err();
            assert_eq!(
                rejection,
                EnvironmentRejection::EnvironmentDiffers { ledger_sandbox }
            );
        }
        let state = given(&[mark(false, vec![])]);
        assert_eq!(
            EnvironmentDecider
                .decide(&state, &mark(true, vec![]), now())
                .unwrap_err()
                .to_string(),
            "this ledger was written against the real channels; the configuration plays the sandbox"
        );
    }

    #[test]
    fn another_account_for_a_bound_merchant_is_refused_naming_the_field() {
        let state = given(&[mark(
            false,
            vec![merchant("shop", "1900000001", Some("2021000000000001"))],
        )]);
        let moved = mark(false, vec![merchant("shop", "1900000002", None)]);
        let rejection = EnvironmentDecider
            .decide(&state, &moved, now())
            .unwrap_err();
        assert_eq!(
            rejection.to_string(),
            "merchant shop: this ledger was written with WeChat mch_id 1900000001, the configuration says 1900000002"
        );
        let mut sub = merchant("shop", "1900000001", None);
        sub.wechat.as_mut().unwrap().sub_mch_id = Some("1900000109".to_owned());
        let rejection = EnvironmentDecider
            .decide(&state, &mark(false, vec![sub]), now())
            .unwrap_err();
        assert!(
            matches!(rejection, EnvironmentRejection::AccountDiffers { field: AccountField::SubMchId, ref ledger, .. } if ledger == "none"),
            "{rejection:?}"
        );
        let mut token = merchant("shop", "1900000001", Some("2021000000000001"));
        token.alipay.as_mut().unwrap().app_auth_token = true;
        let rejection = EnvironmentDecider
            .decide(&state, &mark(false, vec![token]), now())
            .unwrap_err();
        assert!(
            matches!(
                rejection,
                EnvironmentRejection::AccountDiffers {
                    field: AccountField::AppAuthToken,
                    ..
                }
            ),
            "{rejection:?}"
        );
    }

    #[test]
    fn new_merchants_and_channels_are_added_and_nothing_else() {
        let state = given(&[mark(false, vec![merchant("shop", "1900000001", None)])]);
        let grown = mark(
            false,
            vec![
                merchant("shop", "1900000001", Some("2021000000000001")),
                merchant("cafe", "1900000002", None),
            ],
        );
        let added = facts(EnvironmentDecider.decide(&state, &grown, now()).unwrap());
        let shop_alipay = MerchantAccounts {
            wechat: None,
            ..merchant("shop", "1900000001", Some("2021000000000001"))
        };
        assert_eq!(
            added,
            vec![EnvironmentMarked {
                sandbox: false,
                merchants: vec![shop_alipay, merchant("cafe", "1900000002", None)],
            }]
        );
        // A merchant left out of the configuration keeps its binding.
        let state = given(&[
            mark(false, vec![merchant("shop", "1900000001", None)]),
            grown,
            mark(false, vec![merchant("cafe", "1900000002", None)]),
        ]);
        assert_eq!(
            state.merchants[&MerchantId::parse("shop").unwrap()],
            merchant("shop", "1900000001", Some("2021000000000001"))
        );
    }

    #[test]
    fn a_stored_mark_that_contradicts_an_earlier_one_breaks_the_invariant() {
        // Never decided; only a damaged or edited ledger holds one. evolve refuses it.
        let state = given(&[mark(false, vec![merchant("shop", "1900000001", None)])]);
        let contradicting = EnvironmentEvent {
            at: now(),
            command_id: CommandId(Uuid::from_u128(2)),
            fact: EnvironmentFact::Marked(EnvironmentMarked {
                sandbox: false,
                merchants: vec![merchant("shop", "1900000009", None)],
            }),
        };
        let refused = EnvironmentDecider
            .evolve(state.clone(), &contradicting)
            .unwrap_err();
        assert_eq!(refused.state, state);
        assert!(
            matches!(refused.violation, Violation::EnvironmentContradicted { .. }),
            "{:?}",
            refused.violation
        );
        let sandbox = EnvironmentEvent {
            fact: EnvironmentFact::Marked(EnvironmentMarked {
                sandbox: true,
                merchants: vec![],
            }),
            ..contradicting
        };
        assert!(EnvironmentDecider.evolve(state, &sandbox).is_err());
    }
}
