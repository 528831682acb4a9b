//! `paycode verify` on a real SQLite ledger: orders made through the real
//! service verify clean; one stored event edited in the file afterwards is
//! reported at exactly its stream and version, and nowhere else. (The
//! binary's exit status is shown in `app/tests/it/verify_cli.rs`, the only
//! place Cargo hands a test the `paycode` executable.)

use std::path::Path;
use std::sync::Arc;

use paycode::read::verify::{ProblemKind, verify_store};
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_tests::TestApp;

const PAID_WECHAT: &str = "134567890123456700";
const FAILING_ALIPAY: &str = "2845678901234567803";

fn payment(order_no: &str, code: &str, amount: &str) -> String {
    format!(
        r#"{{"order_no":"{order_no}","auth_code":"{code}","amount":"{amount}","subject":"Coffee"}}"#
    )
}

/// A paid order, a partly refunded one and a closed one, through the API.
async fn make_orders(path: &Path) {
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(path).expect("open"));
    let app = TestApp::spawn_on(store).await;
    for (order, code) in [
        ("V1", PAID_WECHAT),
        ("V2", PAID_WECHAT),
        ("V3", FAILING_ALIPAY),
    ] {
        let (status, body) = app
            .call("POST", "/v1/payments", Some(&payment(order, code, "10.00")))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    app.settle("V1", "paid", 1).await;
    app.settle("V2", "paid", 1).await;
    let (status, body) = app
        .call(
            "POST",
            "/v1/payments/V2/refunds",
            Some(r#"{"refund_no":"R1","amount":"4.00","reason":"returned"}"#),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    app.settle("V2", "partially_refunded", 5).await;
    app.settle("V3", "closed", 1).await;
}

/// Changes the subject of order `V2`'s `Submitted` event in the file, the
/// way someone with write access to the file would: one UPDATE, nothing else.
fn edit_submitted_subject(path: &Path) -> (String, u64) {
    let conn = rusqlite::Connection::open(path).expect("open the file by hand");
    let (position, version, data): (i64, i64, Vec<u8>) = conn
        .query_row(
            "SELECT e.position, e.version, e.data FROM events e JOIN streams s \
             ON s.id = e.stream_id WHERE s.name = 'payment-demo-V2' AND e.event_type = 'Submitted'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .expect("V2 was submitted");
    let text = String::from_utf8(data).expect("JSON");
    assert!(text.contains("\"Coffee\""), "{text}");
    let edited = text.replacen("\"Coffee\"", "\"Coffea\"", 1);
    let changed = conn
        .execute(
            "UPDATE events SET data = ?1 WHERE position = ?2",
            rusqlite::params![edited.into_bytes(), position],
        )
        .expect("edit");
    assert_eq!(changed, 1);
    (
        "payment-demo-V2".to_owned(),
        u64::try_from(version).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_a_clean_ledger_and_names_the_one_edited_event() {
    // Three real orders verify clean; after one byte of V2's Submitted is changed in the file, verify reports exactly payment-demo-V2@0.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paycode.db");
    make_orders(&path).await;

    let store = SqliteStore::open(&path).expect("reopen");
    let clean = verify_store(&store).await.expect("verify");
    assert!(clean.is_clean(), "{}", clean.render());
    assert_eq!(clean.streams, 3, "{}", clean.render());
    assert!(clean.events >= 8, "{}", clean.render());
    store.close().await.expect("close");

    let (stream, version) = edit_submitted_subject(&path);
    assert_eq!(version, 0);

    let store = SqliteStore::open(&path).expect("reopen after the edit");
    let report = verify_store(&store).await.expect("verify");
    assert_eq!(
        (report.streams, report.events),
        (clean.streams, clean.events)
    );
    assert_eq!(report.problems.len(), 1, "{}", report.render());
    let problem = &report.problems[0];
    assert_eq!((&problem.stream, problem.version), (&stream, version));
    assert!(
        matches!(problem.kind, ProblemKind::HashMismatch { .. }),
        "{problem}"
    );
    let rendered = report.render();
    assert!(
        rendered.starts_with("verified 3 streams, ")
            && rendered.contains(": 1 problem\n")
            && rendered.contains("\npayment-demo-V2@0: broken link"),
        "{rendered}"
    );
}
