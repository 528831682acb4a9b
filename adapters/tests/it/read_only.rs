//! `SqliteStore::open_read_only` on every shape a ledger file reaches an
//! auditor in: a closed ledger (or a `VACUUM INTO` copy) alone, a copy of
//! all three files with commits still in the WAL, the live file beside its
//! writer, a WAL without its `-shm`, a file that is not a ledger. Each test
//! that may not write compares every file of the folder (bytes and
//! modification time) before and after, and that no `-wal`/`-shm` appeared:
//! tests may run as root, where permission bits stop no write.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use paycode_adapters::read_only::{ReadOnlyFile, ReadOnlyMode};
use paycode_adapters::store::{
    EventStore, ExpectedVersion, NewEvent, RecordedEvent, SqliteStore, StoreError,
};
use uuid::Uuid;

/// Every file of `dir`: its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(dir)
        .expect("read the folder")
        .map(|entry| {
            let entry = entry.expect("an entry");
            let metadata = entry.metadata().expect("metadata");
            (
                entry.file_name().to_string_lossy().into_owned(),
                (
                    std::fs::read(entry.path()).expect("read a file"),
                    metadata.modified().expect("mtime"),
                ),
            )
        })
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    snapshot(dir).into_keys().collect()
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "Noted".to_owned(),
        schema_version: 1,
        data: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

/// Appends `per_stream` events to each of `streams`, one append per stream.
async fn fill(store: &SqliteStore, streams: &[&str], per_stream: usize) {
    for stream in streams {
        let head = store.read_stream(stream).await.expect("read").len();
        let expected = ExpectedVersion::after(head.checked_sub(1).map(|v| v as u64));
        store
            .append(
                stream,
                expected,
                (0..per_stream).map(|n| event(head + n)).collect(),
            )
            .await
            .expect("append");
    }
}

/// Every event read through the port, and through the stream scan in
/// ranges of two streams (as `(stream, version, position, hash)`).
async fn read_everything(store: &SqliteStore) -> (Vec<RecordedEvent>, Vec<Scanned>) {
    let all = store.read_all(1, usize::MAX).await.expect("read_all");
    let mut scanned = Vec::new();
    for range in store.stream_ranges(2).expect("ranges") {
        store
            .scan_range(range, |event| {
                assert_eq!(event.recompute(), event.hash, "{event:?}");
                scanned.push((
                    event.stream.to_owned(),
                    event.version,
                    event.position,
                    event.hash,
                ));
            })
            .expect("scan");
    }
    (all, scanned)
}

