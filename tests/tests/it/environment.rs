//! The ledger's environment mark (`paycode::service::environment`), on the
//! memory and SQLite stores: the first start marks a ledger; a
//! configuration of the other environment, or with another account for a
//! merchant, is refused naming the merchant and the setting, and writes
//! nothing; an unmarked ledger holding events is marked by a configuration
//! file but never by the embedded defaults. The mark's stream is passed by
//! recovery, the order index, the read models and `paycode verify`. (The
//! real binary refusing to serve is in `app/tests/it/environment.rs`.)

use std::path::Path;
use std::sync::Arc;

use paycode::config::Config;
use paycode::read::rebuild::rebuild;
use paycode::read::verify::verify_store;
use paycode::service::environment::{EnvironmentError, Marked, check_environment};
use paycode::service::ledger::Ledger;
use paycode_adapters::clock::{Clock, ManualClock};
use paycode_adapters::store::{EventStore, MemoryStore, SqliteStore};
use paycode_domain::environment::ENVIRONMENT_STREAM;
use paycode_domain::payment::{
    ChannelAnswer, Command, CommandKind, PayOutcome, PaymentDecider, SubmitPayment,
};
use paycode_domain::{AuthCode, CommandId, MerchantId, OrderNo};
use paycode_tests::{TestApp, start_time};
use uuid::Uuid;

/// A production configuration: merchant `demo` on real WeChat and Alipay accounts.
const PRODUCTION: &str = r#"
[[merchants]]
id = "demo"
api_keys = ["sk_live_0123456789abcdef"]
[merchants.wechat]
appid = "wx0000000000000099"
mch_id = "1900000099"
key_file = "wechat.key"
[merchants.alipay]
app_id = "2021000000000099"
private_key_file = "app.pem"
alipay_public_key_file = "alipay.pem"
"#;

fn config(text: &str) -> Config {
    Config::parse(text, "/etc/paycode".into()).unwrap()
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::starting_at(start_time()))
}

async fn check(config: &Config, store: &Arc<dyn EventStore>) -> Result<Marked, String> {
    check_environment(config, store.clone(), clock())
        .await
        .map_err(|error| match error {
            EnvironmentError::Refused(error) => format!("{}|{}", error.setting, error.reason),
            EnvironmentError::Ledger(error) => panic!("the store failed: {error}"),
        })
}

async fn events(store: &Arc<dyn EventStore>) -> usize {
    store.read_all(1, usize::MAX).await.unwrap().len()
}

/// Merchant `demo`'s order `P1`, submitted and waiting for the password.
async fn pending_order(store: &Arc<dyn EventStore>) {
    let ledger = Ledger::new(store.clone(), PaymentDecider::default(), clock());
    let merchant = MerchantId::parse("demo").unwrap();
    let order_no = OrderNo::parse("P1").unwrap();
    let submit = CommandKind::SubmitPayment(SubmitPayment {
        merchant_id: merchant.clone(),
        order_no: order_no.clone(),
        auth_code: AuthCode::parse("134567890123456702").unwrap(),
        auth_code_fingerprint: None,
        amount: "12.34".parse().unwrap(),
        subject: "Coffee".to_owned(),
    });
    let waiting = CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::WaitingForPassword));
    for kind in [submit, waiting] {
        let command = Command::new(CommandId(Uuid::now_v7()), kind);
        ledger
            .execute_on_order(&merchant, &order_no, &command)
            .await
            .unwrap();
    }
}

fn stores(dir: &Path) -> Vec<Arc<dyn EventStore>> {
    vec![
        Arc::new(MemoryStore::new()),
        Arc::new(SqliteStore::open(dir.join("paycode.db")).unwrap()),
    ]
}

