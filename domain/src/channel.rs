//! The two payment channels and the raw codes they answer with, and the
//! cap on how much of a channel's text is kept: an answer's messages
//! (`return_msg`, `err_code_des`, `sub_msg`), unknown values and the reasons
//! that quote them are stored in events and written to logs, so a channel
//! (or something posing as one) that answers with megabytes of text must not
//! grow the ledger or the logs by as much.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A payment channel. The domain does not know their wire formats; it knows
/// the rules that differ between them (windows, limits; see `Policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Wechat,
    Alipay,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Wechat, Channel::Alipay];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Wechat => "wechat",
            Channel::Alipay => "alipay",
        }
    }

    /// Parses the API's name for a channel (`wechat`, `alipay`).
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The raw codes of one channel answer, kept verbatim for auditors
/// (`return_code`, `result_code`, `err_code`, `trade_state`, `code`,
/// `sub_code`, `recall`, `action`, ...). The domain never interprets them;
/// the adapter has already normalised the answer into an outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelCodes(pub BTreeMap<String, String>);

/// The most characters of one channel text kept (a code's name or value, a
/// reason quoting an answer). Longer texts are cut at a character boundary
/// and end with [`CUT_MARK`].
pub const CHANNEL_TEXT_MAX_CHARS: usize = 256;

/// What ends a text that was cut to [`CHANNEL_TEXT_MAX_CHARS`].
pub const CUT_MARK: &str = "…[cut]";

/// The most codes kept from one answer. Beyond them, the rest are dropped
/// and [`CODES_CUT_KEY`] says how many.
pub const CHANNEL_CODES_MAX: usize = 32;

/// The code that says how many codes were dropped (see [`CHANNEL_CODES_MAX`]).
pub const CODES_CUT_KEY: &str = "…codes_cut";

/// Cuts `text` to [`CHANNEL_TEXT_MAX_CHARS`] characters (at a character
/// boundary) and marks it with [`CUT_MARK`]; shorter texts are unchanged.
pub fn cap_channel_text(text: &mut String) {
    if let Some((cut, _)) = text.char_indices().nth(CHANNEL_TEXT_MAX_CHARS) {
        text.truncate(cut);
        text.push_str(CUT_MARK);
    }
}

/// [`cap_channel_text`] of a borrowed text.
pub fn capped_channel_text(text: &str) -> String {
    let mut text = text.to_owned();
    cap_channel_text(&mut text);
    text
}

impl ChannelCodes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Caps every name and value ([`cap_channel_text`]) and keeps at most
    /// [`CHANNEL_CODES_MAX`] codes (the first by name), recording how many
    /// were dropped under [`CODES_CUT_KEY`].
    pub fn cap(&mut self) {
        let fits = self.0.len() <= CHANNEL_CODES_MAX
            && self.0.iter().all(|(name, value)| {
                name.chars().count() <= CHANNEL_TEXT_MAX_CHARS
                    && value.chars().count() <= CHANNEL_TEXT_MAX_CHARS
            });
        if fits {
            return;
        }
        let total = self.0.len();
        let mut capped = BTreeMap::new();
        for (mut name, mut value) in std::mem::take(&mut self.0) {
            if capped.len() == CHANNEL_CODES_MAX - 1 && total > CHANNEL_CODES_MAX {
                break;
            }
            cap_channel_text(&mut name);
            cap_channel_text(&mut value);
            capped.insert(name, value);
        }
        if total > CHANNEL_CODES_MAX {
            let dropped = total - capped.len();
            capped.insert(
                CODES_CUT_KEY.to_owned(),
                format!("{dropped} more codes cut"),
            );
        }
        self.0 = capped;
    }

    /// Adds a code; a builder for adapters and tests.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_channel_text_is_cut_at_a_character_boundary_and_marked() {
        let mut short = "SYSTEMERROR".to_owned();
        cap_channel_text(&mut short);
        assert_eq!(short, "SYSTEMERROR");
        let exact = "字".repeat(CHANNEL_TEXT_MAX_CHARS);
        assert_eq!(capped_channel_text(&exact), exact);
        let long = "字".repeat(CHANNEL_TEXT_MAX_CHARS * 1000);
        let capped = capped_channel_text(&long);
        assert!(capped.ends_with(CUT_MARK), "{capped}");
        assert_eq!(
            capped.chars().count(),
            CHANNEL_TEXT_MAX_CHARS + CUT_MARK.chars().count()
        );
        assert!(capped.starts_with(&"字".repeat(CHANNEL_TEXT_MAX_CHARS)));
    }

    #[test]
    fn codes_are_capped_in_length_and_number() {
        let mut codes = ChannelCodes::new()
            .with("return_code", "SUCCESS")
            .with("err_code_des", &"x".repeat(100_000));
        codes.cap();
        assert_eq!(codes.get("return_code"), Some("SUCCESS"));
        let description = codes.get("err_code_des").unwrap();
        assert!(description.ends_with(CUT_MARK));
        assert!(description.len() < 300, "{}", description.len());

        let mut many = ChannelCodes::new();
        for n in 0..10_000 {
            many.0
                .insert(format!("refund_status_{n:05}"), "SUCCESS".into());
        }
        many.0.insert("y".repeat(10_000), "v".into());
        many.cap();
        assert_eq!(many.0.len(), CHANNEL_CODES_MAX);
        assert_eq!(
            many.get(CODES_CUT_KEY),
            Some(format!("{} more codes cut", 10_001 - (CHANNEL_CODES_MAX - 1)).as_str())
        );
        assert!(many.0.keys().all(|name| name.chars().count() <= 300));
    }
}