/// An event as the stream scan saw it.
type Scanned = (String, u64, u64, paycode_adapters::store::ChainHash);

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).expect("copy");
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_ledger_is_read_whole_and_left_byte_for_byte() {
    // A closed ledger alone: read immutable, every event through both walks,
    // the scan in stream order, appends refused, and not a byte or mtime
    // changed, no -wal or -shm made, even in a read-only folder.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paycode.db");
    let store = SqliteStore::open(&path).expect("open");
    fill(&store, &["b-1", "a-2", "c-3"], 3).await;
    fill(&store, &["a-2"], 2).await;
    store.close().await.expect("close");
    assert_eq!(names(dir.path()), ["paycode.db"]);
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    mode(&path, 0o444);
    mode(dir.path(), 0o555);
    let before = snapshot(dir.path());

    assert_eq!(
        ReadOnlyFile::at(&path).expect("look").mode(),
        ReadOnlyMode::Immutable
    );
    let store = SqliteStore::open_read_only(&path).expect("open read-only");
    assert!(store.is_read_only());
    assert_eq!(store.head_position().await.expect("head"), 11);
    let (all, scanned) = read_everything(&store).await;
    assert_eq!(all.len(), 11);
    let order: Vec<(&str, u64)> = scanned
        .iter()
        .map(|(stream, version, _, _)| (stream.as_str(), *version))
        .collect();
    assert_eq!(
        order,
        [
            ("b-1", 0),
            ("b-1", 1),
            ("b-1", 2),
            ("a-2", 0),
            ("a-2", 1),
            ("a-2", 2),
            ("a-2", 3),
            ("a-2", 4),
            ("c-3", 0),
            ("c-3", 1),
            ("c-3", 2),
        ]
    );
    // The scan hands over the same events as the port.
    for (stream, version, position, hash) in &scanned {
        let same = all
            .iter()
            .find(|other| other.position == *position)
            .expect("the same event");
        assert_eq!(
            (&same.stream, same.version, same.hash),
            (stream, *version, *hash)
        );
    }
    let refused = store
        .append("a-2", ExpectedVersion::Exact(4), vec![event(5)])
        .await
        .expect_err("a read-only store refuses appends");
    assert!(
        matches!(&refused, StoreError::Unavailable(reason) if reason.to_string().contains("read-only")),
        "{refused}"
    );
    assert_eq!(store.read_stream("a-2").await.expect("read").len(), 5);
    drop(store);

    assert_eq!(snapshot(dir.path()), before);
    mode(dir.path(), 0o755);
    mode(&path, 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_with_commits_only_in_its_wal_is_read_whole_without_writing() {
    // The file as it was before the last commit, with the WAL and -shm that
    // hold that commit: the read-only open reads the WAL (it sees the last
    // events, which the file alone lacks) and changes none of the three.
    let live = tempfile::tempdir().expect("tempdir");
    let path = live.path().join("paycode.db");
    let store = SqliteStore::open(&path).expect("open");
    fill(&store, &["s-1", "s-2"], 2).await;
    store.close().await.expect("close");
    let audit = tempfile::tempdir().expect("tempdir");
    let copied = audit.path().join("paycode.db");
    copy(&path, &copied);

    let store = SqliteStore::open(&path).expect("reopen");
    // One append: one transaction, all of it in the WAL since the copy.
    fill(&store, &["s-3"], 4).await;
    copy(&suffixed(&path, "-wal"), &suffixed(&copied, "-wal"));
    copy(&suffixed(&path, "-shm"), &suffixed(&copied, "-shm"));
    store.close().await.expect("close");
    let before = snapshot(audit.path());

    let file = ReadOnlyFile::at(&copied).expect("look");
    assert_eq!(file.mode(), ReadOnlyMode::WithWal);
    let store = SqliteStore::open_read_only(&copied).expect("open read-only");
    let (all, scanned) = read_everything(&store).await;
    assert_eq!(all.len(), 8, "the WAL's commit is read");
    assert_eq!(scanned.len(), 8);
    assert_eq!(store.read_stream("s-3").await.expect("read").len(), 4);
    drop(store);
    assert_eq!(snapshot(audit.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_ledger_is_read_beside_its_writer() {
    // While the writer runs, a read-only store sees what it committed, and
    // a later one sees later commits.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paycode.db");
    let writer = SqliteStore::open(&path).expect("open");
    fill(&writer, &["l-1"], 3).await;
    let reader = SqliteStore::open_read_only(&path).expect("open read-only");
    assert_eq!(reader.head_position().await.expect("head"), 3);
    fill(&writer, &["l-2"], 2).await;
    let later = SqliteStore::open_read_only(&path).expect("open read-only");
    let (all, scanned) = read_everything(&later).await;
    assert_eq!((all.len(), scanned.len()), (5, 5));
    drop((reader, later));
    writer.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuum_into_copy_of_a_live_ledger_is_one_file_that_reads_whole() {
    // The way docs/auditing.md tells to copy a live ledger: `VACUUM INTO`
    // from a reader, while the writer runs. The copy is one file, opened
    // immutable, with every committed event.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paycode.db");
    let writer = SqliteStore::open(&path).expect("open");
    fill(&writer, &["v-1", "v-2"], 3).await;
    let audit = tempfile::tempdir().expect("tempdir");
    let copied = audit.path().join("copy.db");
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("a reader");
    conn.execute("VACUUM INTO ?1", [copied.to_str().expect("utf-8")])
        .expect("VACUUM INTO");
    drop(conn);
    writer.close().await.expect("close");
    assert_eq!(names(audit.path()), ["copy.db"]);
    let before = snapshot(audit.path());
    assert_eq!(
        ReadOnlyFile::at(&copied).expect("look").mode(),
        ReadOnlyMode::Immutable
    );
    let store = SqliteStore::open_read_only(&copied).expect("open read-only");
    assert_eq!(read_everything(&store).await.0.len(), 6);
    drop(store);
    assert_eq!(snapshot(audit.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_without_its_shm_is_refused_naming_the_way_out() {
    // Reading that WAL would take a new -shm: refused, nothing created.
    let live = tempfile::tempdir().expect("tempdir");
    let path = live.path().join("paycode.db");
    let store = SqliteStore::open(&path).expect("open");
    fill(&store, &["w-1"], 2).await;
    let audit = tempfile::tempdir().expect("tempdir");
    let copied = audit.path().join("paycode.db");
    copy(&path, &copied);
    copy(&suffixed(&path, "-wal"), &suffixed(&copied, "-wal"));
    store.close().await.expect("close");
    let before = snapshot(audit.path());
    let refused = SqliteStore::open_read_only(&copied).expect_err("refused");
    let message = refused.to_string();
    assert!(
        message.contains("paycode.db-wal is not empty")
            && message.contains("VACUUM INTO")
            && message.contains("docs/auditing.md"),
        "{message}"
    );
    assert_eq!(snapshot(audit.path()), before);
}

#[tokio::test]
async fn a_missing_or_foreign_file_is_refused_and_left_as_it_was() {
    // No file: an error, and no file made. A SQLite file that is not a
    // ledger: Corrupt, untouched.
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nothing.db");
    assert!(SqliteStore::open_read_only(&missing).is_err());
    assert!(names(dir.path()).is_empty());

    let foreign = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&foreign).expect("create");
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .expect("fill");
    drop(conn);
    let before = snapshot(dir.path());
    let refused = SqliteStore::open_read_only(&foreign).expect_err("refused");
    assert!(
        matches!(&refused, StoreError::Corrupt(reason) if reason.contains("not a paycode event store")),
        "{refused}"
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_whose_stream_has_no_name_stops_the_scan_as_corrupt() {
    // A file edited outside paycode: a stream's row deleted while its
    // events stay. The stream-ordered scan names the first orphan event's
    // position instead of handing it over under another stream's name.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("paycode.db");
    let store = SqliteStore::open(&path).expect("open");
    fill(&store, &["n-1", "n-2", "n-3"], 2).await;
    store.close().await.expect("close");
    let conn = rusqlite::Connection::open(&path).expect("edit");
    let removed = conn
        .execute("DELETE FROM streams WHERE name = 'n-2'", [])
        .expect("delete");
    assert_eq!(removed, 1);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("checkpoint");
    drop(conn);
    let store = SqliteStore::open_read_only(&path).expect("open read-only");
    let mut seen = Vec::new();
    let mut refused = None;
    for range in store.stream_ranges(10).expect("ranges") {
        if let Err(error) = store.scan_range(range, |event| seen.push(event.stream.to_owned())) {
            refused = Some(error);
            break;
        }
    }
    assert_eq!(seen, ["n-1", "n-1"]);
    let refused = refused.expect("the scan stops");
    assert!(
        matches!(&refused, StoreError::Corrupt(reason) if reason == "event at position 3: its stream (id 2) has no name"),
        "{refused}"
    );
}