#[tokio::test]
async fn a_marked_ledger_refuses_another_environment_or_account_and_writes_nothing() {
    // Production marks it; the embedded defaults (the operator's slip), a loopback
    // (sandbox) configuration and another mch_id for demo are refused, naming the setting.
    let dir = tempfile::tempdir().unwrap();
    for store in stores(dir.path()) {
        let production = config(PRODUCTION);
        assert_eq!(check(&production, &store).await, Ok(Marked::Marked));
        assert_eq!(check(&production, &store).await, Ok(Marked::Unchanged));
        pending_order(&store).await;
        let before = events(&store).await;

        let slip = check(&Config::embedded(), &store).await.unwrap_err();
        assert!(slip.starts_with("sandbox.in_process|"), "{slip}");
        assert!(
            slip.contains("this ledger was written against the real channels"),
            "{slip}"
        );

        let sandbox = PRODUCTION
            .replace(
                "key_file = \"wechat.key\"",
                "key_file = \"wechat.key\"\nbase_url = \"http://127.0.0.1:8081\"",
            )
            .replace(
                "alipay_public_key_file = \"alipay.pem\"",
                "alipay_public_key_file = \"alipay.pem\"\nbase_url = \"http://127.0.0.1:8081/gateway.do\"",
            );
        let refused = check(&config(&sandbox), &store).await.unwrap_err();
        assert!(
            refused.starts_with("merchants[0].wechat.base_url|"),
            "{refused}"
        );

        let moved = check(
            &config(&PRODUCTION.replace("1900000099", "1900000100")),
            &store,
        )
        .await
        .unwrap_err();
        assert!(moved.starts_with("merchants[0].wechat.mch_id|"), "{moved}");
        assert!(
            moved.contains("merchant demo: this ledger was written with WeChat mch_id 1900000099, the configuration says 1900000100"),
            "{moved}"
        );
        let token = PRODUCTION.replace(
            "alipay_public_key_file = \"alipay.pem\"",
            "alipay_public_key_file = \"alipay.pem\"\napp_auth_token_file = \"token\"",
        );
        let refused = check(&config(&token), &store).await.unwrap_err();
        assert!(
            refused.starts_with("merchants[0].alipay.app_auth_token_file|"),
            "{refused}"
        );
        assert_eq!(events(&store).await, before, "a refusal writes nothing");

        // A new merchant is added to the mark, the bound one kept.
        let grown = format!(
            "{PRODUCTION}\n[[merchants]]\nid = \"cafe\"\napi_keys = [\"sk_live_cafe_0123456\"]\n[merchants.wechat]\nappid = \"wx0000000000000098\"\nmch_id = \"1900000098\"\nkey_file = \"cafe.key\"\n"
        );
        assert_eq!(check(&config(&grown), &store).await, Ok(Marked::Extended));
        assert_eq!(check(&config(&grown), &store).await, Ok(Marked::Unchanged));
        assert_eq!(check(&production, &store).await, Ok(Marked::Unchanged));
    }
}

#[tokio::test]
async fn a_sandbox_ledger_refuses_the_real_channels() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    assert_eq!(check(&Config::embedded(), &store).await, Ok(Marked::Marked));
    let refused = check(&config(PRODUCTION), &store).await.unwrap_err();
    assert!(
        refused.starts_with("merchants[0].wechat.base_url|")
            && refused.contains("this ledger was written on the sandbox"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_unmarked_ledger_is_marked_by_a_configuration_file_never_by_the_embedded_defaults() {
    // A ledger from before the mark: the embedded defaults refuse it (naming store.path)
    // and write nothing; its own configuration file marks it.
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    pending_order(&store).await;
    let before = events(&store).await;
    let refused = check(&Config::embedded(), &store).await.unwrap_err();
    assert!(refused.starts_with("store.path|"), "{refused}");
    assert!(refused.contains("no environment mark"), "{refused}");
    assert_eq!(events(&store).await, before);
    assert_eq!(check(&config(PRODUCTION), &store).await, Ok(Marked::Marked));
    assert_eq!(events(&store).await, before + 1);
}

#[tokio::test]
async fn the_mark_is_passed_by_recovery_the_index_the_read_models_and_verify() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    assert_eq!(check(&config(PRODUCTION), &store).await, Ok(Marked::Marked));
    pending_order(&store).await;
    assert_eq!(
        store.read_stream(ENVIRONMENT_STREAM).await.unwrap().len(),
        1
    );

    let app = TestApp::spawn_on(store.clone()).await;
    // The list follows the log (the read models catch up after the start).
    let mut listed: Vec<String> = Vec::new();
    for _ in 0..500 {
        let (status, page) = app.call("GET", "/v1/payments", None).await;
        assert_eq!(status, 200, "{page}");
        listed = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|payment| payment["order_no"].as_str().unwrap().to_owned())
            .collect();
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(listed, ["P1"], "the list shows the order, nothing else");
    // Recovery scheduled the pending order (and only orders): its query comes.
    for _ in 0..200 {
        if app.wechat.count("query", "P1") > 0 {
            break;
        }
        app.clock.advance(chrono::Duration::seconds(1));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(app.wechat.count("query", "P1") > 0, "P1 was recovered");
    drop(app);

    let total = events(&store).await;
    let report = verify_store(store.as_ref()).await.unwrap();
    assert!(report.is_clean(), "{}", report.render());
    assert_eq!((report.streams, report.events), (2, total as u64));

    let head = store.head_position().await.unwrap();
    let (projections, folded) = rebuild(store.as_ref(), head, &indicatif::ProgressBar::hidden())
        .await
        .unwrap();
    assert_eq!(folded, total as u64);
    assert_eq!(projections.order_status.len(), 1);
}
