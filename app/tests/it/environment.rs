//! Sandbox and production never mix, through the real binary:
//!
//! - the operator's slip: a production ledger (merchant `demo`, an order
//!   waiting for its outcome) and `paycode serve` without `--config` in its
//!   folder. The embedded defaults are refused before anything is read or
//!   written: no sandbox state, no recovery, no event;
//! - `paycode reconcile` and `paycode resolve` without `--config` on that
//!   ledger are refused too;
//! - `paycode sandbox --config` on a production configuration is refused,
//!   and on a sandbox configuration it never writes over a merchant's
//!   Alipay public key it did not make;
//! - a private key readable by other users stops `paycode serve --config`;
//! - the embedded defaults on a non-loopback `--listen` warn on stderr.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use paycode::config::Config;
use paycode::service::environment::check_environment;
use paycode::service::ledger::Ledger;
use paycode_adapters::clock::SystemClock;
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_domain::payment::{
    ChannelAnswer, Command, CommandKind, PayOutcome, PaymentDecider, SubmitPayment,
};
use paycode_domain::{AuthCode, CommandId, MerchantId, OrderNo};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command as Process;
use uuid::Uuid;

/// A production configuration: merchant `demo` on real channel accounts.
const PRODUCTION: &str = r#"
[store]
path = "paycode.db"

[[merchants]]
id = "demo"
api_keys = ["sk_live_0123456789abcdef"]

[merchants.alipay]
app_id = "2021000000000099"
private_key_file = "app.pem"
alipay_public_key_file = "alipay.pem"
"#;

/// Every event of the SQLite ledger at `path`, as `stream@version type`.
async fn ledger_events(path: &Path) -> Vec<String> {
    let store = Arc::new(SqliteStore::open(path).expect("open"));
    let events = store
        .read_all(1, usize::MAX)
        .await
        .expect("read")
        .into_iter()
        .map(|event| format!("{}@{} {}", event.stream, event.version, event.event_type))
        .collect();
    Arc::into_inner(store)
        .expect("the only handle")
        .close()
        .await
        .expect("close");
    events
}

/// A production ledger in `dir`: marked by its configuration (written to
/// `dir/paycode.toml`), with merchant `demo`'s order `P1` waiting for the
/// customer's password.
async fn production_ledger(dir: &Path) {
    std::fs::write(dir.join("paycode.toml"), PRODUCTION).unwrap();
    let config = Config::load(&dir.join("paycode.toml")).unwrap();
    let store = Arc::new(SqliteStore::open(dir.join("paycode.db")).expect("open"));
    let shared: Arc<dyn EventStore> = store.clone();
    check_environment(&config, shared.clone(), Arc::new(SystemClock))
        .await
        .expect("the production configuration marks its ledger");
    let ledger = Ledger::new(shared, PaymentDecider::default(), Arc::new(SystemClock));
    let merchant = MerchantId::parse("demo").unwrap();
    let order_no = OrderNo::parse("P1").unwrap();
    let submit = CommandKind::SubmitPayment(SubmitPayment {
        merchant_id: merchant.clone(),
        order_no: order_no.clone(),
        auth_code: AuthCode::parse("2845678901234567802").unwrap(),
        auth_code_fingerprint: None,
        amount: "12.34".parse().unwrap(),
        subject: "Coffee".to_owned(),
    });
    let waiting = CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::WaitingForPassword));
    for kind in [submit, waiting] {
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

/// Runs `paycode ARGS` in `dir`; it must exit within 60 s. Returns whether
/// it succeeded, and its standard error.
async fn paycode(dir: &Path, args: &[&str]) -> (bool, String) {
    let child = Process::new(env!("CARGO_BIN_EXE_paycode"))
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the paycode binary starts");
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("paycode {args:?} kept running: it was not refused"))
        .expect("the binary ran");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_embedded_defaults_refuse_a_production_ledger_before_touching_it() {
    // Without the mark, this start resumed P1 against the in-process sandbox, revoked
    // it there and wrote `closed` into the production ledger.
    let dir = tempfile::tempdir().unwrap();
    production_ledger(dir.path()).await;
    let before = ledger_events(&dir.path().join("paycode.db")).await;

    let (ok, stderr) = paycode(dir.path(), &["serve", "--listen", "127.0.0.1:0"]).await;
    assert!(!ok, "refused");
    assert!(stderr.contains("sandbox.in_process"), "{stderr}");
    assert!(
        stderr.contains("this ledger was written against the real channels"),
        "{stderr}"
    );
    assert_eq!(ledger_events(&dir.path().join("paycode.db")).await, before);
    assert!(
        !dir.path().join("sandbox.db").exists(),
        "the sandbox never started"
    );

    // `paycode reconcile` on the embedded defaults is refused the same way.
    let (ok, stderr) = paycode(
        dir.path(),
        &["reconcile", "--channel", "alipay", "--date", "2026-11-21"],
    )
    .await;
    assert!(!ok, "refused");
    assert!(stderr.contains("sandbox.in_process"), "{stderr}");
    assert_eq!(ledger_events(&dir.path().join("paycode.db")).await, before);

    // So is `paycode resolve`: an operator's verdict goes in with the ledger's own configuration.
    let (ok, stderr) = paycode(
        dir.path(),
        &[
            "resolve",
            "P1",
            "--outcome",
            "not_paid",
            "--reason",
            "checked",
        ],
    )
    .await;
    assert!(!ok, "refused");
    assert!(stderr.contains("sandbox.in_process"), "{stderr}");
    assert_eq!(ledger_events(&dir.path().join("paycode.db")).await, before);
}

#[cfg(unix)]
#[tokio::test]
async fn a_private_key_readable_by_other_users_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (app_private, _) = paycode_adapters::testing::rsa_key_pair_pem("env-app", 2048);
    let (_, alipay_public) = paycode_adapters::testing::rsa_key_pair_pem("env-alipay", 2048);
    std::fs::write(dir.path().join("app.pem"), app_private).unwrap();
    std::fs::write(dir.path().join("alipay.pem"), alipay_public).unwrap();
    std::fs::set_permissions(
        dir.path().join("app.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(dir.path().join("paycode.toml"), PRODUCTION).unwrap();
    let (ok, stderr) = paycode(
        dir.path(),
        &[
            "serve",
            "--config",
            "paycode.toml",
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    assert!(!ok, "refused");
    assert!(
        stderr.contains("merchants[0].alipay.private_key_file") && stderr.contains("mode 0644"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("paycode.db").exists(),
        "refused before the ledger is opened"
    );
}

#[tokio::test]
async fn the_embedded_defaults_warn_when_listening_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_paycode"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the paycode binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.trim().starts_with("listening") {
                return;
            }
        }
        panic!("paycode serve exited before listening");
    })
    .await
    .expect("paycode serve listens within 60 s");
    child
        .start_kill()
        .expect("stop the server this test started");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let _ = child.wait().await;
    assert!(
        stderr.contains("warning: listening on 0.0.0.0:")
            && stderr.contains("not a loopback address"),
        "{stderr}"
    );
}

