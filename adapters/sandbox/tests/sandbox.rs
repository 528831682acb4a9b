//! The sandbox served on 127.0.0.1 (port 0) and driven by the real channel
//! clients, `WechatClient` and `AlipayClient`, over HTTP with real
//! signatures: one test per row of the test-code table for each channel,
//! asserting the normalised outcome the client reports; plus a bad
//! signature, statement downloads, the call record, faults, a restart, and
//! the documented signed request fixtures.
//!
//! The sandbox runs on a `ManualClock`: the 8 s, 20 s, 45 s rules are
//! reached by moving it, never by sleeping. Keys are generated at test time
//! (`paycode_adapters::testing`); no key lives in the repository.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use paycode_adapters::alipay::{AlipayClient, AlipayConfig};
use paycode_adapters::channel::rate_limit::Api;
use paycode_adapters::channel::{
    ChannelClient, PayRequest, QueryRequest, RefundQueryRequest, RefundRequest, StatementFile,
};
use paycode_adapters::clock::ManualClock;
use paycode_adapters::testing;
use paycode_adapters::wechat::sign::{self as wechat_sign, ApiKey, SignType};
use paycode_adapters::wechat::xml::{self, Params};
use paycode_adapters::wechat::{WechatClient, WechatConfig};
use paycode_domain::payment::{
    ChannelAnswer, PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome, RevokeResult,
};
use paycode_domain::{AuthCode, Channel, Money, OrderNo, RefundNo};
use paycode_sandbox::{
    FaultKind, Faults, Sandbox, SandboxAlipay, SandboxApi, SandboxConfig, SandboxMerchant,
    SandboxOrderState, SandboxWechat,
};

const APPID: &str = "wx2421b1c4370ec43b";
const MCH_ID: &str = "10000100";
const APP_ID: &str = "2021000000000001";
/// The WeChat documentation's published example key, used by the fixture
/// test; read from the protocol vector rather than repeated in the code.
fn doc_key() -> String {
    testing::vector_json("wx_v2_micropay_roundtrip_gochat.json")["key"]
        .as_str()
        .expect("the vector names its key")
        .to_owned()
}

/// 2026-11-22 10:00:00 China time.
fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap()
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
}

/// A running sandbox and what a client needs to reach it.
struct Env {
    sandbox: Sandbox,
    clock: ManualClock,
    addr: SocketAddr,
    wechat_key: String,
    app_private_pem: String,
    alipay_public_pem: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Env {
    /// Stops serving, so that a later sandbox on the same state file is a restart.
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// How a test wants its sandbox.
struct Setup {
    wechat_key: String,
    wechat_sign_type: SignType,
    /// The key the sandbox verifies the app's requests with (`None`: the app's own).
    app_public_pem: Option<String>,
    state_path: Option<PathBuf>,
    faults: Faults,
    slow_answer: Duration,
    clock: ManualClock,
    calls_kept: usize,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            wechat_key: testing::random_api_key(),
            wechat_sign_type: SignType::Md5,
            app_public_pem: None,
            state_path: None,
            faults: Faults::default(),
            slow_answer: Duration::from_secs(15),
            clock: ManualClock::starting_at(start()),
            calls_kept: paycode_sandbox::CALLS_KEPT_DEFAULT,
        }
    }
}

