//! Runs the event-store contract suite against a real EventStoreDB (KurrentDB)
//! server or cluster when `PAYCODE_EVENTSTORE_URL` is set, and skips with a
//! printed notice otherwise (no server can be installed on the CI machines).
//!
//! Each test gets a fresh, empty store: a unique stream prefix on the shared
//! server (`Namespace::prefixed`), so runs never see each other's events and
//! nothing has to be deleted. How to run it (see also README.md, "Running on
//! EventStoreDB"):
//!
//! ```text
//! docker run --rm -p 2113:2113 docker.kurrent.io/kurrent-latest/kurrentdb \
//!     --insecure --run-projections=None
//! PAYCODE_EVENTSTORE_URL='esdb://localhost:2113?tls=false' \
//!     cargo test -p paycode-adapters --test it store_contract_eventstoredb -- --nocapture
//! ```
//!
//! For a three-node secure cluster, give the cluster's connection string,
//! e.g. `esdb://admin:changeit@node1:2113,node2:2113,node3:2113?tls=true&tlsCaFile=/path/ca.crt&nodePreference=leader`.

use std::time::Duration;

use paycode_adapters::store::eventstoredb::{EventStoreDbStore, Namespace};
use paycode_adapters::testing::store_contract as contract;
use uuid::Uuid;

/// The variable naming the server; unset means "skip".
const URL_VARIABLE: &str = "PAYCODE_EVENTSTORE_URL";

/// How long a fresh store may take to reach the server.
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// The server's connection string, or `None` after printing why the test is
/// skipped.
fn server_url(test: &str) -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped {test}: set {URL_VARIABLE} to run it against an EventStoreDB server");
            None
        }
    }
}

/// A store on the server that sees only its own, new streams.
async fn fresh_store(url: String) -> EventStoreDbStore {
    let prefix = format!("paycode-contract-{}-", Uuid::new_v4().simple());
    EventStoreDbStore::connect(
        &url,
        Namespace::prefixed(prefix),
        Duration::from_secs(CONNECT_TIMEOUT_SECS),
    )
    .await
    .unwrap_or_else(|error| panic!("{URL_VARIABLE} is set but the server cannot be used: {error}"))
}

/// One test per contract check, so a failure names it.
macro_rules! eventstoredb_contract_tests {
    ($($(#[$attr:meta])* $check:ident),* $(,)?) => {
        $(
            $(#[$attr])*
            async fn $check() {
                let Some(url) = server_url(stringify!($check)) else {
                    return;
                };
                contract::$check(|| fresh_store(url.clone())).await;
            }
        )*
    };
}

eventstoredb_contract_tests! {
    #[tokio::test]
    rejects_malformed_batches,
    #[tokio::test]
    expected_version_conflicts,
    #[tokio::test]
    idempotent_retry,
    #[tokio::test]
    chains_every_stream,
    #[tokio::test]
    atomic_multi_event_appends,
    #[tokio::test]
    global_order_across_streams,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    follow_while_appending,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    concurrent_appenders,
}

#[tokio::test]
async fn an_unreachable_server_fails_start_up_within_the_timeout() {
    // Shows that connecting to an address where nothing listens fails with
    // Unavailable instead of hanging. Needs no server, so it always runs.
    let started = std::time::Instant::now();
    let refused = EventStoreDbStore::connect(
        "esdb://127.0.0.1:9?tls=false",
        Namespace::whole_cluster(),
        Duration::from_secs(2),
    )
    .await;
    assert!(
        matches!(
            refused,
            Err(paycode_adapters::store::StoreError::Unavailable(_))
        ),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