/// `dir/app.pem` (the merchant's private key) and `dir/alipay.pem` (what
/// stands for Alipay's real public key), both 0600; returns the latter's bytes.
fn production_keys(dir: &Path) -> Vec<u8> {
    let (app_private, _) = paycode_adapters::testing::rsa_key_pair_pem("env-app", 2048);
    let (_, alipay_public) = paycode_adapters::testing::rsa_key_pair_pem("env-alipay", 2048);
    for (name, contents) in [("app.pem", &app_private), ("alipay.pem", &alipay_public)] {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    alipay_public.into_bytes()
}

#[tokio::test]
async fn paycode_sandbox_refuses_a_production_configuration_and_writes_nothing() {
    // Before, it wrote its own key over alipay.pem: real Alipay answers stopped verifying.
    let dir = tempfile::tempdir().unwrap();
    let alipay_public = production_keys(dir.path());
    std::fs::write(dir.path().join("paycode.toml"), PRODUCTION).unwrap();
    let (ok, stderr) = paycode(
        dir.path(),
        &[
            "sandbox",
            "--config",
            "paycode.toml",
            "--listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    assert!(!ok, "refused");
    assert!(
        stderr.contains("merchants[0].alipay.base_url")
            && stderr.contains("never a production configuration"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("alipay.pem")).unwrap(),
        alipay_public
    );
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["alipay.pem", "app.pem", "paycode.toml"],
        "nothing written"
    );
}

#[tokio::test]
async fn paycode_sandbox_never_writes_over_a_public_key_it_did_not_make() {
    // A configuration pointed at the sandbox, but whose alipay_public_key_file holds
    // another key (Alipay's, copied from production): refused, the file untouched.
    let dir = tempfile::tempdir().unwrap();
    let alipay_public = production_keys(dir.path());
    // A free loopback port for the sandbox, named in the configuration's base_url.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "{PRODUCTION}base_url = \"http://127.0.0.1:{port}/gateway.do\"\n[sandbox]\nstate_path = \"sandbox.db\"\n"
    );
    std::fs::write(dir.path().join("paycode.toml"), config).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let (ok, stderr) = paycode(
        dir.path(),
        &["sandbox", "--config", "paycode.toml", "--listen", &listen],
    )
    .await;
    assert!(!ok, "refused");
    assert!(
        stderr.contains("merchants[0].alipay.alipay_public_key_file")
            && stderr.contains("never writes over a file it did not create"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("alipay.pem")).unwrap(),
        alipay_public
    );
}
