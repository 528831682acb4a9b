//! The auditor's case, on the real binary: a copy of a ledger (taken with
//! `VACUUM INTO`, as docs/auditing.md says), its read models beside it, in
//! a read-only folder of read-only files, and no configuration anywhere.
//! `verify`, `replay`, `history` (with `--evidence`) and `reconcile --file`
//! all work with `--ledger`, and afterwards every file of the folder has the
//! same bytes and modification time, and no `-wal`/`-shm` appeared (tests
//! may run as root, where permission bits stop no write). Also: a
//! configuration with merchants but no channel settings or key files is
//! enough for `--config`; a copy whose WAL lacks its `-shm` is refused
//! naming the way out; an evidence file checks offline and a tampered one
//! is reported at its version.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command as Process, Output};
use std::sync::Arc;
use std::time::SystemTime;

use paycode::read::runner::{ProjectionRunner, RunnerOptions, open_read_models};
use paycode::service::ledger::Ledger;
use paycode_adapters::clock::SystemClock;
use paycode_adapters::read_models::SqliteReadModelStore;
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_domain::payment::{
    ChannelAnswer, Command, CommandKind, PayOutcome, PaymentDecider, RequestRefund, SubmitPayment,
};
use paycode_domain::{AuthCode, CommandId, MerchantId, OrderNo, RefundNo};
use serde_json::Value;
use uuid::Uuid;

/// Two paid orders of merchant `demo`, `A1` and `A2` (with a refund
/// requested), written through the ledger; then the read models beside it,
/// as `serve` keeps them.
async fn make_ledger(path: &Path) {
    let store = Arc::new(SqliteStore::open(path).expect("open"));
    let shared: Arc<dyn EventStore> = store.clone();
    let ledger = Ledger::new(
        shared.clone(),
        PaymentDecider::default(),
        Arc::new(SystemClock),
    );
    let merchant = MerchantId::parse("demo").expect("merchant");
    for order in ["A1", "A2"] {
        let order_no = OrderNo::parse(order).expect("order");
        let mut commands = vec![
            CommandKind::SubmitPayment(SubmitPayment {
                merchant_id: merchant.clone(),
                order_no: order_no.clone(),
                auth_code: AuthCode::parse("134567890123456700").expect("code"),
                auth_code_fingerprint: None,
                amount: "20.00".parse().expect("amount"),
                subject: "Audit".to_owned(),
            }),
            CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
                channel_trade_no: format!("42000{order}"),
                paid_at: Some(chrono::Utc::now()),
            })),
        ];
        if order == "A2" {
            commands.push(CommandKind::RequestRefund(RequestRefund {
                refund_no: RefundNo::parse("AR1").expect("refund"),
                amount: "5.00".parse().expect("amount"),
                reason: "returned".to_owned(),
            }));
        }
        for kind in commands {
            ledger
                .execute_on_order(
                    &merchant,
                    &order_no,
                    &Command::new(CommandId(Uuid::now_v7()), kind),
                )
                .await
                .expect("the ledger records it");
        }
    }
    drop(ledger);
    let views = open_read_models(&SqliteReadModelStore::path_beside(path)).expect("views");
    let mut runner = ProjectionRunner::open(shared.clone(), views, RunnerOptions::default())
        .await
        .expect("runner");
    runner.catch_up().await.expect("catch up");
    drop(runner);
    drop(shared);
    Arc::into_inner(store)
        .expect("the only handle")
        .close()
        .await
        .expect("close");
}

/// Every file of `dir`: its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(dir)
        .expect("read the folder")
        .map(|entry| {
            let entry = entry.expect("an entry");
            let modified = entry
                .metadata()
                .expect("metadata")
                .modified()
                .expect("mtime");
            (
                entry.file_name().to_string_lossy().into_owned(),
                (std::fs::read(entry.path()).expect("read"), modified),
            )
        })
        .collect()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs the binary in `dir` (where there is no configuration).