async fn spawn(setup: Setup) -> Env {
    let (app_private_pem, app_public_pem) = testing::rsa_key_pair_pem("app", 2048);
    let (alipay_private_pem, alipay_public_pem) = testing::rsa_key_pair_pem("alipay", 2048);
    let mut config = SandboxConfig::new(
        vec![SandboxMerchant {
            wechat: Some(SandboxWechat {
                appid: APPID.to_owned(),
                mch_id: MCH_ID.to_owned(),
                key: setup.wechat_key.clone().into(),
                sign_type: setup.wechat_sign_type,
            }),
            alipay: Some(SandboxAlipay {
                app_id: APP_ID.to_owned(),
                app_public_key_pem: setup.app_public_pem.unwrap_or(app_public_pem),
            }),
        }],
        alipay_private_pem,
    );
    config.state_path = setup.state_path;
    config.faults = setup.faults;
    config.seed = 7;
    config.slow_answer = setup.slow_answer;
    config.calls_kept = setup.calls_kept;
    let sandbox = Sandbox::open(config, Arc::new(setup.clock.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = sandbox.router();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Env {
        sandbox,
        clock: setup.clock,
        addr,
        wechat_key: setup.wechat_key,
        app_private_pem,
        alipay_public_pem,
        server,
    }
}

async fn sandbox() -> Env {
    spawn(Setup::default()).await
}

impl Env {
    fn wechat_config(&self) -> WechatConfig {
        let mut config = WechatConfig::new(
            APPID,
            MCH_ID,
            ApiKey::from(self.wechat_key.clone()),
            format!("http://{}", self.addr),
        );
        config.timeout = Duration::from_secs(5);
        config
    }

    fn alipay_config(&self) -> AlipayConfig {
        let mut config = AlipayConfig::new(
            APP_ID,
            self.app_private_pem.clone(),
            self.alipay_public_pem.clone(),
            format!("http://{}/gateway.do", self.addr),
        );
        config.timeout = Duration::from_secs(5);
        config
    }

    fn client_with(&self, channel: Channel, timeout: Duration) -> Box<dyn ChannelClient> {
        match channel {
            Channel::Wechat => {
                let mut config = self.wechat_config();
                config.timeout = timeout;
                Box::new(WechatClient::new(config).unwrap())
            }
            Channel::Alipay => {
                let mut config = self.alipay_config();
                config.timeout = timeout;
                Box::new(AlipayClient::new(config).unwrap())
            }
        }
    }

    fn client(&self, channel: Channel) -> Box<dyn ChannelClient> {
        self.client_with(channel, Duration::from_secs(5))
    }

    fn merchant_id(channel: Channel) -> &'static str {
        match channel {
            Channel::Wechat => MCH_ID,
            Channel::Alipay => APP_ID,
        }
    }

    fn state(&self, channel: Channel, order: &str) -> Option<SandboxOrderState> {
        self.sandbox
            .order(channel, Env::merchant_id(channel), order)
            .map(|order| order.state)
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }
}

/// A test code of `channel`'s shape ending in `suffix`.
fn code(channel: Channel, suffix: &str) -> AuthCode {
    let digits = match channel {
        Channel::Wechat => format!("1345678901234567{suffix}"),
        Channel::Alipay => format!("28456789012345{suffix}"),
    };
    AuthCode::parse(&digits).unwrap()
}

fn order_no(text: &str) -> OrderNo {
    OrderNo::parse(text).unwrap()
}

fn money(text: &str) -> Money {
    text.parse().unwrap()
}

/// Every order of these tests is of this amount.
fn amount() -> Money {
    money("12.34")
}

/// Every order of these tests is submitted when the sandbox's clock starts.
fn submitted_at() -> DateTime<Utc> {
    start()
}

async fn pay(
    client: &dyn ChannelClient,
    order: &str,
    auth_code: &AuthCode,
) -> ChannelAnswer<PayOutcome> {
    client
        .pay(PayRequest {
            order_no: &order_no(order),
            auth_code,
            amount: amount(),
            subject: "Coffee",
            submitted_at: submitted_at(),
            wait_max: Duration::from_secs(15),
        })
        .await
}

async fn query(client: &dyn ChannelClient, order: &str) -> QueryOutcome {
    client
        .query(QueryRequest {
            order_no: &order_no(order),
            amount: amount(),
            submitted_at: submitted_at(),
        })
        .await
        .outcome
}

async fn revoke(client: &dyn ChannelClient, order: &str) -> RevokeOutcome {
    client.revoke(&order_no(order)).await.outcome
}

async fn refund(
    client: &dyn ChannelClient,
    order: &str,
    refund_no: &str,
    amount: &str,
) -> RefundOutcome {
    client
        .refund(RefundRequest {
            order_no: &order_no(order),
            refund_no: &RefundNo::parse(refund_no).unwrap(),
            refund_amount: money(amount),
            total_amount: self::amount(),
            reason: "returned",
        })
        .await
        .outcome
}

async fn refund_query(
    client: &dyn ChannelClient,
    order: &str,
    refund_no: &str,
    amount: &str,
) -> RefundOutcome {
    client
        .refund_query(RefundQueryRequest {
            order_no: &order_no(order),
            refund_no: &RefundNo::parse(refund_no).unwrap(),
            refund_amount: money(amount),
            total_amount: self::amount(),
        })
        .await
        .outcome
}

fn paid_trade_no(outcome: &PayOutcome) -> String {
    match outcome {
        PayOutcome::Paid {
            channel_trade_no, ..
        } => channel_trade_no.clone(),
        other => panic!("expected Paid, got {other:?}"),
    }
}

fn assert_paid(outcome: &QueryOutcome) -> String {
    match outcome {
        QueryOutcome::Paid {
            channel_trade_no, ..
        } => channel_trade_no.clone(),
        other => panic!("expected Paid, got {other:?}"),
    }
}

/// Asserts a done revoke. WeChat's reverse answer never says whether it
/// closed or refunded, so any `Done` is right for WeChat; Alipay's
/// `action` must give `alipay`.
fn assert_revoked(channel: Channel, outcome: &RevokeOutcome, alipay: RevokeResult) {
    match (channel, outcome) {
        (Channel::Wechat, RevokeOutcome::Done { .. }) => {}
        (Channel::Alipay, RevokeOutcome::Done { result }) if *result == alipay => {}
        _ => panic!("{channel}: expected a done revoke ({alipay:?} for Alipay), got {outcome:?}"),
    }
}

fn is_unknown_pay(outcome: &PayOutcome) -> bool {
    matches!(outcome, PayOutcome::Unknown { .. })
}

/// Two tests per row: one per channel.
macro_rules! both_channels {
    ($($row:ident),* $(,)?) => {$(
        mod $row {
            use super::*;

            #[tokio::test]
            async fn wechat() {
                super::$row(Channel::Wechat).await;
            }

            #[tokio::test]
            async fn alipay() {
                super::$row(Channel::Alipay).await;
            }
        }
    )*};
}

both_channels!(
    code_00_is_paid_at_once,
    code_01_is_paid_8_seconds_after_the_password_prompt,
    code_02_never_pays_and_the_revoke_closes_it,
    code_03_fails_for_insufficient_balance,
    code_04_answers_a_system_error_but_is_paid,
    code_05_gets_no_answer_in_time_but_is_paid,
    code_06_pays_when_the_revoke_arrives_so_the_revoke_refunds,
    code_07_asks_every_revoke_to_be_retried,
    code_08_has_a_forged_pay_signature_but_is_paid,
    code_09_refunds_process_for_20_seconds_then_succeed,
    a_code_of_the_other_channel_is_an_invalid_code,
    another_code_of_a_valid_shape_is_paid_at_once,
);

async fn code_00_is_paid_at_once(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let trade_no = paid_trade_no(&pay(&*client, "O00", &code(channel, "00")).await.outcome);
    assert_eq!(assert_paid(&query(&*client, "O00").await), trade_no);
    assert!(matches!(
        env.state(channel, "O00"),
        Some(SandboxOrderState::Paid { .. })
    ));
}

async fn code_01_is_paid_8_seconds_after_the_password_prompt(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let answer = pay(&*client, "O01", &code(channel, "01")).await;
    assert_eq!(answer.outcome, PayOutcome::WaitingForPassword);
    env.advance(7);
    assert_eq!(
        query(&*client, "O01").await,
        QueryOutcome::WaitingForPassword
    );
    env.advance(1);
    assert_paid(&query(&*client, "O01").await);
}

async fn code_02_never_pays_and_the_revoke_closes_it(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let answer = pay(&*client, "O02", &code(channel, "02")).await;
    assert_eq!(answer.outcome, PayOutcome::WaitingForPassword);
    env.advance(30);
    assert_eq!(
        query(&*client, "O02").await,
        QueryOutcome::WaitingForPassword
    );
    assert_revoked(
        channel,
        &revoke(&*client, "O02").await,
        RevokeResult::Closed,
    );
    assert_eq!(query(&*client, "O02").await, QueryOutcome::Closed);
    assert!(matches!(
        env.state(channel, "O02"),
        Some(SandboxOrderState::Closed {
            by_channel: false,
            ..
        })
    ));
}

async fn code_03_fails_for_insufficient_balance(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let answer = pay(&*client, "O03", &code(channel, "03")).await;
    let expected = match channel {
        Channel::Wechat => "NOTENOUGH",
        Channel::Alipay => "ACQ.BUYER_BALANCE_NOT_ENOUGH",
    };
    assert_eq!(
        answer.outcome,
        PayOutcome::Failed {
            code: expected.to_owned()
        }
    );
    let expected_query = match channel {
        Channel::Wechat => QueryOutcome::Failed {
            code: "PAYERROR".to_owned(),
        },
        Channel::Alipay => QueryOutcome::Closed,
    };
    assert_eq!(query(&*client, "O03").await, expected_query);
    // The closed loop still revokes.
    assert_revoked(
        channel,
        &revoke(&*client, "O03").await,
        RevokeResult::Closed,
    );
}

async fn code_04_answers_a_system_error_but_is_paid(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let answer = pay(&*client, "O04", &code(channel, "04")).await;
    assert!(is_unknown_pay(&answer.outcome), "{:?}", answer.outcome);
    let raw = match channel {
        Channel::Wechat => answer.codes.get("err_code"),
        Channel::Alipay => answer.codes.get("code"),
    };
    assert_eq!(
        raw,
        Some(if channel == Channel::Wechat {
            "SYSTEMERROR"
        } else {
            "20000"
        })
    );
    assert_paid(&query(&*client, "O04").await);
}

async fn code_05_gets_no_answer_in_time_but_is_paid(channel: Channel) {
    let env = spawn(Setup {
        slow_answer: Duration::from_secs(2),
        ..Setup::default()
    })
    .await;
    let impatient = env.client_with(channel, Duration::from_millis(400));
    let answer = pay(&*impatient, "O05", &code(channel, "05")).await;
    let PayOutcome::Unknown { reason } = &answer.outcome else {
        panic!("expected Unknown, got {:?}", answer.outcome);
    };
    assert!(reason.contains("no answer within"), "{reason}");
    assert_paid(&query(&*env.client(channel), "O05").await);
    let call = &env.sandbox.calls()[0];
    assert_eq!(call.api, SandboxApi::Channel(Api::Pay));
    assert!(call.answer.ends_with(" held"), "{}", call.answer);
}

async fn code_06_pays_when_the_revoke_arrives_so_the_revoke_refunds(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let answer = pay(&*client, "O06", &code(channel, "06")).await;
    assert_eq!(answer.outcome, PayOutcome::WaitingForPassword);
    for _ in 0..6 {
        env.advance(5);
        assert_eq!(
            query(&*client, "O06").await,
            QueryOutcome::WaitingForPassword
        );
    }
    // WeChat's reverse answer cannot say what it did (the statement's
    // REVOKED line shows the refund); Alipay's `action=refund` does.
    assert_revoked(
        channel,
        &revoke(&*client, "O06").await,
        RevokeResult::Refunded,
    );
    assert_eq!(query(&*client, "O06").await, QueryOutcome::Closed);
    let revoked_at = start() + chrono::Duration::seconds(30);
    assert_eq!(
        env.state(channel, "O06"),
        Some(SandboxOrderState::Reversed {
            paid_at: revoked_at,
            reversed_at: revoked_at
        })
    );
    let lines = statement_lines(&env, channel, "O06").await;
    assert_eq!(
        lines.len(),
        2,
        "the payment and its reverse refund: {lines:?}"
    );
}

async fn code_07_asks_every_revoke_to_be_retried(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let answer = pay(&*client, "O07", &code(channel, "07")).await;
    assert_eq!(answer.outcome, PayOutcome::WaitingForPassword);
    for _ in 0..5 {
        env.advance(30);
        let outcome = revoke(&*client, "O07").await;
        assert!(
            matches!(outcome, RevokeOutcome::MustRetry { .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(
        query(&*client, "O07").await,
        QueryOutcome::WaitingForPassword
    );
    let retry = match channel {
        Channel::Wechat => "recall=Y",
        Channel::Alipay => "retry_flag=Y",
    };
    let revokes: Vec<_> = env
        .sandbox
        .calls()
        .into_iter()
        .filter(|call| call.api == SandboxApi::Channel(Api::Revoke))
        .collect();
    assert_eq!(revokes.len(), 5);
    assert!(
        revokes.iter().all(|call| call.answer.contains(retry)),
        "{revokes:?}"
    );
}

async fn code_08_has_a_forged_pay_signature_but_is_paid(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let answer = pay(&*client, "O08", &code(channel, "08")).await;
    let PayOutcome::Unknown { reason } = &answer.outcome else {
        panic!("expected Unknown, got {:?}", answer.outcome);
    };
    assert!(reason.contains("signature"), "{reason}");
    assert_paid(&query(&*client, "O08").await);
}

async fn code_09_refunds_process_for_20_seconds_then_succeed(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    paid_trade_no(&pay(&*client, "O09", &code(channel, "09")).await.outcome);
    let accepted = refund(&*client, "O09", "R09", "2.00").await;
    assert!(
        matches!(accepted, RefundOutcome::Accepted { .. }),
        "{accepted:?}"
    );
    assert_eq!(
        refund_query(&*client, "O09", "R09", "2.00").await,
        RefundOutcome::Processing
    );
    env.advance(19);
    assert_eq!(
        refund_query(&*client, "O09", "R09", "2.00").await,
        RefundOutcome::Processing
    );
    env.advance(1);
    let RefundOutcome::Succeeded { refunded_at, .. } =
        refund_query(&*client, "O09", "R09", "2.00").await
    else {
        panic!("the refund succeeds after 20 s");
    };
    assert_eq!(refunded_at, start() + chrono::Duration::seconds(20));
}

async fn a_code_of_the_other_channel_is_an_invalid_code(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    let other = match channel {
        Channel::Wechat => Channel::Alipay,
        Channel::Alipay => Channel::Wechat,
    };
    let answer = pay(&*client, "OXX", &code(other, "00")).await;
    let expected = match channel {
        Channel::Wechat => "AUTH_CODE_INVALID",
        Channel::Alipay => "ACQ.PAYMENT_AUTH_CODE_INVALID",
    };
    assert_eq!(
        answer.outcome,
        PayOutcome::Failed {
            code: expected.to_owned()
        }
    );
    assert_eq!(query(&*client, "OXX").await, QueryOutcome::NotFound);
    assert_eq!(env.state(channel, "OXX"), None);
}

async fn another_code_of_a_valid_shape_is_paid_at_once(channel: Channel) {
    let env = sandbox().await;
    let client = env.client(channel);
    paid_trade_no(&pay(&*client, "O42", &code(channel, "42")).await.outcome);
    assert_paid(&query(&*client, "O42").await);
}

/// The statement lines of `order` on the test day, downloaded through the client.
async fn statement_lines(env: &Env, channel: Channel, order: &str) -> Vec<String> {
    let file = env.client(channel).download_statement(day()).await.unwrap();
    assert_eq!(
        file,
        env.sandbox
            .statement(channel, Env::merchant_id(channel), day())
            .unwrap(),
        "the client downloads the sandbox's statement, byte for byte"
    );
    let text = match file {
        StatementFile::WechatText(text) => text,
        StatementFile::AlipayZip(bytes) => alipay_detail(&bytes),
        StatementFile::NoStatement { code } => panic!("no statement: {code}"),
    };
    let needle = match channel {
        Channel::Wechat => format!(",`{order},"),
        Channel::Alipay => format!(",{order}\t,"),
    };
    text.lines()
        .filter(|line| line.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// The detail CSV of an Alipay bill zip, decoded from GBK.
fn alipay_detail(zip: &[u8]) -> String {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let name = archive
        .file_names()
        .find(|name| name.ends_with("_业务明细.csv"))
        .unwrap()
        .to_owned();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name(&name).unwrap(), &mut raw).unwrap();
    let (text, _, malformed) = encoding_rs::GBK.decode(&raw);
    assert!(!malformed);
    text.into_owned()
}

#[tokio::test]
async fn wechat_revokes_an_unpaid_order_by_itself_after_45_seconds() {
    let env = sandbox().await;
    let client = env.client(Channel::Wechat);
    pay(&*client, "W45", &code(Channel::Wechat, "02")).await;
    env.advance(44);
    assert_eq!(
        query(&*client, "W45").await,
        QueryOutcome::WaitingForPassword
    );
    env.advance(1);
    assert_eq!(query(&*client, "W45").await, QueryOutcome::Closed);
    assert!(matches!(
        env.state(Channel::Wechat, "W45"),
        Some(SandboxOrderState::Closed {
            by_channel: true,
            ..
        })
    ));
}

#[tokio::test]
async fn wechat_asks_to_retry_a_revoke_in_the_first_15_seconds_of_a_password_wait() {
    let env = sandbox().await;
    let client = env.client(Channel::Wechat);
    pay(&*client, "W15", &code(Channel::Wechat, "02")).await;
    env.advance(5);
    assert!(matches!(
        revoke(&*client, "W15").await,
        RevokeOutcome::MustRetry { .. }
    ));
    env.advance(10);
    let outcome = revoke(&*client, "W15").await;
    assert_revoked(Channel::Wechat, &outcome, RevokeResult::Closed);
}

#[tokio::test]
async fn revoking_an_order_the_channel_never_saw_is_done_without_saying_what_it_did() {
    // Alipay's 10000 without `action` ("not found, or the call failed")
    // does not say whether money moved: the statement settles it.
    let env = sandbox().await;
    for channel in Channel::ALL {
        let outcome = revoke(&*env.client(channel), "NEVER").await;
        assert_revoked(channel, &outcome, RevokeResult::Unspecified);
    }
}

#[tokio::test]
async fn alipay_refuses_a_cancel_after_the_china_day_and_the_refund_takes_over() {
    let env = sandbox().await;
    let client = env.client(Channel::Alipay);
    pay(&*client, "A1", &code(Channel::Alipay, "00")).await;
    env.advance(14 * 3600);
    assert_eq!(
        revoke(&*client, "A1").await,
        RevokeOutcome::WindowClosed {
            code: "ACQ.TRADE_CANCEL_TIME_OUT".to_owned()
        }
    );
    assert!(matches!(
        refund(&*client, "A1", "R1", "12.34").await,
        RefundOutcome::Accepted { .. }
    ));
    assert!(matches!(
        refund_query(&*client, "A1", "R1", "12.34").await,
        RefundOutcome::Succeeded { .. }
    ));
}

#[tokio::test]
async fn wechat_refuses_a_revoke_after_7_days() {
    let env = sandbox().await;
    let client = env.client(Channel::Wechat);
    pay(&*client, "W7", &code(Channel::Wechat, "00")).await;
    env.advance(7 * 86_400 + 1);
    assert_eq!(
        revoke(&*client, "W7").await,
        RevokeOutcome::WindowClosed {
            code: "REVERSE_EXPIRE".to_owned()
        }
    );
}

#[tokio::test]
async fn refunds_are_idempotent_by_number_and_never_exceed_the_payment() {
    let env = sandbox().await;
    for channel in Channel::ALL {
        let client = env.client(channel);
        pay(&*client, "P1", &code(channel, "00")).await;
        for _ in 0..2 {
            assert!(matches!(
                refund(&*client, "P1", "R1", "10.00").await,
                RefundOutcome::Accepted { .. }
            ));
        }
        let order = env
            .sandbox
            .order(channel, Env::merchant_id(channel), "P1")
            .unwrap();
        assert_eq!(order.refunds.len(), 1, "a retry is the same refund");
        let too_much = refund(&*client, "P1", "R2", "2.35").await;
        assert!(
            !matches!(too_much, RefundOutcome::Accepted { .. }),
            "{channel}: {too_much:?}"
        );
        assert!(matches!(
            refund(&*client, "P1", "R2", "2.34").await,
            RefundOutcome::Accepted { .. }
        ));
        assert_eq!(
            env.sandbox
                .order(channel, Env::merchant_id(channel), "P1")
                .unwrap()
                .refunded_fen(),
            1234
        );
    }
}

#[tokio::test]
async fn a_wechat_request_with_a_bad_signature_is_refused_as_wechat_does() {
    let env = sandbox().await;
    let mut config = env.wechat_config();
    config.key = ApiKey::from(testing::random_api_key());
    let impostor = WechatClient::new(config).unwrap();
    let answer = pay(&impostor, "BAD", &code(Channel::Wechat, "00")).await;
    let PayOutcome::Unknown { reason } = &answer.outcome else {
        panic!("expected Unknown, got {:?}", answer.outcome);
    };
    assert!(reason.contains("签名失败"), "{reason}");
    assert_eq!(env.state(Channel::Wechat, "BAD"), None, "nothing happened");
    let body = reqwest::Client::new()
        .post(format!("http://{}/pay/orderquery", env.addr))
        .body("<xml><appid>wx2421b1c4370ec43b</appid><mch_id>10000100</mch_id><nonce_str>n</nonce_str><out_trade_no>BAD</out_trade_no><sign>0</sign></xml>")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answer = xml::parse(&body).unwrap();
    assert_eq!(answer.get("return_code").map(String::as_str), Some("FAIL"));
    assert_eq!(
        answer.get("return_msg").map(String::as_str),
        Some("签名失败")
    );
    assert!(!answer.contains_key("sign"), "a refusal is not signed");
}

#[tokio::test]
async fn an_alipay_request_with_a_bad_signature_is_refused_as_alipay_does() {
    // The sandbox verifies the app's requests with a key that is not the app's.
    let (_, other_public) = testing::rsa_key_pair_pem("alipay", 2048);
    let env = spawn(Setup {
        app_public_pem: Some(other_public),
        ..Setup::default()
    })
    .await;
    let client = env.client(Channel::Alipay);
    let answer = pay(&*client, "BAD", &code(Channel::Alipay, "00")).await;
    assert!(is_unknown_pay(&answer.outcome), "{:?}", answer.outcome);
    assert_eq!(answer.codes.get("code"), Some("40002"));
    assert_eq!(answer.codes.get("sub_code"), Some("isv.invalid-signature"));
    assert_eq!(answer.codes.get("signature"), Some("missing"));
    assert_eq!(env.state(Channel::Alipay, "BAD"), None, "nothing happened");
}

#[tokio::test]
async fn statements_download_through_both_clients_with_the_revoked_order_twice() {
    let env = sandbox().await;
    for channel in Channel::ALL {
        let client = env.client(channel);
        pay(&*client, "S1", &code(channel, "00")).await;
        pay(&*client, "S2", &code(channel, "00")).await;
        pay(&*client, "S3", &code(channel, "02")).await;
    }
    env.advance(20);
    for channel in Channel::ALL {
        let client = env.client(channel);
        revoke(&*client, "S2").await;
        revoke(&*client, "S3").await;
        refund(&*client, "S1", "RS1", "1.00").await;
    }
    for channel in Channel::ALL {
        let s1 = statement_lines(&env, channel, "S1").await;
        assert_eq!(s1.len(), 2, "payment and refund: {s1:?}");
        let s2 = statement_lines(&env, channel, "S2").await;
        assert_eq!(s2.len(), 2, "payment and revoke: {s2:?}");
        match channel {
            Channel::Wechat => assert!(s2[1].contains(",`REVOKED,"), "{}", s2[1]),
            Channel::Alipay => {
                let trade_no = env.sandbox.order(channel, APP_ID, "S2").unwrap().trade_no;
                assert!(
                    s2[1].ends_with(&format!(",{trade_no}\t,0.07,0.00,")),
                    "{}",
                    s2[1]
                );
            }
        }
        assert!(
            statement_lines(&env, channel, "S3").await.is_empty(),
            "never paid"
        );
        let other_day = env
            .client(channel)
            .download_statement(day().pred_opt().unwrap())
            .await
            .unwrap();
        assert!(
            matches!(other_day, StatementFile::NoStatement { .. }),
            "{other_day:?}"
        );
    }
}

#[tokio::test]
async fn the_call_record_keeps_the_latest_calls_and_the_counts_stay_exact() {
    let env = spawn(Setup {
        calls_kept: 3,
        ..Setup::default()
    })
    .await;
    let wechat = env.client(Channel::Wechat);
    for n in 0..5 {
        pay(&*wechat, &format!("K{n}"), &code(Channel::Wechat, "00")).await;
    }
    // The same order paid again: its pay requests are counted, not kept.
    pay(&*wechat, "K0", &code(Channel::Wechat, "00")).await;
    let kept: Vec<Option<String>> = env
        .sandbox
        .calls()
        .into_iter()
        .map(|call| call.out_trade_no)
        .collect();
    assert_eq!(
        kept,
        [Some("K3".into()), Some("K4".into()), Some("K0".into())],
        "the three latest calls, oldest first"
    );
    assert_eq!(
        env.sandbox.call_counts(),
        [(Channel::Wechat, SandboxApi::Channel(Api::Pay), 6)]
    );
    assert_eq!(env.sandbox.pay_requests(Channel::Wechat, MCH_ID, "K0"), 2);
    assert_eq!(env.sandbox.pay_requests(Channel::Wechat, MCH_ID, "K1"), 1);
    env.sandbox.clear_calls();
    assert!(env.sandbox.calls().is_empty() && env.sandbox.call_counts().is_empty());
}

#[tokio::test]
async fn every_call_is_recorded_with_its_answer_and_never_the_code() {
    let env = sandbox().await;
    let wechat = env.client(Channel::Wechat);
    let alipay = env.client(Channel::Alipay);
    pay(&*wechat, "C1", &code(Channel::Wechat, "02")).await;
    query(&*wechat, "C1").await;
    pay(&*alipay, "C2", &code(Channel::Alipay, "03")).await;
    refund(&*alipay, "C2", "R1", "1.00").await;
    let calls = env.sandbox.calls();
    let summary: Vec<(Channel, SandboxApi, &str, Option<&str>, &str)> = calls
        .iter()
        .map(|c| {
            (
                c.channel,
                c.api,
                c.merchant_id.as_str(),
                c.out_trade_no.as_deref(),
                c.answer.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                Channel::Wechat,
                SandboxApi::Channel(Api::Pay),
                MCH_ID,
                Some("C1"),
                "USERPAYING"
            ),
            (
                Channel::Wechat,
                SandboxApi::Channel(Api::Query),
                MCH_ID,
                Some("C1"),
                "SUCCESS"
            ),
            (
                Channel::Alipay,
                SandboxApi::Channel(Api::Pay),
                APP_ID,
                Some("C2"),
                "40004/ACQ.BUYER_BALANCE_NOT_ENOUGH"
            ),
            (
                Channel::Alipay,
                SandboxApi::Channel(Api::Refund),
                APP_ID,
                Some("C2"),
                "40004/ACQ.TRADE_STATUS_ERROR"
            ),
        ]
    );
    assert_eq!(calls[3].refund_no.as_deref(), Some("R1"));
    let printed = format!("{calls:?}");
    for channel in Channel::ALL {
        let full = code(channel, "00").expose_for_pay_call().to_owned();
        assert!(!printed.contains(&full[..16]), "no code in the record");
    }
}

#[tokio::test]
async fn injected_faults_strike_before_or_after_processing() {
    // Every call answered 503 before processing: nothing happens.
    let refused = spawn(Setup {
        faults: Faults {
            server_error_per_mille: 1000,
            ..Faults::default()
        },
        ..Setup::default()
    })
    .await;
    for channel in Channel::ALL {
        let answer = pay(&*refused.client(channel), "F1", &code(channel, "00")).await;
        assert!(is_unknown_pay(&answer.outcome), "{:?}", answer.outcome);
        assert_eq!(refused.state(channel, "F1"), None);
    }
    // Every answer dropped or garbled after processing: the order is paid.
    for fault in [FaultKind::Dropped, FaultKind::Garbled] {
        let faults = match fault {
            FaultKind::Dropped => Faults {
                drop_per_mille: 1000,
                ..Faults::default()
            },
            _ => Faults {
                garbled_per_mille: 1000,
                ..Faults::default()
            },
        };
        let env = spawn(Setup {
            faults,
            ..Setup::default()
        })
        .await;
        for channel in Channel::ALL {
            let answer = pay(&*env.client(channel), "F1", &code(channel, "00")).await;
            assert!(
                is_unknown_pay(&answer.outcome),
                "{fault:?}: {:?}",
                answer.outcome
            );
            assert!(matches!(
                env.state(channel, "F1"),
                Some(SandboxOrderState::Paid { .. })
            ));
        }
        assert!(env.sandbox.calls().iter().all(|c| c.fault == Some(fault)));
    }
}

#[tokio::test]
async fn a_restarted_sandbox_still_knows_its_orders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.db");
    let key = testing::random_api_key();
    let clock = ManualClock::starting_at(start());
    let setup = || Setup {
        wechat_key: key.clone(),
        state_path: Some(path.clone()),
        clock: clock.clone(),
        ..Setup::default()
    };
    {
        let env = spawn(setup()).await;
        for channel in Channel::ALL {
            pay(&*env.client(channel), "K1", &code(channel, "00")).await;
            pay(&*env.client(channel), "K2", &code(channel, "00")).await;
        }
    }
    let env = spawn(setup()).await;
    env.advance(20);
    for channel in Channel::ALL {
        let client = env.client(channel);
        assert_paid(&query(&*client, "K1").await);
        assert!(matches!(
            revoke(&*client, "K1").await,
            RevokeOutcome::Done { .. }
        ));
        assert!(matches!(
            refund(&*client, "K2", "R1", "1.00").await,
            RefundOutcome::Accepted { .. }
        ));
        assert_eq!(statement_lines(&env, channel, "K1").await.len(), 2);
        assert_eq!(statement_lines(&env, channel, "K2").await.len(), 2);
    }
}

#[tokio::test]
async fn the_documented_signed_micropay_request_is_accepted_and_an_unverifiable_one_refused() {
    // gochat's request, signed with the documentation's example key.
    let env = spawn(Setup {
        wechat_key: doc_key(),
        ..Setup::default()
    })
    .await;
    let vector = testing::vector_json("wx_v2_micropay_roundtrip_gochat.json");
    let request: Params = vector["requests"][0]["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert!(wechat_sign::verify(
        &request,
        &ApiKey::from(doc_key()),
        SignType::Md5
    ));
    let post = |body: String| {
        let url = format!("http://{}/pay/micropay", env.addr);
        async move {
            let text = reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            xml::parse(&text).unwrap()
        }
    };
    let answer = post(xml::to_xml(&request)).await;
    assert_eq!(answer["return_code"], "SUCCESS");
    assert_eq!(answer["result_code"], "SUCCESS");
    assert_eq!(answer["out_trade_no"], request["out_trade_no"]);
    assert_eq!(answer["total_fee"], "1");
    assert_eq!(answer["attach"], "订单额外描述");
    assert!(wechat_sign::verify(
        &answer,
        &ApiKey::from(doc_key()),
        SignType::Md5
    ));
    // The official example XML was signed with a key that was never published:
    // with the documentation's key its signature does not verify.
    let official = testing::vector("wx_v2_micropay_req_official.xml");
    let answer = post(official).await;
    assert_eq!(answer["return_code"], "FAIL");
    assert_eq!(answer["return_msg"], "签名失败");
}

#[tokio::test]
async fn a_hmac_sha256_merchant_is_verified_and_answered_with_hmac_sha256() {
    let env = spawn(Setup {
        wechat_sign_type: SignType::HmacSha256,
        ..Setup::default()
    })
    .await;
    let mut config = env.wechat_config();
    config.sign_type = SignType::HmacSha256;
    let client = WechatClient::new(config).unwrap();
    paid_trade_no(
        &pay(&client, "H1", &code(Channel::Wechat, "00"))
            .await
            .outcome,
    );
    assert_paid(&query(&client, "H1").await);
    // An MD5 request to a HMAC-SHA256 merchant does not verify.
    let md5 = env.client(Channel::Wechat);
    let answer = pay(&*md5, "H2", &code(Channel::Wechat, "00")).await;
    assert!(is_unknown_pay(&answer.outcome), "{:?}", answer.outcome);
    assert_eq!(env.state(Channel::Wechat, "H2"), None);
}
