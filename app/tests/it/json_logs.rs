//! `paycode serve --log-format json` writes one JSON object per line on
//! standard error: request spans around the commands they cause, a line per
//! channel answer with its raw codes, and never the full payment code.

use std::process::Stdio;
use std::time::Duration;

use paycode::config::embedded::DEMO_API_KEY;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const CODE: &str = "134567890123456700";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_request_spans_and_no_payment_code() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paycode"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .current_dir(dir.path())
        .env("RUST_LOG", "debug,hyper=info,reqwest=info,h2=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the paycode binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = crate::listening_address(&mut stdout, "").await;
    let stderr = child.stderr.take().unwrap();
    let collected = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });

    let client = reqwest::Client::new();
    let response = client
        .post(format!("{base}/v1/payments?wait=10"))
        .bearer_auth(DEMO_API_KEY)
        .json(&serde_json::json!({
            "order_no": "LOG1", "auth_code": CODE, "amount": "1.00", "subject": "logs"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let payment: Value = response.json().await.unwrap();
    assert_eq!(payment["status"], "paid", "{payment}");
    // SIGTERM: a graceful stop, which logs too.
    let pid = child.id().unwrap().to_string();
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(stopped.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("paycode stops on SIGTERM")
        .unwrap();
    let lines = collected.await.unwrap();

    assert!(lines.len() >= 3, "{lines:?}");
    let objects: Vec<Value> = lines
        .iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON line: {line}"))
        })
        .collect();
    for object in &objects {
        assert!(
            object["timestamp"].is_string() && object["level"].is_string(),
            "{object}"
        );
    }
    // The request's answer, inside its span.
    assert!(
        objects.iter().any(|o| o["span"]["name"] == "request"
            && o["span"]["method"] == "POST"
            && o["span"]["path"] == "/v1/payments"),
        "no line inside a request span: {lines:#?}"
    );
    // The pay call's answer, with the order and the raw codes.
    assert!(
        objects
            .iter()
            .any(|o| o["fields"]["message"] == "channel answer"
                && o["fields"]["api"] == "pay"
                && o["fields"]["order_no"] == "LOG1"),
        "no channel answer line: {lines:#?}"
    );
    let all = lines.join("\n");
    assert!(!all.contains(CODE), "the full payment code was logged");
}
