//! The full payment code lives only in memory for the single pay call: this
//! suite runs payments with canary codes and scans everything the service
//! wrote (the SQLite files, every log line at TRACE level, API answers,
//! metrics) for them.

use std::io::Write;
use std::sync::{Arc, Mutex};

use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_tests::TestApp;

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_full_payment_code_is_ever_written_anywhere() {
    // Canary codes of both channels, through paid, waiting, failing and revoked paths.
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("paycode.db");
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let app = TestApp::spawn_on(store).await;
    let canaries = [
        "131357924680135700",
        "121357924680135702",
        "2813579246801357903",
        "141357924680135707",
    ];
    let mut answers = String::new();
    for (n, code) in canaries.iter().enumerate() {
        let body = format!(
            r#"{{"order_no":"C{n}","auth_code":"{code}","amount":"1.00","subject":"Canary"}}"#
        );
        let (_, answer) = app.call("POST", "/v1/payments?wait=1", Some(&body)).await;
        answers.push_str(&answer.to_string());
        // A bad request that carries the code must not echo it either.
        let bad = format!(
            r#"{{"order_no":"C{n}","auth_code":"{code}","amount":"1.001","subject":"Canary"}}"#
        );
        answers.push_str(
            &app.call("POST", "/v1/payments", Some(&bad))
                .await
                .1
                .to_string(),
        );
    }
    for n in 0..canaries.len() {
        let order = format!("C{n}");
        for _ in 0..200 {
            let (_, payment) = app
                .call("GET", &format!("/v1/payments/{order}"), None)
                .await;
            if payment["pending_action"].is_null() {
                break;
            }
            app.clock.advance(chrono::Duration::seconds(5));
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        answers.push_str(
            &app.call("GET", &format!("/v1/payments/{order}/events"), None)
                .await
                .1
                .to_string(),
        );
    }
    answers.push_str(
        &app.call_as(None, "GET", "/metrics", None)
            .await
            .1
            .to_string(),
    );
    drop(app);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        files.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let logs = logs.0.lock().unwrap().clone();
    assert!(
        !logs.is_empty() && !files.is_empty() && !answers.is_empty(),
        "there is something to scan"
    );
    for code in canaries {
        let needle = code.as_bytes();
        let found_in = |haystack: &[u8]| haystack.windows(needle.len()).any(|w| w == needle);
        assert!(!found_in(&files), "{} found in the store files", &code[..2]);
        assert!(!found_in(&logs), "{} found in the logs", &code[..2]);
        assert!(
            !answers.contains(code),
            "{} found in an API answer",
            &code[..2]
        );
    }
    // The masked forms are there: the scan looked at the right bytes.
    assert!(answers.contains("13**************00"));
    assert!(files.windows(18).any(|w| w == b"13**************00"));
}
