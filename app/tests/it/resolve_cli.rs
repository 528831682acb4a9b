//! The real `paycode resolve` binary on a SQLite ledger in a temporary
//! directory: an order driven into manual review through the library's
//! ledger (submitted, pay answer unknown, queried, every revoke asked to be
//! retried, escalated) and a refund the channel never found are resolved
//! from the command line, recorded as resolved by `cli`; bad options are
//! refused naming the option, and nothing is written.

use std::path::Path;
use std::process::{Command as Process, Output};
use std::sync::Arc;

use paycode::config::Config;
use paycode::service::environment::check_environment;
use paycode::service::ledger::Ledger;
use paycode_adapters::clock::SystemClock;
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_domain::payment::{
    ChannelAnswer, Command, CommandKind, Fact, PayOutcome, PaymentDecider, PaymentStatus,
    QueryOutcome, RefundOutcome, RequestRefund, Resolution, RevokeOutcome, RevokeReason,
    SubmitPayment,
};
use paycode_domain::{AuthCode, CommandId, MerchantId, OrderNo, RefundNo};
use uuid::Uuid;

fn demo() -> MerchantId {
    MerchantId::parse("demo").expect("merchant")
}

fn submit(order_no: &str) -> CommandKind {
    CommandKind::SubmitPayment(SubmitPayment {
        merchant_id: demo(),
        order_no: OrderNo::parse(order_no).expect("order"),
        auth_code: AuthCode::parse("134567890123456707").expect("code"),
        auth_code_fingerprint: None,
        amount: "8.00".parse().expect("amount"),
        subject: "Coffee".to_owned(),
    })
}

/// Writes, through the ledger: `M1` in manual review (its revokes kept
/// asking for a retry); `N1` the same, then a late pay answer saying it was
/// paid, which the ledger keeps (`AnswerNoted`) but does not act on in
/// review; and `P1`, paid, with refund `NF1` in manual review (the channel
/// never found it). Closes the file.
async fn ledger_with_reviews(path: &Path) {
    let store = Arc::new(SqliteStore::open(path).expect("open"));
    let shared: Arc<dyn EventStore> = store.clone();
    // A ledger of the embedded defaults, marked as their first start marks it.
    check_environment(&Config::embedded(), shared.clone(), Arc::new(SystemClock))
        .await
        .expect("the embedded defaults mark an empty ledger");
    let ledger = Ledger::new(shared, PaymentDecider::default(), Arc::new(SystemClock));
    let retry = || {
        CommandKind::RecordRevokeAnswer(ChannelAnswer::new(RevokeOutcome::MustRetry {
            reason: "recall=Y".to_owned(),
        }))
    };
    let mut in_review = vec![
        submit("M1"),
        CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Unknown {
            reason: "timeout".to_owned(),
        })),
        CommandKind::RecordQueryResult(ChannelAnswer::new(QueryOutcome::NotFound)),
        CommandKind::RequestRevoke {
            reason: RevokeReason::DeadlineReached,
        },
    ];
    in_review.extend((0..5).map(|_| retry()));
    in_review.push(CommandKind::EscalateToManualReview { refund_no: None });
    let mut in_review_then_paid: Vec<CommandKind> = in_review
        .iter()
        .map(|kind| match kind {
            CommandKind::SubmitPayment(_) => submit("N1"),
            other => other.clone(),
        })
        .collect();
    in_review_then_paid.push(CommandKind::RecordPayAnswer(ChannelAnswer::new(
        PayOutcome::Paid {
            channel_trade_no: "4200000002".to_owned(),
            paid_at: None,
        },
    )));
    let not_found = || CommandKind::RecordRefundAnswer {
        refund_no: RefundNo::parse("NF1").expect("refund"),
        answer: ChannelAnswer::new(RefundOutcome::NotFound),
    };
    let mut refund_in_review = vec![
        submit("P1"),
        CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
            channel_trade_no: "4200000001".to_owned(),
            paid_at: Some(chrono::Utc::now()),
        })),
        CommandKind::RequestRefund(RequestRefund {
            refund_no: RefundNo::parse("NF1").expect("refund"),
            amount: "3.00".parse().expect("amount"),
            reason: String::new(),
        }),
    ];
    refund_in_review.extend((0..5).map(|_| not_found()));
    for (order_no, commands) in [
        ("M1", in_review),
        ("N1", in_review_then_paid),
        ("P1", refund_in_review),
    ] {
        let order_no = OrderNo::parse(order_no).expect("order");
        for kind in commands {
            ledger
                .execute_on_order(
                    &demo(),
                    &order_no,
                    &Command::new(CommandId(Uuid::now_v7()), kind),
                )
                .await
                .expect("the ledger records it");
        }
        let status = ledger
            .history(&demo(), &order_no)
            .await
            .expect("history")
            .state
            .status();
        let expected = if order_no.as_str() == "P1" {
            "paid"
        } else {
            "manual_review"
        };
        assert_eq!(status.map(PaymentStatus::as_str), Some(expected));
    }
    drop(ledger);
    Arc::into_inner(store)
        .expect("the only handle")
        .close()
        .await
        .expect("close");
}

