//! The sandbox's test payment codes: which behaviour a scanned code asks
//! for, chosen by its last two digits (docs/sandbox.md, "Test payment
//! codes"), and whether a code has the shape its channel accepts at all.
//! Only the masked code and those two digits ever leave this module.

use paycode_domain::{AuthCode, Channel};

/// What the sandbox does with a payment, by the code's last two digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// `00` (and every code without a row of its own): paid at once.
    PaidAtOnce,
    /// `01`: the password is required; the customer pays 8 s later.
    PaysAfterPassword,
    /// `02`: the password is required; the customer never pays.
    NeverPays,
    /// `03`: a definitive failure, insufficient balance.
    InsufficientBalance,
    /// `04`: the pay call answers a system error, but the payment succeeded.
    SystemErrorButPaid,
    /// `05`: the pay answer is held past the client's timeout; the payment succeeded.
    NoAnswerButPaid,
    /// `06`: the password is required; every query says waiting, and the
    /// customer pays at the instant the revoke arrives, so the revoke refunds.
    PaysAtRevoke,
    /// `07`: the password is required and never entered, and every revoke
    /// asks to be called again (`recall=Y` / `retry_flag=Y`).
    RevokeMustRetry,
    /// `08`: the pay answer carries a forged signature; the order is paid.
    ForgedSignatureButPaid,
    /// `09`: paid at once; every refund stays processing for 20 s, then succeeds.
    SlowRefunds,
}

impl Behaviour {
    /// The behaviour for a code's last two digits.
    pub fn from_last_two_digits(digits: &str) -> Behaviour {
        match digits {
            "01" => Behaviour::PaysAfterPassword,
            "02" => Behaviour::NeverPays,
            "03" => Behaviour::InsufficientBalance,
            "04" => Behaviour::SystemErrorButPaid,
            "05" => Behaviour::NoAnswerButPaid,
            "06" => Behaviour::PaysAtRevoke,
            "07" => Behaviour::RevokeMustRetry,
            "08" => Behaviour::ForgedSignatureButPaid,
            "09" => Behaviour::SlowRefunds,
            _ => Behaviour::PaidAtOnce,
        }
    }

    /// Whether the pay call leaves the order waiting for the password.
    pub fn waits_for_password(self) -> bool {
        matches!(
            self,
            Behaviour::PaysAfterPassword
                | Behaviour::NeverPays
                | Behaviour::PaysAtRevoke
                | Behaviour::RevokeMustRetry
        )
    }
}

/// The code, when it has `channel`'s shape (WeChat: 18 digits starting
/// 10–15; Alipay: 16–24 digits starting 25–30). A code of the other
/// channel's shape is as invalid here as garbage: each channel reads only
/// its own codes.
pub fn valid_code(channel: Channel, code: &str) -> Option<AuthCode> {
    AuthCode::parse(code)
        .ok()
        .filter(|auth_code| auth_code.channel() == channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_of_the_table_has_its_behaviour_and_other_codes_are_paid_at_once() {
        let table = [
            ("00", Behaviour::PaidAtOnce),
            ("01", Behaviour::PaysAfterPassword),
            ("02", Behaviour::NeverPays),
            ("03", Behaviour::InsufficientBalance),
            ("04", Behaviour::SystemErrorButPaid),
            ("05", Behaviour::NoAnswerButPaid),
            ("06", Behaviour::PaysAtRevoke),
            ("07", Behaviour::RevokeMustRetry),
            ("08", Behaviour::ForgedSignatureButPaid),
            ("09", Behaviour::SlowRefunds),
            ("10", Behaviour::PaidAtOnce),
            ("99", Behaviour::PaidAtOnce),
        ];
        for (digits, behaviour) in table {
            assert_eq!(
                Behaviour::from_last_two_digits(digits),
                behaviour,
                "{digits}"
            );
        }
        let waiting: Vec<&str> = table
            .iter()
            .filter(|(_, b)| b.waits_for_password())
            .map(|(d, _)| *d)
            .collect();
        assert_eq!(waiting, ["01", "02", "06", "07"]);
    }

    #[test]
    fn each_channel_accepts_only_codes_of_its_own_shape() {
        assert!(valid_code(Channel::Wechat, "134567890123456700").is_some());
        assert!(valid_code(Channel::Wechat, "104567890123456700").is_some());
        assert!(valid_code(Channel::Alipay, "2845678901234500").is_some());
        assert!(valid_code(Channel::Alipay, "304567890123456789012300").is_some());
        for (channel, code) in [
            (Channel::Wechat, "164567890123456700"),
            (Channel::Wechat, "13456789012345670"),
            (Channel::Wechat, "2845678901234500"),
            (Channel::Alipay, "134567890123456700"),
            (Channel::Alipay, "284567890123450"),
            (Channel::Alipay, "31456789012345600"),
            (Channel::Alipay, "28456789012345x0"),
            (Channel::Wechat, ""),
        ] {
            assert!(
                valid_code(channel, code).is_none(),
                "{channel} {}",
                code.len()
            );
        }
    }
}
