//! `paycode replay` over a real SQLite ledger: after a few orders through
//! the service (a refund included) and the read-model runner that `serve`
//! runs, the rebuild equals the stored read models; a stored row edited by
//! hand is reported by key and makes the exit code non-zero.

use std::sync::Arc;

use paycode::config::store::LedgerSource;
use paycode::read::rebuild::DifferenceKind;
use paycode::read::runner::{ProjectionRunner, RunnerOptions};
use paycode_adapters::read_models::SqliteReadModelStore;
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_tests::TestApp;

fn payment(order_no: &str, code: &str) -> String {
    format!(
        r#"{{"order_no":"{order_no}","auth_code":"{code}","amount":"10.00","subject":"Replay"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_finds_no_difference_then_reports_a_tampered_row() {
    // Three orders and a refund: replay reports 0 differences and exit 0; after an edit of
    // RP1's stored refunded_amount it names RP1's order_status row and exits 1.
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("paycode.db");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&ledger).unwrap());
    let app = TestApp::spawn_on(store.clone()).await;
    for (order, code) in [
        ("RP1", "134567890123456700"),
        ("RP2", "284567890123456700"),
        ("RP3", "134567890123456703"),
    ] {
        let (status, body) = app
            .call("POST", "/v1/payments", Some(&payment(order, code)))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    app.settle("RP1", "paid", 1).await;
    app.settle("RP2", "paid", 1).await;
    app.settle("RP3", "closed", 5).await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/RP1/refunds",
            Some(r#"{"refund_no":"RF1","amount":"4.00","reason":"returned"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let paid = app.settle("RP1", "partially_refunded", 5).await;
    assert_eq!(paid["refunded_amount"], "4.00");
    drop(app);

    // What `serve` does in the background: keep paycode-views.db beside the ledger.
    let views_path = SqliteReadModelStore::path_beside(&ledger);
    let views = paycode::read::runner::open_read_models(&views_path).unwrap();
    let mut runner = ProjectionRunner::open(store.clone(), views, RunnerOptions::default())
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    assert_eq!(runner.catch_up().await.unwrap(), head);
    drop(runner);

    let config_path = dir.path().join("paycode.toml");
    std::fs::write(
        &config_path,
        "[store]\nkind = \"sqlite\"\npath = \"paycode.db\"\n",
    )
    .unwrap();
    let config = LedgerSource::from_args(None, Some(&config_path)).unwrap();
    let report = paycode::read::rebuild::run(&config, false).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.exit_code(), 0);
    assert_eq!((report.checkpoint, report.events), (head, head));
    let rows: Vec<(&str, usize)> = report
        .projections
        .iter()
        .map(|p| (p.name, p.stored_rows))
        .collect();
    assert_eq!(
        rows,
        [
            ("order_status", 3),
            ("refunds", 1),
            ("operator_queue", 0),
            ("in_flight", 0),
            ("reconciliation_diffs", 0)
        ]
    );
    assert!(report.to_string().contains("no differences"), "{report}");

    // Tamper with the stored read model: RP1's refunded total goes back to zero.
    let conn = rusqlite::Connection::open(&views_path).unwrap();
    let edited = conn
        .execute(
            "UPDATE order_status SET row = json_set(row, '$.refunded_amount', '0.00') \
             WHERE key LIKE '%\"RP1\"%'",
            [],
        )
        .unwrap();
    assert_eq!(edited, 1);
    drop(conn);
    let report = paycode::read::rebuild::run(&config, false).await.unwrap();
    assert_eq!(report.exit_code(), 1, "{report}");
    assert_eq!(report.differences.len(), 1, "{report}");
    let difference = &report.differences[0];
    assert_eq!(difference.projection, "order_status");
    assert_eq!(difference.kind, DifferenceKind::Different);
    assert!(difference.key.contains("\"RP1\""), "{}", difference.key);
    let printed = report.to_string();
    assert!(printed.contains("1 difference(s)"), "{printed}");
    assert!(printed.contains("RP1"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_without_stored_read_models_rebuilds_and_prints_what_it_built() {
    // No ledger at all: an error naming the setting and the path, nothing
    // created. A ledger without a views file beside it (an auditor's copy):
    // the read models are rebuilt to the head and their rows printed, and
    // nothing is written beside the ledger.
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("paycode.toml");
    std::fs::write(&config_path, "[store]\npath = \"ledger.db\"\n").unwrap();
    let config = LedgerSource::from_args(None, Some(&config_path)).unwrap();
    let error = format!(
        "{:#}",
        paycode::read::rebuild::run(&config, false)
            .await
            .unwrap_err()
    );
    assert!(
        error.contains("store.path") && error.contains("ledger.db"),
        "{error}"
    );
    assert!(!dir.path().join("ledger.db").exists());

    let ledger = dir.path().join("ledger.db");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&ledger).unwrap());
    let app = TestApp::spawn_on(store.clone()).await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&payment("RB1", "134567890123456700")),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.settle("RB1", "paid", 1).await;
    drop(app);
    let head = store.head_position().await.unwrap();
    drop(store);
    let files = |dir: &std::path::Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = files(dir.path());
    assert!(
        !before.contains(&"ledger-views.db".to_owned()),
        "{before:?}"
    );

    let report = paycode::read::rebuild::run(&config, false).await.unwrap();
    assert_eq!(report.views, None);
    assert_eq!(report.exit_code(), 0, "{report}");
    assert_eq!(
        (report.checkpoint, report.head, report.events),
        (head, head, head)
    );
    let order_rows = report
        .projections
        .iter()
        .find(|summary| summary.name == "order_status")
        .map(|summary| summary.rebuilt_rows);
    assert_eq!(order_rows, Some(1), "{report}");
    let printed = report.to_string();
    assert!(
        printed.contains("no stored read models beside the ledger: nothing compared"),
        "{printed}"
    );
    assert_eq!(files(dir.path()), before, "nothing made beside the ledger");
}