fn paycode(dir: &Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_paycode"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// WeChat's answer for a day without a bill: an empty statement.
const NO_BILL: &str = "<xml><return_code><![CDATA[FAIL]]></return_code>\
                       <return_msg><![CDATA[No Bill Exist]]></return_msg></xml>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reading_command_works_on_a_read_only_copy_and_changes_nothing() {
    let live = tempfile::tempdir().expect("tempdir");
    let ledger = live.path().join("paycode.db");
    make_ledger(&ledger).await;

    // The copy, as docs/auditing.md says: VACUUM INTO for the ledger; the
    // read models (a closed file) copied as they are.
    let audit = tempfile::tempdir().expect("tempdir");
    let copy = audit.path().join("paycode.db");
    let conn =
        rusqlite::Connection::open_with_flags(&ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("a reader");
    conn.execute("VACUUM INTO ?1", [copy.to_str().expect("utf-8")])
        .expect("VACUUM INTO");
    drop(conn);
    std::fs::copy(
        SqliteReadModelStore::path_beside(&ledger),
        audit.path().join("paycode-views.db"),
    )
    .expect("copy the views");
    let work = tempfile::tempdir().expect("tempdir");
    let bill = work.path().join("bill.txt");
    std::fs::write(&bill, NO_BILL).expect("bill");
    for file in ["paycode.db", "paycode-views.db"] {
        chmod(&audit.path().join(file), 0o444);
    }
    chmod(audit.path(), 0o555);
    let before = snapshot(audit.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        ["paycode-views.db", "paycode.db"]
    );
    let copy = copy.to_str().expect("utf-8");
    let work_dir = work.path();

    let verify = paycode(work_dir, &["verify", "--ledger", copy]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    assert_eq!(
        stdout(&verify),
        "verified 2 streams, 5 events: 0 problems\n"
    );

    let json = paycode(work_dir, &["verify", "--ledger", copy, "--format", "json"]);
    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let report: Value = serde_json::from_str(&stdout(&json)).expect("one JSON object");
    assert_eq!(
        report,
        serde_json::json!({"streams": 2, "events": 5, "problems": []})
    );

    let replay = paycode(work_dir, &["replay", "--ledger", copy]);
    assert_eq!(replay.status.code(), Some(0), "{replay:?}");
    assert!(
        stdout(&replay).contains("no differences"),
        "{}",
        stdout(&replay)
    );

    let history = paycode(work_dir, &["history", "A2", "--ledger", copy]);
    assert_eq!(history.status.code(), Some(0), "{history:?}");
    let timeline = stdout(&history);
    assert!(
        timeline.contains("Paid") && timeline.contains("RefundRequested"),
        "{timeline}"
    );

    let evidence = work_dir.join("A2.evidence.json");
    let exported = paycode(
        work_dir,
        &[
            "history",
            "A2",
            "--ledger",
            copy,
            "--evidence",
            evidence.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(exported.status.code(), Some(0), "{exported:?}");
    assert!(
        stdout(&exported).starts_with("evidence: 3 events of payment-demo-A2 written to "),
        "{}",
        stdout(&exported)
    );

    let reconcile = paycode(
        work_dir,
        &[
            "reconcile",
            "--channel",
            "wechat",
            "--date",
            "2026-11-22",
            "--file",
            bill.to_str().expect("utf-8"),
            "--ledger",
            copy,
        ],
    );
    assert_eq!(reconcile.status.code(), Some(0), "{reconcile:?}");
    assert!(
        stdout(&reconcile).contains("nothing recorded"),
        "{}",
        stdout(&reconcile)
    );

    assert_eq!(snapshot(audit.path()), before, "the copy changed");

    // The evidence checks offline; an edited subject is found at its version.
    let checked = paycode(
        work_dir,
        &["verify", "--file", evidence.to_str().expect("utf-8")],
    );
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    assert_eq!(
        stdout(&checked),
        "verified 1 streams, 3 events: 0 problems\n"
    );
    let text = std::fs::read_to_string(&evidence).expect("evidence");
    let tampered = work_dir.join("tampered.json");
    std::fs::write(&tampered, text.replacen("\"Audit\"", "\"Audix\"", 1)).expect("write");
    let caught = paycode(
        work_dir,
        &["verify", "--file", tampered.to_str().expect("utf-8")],
    );
    assert_eq!(caught.status.code(), Some(1), "{caught:?}");
    let lines: Vec<String> = stdout(&caught).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "verified 1 streams, 3 events: 1 problem");
    assert!(
        lines[1].starts_with("payment-demo-A2@0: broken link"),
        "{lines:?}"
    );

    // Without read models beside it, replay rebuilds and says so.
    chmod(audit.path(), 0o755);
    std::fs::remove_file(audit.path().join("paycode-views.db")).expect("remove the views");
    let alone = paycode(work_dir, &["replay", "--ledger", copy]);
    assert_eq!(alone.status.code(), Some(0), "{alone:?}");
    assert!(
        stdout(&alone).contains("no stored read models beside the ledger: nothing compared"),
        "{}",
        stdout(&alone)
    );
    chmod(&audit.path().join("paycode.db"), 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_without_channels_is_enough_and_a_torn_copy_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("paycode.db");
    make_ledger(&ledger).await;
    // Merchants with neither channel settings nor key files: `serve` would
    // refuse this file; the reading commands read only [store].
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        "[store]\npath = \"paycode.db\"\n\n[[merchants]]\nid = \"demo\"\napi_keys = [\"sk_test_audit_1\"]\n\n\
         [merchants.wechat]\nappid = \"wx1\"\nmch_id = \"1\"\nkey_file = \"missing/wechat.key\"\n",
    )
    .expect("config");
    assert!(paycode::config::Config::load(&config).is_ok());
    let without_channels = dir.path().join("store-only.toml");
    std::fs::write(
        &without_channels,
        "[store]\npath = \"paycode.db\"\n\n[[merchants]]\nid = \"demo\"\napi_keys = [\"sk_test_audit_1\"]\n",
    )
    .expect("config");
    let refused = paycode::config::Config::load(&without_channels).expect_err("serve's load");
    assert_eq!(refused.setting, "merchants[0].wechat");
    let before = snapshot(dir.path());
    for config in [&config, &without_channels] {
        let config = config.to_str().expect("utf-8");
        let verify = paycode(dir.path(), &["verify", "--config", config]);
        assert_eq!(verify.status.code(), Some(0), "{verify:?}");
        assert_eq!(
            stdout(&verify),
            "verified 2 streams, 5 events: 0 problems\n"
        );
        let history = paycode(dir.path(), &["history", "A1", "--config", config]);
        assert_eq!(history.status.code(), Some(0), "{history:?}");
    }
    assert_eq!(snapshot(dir.path()), before);

    // A typo in [store] is still an error naming its line.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[store]\npaht = \"paycode.db\"\n").expect("config");
    let error = paycode(
        dir.path(),
        &["verify", "--config", typo.to_str().expect("utf-8")],
    );
    assert_ne!(error.status.code(), Some(0));
    assert!(
        stderr(&error).contains("paycode.toml line 2"),
        "{}",
        stderr(&error)
    );

    // A copy of the file and its WAL without the -shm: refused, naming the
    // option and the way out, and nothing made beside it.
    let live = dir.path().join("live");
    std::fs::create_dir(&live).expect("mkdir");
    let torn = dir.path().join("torn");
    std::fs::create_dir(&torn).expect("mkdir");
    let live_ledger = live.join("paycode.db");
    std::fs::copy(&ledger, &live_ledger).expect("copy");
    let store = SqliteStore::open(&live_ledger).expect("open");
    let shared: Arc<dyn EventStore> = Arc::new(store);
    let writer = Ledger::new(
        shared.clone(),
        PaymentDecider::default(),
        Arc::new(SystemClock),
    );
    let merchant = MerchantId::parse("demo").expect("merchant");
    let order_no = OrderNo::parse("A3").expect("order");
    writer
        .execute_on_order(
            &merchant,
            &order_no,
            &Command::new(
                CommandId(Uuid::now_v7()),
                CommandKind::SubmitPayment(SubmitPayment {
                    merchant_id: merchant.clone(),
                    order_no: order_no.clone(),
                    auth_code: AuthCode::parse("134567890123456700").expect("code"),
                    auth_code_fingerprint: None,
                    amount: "1.00".parse().expect("amount"),
                    subject: "Audit".to_owned(),
                }),
            ),
        )
        .await
        .expect("submit");
    std::fs::copy(&live_ledger, torn.join("paycode.db")).expect("copy");
    std::fs::copy(live.join("paycode.db-wal"), torn.join("paycode.db-wal")).expect("copy");
    drop((writer, shared));
    let before = snapshot(&torn);
    let refused = paycode(
        dir.path(),
        &[
            "verify",
            "--ledger",
            torn.join("paycode.db").to_str().expect("utf-8"),
        ],
    );
    assert_ne!(refused.status.code(), Some(0), "{refused:?}");
    let message = stderr(&refused);
    assert!(
        message.contains("--ledger") && message.contains("VACUUM INTO"),
        "{message}"
    );
    assert_eq!(snapshot(&torn), before);
}
