//! A ledger written by the release before ADR 0008 (1 KiB pages), kept in
//! `tests/fixtures/ledger-1k-pages-schema2.db`, rewritten by `relayout`
//! (`paycode migrate --to sqlite`): every event is the same, `verify`
//! still proves the whole chain, and the service runs on it: the orders
//! read as they were, and new payments are appended and verified.
//!
//! The fixture was written by `paycode serve` on its embedded defaults:
//! a WeChat payment paid and partly refunded (A1), an Alipay one paid after
//! the customer typed the password (A2), a WeChat one revoked after the
//! deadline and closed when the day's statement showed it unpaid (A4), and
//! an Alipay one paid at once (A5), with the service stopped and started
//! again once.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use paycode::read::verify::verify_store;
use paycode_adapters::store::sqlite::relayout::{Relayout, relayout};
use paycode_adapters::store::{EventStore, RecordedEvent, SqliteStore};
use paycode_tests::TestApp;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/ledger-1k-pages-schema2.db"
);

fn copy_of_fixture(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy(FIXTURE, &path).expect("copy the fixture");
    path
}

fn page_size(path: &Path) -> u32 {
    let conn = rusqlite::Connection::open(path).expect("open by hand");
    conn.pragma_query_value(None, "page_size", |row| row.get(0))
        .expect("page_size")
}

async fn every_event(path: &Path) -> Vec<RecordedEvent> {
    let store = SqliteStore::open_read_only(path).expect("open read-only");
    store.read_all(0, usize::MAX).await.expect("read all")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_of_the_previous_release_is_rewritten_verified_and_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let untouched = copy_of_fixture(dir.path(), "untouched.db");
    let path = copy_of_fixture(dir.path(), "paycode.db");
    assert_eq!(page_size(&path), 1024);
    let before = every_event(&untouched).await;
    assert_eq!(before.len(), 26);

    let done = tokio::task::spawn_blocking({
        let path = path.clone();
        move || relayout(&path)
    })
    .await
    .expect("join")
    .expect("rewrite");
    assert!(
        matches!(
            done,
            Relayout::Rewritten {
                page_size_before: 1024,
                page_size: 4096,
                events: 26,
                ..
            }
        ),
        "{done:?}"
    );
    assert_eq!(page_size(&path), 4096);
    assert!(
        every_event(&path).await == before,
        "every event, its position, id, bytes and chain hash, as the release wrote it"
    );

    let store = Arc::new(SqliteStore::open(&path).expect("open the rewritten ledger"));
    let report = verify_store(store.as_ref()).await.expect("verify");
    assert!(report.is_clean(), "{}", report.render());
    assert_eq!(
        (report.streams, report.events),
        (6, 26),
        "{}",
        report.render()
    );

    let shared: Arc<dyn EventStore> = store.clone();
    let app = TestApp::spawn_on(shared).await;
    for (order, status) in [
        ("A1", "partially_refunded"),
        ("A2", "paid"),
        ("A4", "closed"),
    ] {
        let (code, body) = app
            .call("GET", &format!("/v1/payments/{order}"), None)
            .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], status, "{order}: {body}");
    }
    let (code, body) = app
        .call(
            "POST",
            "/v1/payments",
            Some(
                r#"{"order_no":"M1","auth_code":"134567890123456700","amount":"3.00","subject":"Tea"}"#,
            ),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    app.settle("M1", "paid", 1).await;
    drop(app);

    let report = verify_store(store.as_ref())
        .await
        .expect("verify after new payments");
    assert!(report.is_clean(), "{}", report.render());
    assert_eq!(report.streams, 7, "{}", report.render());
    assert!(report.events > 26, "{}", report.render());
}
