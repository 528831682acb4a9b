//! `relayout`: a ledger with 1 KiB pages is rewritten with the current page
//! size, every event (position, id, bytes, chain hash) as it was, the old
//! file kept beside it; a ledger another process has open, a foreign file
//! and a ledger already current are refused or left alone, unchanged.

use std::path::{Path, PathBuf};

use paycode_adapters::store::sqlite::PAGE_SIZE_BYTES;
use paycode_adapters::store::sqlite::relayout::{Relayout, kept_path, relayout};
use paycode_adapters::store::{EventStore, ExpectedVersion, RecordedEvent, SqliteStore};
use paycode_adapters::testing::store_contract::event;
use tempfile::TempDir;

fn page_size(path: &Path) -> u32 {
    let conn = rusqlite::Connection::open(path).expect("open by hand");
    conn.pragma_query_value(None, "page_size", |row| row.get(0))
        .expect("page_size")
}

/// A ledger of three streams written by the store, then copied by SQLite
/// with 1 KiB pages, the page size ledgers were made with before ADR 0008.
async fn ledger_with_small_pages(dir: &TempDir) -> PathBuf {
    let written = dir.path().join("written.db");
    let store = SqliteStore::open(&written).expect("open a new store");
    for stream in ["payment-m1-A", "payment-m1-B", "payment-m2-A"] {
        store
            .append(
                stream,
                ExpectedVersion::NoStream,
                vec![event("Submitted", stream), event("Paid", stream)],
            )
            .await
            .expect("append");
    }
    store
        .append(
            "payment-m1-A",
            ExpectedVersion::Exact(1),
            vec![event("Refunded", "A")],
        )
        .await
        .expect("append");
    store.close().await.expect("close");

    let path = dir.path().join("ledger.db");
    let conn = rusqlite::Connection::open(&written).expect("open by hand");
    conn.pragma_update(None, "page_size", 1024)
        .expect("page_size");
    conn.execute("VACUUM INTO ?1", [path.to_str().expect("utf-8")])
        .expect("copy with 1 KiB pages");
    drop(conn);
    assert_eq!(page_size(&path), 1024);
    path
}

async fn every_event(path: &Path) -> Vec<RecordedEvent> {
    let store = SqliteStore::open_read_only(path).expect("open read-only");
    store.read_all(0, usize::MAX).await.expect("read all")
}

#[tokio::test]
async fn a_new_ledger_has_the_current_page_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    SqliteStore::open(&path)
        .expect("open")
        .close()
        .await
        .expect("close");
    assert_eq!(page_size(&path), PAGE_SIZE_BYTES);
    assert_eq!(PAGE_SIZE_BYTES, 4096);
}

#[tokio::test]
async fn rewrites_small_pages_keeping_every_event_and_the_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ledger_with_small_pages(&dir).await;
    let before = every_event(&path).await;
    assert_eq!(before.len(), 7);

    let done = relayout(&path).expect("rewrite");
    let Relayout::Rewritten {
        page_size_before,
        page_size: after,
        events,
        kept,
        ..
    } = done
    else {
        panic!("expected a rewrite, got {done:?}");
    };
    assert_eq!((page_size_before, after, events), (1024, 4096, 7));
    assert_eq!(kept, kept_path(&path));
    assert_eq!(page_size(&path), 4096);
    assert_eq!(every_event(&path).await, before, "every event as it was");
    assert!(
        every_event(&kept).await == before,
        "the old file is kept beside it, with every event"
    );
    assert!(
        !dir.path().join("ledger.db.relayout").exists(),
        "nothing is left half-built"
    );

    // The rewritten ledger takes appends where the old one stopped.
    let store = SqliteStore::open(&path).expect("reopen");
    let outcome = store
        .append(
            "payment-m2-A",
            ExpectedVersion::Exact(1),
            vec![event("Refunded", "after")],
        )
        .await
        .expect("append after the rewrite");
    assert_eq!((outcome.last_version, outcome.last_position), (2, 8));
    store.close().await.expect("close");

    // A second run has nothing to do, whatever is kept beside it.
    assert_eq!(
        relayout(&path).expect("second run"),
        Relayout::AlreadyCurrent { page_size: 4096 }
    );
}

#[tokio::test]
async fn refuses_a_ledger_in_use_and_leaves_it_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ledger_with_small_pages(&dir).await;
    let store = SqliteStore::open(&path).expect("a service has it open");
    let before = every_event(&path).await;

    let path_for_rewrite = path.clone();
    let refused = tokio::task::spawn_blocking(move || relayout(&path_for_rewrite))
        .await
        .expect("join");
    let error = refused.expect_err("refused while in use").to_string();
    assert!(error.contains("in use by another process"), "{error}");
    assert!(!kept_path(&path).exists());
    assert!(!dir.path().join("ledger.db.relayout").exists());

    // The service goes on as if nothing happened.
    store
        .append(
            "payment-m9-Z",
            ExpectedVersion::NoStream,
            vec![event("Submitted", "in use")],
        )
        .await
        .expect("append");
    store.close().await.expect("close");
    assert_eq!(page_size(&path), 1024);
    let after = every_event(&path).await;
    assert_eq!(&after[..before.len()], &before[..]);
    assert_eq!(after.len(), before.len() + 1);
}

#[test]
fn refuses_a_foreign_file_and_leaves_it_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch("PRAGMA page_size = 1024; CREATE TABLE notes (text TEXT);")
            .expect("foreign schema");
    }
    let original = std::fs::read(&path).expect("read");
    let error = relayout(&path).expect_err("not a ledger").to_string();
    assert!(error.contains("not a paycode event store"), "{error}");
    assert_eq!(std::fs::read(&path).expect("read"), original);
    assert!(!kept_path(&path).exists());
}

#[test]
fn refuses_a_missing_file_without_creating_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.db");
    let error = relayout(&path).expect_err("no ledger").to_string();
    assert!(error.contains("no SQLite ledger"), "{error}");
    assert!(!path.exists());
}

#[tokio::test]
async fn refuses_when_the_place_of_the_kept_copy_is_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = ledger_with_small_pages(&dir).await;
    std::fs::write(kept_path(&path), b"an operator's file").expect("write");
    let error = relayout(&path).expect_err("refused").to_string();
    assert!(error.contains("move it away first"), "{error}");
    assert_eq!(page_size(&path), 1024);
    assert_eq!(
        std::fs::read(kept_path(&path)).expect("read"),
        b"an operator's file"
    );
}
