//! The real `paycode verify` binary on a SQLite ledger: exit status 0 and a
//! clean summary for an untouched file, a non-zero status and the edited
//! event's `stream@version` once a stored event is changed in the file, and
//! an error (never a new file) when there is no ledger.

use std::path::Path;
use std::process::{Command as Process, Output};
use std::sync::Arc;

use paycode::service::ledger::Ledger;
use paycode_adapters::clock::SystemClock;
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_domain::payment::{
    ChannelAnswer, Command, CommandKind, PayOutcome, PaymentDecider, SubmitPayment,
};
use paycode_domain::{AuthCode, CommandId, MerchantId, OrderNo};
use uuid::Uuid;

/// One paid order, `C1` of merchant `demo`, written through the ledger.
async fn paid_order(path: &Path) {
    let store = Arc::new(SqliteStore::open(path).expect("open"));
    let shared: Arc<dyn EventStore> = store.clone();
    let ledger = Ledger::new(shared, PaymentDecider::default(), Arc::new(SystemClock));
    let merchant = MerchantId::parse("demo").expect("merchant");
    let order_no = OrderNo::parse("C1").expect("order");
    let submit = CommandKind::SubmitPayment(SubmitPayment {
        merchant_id: merchant.clone(),
        order_no: order_no.clone(),
        auth_code: AuthCode::parse("134567890123456700").expect("code"),
        auth_code_fingerprint: None,
        amount: "12.34".parse().expect("amount"),
        subject: "Coffee".to_owned(),
    });
    let paid = CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
        channel_trade_no: "4200000001".to_owned(),
        paid_at: Some(chrono::Utc::now()),
    }));
    for kind in [submit, paid] {
        ledger
            .execute_on_order(
                &merchant,
                &order_no,
                &Command::new(CommandId(Uuid::now_v7()), kind),
            )
            .await
            .expect("the ledger records it");
    }
    drop(ledger);
    Arc::into_inner(store)
        .expect("the only handle")
        .close()
        .await
        .expect("close");
}

fn paycode_verify(dir: &Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_paycode"))
        .arg("verify")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_binary_exits_zero_on_a_clean_ledger_and_non_zero_naming_an_edited_event() {
    // Clean file: status 0 and "0 problems"; after the Paid event's bytes are changed in the file: status 1 and payment-demo-C1@1.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paycode.db");
    paid_order(&path).await;

    // Without --config: the embedded defaults, ./paycode.db.
    let clean = paycode_verify(dir.path(), &[]);
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    assert_eq!(stdout(&clean), "verified 1 streams, 2 events: 0 problems\n");

    {
        let conn = rusqlite::Connection::open(&path).expect("open the file by hand");
        let changed = conn
            .execute(
                "UPDATE events SET data = CAST(replace(CAST(data AS TEXT), '4200000001', '4200000002') AS BLOB) \
                 WHERE version = 1",
                [],
            )
            .expect("edit");
        assert_eq!(changed, 1);
    }

    let config = dir.path().join("paycode.toml");
    std::fs::write(
        &config,
        "[store]\nkind = \"sqlite\"\npath = \"paycode.db\"\n",
    )
    .expect("config");
    let config = config.to_str().expect("utf-8 path");
    let tampered = paycode_verify(dir.path(), &["--config", config]);
    assert_eq!(tampered.status.code(), Some(1), "{tampered:?}");
    let report = stdout(&tampered);
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 2, "{report}");
    assert_eq!(lines[0], "verified 1 streams, 2 events: 1 problem");
    assert!(
        lines[1].starts_with("payment-demo-C1@1: broken link"),
        "{report}"
    );
}

#[test]
fn the_binary_refuses_to_verify_a_ledger_that_is_not_there() {
    // No ./paycode.db: a non-zero status and an error naming the path; no file is created.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = paycode_verify(dir.path(), &[]);
    assert_ne!(missing.status.code(), Some(0), "{missing:?}");
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(error.contains("no SQLite ledger"), "{error}");
    assert!(!dir.path().join("paycode.db").exists());
}
