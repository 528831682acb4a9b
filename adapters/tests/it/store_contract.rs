//! Runs the event-store contract suite against every embedded store (memory
//! and SQLite), then the checks only the SQLite file store has: it survives
//! reopening, refuses files that are not its own without touching them, and
//! really shares transactions between concurrent appenders.

use std::path::Path;
use std::sync::Arc;

use paycode_adapters::store::{
    AppendOutcome, EventStore, ExpectedVersion, MemoryStore, SqliteStore, StoreError,
};
use paycode_adapters::testing::store_contract::{self as contract, Guarded, event};
use tempfile::TempDir;

type TempSqlite = Guarded<SqliteStore, TempDir>;

async fn fresh_memory() -> MemoryStore {
    MemoryStore::new()
}

async fn fresh_sqlite() -> TempSqlite {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(dir.path().join("events.db")).expect("open a new store");
    Guarded { store, guard: dir }
}

/// One test per contract check and store, so a failure names both.
macro_rules! contract_tests {
    ($store:ident, $fresh:ident) => {
        mod $store {
            use super::*;

            #[tokio::test]
            async fn rejects_malformed_batches() {
                contract::rejects_malformed_batches($fresh).await;
            }

            #[tokio::test]
            async fn expected_version_conflicts() {
                contract::expected_version_conflicts($fresh).await;
            }

            #[tokio::test]
            async fn idempotent_retry() {
                contract::idempotent_retry($fresh).await;
            }

            #[tokio::test]
            async fn chains_every_stream() {
                contract::chains_every_stream($fresh).await;
            }

            #[tokio::test]
            async fn atomic_multi_event_appends() {
                contract::atomic_multi_event_appends($fresh).await;
            }

            #[tokio::test]
            async fn global_order_across_streams() {
                contract::global_order_across_streams($fresh).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn follow_while_appending() {
                contract::follow_while_appending($fresh).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_appenders() {
                contract::concurrent_appenders($fresh).await;
            }

            // The embedded stores' stronger promises (see contract.rs).
            #[tokio::test]
            async fn dense_positions() {
                contract::dense_positions($fresh).await;
            }

            #[tokio::test]
            async fn rejects_reused_event_ids() {
                contract::rejects_reused_event_ids($fresh).await;
            }
        }
    };
}

contract_tests!(memory, fresh_memory);
contract_tests!(sqlite, fresh_sqlite);

#[tokio::test]
async fn sqlite_reads_a_wrongly_sized_id_or_hash_as_corrupt_naming_position_and_column() {
    // Replay reads these columns in place as fixed-size arrays; a blob of any
    // other size (a damaged or hand-edited file) must be refused, not cut or padded.
    for (column, bytes, said) in [
        ("event_id", vec![7u8; 15], "event id is not 16 bytes"),
        (
            "previous_hash",
            vec![0u8; 31],
            "previous_hash is not 32 bytes",
        ),
        ("hash", vec![1u8; 33], "hash is not 32 bytes"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let store = SqliteStore::open(&path).expect("open");
        store
            .append(
                "order",
                ExpectedVersion::NoStream,
                vec![event("Submitted", "1"), event("UserPaying", "2")],
            )
            .await
            .expect("append");
        store.close().await.expect("close");
        let conn = rusqlite::Connection::open(&path).expect("open by hand");
        conn.execute(
            &format!("UPDATE events SET {column} = ?1 WHERE position = 2"),
            [bytes],
        )
        .expect("damage the row");
        drop(conn);

        let store = SqliteStore::open(&path).expect("reopen");
        match store.read_all(1, 10).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("position 2"), "{column}: {message}");
                assert!(message.contains(said), "{column}: {message}");
            }
            other => panic!("{column}: expected Corrupt, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sqlite_reopened_file_keeps_every_event_and_positions_continue() {
    // Shows that a closed store reopens with all events, stream heads and the
    // global position intact, and that appends go on from there.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.db");
    let store = SqliteStore::open(&path).expect("open");
    let first = event("Submitted", "1");
    store
        .append(
            "order",
            ExpectedVersion::NoStream,
            vec![first.clone(), event("UserPaying", "2")],
        )
        .await
        .expect("append");
    store
        .append(
            "other",
            ExpectedVersion::NoStream,
            vec![event("Submitted", "3")],
        )
        .await
        .expect("append");
    let before = store.read_all(1, 100).await.expect("read_all");
    store.close().await.expect("close");

    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.read_all(1, 100).await.expect("read_all"), before);
    assert_eq!(store.head_position().await.expect("head"), 3);
    let conflict = store
        .append(
            "order",
            ExpectedVersion::NoStream,
            vec![event("Submitted", "x")],
        )
        .await;
    assert!(
        matches!(
            conflict,
            Err(StoreError::Conflict {
                actual: Some(1),
                ..
            })
        ),
        "the reopened store must know the stream's head: {conflict:?}"
    );
    let retry = store
        .append(
            "order",
            ExpectedVersion::NoStream,
            vec![first, before[1].clone().into_new()],
        )
        .await
        .expect("a retry after reopening is still idempotent");
    assert_eq!(
        retry,
        AppendOutcome {
            last_version: 1,
            last_position: 2
        }
    );
    let next = store
        .append(
            "order",
            ExpectedVersion::Exact(1),
            vec![event("QueryResult", "4")],
        )
        .await
        .expect("append after reopen");
    assert_eq!(
        next,
        AppendOutcome {
            last_version: 2,
            last_position: 4
        }
    );
    drop(store);

    // Dropping (rather than closing) also leaves a complete file.
    let store = SqliteStore::open(&path).expect("reopen again");
    assert_eq!(store.head_position().await.expect("head"), 4);
    assert_eq!(store.read_stream("order").await.expect("read").len(), 3);
}

trait IntoNew {
    fn into_new(self) -> paycode_adapters::store::NewEvent;
}

impl IntoNew for paycode_adapters::store::RecordedEvent {
    fn into_new(self) -> paycode_adapters::store::NewEvent {
        paycode_adapters::store::NewEvent {
            event_id: self.event_id,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data: self.data,
        }
    }
}

fn assert_refused_untouched(path: &Path, original: &[u8]) {
    match SqliteStore::open(path) {
        Err(StoreError::Corrupt(message)) => {
            assert!(
                message.contains(&path.display().to_string()),
                "the error must name the file: {message}"
            );
        }
        Err(other) => panic!("expected Corrupt for {}, got {other:?}", path.display()),
        Ok(_) => panic!("{} must be refused", path.display()),
    }
    let after = std::fs::read(path).expect("read back");
    assert!(after == original, "{} was modified", path.display());
}

#[test]
fn sqlite_refuses_a_foreign_sqlite_file_and_leaves_it_unchanged() {
    // Shows that another program's SQLite database is not taken for a
    // paycode store: Corrupt, naming the path, and not a byte changed.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create foreign db");
        conn.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO customers (name) VALUES ('ada'), ('grace');",
        )
        .expect("fill foreign db");
    }
    let original = std::fs::read(&path).expect("read");
    assert_refused_untouched(&path, &original);
}

