//! The real `paycode migrate --to sqlite` on a ledger of the release before
//! ADR 0008 (1 KiB pages): status 0 and a summary naming the kept copy, then
//! "nothing to do" on a second run; `paycode verify` clean afterwards;
//! `--url` refused for this target, and a missing ledger refused without
//! creating one.

use std::path::Path;
use std::process::{Command as Process, Output};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/ledger-1k-pages-schema2.db"
);

fn paycode(dir: &Path, args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_paycode"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn migrate_to_sqlite_rewrites_once_and_the_ledger_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(FIXTURE, dir.path().join("paycode.db")).expect("copy the fixture");

    // Without --config or --from: the embedded default, ./paycode.db.
    let first = paycode(dir.path(), &["migrate", "--to", "sqlite"]);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    let said = text(&first.stdout);
    assert!(
        said.starts_with("rewrote paycode.db: 26 events, pages of 1024 -> 4096 bytes")
            && said.contains("kept at paycode.db.before-relayout"),
        "{said}"
    );
    assert!(dir.path().join("paycode.db.before-relayout").is_file());

    let second = paycode(
        dir.path(),
        &["migrate", "--to", "sqlite", "--from", "paycode.db"],
    );
    assert_eq!(second.status.code(), Some(0), "{second:?}");
    assert!(text(&second.stdout).contains("nothing to do"), "{second:?}");

    let verified = paycode(dir.path(), &["verify"]);
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    assert_eq!(
        text(&verified.stdout),
        "verified 6 streams, 26 events: 0 problems\n"
    );
}

#[test]
fn migrate_to_sqlite_refuses_a_url_and_a_missing_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with_url = paycode(
        dir.path(),
        &["migrate", "--to", "sqlite", "--url", "esdb://127.0.0.1:1"],
    );
    assert_ne!(with_url.status.code(), Some(0));
    assert!(text(&with_url.stderr).contains("--url"), "{with_url:?}");

    let missing = paycode(dir.path(), &["migrate", "--to", "sqlite"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(
        text(&missing.stderr).contains("no SQLite ledger at paycode.db"),
        "{missing:?}"
    );
    assert!(!dir.path().join("paycode.db").exists(), "nothing created");
}
