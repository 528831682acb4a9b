//! The two payment channels and the raw codes they answer with.

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

impl ChannelCodes {
    pub fn new() -> Self {
        Self::default()
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