#[test]
fn sqlite_refuses_a_foreign_wal_database_and_leaves_it_unchanged() {
    // Shows the same for a foreign database in WAL mode, whose un-checkpointed
    // WAL must not be folded into it by our inspection.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign-wal.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create foreign db");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
        )
        .expect("fill foreign db");
        // Leave the WAL un-checkpointed behind the closed connection.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .expect("no checkpoint on close");
    }
    let wal = dir.path().join("foreign-wal.db-wal");
    assert!(std::fs::metadata(&wal).expect("wal exists").len() > 0);
    let original = std::fs::read(&path).expect("read");
    assert_refused_untouched(&path, &original);
}

#[test]
fn sqlite_refuses_random_bytes_and_leaves_them_unchanged() {
    // Shows that a file of arbitrary bytes is Corrupt, not silently replaced.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("noise.db");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..8192)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(&path, &noise).expect("write noise");
    assert_refused_untouched(&path, &noise);
    let text = b"this is a plain text file, not a database at all\n".repeat(100);
    let text_path = dir.path().join("notes.txt");
    std::fs::write(&text_path, &text).expect("write text");
    assert_refused_untouched(&text_path, &text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_appends_share_transactions() {
    // Shows group commit: many appenders in flight at once are committed in
    // fewer transactions than appends, and every append is still answered.
    const APPENDERS: usize = 64;
    const APPENDS_EACH: usize = 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("events.db")).expect("open"));
    let start = Arc::new(tokio::sync::Barrier::new(APPENDERS));
    let mut tasks = Vec::new();
    for appender in 0..APPENDERS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let stream = format!("order-{appender}");
            for version in 0..APPENDS_EACH as u64 {
                let expected = ExpectedVersion::after(version.checked_sub(1));
                store
                    .append(&stream, expected, vec![event("E", "x")])
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("appender");
    }
    let appends = (APPENDERS * APPENDS_EACH) as u64;
    let stats = store.stats();
    assert_eq!(stats.appends, appends);
    assert_eq!(stats.events, appends);
    assert!(stats.commits >= 1);
    assert!(
        stats.commits < appends / 2,
        "{} commits for {appends} concurrent appends: group commit is not grouping",
        stats.commits
    );
    assert_eq!(store.head_position().await.expect("head"), appends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_many_concurrent_reads_share_a_few_connections_that_stay_open() {
    // Each connection opened costs a schema parse, a stat and a map of the
    // file, and its statements prepared again: reads wait for a free one
    // instead of opening more, and none is closed after its read.
    const READERS: usize = 64;
    const READS_EACH: usize = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(dir.path().join("events.db")).expect("open"));
    store
        .append("order-1", ExpectedVersion::NoStream, vec![event("E", "x")])
        .await
        .expect("append");
    let start = Arc::new(tokio::sync::Barrier::new(READERS));
    let mut tasks = Vec::new();
    for _ in 0..READERS {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for _ in 0..READS_EACH {
                let events = store.read_stream("order-1").await.expect("read");
                assert_eq!(events.len(), 1);
            }
        }));
    }
    for task in tasks {
        task.await.expect("reader");
    }
    let opened = store.stats().reader_connections;
    assert!(
        (1..=4).contains(&opened),
        "{opened} read connections opened for {} reads, 64 at a time",
        READERS * READS_EACH
    );
}

