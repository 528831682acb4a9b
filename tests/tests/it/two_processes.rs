//! Two `paycode serve` processes sharing one SQLite file: both recover the
//! same pending orders and keep timers for them, yet only one acts on each
//! step (the step lease), and the log stays right (the expected version).

use std::sync::Arc;

use paycode_adapters::clock::{Clock, ManualClock};
use paycode_adapters::store::{EventStore, SqliteStore};
use paycode_domain::Channel;
use paycode_tests::{ScriptedChannel, TestApp, start_time};

/// One SQLite file, one clock and one pair of channels, shared by the
/// processes a test starts on them.
struct Deployment {
    path: std::path::PathBuf,
    clock: ManualClock,
    wechat: Arc<ScriptedChannel>,
    alipay: Arc<ScriptedChannel>,
}

impl Deployment {
    fn in_dir(dir: &std::path::Path) -> Deployment {
        let clock = ManualClock::starting_at(start_time());
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        Deployment {
            path: dir.join("paycode.db"),
            wechat: Arc::new(ScriptedChannel::new(Channel::Wechat, shared.clone())),
            alipay: Arc::new(ScriptedChannel::new(Channel::Alipay, shared)),
            clock,
        }
    }

    /// A new process on the shared file.
    async fn process(&self) -> TestApp {
        let opened = SqliteStore::open(&self.path).unwrap();
        let leases = Arc::new(opened.leases());
        let store: Arc<dyn EventStore> = Arc::new(opened);
        TestApp::spawn_with(
            store,
            leases,
            self.clock.clone(),
            self.wechat.clone(),
            self.alipay.clone(),
        )
        .await
    }
}

#[tokio::test]
async fn two_processes_on_one_file_never_both_act_on_one_step() {
    // Ten waiting orders, two services with timers for all of them: one revoke per order, no doubled queries.
    let dir = tempfile::tempdir().unwrap();
    let deployment = Deployment::in_dir(dir.path());
    let wechat = deployment.wechat.clone();
    let first = deployment.process().await;
    let orders: Vec<String> = (0..10).map(|n| format!("TWO{n}")).collect();
    for order in &orders {
        let body = format!(
            r#"{{"order_no":"{order}","auth_code":"134567890123456702","amount":"5.00","subject":"Two"}}"#
        );
        assert_eq!(first.call("POST", "/v1/payments", Some(&body)).await.0, 201);
    }
    for order in &orders {
        first.settle(order, "paying", 0).await;
        while wechat.count("pay", order) == 0 {
            tokio::task::yield_now().await;
        }
    }
    // The second process starts now and recovers all ten orders from the log.
    let second = deployment.process().await;
    for order in &orders {
        second.settle(order, "closed", 1).await;
    }
    for order in &orders {
        assert_eq!(wechat.count("pay", order), 1, "{order}");
        assert_eq!(
            wechat.count("revoke", order),
            1,
            "{order}: one revoke, not one per process"
        );
        let queries = wechat.count("query", order);
        assert!(
            queries <= 6,
            "{order}: {queries} queries in 30 s at one per 5 s"
        );
        let (_, history) = first
            .call("GET", &format!("/v1/payments/{order}/events"), None)
            .await;
        let revoked = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "Revoked")
            .count();
        assert_eq!(revoked, 1, "{order}");
    }
}

#[tokio::test]
async fn the_orders_of_a_process_that_dies_are_taken_over_by_another() {
    // Defect 7: the second process starts before the orders exist, so only
    // following the log can tell it of them; when the first dies after the
    // pay calls, the second revokes each order once its lease has expired.
    let dir = tempfile::tempdir().unwrap();
    let deployment = Deployment::in_dir(dir.path());
    let wechat = deployment.wechat.clone();
    let survivor = deployment.process().await;
    let doomed = deployment.process().await;
    let orders: Vec<String> = (0..3).map(|n| format!("DIES{n}")).collect();
    for order in &orders {
        let body = format!(
            r#"{{"order_no":"{order}","auth_code":"134567890123456702","amount":"5.00","subject":"Dies"}}"#
        );
        assert_eq!(
            doomed.call("POST", "/v1/payments", Some(&body)).await.0,
            201
        );
    }
    for order in &orders {
        while wechat.count("pay", order) == 0 {
            tokio::task::yield_now().await;
        }
        doomed.settle(order, "paying", 0).await;
    }
    drop(doomed);
    for order in &orders {
        let closed = survivor.settle(order, "closed", 1).await;
        assert!(closed["pending_action"].is_null(), "{closed}");
        assert_eq!(wechat.count("pay", order), 1, "{order}: never paid again");
        assert_eq!(wechat.count("revoke", order), 1, "{order}");
    }
}
