//! The console in a real browser (headless Chromium through chromedriver)
//! against the real `paycode serve`: signing in as auditor and operator,
//! finding an order, reading its timeline, verifying its chain with the
//! browser's WebCrypto (and seeing a tampered copy of the ledger reported
//! at the broken version), the operator's resolution, and the refusals (an
//! auditor's resolve, a form without its CSRF token). Each page is saved as
//! a PNG in `target/ui-screenshots/` for a person to look at.
//!
//! Ignored by a plain `cargo test`: it needs Debian's `chromium` and
//! `chromium-driver`. CI (`.ci/run`) installs both and runs it with
//! `cargo test -p paycode --test it console_browser -- --ignored`, where a
//! missing browser fails the run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::webdriver::Browser;

const FULL_KEY: &str = "sk_test_console_full_0001";
const AUDITOR_KEY: &str = "sk_test_console_auditor_01";
const OPERATOR_KEY: &str = "sk_test_console_operator_1";

/// A service on a configuration with a full key, an auditor and an
/// operator, a short deadline and few revoke attempts (so that a `…07`
/// code reaches manual review in seconds), in `dir`.
fn write_config(dir: &Path, store_path: &str) {
    for (file, key) in [("auditor.key", AUDITOR_KEY), ("operator.key", OPERATOR_KEY)] {
        let path = dir.join(file);
        std::fs::write(&path, key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"

[store]
kind = "sqlite"
path = "{store_path}"

[policy]
pay_deadline_secs = 3
revoke_earliest_after_submit_secs = 1
revoke_retry_base_secs = 1
revoke_retry_cap_secs = 1
revoke_attempts_max = 2

[[merchants]]
id = "demo"
api_keys = ["{FULL_KEY}"]

[[merchants.keys]]
name = "audit-team"
role = "auditor"
key_file = "auditor.key"

[[merchants.keys]]
name = "night-ops"
role = "operator"
key_file = "operator.key"

[sandbox]
in_process = true
state_path = "sandbox.db"
"#
    );
    std::fs::write(dir.join("paycode.toml"), config).unwrap();
}

/// `paycode serve --config paycode.toml` in `dir`, and its base URL.
async fn serve(dir: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paycode"))
        .args(["serve", "--config", "paycode.toml"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the paycode binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = crate::listening_address(&mut stdout, "").await;
    // Keep reading, so the service never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    (child, base)
}

async fn stop(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The order, through the API with the full key.
async fn order_status(http: &reqwest::Client, base: &str, order_no: &str) -> Value {
    http.get(format!("{base}/v1/payments/{order_no}"))
        .bearer_auth(FULL_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn sign_in(browser: &Browser, base: &str, key: &str) {
    browser.goto(&format!("{base}/ui")).await;
    browser.type_into("#key", key).await;
    browser.click("form.signin button").await;
    browser.wait_for("#role").await;
}

async fn sign_out(browser: &Browser) {
    browser.click("form.signout button").await;
    browser.wait_for("#key").await;
}

/// POSTs a form from inside the page (same origin, the session's cookie),
/// with the page's own CSRF token when `with_token`; the answer's status.
async fn post_from_page(browser: &Browser, path: &str, with_token: bool) -> u64 {
    let script = r"
        const [path, withToken, done] = arguments;
        const form = new URLSearchParams({outcome: 'not_paid', reason: 'forged'});
        if (withToken) {
            form.set('csrf', document.querySelector('form.signout input[name=csrf]').value);
        }
        fetch(path, {method: 'POST', body: form, credentials: 'same-origin', redirect: 'manual'})
            .then((answer) => done(answer.status), (error) => done(String(error)));
    ";
    browser
        .run_async(script, json!([path, with_token]))
        .await
        .as_u64()
        .unwrap_or_else(|| panic!("the form post failed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver; CI runs it with --ignored (docs/console.md)"]
async fn the_console_in_a_browser() {
    let started = std::time::Instant::now();
    let shots = screenshots_dir();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "paycode.db");
    let (service, base) = serve(dir.path()).await;
    let http = reqwest::Client::new();

    // Orders through the API: one paid at once, one the sandbox never lets
    // revoke (manual review), one to page and search past.
    let orders = [
        ("CONSOLE-PAID", "134567890123456700"),
        ("CONSOLE-REVIEW", "134567890123456707"),
        ("CONSOLE-OTHER", "284567890123456700"),
    ];
    for (order_no, code) in orders {
        let answer = http
            .post(format!("{base}/v1/payments?wait=10"))
            .bearer_auth(FULL_KEY)
            .json(&json!({"order_no": order_no, "auth_code": code, "amount": "12.34", "subject": "Console test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 201, "{order_no}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while order_status(&http, &base, "CONSOLE-REVIEW").await["status"] != "manual_review" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "CONSOLE-REVIEW did not reach manual review in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The statement of the paid order's day (China time), reconciled (the
    // sandbox serves it): named by the payment, not by the test's clock, so
    // that a run across midnight still finds its line.
    let paid_at = order_status(&http, &base, "CONSOLE-PAID").await["paid_at"]
        .as_str()
        .unwrap()
        .parse::<chrono::DateTime<chrono::Utc>>()
        .unwrap();
    let statement_day = paycode_domain::calendar::china_date(paid_at).to_string();
    let report: Value = http
        .post(format!("{base}/v1/reconciliations"))
        .bearer_auth(FULL_KEY)
        .json(&json!({"channel": "wechat", "date": statement_day}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["matched"], 1, "{report}");

    let browser = Browser::start(1280, 1000).await;

    // Not signed in: every page leads to the sign-in form.
    browser.goto(&format!("{base}/ui/orders")).await;
    browser.wait_for("#key").await;
    browser.screenshot(&shots, "sign-in").await;
    // A wrong key is refused and says so.
    browser.type_into("#key", "sk_test_not_a_key_000").await;
    browser.click("form.signin button").await;
    assert!(
        browser.text(".problem").await.contains("not one of"),
        "a wrong key is refused"
    );

    // The auditor.
    sign_in(&browser, &base, AUDITOR_KEY).await;
    assert_eq!(browser.text("#role").await, "auditor");
    browser.screenshot(&shots, "overview").await;
    let overview = browser.source().await;
    assert!(overview.contains("manual_review"), "today's statuses");

    // Find an order by its number.
    browser.goto(&format!("{base}/ui/orders")).await;
    browser.wait_for("#orders").await;
    assert_every_field_is_labelled(&browser).await;
    browser.screenshot(&shots, "orders").await;
    browser.type_into("#order_no", "CONSOLE-PAID").await;
    browser.click("form.search button").await;
    // The page before the search lists the order too: wait for the answer
    // page, whose search field the server filled in (typing sets the
    // field's value, not its attribute).
    browser.wait_for("#order_no[value='CONSOLE-PAID']").await;
    browser
        .wait_for("#orders a[href='/ui/orders/CONSOLE-PAID']")
        .await;
    let found = browser.source().await;
    assert!(
        !found.contains("CONSOLE-OTHER"),
        "the search finds one order"
    );
    assert!(
        !found.contains("134567890123456700"),
        "payment codes are masked"
    );
    // And by status: the review order only.
    browser
        .goto(&format!("{base}/ui/orders?status=manual_review"))
        .await;
    browser.wait_for("#orders").await;
    let by_status = browser.source().await;
    assert!(by_status.contains("CONSOLE-REVIEW") && !by_status.contains("CONSOLE-PAID"));

    // Its story: the timeline, the events, the chain verified in the browser.
    browser
        .goto(&format!("{base}/ui/orders/CONSOLE-PAID"))
        .await;
    browser.wait_for("#timeline circle").await;
    assert_eq!(browser.text("#order-status").await, "paid");
    let story = browser.source().await;
    assert!(
        story.contains("Submitted") && story.contains("Paid"),
        "the events"
    );
    browser.click("#verify").await;
    let outcome = browser
        .wait_for_attribute("#verify-result", "data-outcome", &["ok", "broken", "error"])
        .await;
    assert_eq!(outcome, "ok", "{}", browser.text("#verify-result").await);
    browser.screenshot(&shots, "order").await;
    // The browser's encoding is chain.rs's: the vector pinned in its tests.
    let vector = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             window.paycodeChain.link('07'.repeat(32), 'payment-demo-A1', '3',
                 '0190f5a0-0000-7000-8000-000000000001', 'Submitted', 1,
                 Array.from(new TextEncoder().encode('{\"amount\":\"12.34\"}'),
                     (b) => b.toString(16).padStart(2, '0')).join(''))
               .then(done, (e) => done(String(e)));",
            json!([]),
        )
        .await;
    assert_eq!(
        vector,
        "7d4904abbe2b6daa8f68b5201849a22a9ee86445709bf40b8db1cc474540efd1"
    );
    // The exported evidence is what `paycode verify --file` checks.
    let evidence = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch(document.getElementById('export').href).then((r) => r.text()).then(done);",
            json!([]),
        )
        .await;
    let evidence_path = dir.path().join("evidence.json");
    std::fs::write(&evidence_path, evidence.as_str().unwrap()).unwrap();
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_paycode"))
        .args(["verify", "--file"])
        .arg(&evidence_path)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // The auditor sees no resolve form, and a resolve it posts anyway is 403.
    browser
        .goto(&format!("{base}/ui/orders/CONSOLE-REVIEW"))
        .await;
    browser.wait_for("#timeline circle").await;
    let review_story = browser.source().await;
    assert!(
        review_story.contains("RevokeRetryScheduled")
            && review_story.contains("ManualReviewRequired"),
        "the review order's story"
    );
    browser.screenshot(&shots, "order-in-review").await;
    assert!(browser.find("#resolve-form").await.is_none());
    assert_eq!(
        post_from_page(&browser, "/ui/orders/CONSOLE-REVIEW/resolve", true).await,
        403
    );

    // Reconciliation: the calendar and chart, the day's report, its CSV.
    browser.goto(&format!("{base}/ui/reconciliation")).await;
    browser.wait_for("#recon-chart").await;
    browser.screenshot(&shots, "reconciliation").await;
    browser
        .click(&format!(
            "a[href='/ui/reconciliation/wechat/{statement_day}']"
        ))
        .await;
    assert_eq!(browser.text("#matched").await, "1");
    browser.screenshot(&shots, "report").await;
    sign_out(&browser).await;
    browser.goto(&format!("{base}/ui/overview")).await;
    browser.wait_for("#key").await;

    // The operator, signing in with the keyboard alone (the field has the
    // focus; Enter submits): the queue, the resolve form, the resolution.
    browser.goto(&format!("{base}/ui")).await;
    browser.wait_for("#key").await;
    let focused = browser
        .run_async(
            "arguments[arguments.length - 1](document.activeElement.id);",
            json!([]),
        )
        .await;
    assert_eq!(focused, "key", "the key field has the focus");
    browser
        .type_into("#key", &format!("{OPERATOR_KEY}\u{E007}"))
        .await;
    browser.wait_for("#role").await;
    assert_eq!(browser.text("#role").await, "operator");
    browser.goto(&format!("{base}/ui/review")).await;
    browser.wait_for("#queue").await;
    let queue = browser.source().await;
    assert!(queue.contains("CONSOLE-REVIEW") && queue.contains("revoke_attempts_exhausted"));
    browser.screenshot(&shots, "review").await;
    browser
        .click("#queue a[href='/ui/orders/CONSOLE-REVIEW']")
        .await;
    browser.wait_for("#resolve-form").await;
    assert_every_field_is_labelled(&browser).await;
    // A forged form without the CSRF token is refused, and changes nothing.
    assert_eq!(
        post_from_page(&browser, "/ui/orders/CONSOLE-REVIEW/resolve", false).await,
        403
    );
    assert_eq!(
        order_status(&http, &base, "CONSOLE-REVIEW").await["status"],
        "manual_review"
    );
    browser.click("#resolve-form input[value=not_paid]").await;
    browser.screenshot(&shots, "resolve").await;
    browser
        .type_into(
            "#reason",
            "Channel back office shows the order closed, no money taken",
        )
        .await;
    browser.click("#resolve-form button").await;
    browser.wait_for("#resolved").await;
    assert_eq!(browser.text("#order-status").await, "closed");
    let events: Value = http
        .get(format!("{base}/v1/payments/CONSOLE-REVIEW/events"))
        .bearer_auth(FULL_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = events["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "OperatorResolved", "{last}");
    assert_eq!(last["data"]["key_name"], "night-ops", "{last}");
    sign_out(&browser).await;

    // On a phone's screen.
    browser.resize(390, 844).await;
    sign_in(&browser, &base, AUDITOR_KEY).await;
    browser
        .goto(&format!("{base}/ui/orders/CONSOLE-PAID"))
        .await;
    browser.wait_for("#timeline").await;
    browser.screenshot(&shots, "order-phone").await;
    browser.resize(1280, 1000).await;

    // Without JavaScript, reading works: sign-in, the order, its events and
    // the export; only the in-browser check is not offered.
    let plain = Browser::start_without_javascript(1280, 1000).await;
    sign_in(&plain, &base, AUDITOR_KEY).await;
    plain.goto(&format!("{base}/ui/orders/CONSOLE-PAID")).await;
    plain.wait_for("#event-table tr.event").await;
    assert_eq!(plain.text("#order-status").await, "paid");
    assert!(plain.find("#export").await.is_some());
    assert_eq!(
        plain.attribute("#verify", "hidden").await.as_deref(),
        Some("true"),
        "the verify button stays hidden without its script"
    );
    plain.quit();
    stop(service).await;

    // A copy of the ledger with one changed byte in a stored payload: the
    // browser reports the broken link at that version.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("paycode.db"),
        copy.path().join("paycode.db"),
    )
    .unwrap();
    write_config(copy.path(), "paycode.db");
    let tampered_version = tamper(&copy.path().join("paycode.db"), "payment-demo-CONSOLE-PAID");
    let (service, base) = serve(copy.path()).await;
    sign_in(&browser, &base, AUDITOR_KEY).await;
    browser
        .goto(&format!("{base}/ui/orders/CONSOLE-PAID"))
        .await;
    browser.click("#verify").await;
    let outcome = browser
        .wait_for_attribute("#verify-result", "data-outcome", &["ok", "broken", "error"])
        .await;
    assert_eq!(outcome, "broken");
    assert_eq!(
        browser
            .attribute("#verify-result", "data-broken-version")
            .await
            .as_deref(),
        Some(tampered_version.to_string().as_str())
    );
    browser.screenshot(&shots, "order-tampered").await;
    browser.quit();
    stop(service).await;
    eprintln!(
        "console browser test: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

/// Every visible form field of the page has a label a screen reader reads.
async fn assert_every_field_is_labelled(browser: &Browser) {
    let unlabelled = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             done(Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea'))
                 .filter((field) => field.labels.length === 0)
                 .map((field) => field.name));",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "fields without a label");
}

/// Changes one byte of the subject in the stored payload of `stream`'s
/// first event (the JSON stays valid); returns that event's version.
fn tamper(ledger: &Path, stream: &str) -> u64 {
    let db = rusqlite::Connection::open(ledger).unwrap();
    let (position, version, mut data): (i64, i64, Vec<u8>) = db
        .query_row(
            "SELECT e.position, e.version, e.data FROM events e JOIN streams s ON s.id = e.stream_id \
             WHERE s.name = ?1 ORDER BY e.version LIMIT 1",
            [stream],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    let at = data
        .windows(b"Console test".len())
        .position(|window| window == b"Console test")
        .expect("the subject is in the payload");
    data[at] = b'K';
    db.execute(
        "UPDATE events SET data = ?1 WHERE position = ?2",
        rusqlite::params![data, position],
    )
    .unwrap();
    u64::try_from(version).unwrap()
}