fn paycode_resolve(dir: &Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_paycode"))
        .arg("resolve")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

/// The facts of an order's stream, read from the file.
async fn facts(path: &Path, order_no: &str) -> Vec<Fact> {
    let store = Arc::new(SqliteStore::open(path).expect("open"));
    let shared: Arc<dyn EventStore> = store.clone();
    let ledger = Ledger::new(shared, PaymentDecider::default(), Arc::new(SystemClock));
    let history = ledger
        .history(&demo(), &OrderNo::parse(order_no).expect("order"))
        .await
        .expect("history");
    drop(ledger);
    Arc::into_inner(store)
        .expect("the only handle")
        .close()
        .await
        .expect("close");
    history.events.into_iter().map(|e| e.event.fact).collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_binary_resolves_an_order_and_a_refund_in_review_as_cli() {
    // Bad options: non-zero, naming the option, nothing written; then paid and failed are recorded with resolved_by cli.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paycode.db");
    ledger_with_reviews(&path).await;
    let before = facts(&path, "M1").await.len();

    for (args, option) in [
        (
            vec!["M1", "--outcome", "paid", "--reason", "seen"],
            "--channel-trade-no",
        ),
        (
            vec!["M1", "--outcome", "not_paid", "--reason", "  "],
            "--reason",
        ),
        (
            vec!["M1", "--outcome", "succeeded", "--reason", "x"],
            "--outcome",
        ),
        (
            vec![
                "M1",
                "--outcome",
                "paid",
                "--channel-trade-no",
                "42",
                "--paid-at",
                "soon",
                "--reason",
                "x",
            ],
            "--paid-at",
        ),
        (
            vec![
                "M1",
                "--refund",
                "NF1",
                "--outcome",
                "failed",
                "--reason",
                "x",
            ],
            "refund_not_found",
        ),
        (
            vec!["P1", "--outcome", "not_paid", "--reason", "x"],
            "not_in_review",
        ),
        (
            vec!["NOPE", "--outcome", "not_paid", "--reason", "x"],
            "order_not_found",
        ),
    ] {
        let refused = paycode_resolve(dir.path(), &args);
        assert_ne!(refused.status.code(), Some(0), "{args:?}: {refused:?}");
        assert!(
            stderr(&refused).contains(option),
            "{args:?}: {}",
            stderr(&refused)
        );
    }
    let missing_reason = paycode_resolve(dir.path(), &["M1", "--outcome", "not_paid"]);
    assert_ne!(missing_reason.status.code(), Some(0));
    assert!(
        stderr(&missing_reason).contains("--reason"),
        "{}",
        stderr(&missing_reason)
    );
    assert_eq!(
        facts(&path, "M1").await.len(),
        before,
        "nothing was written"
    );

    let resolved = paycode_resolve(
        dir.path(),
        &[
            "M1",
            "--outcome",
            "paid",
            "--channel-trade-no",
            "4200000123",
            "--reason",
            "paid per the merchant platform",
        ],
    );
    assert_eq!(resolved.status.code(), Some(0), "{resolved:?}");
    let out = String::from_utf8_lossy(&resolved.stdout);
    assert!(out.starts_with("order M1 of merchant demo: paid"), "{out}");
    let Some(Fact::OperatorResolved(fact)) = facts(&path, "M1").await.pop() else {
        panic!("the last event is not OperatorResolved");
    };
    assert_eq!(fact.resolved_by, "cli");
    assert_eq!(fact.note, "paid per the merchant platform");
    assert!(
        matches!(&fact.resolution, Resolution::Paid { channel_trade_no, .. } if channel_trade_no == "4200000123"),
        "{:?}",
        fact.resolution
    );

    let again = paycode_resolve(
        dir.path(),
        &["M1", "--outcome", "not_paid", "--reason", "x"],
    );
    assert!(
        stderr(&again).contains("not_in_review"),
        "{}",
        stderr(&again)
    );

    // N1's history showed the money moving: not paid means it came back, reversed, never closed.
    assert!(
        matches!(facts(&path, "N1").await.last(), Some(Fact::AnswerNoted(_))),
        "the late answer is kept"
    );
    let reversed = paycode_resolve(
        dir.path(),
        &[
            "N1",
            "--outcome",
            "not_paid",
            "--reason",
            "WeChat shows the payment returned",
        ],
    );
    assert_eq!(reversed.status.code(), Some(0), "{reversed:?}");
    let out = String::from_utf8_lossy(&reversed.stdout);
    assert!(
        out.starts_with("order N1 of merchant demo: reversed"),
        "{out}"
    );
    let Some(Fact::OperatorResolved(fact)) = facts(&path, "N1").await.pop() else {
        panic!("the last event is not OperatorResolved");
    };
    assert_eq!(fact.resolution, Resolution::Reversed);

    let refund = paycode_resolve(
        dir.path(),
        &[
            "P1",
            "--refund",
            "NF1",
            "--outcome",
            "failed",
            "--reason",
            "never reached WeChat",
        ],
    );
    assert_eq!(refund.status.code(), Some(0), "{refund:?}");
    let out = String::from_utf8_lossy(&refund.stdout);
    assert!(
        out.starts_with("refund NF1 of order P1 of merchant demo: failed"),
        "{out}"
    );
    let Some(Fact::OperatorResolved(fact)) = facts(&path, "P1").await.pop() else {
        panic!("the last event is not OperatorResolved");
    };
    assert_eq!(fact.resolved_by, "cli");
    assert_eq!(
        fact.resolution,
        Resolution::RefundFailed {
            refund_no: RefundNo::parse("NF1").expect("refund")
        }
    );
}

#[test]
fn the_binary_refuses_to_resolve_without_a_ledger() {
    // No ./paycode.db: a non-zero status naming store.path; no file is created.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = paycode_resolve(
        dir.path(),
        &["M1", "--outcome", "not_paid", "--reason", "x"],
    );
    assert_ne!(missing.status.code(), Some(0), "{missing:?}");
    assert!(
        stderr(&missing).contains("store.path: no SQLite ledger"),
        "{}",
        stderr(&missing)
    );
    assert!(!dir.path().join("paycode.db").exists());
}