/// The schema of a file written before the hash chain (schema 1), as that
/// program created it.
const SCHEMA_1: &str = "
    CREATE TABLE streams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    CREATE TABLE events (
        position       INTEGER PRIMARY KEY,
        stream_id      INTEGER NOT NULL,
        version        INTEGER NOT NULL,
        event_id       BLOB    NOT NULL,
        event_type     TEXT    NOT NULL,
        schema_version INTEGER NOT NULL,
        data           BLOB    NOT NULL,
        recorded_at    INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX events_stream_version ON events (stream_id, version);
    CREATE UNIQUE INDEX events_event_id ON events (event_id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    INSERT INTO meta (key, value) VALUES ('format', 'paycode-event-store'), ('schema_version', '1');
    PRAGMA application_id = 1346459971;
    PRAGMA user_version = 1;
";

#[tokio::test]
async fn sqlite_upgrades_a_schema_1_file_in_place_and_chains_its_events() {
    // Shows that a file from before the hash chain opens: its events keep
    // their ids, versions and bytes, every stream is chained from GENESIS,
    // and appends after the upgrade continue the chain.
    use paycode_adapters::store::GENESIS;
    use paycode_adapters::store::chain::recompute;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    // Interleaved streams, so that stream order and position order differ.
    let rows = [
        ("payment-m-1", 0, "Submitted"),
        ("payment-m-2", 0, "Submitted"),
        ("payment-m-1", 1, "UserPaying"),
        ("payment-m-2", 1, "Paid"),
        ("payment-m-1", 2, "QueryResult"),
    ];
    let mut ids = Vec::new();
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(SCHEMA_1).expect("schema 1");
        for (position, (stream, version, kind)) in (1i64..).zip(rows) {
            conn.execute("INSERT OR IGNORE INTO streams (name) VALUES (?1)", [stream])
                .expect("stream");
            let id = uuid::Uuid::new_v4();
            ids.push(id);
            conn.execute(
                "INSERT INTO events (position, stream_id, version, event_id, event_type, \
                 schema_version, data, recorded_at) \
                 VALUES (?1, (SELECT id FROM streams WHERE name = ?2), ?3, ?4, ?5, 1, ?6, 0)",
                rusqlite::params![
                    position,
                    stream,
                    version,
                    id.as_bytes().as_slice(),
                    kind,
                    format!("{{\"p\":{position}}}").into_bytes(),
                ],
            )
            .expect("event");
        }
    }

    let store = SqliteStore::open(&path).expect("a schema 1 file is upgraded");
    let all = store.read_all(1, 100).await.expect("read_all");
    assert_eq!(
        all.iter().map(|event| event.event_id).collect::<Vec<_>>(),
        ids
    );
    for stream in ["payment-m-1", "payment-m-2"] {
        let events = store.read_stream(stream).await.expect("read");
        let mut previous = GENESIS;
        for event in &events {
            assert_eq!(event.previous_hash, previous, "{stream}@{}", event.version);
            assert_eq!(event.hash, recompute(event), "{stream}@{}", event.version);
            previous = event.hash;
        }
    }
    store
        .append(
            "payment-m-1",
            ExpectedVersion::Exact(2),
            vec![event("Paid", "after")],
        )
        .await
        .expect("append after the upgrade");
    let events = store.read_stream("payment-m-1").await.expect("read");
    assert_eq!(events[3].previous_hash, events[2].hash);
    assert_eq!(events[3].hash, recompute(&events[3]));
    store.close().await.expect("close");

    let conn = rusqlite::Connection::open(&path).expect("reopen by hand");
    let schema: String = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .expect("meta");
    assert_eq!(schema, "2");
    drop(conn);
    let store = SqliteStore::open(&path).expect("an upgraded file reopens");
    assert_eq!(store.head_position().await.expect("head"), 6);
}

#[test]
fn sqlite_refuses_an_unknown_schema_and_leaves_the_file_unchanged() {
    // Shows that a paycode file of a schema this program does not know
    // (a newer one) is refused as Corrupt, naming the file, untouched.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("newer.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(SCHEMA_1).expect("schema 1");
        conn.execute(
            "UPDATE meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .expect("meta");
    }
    let original = std::fs::read(&path).expect("read");
    assert_refused_untouched(&path, &original);
}
