//! A statement checked whole and matched at the same time, on two threads.
//!
//! A statement is only known to be whole once its totals (at its end) agree
//! with its rows, so the service reads it twice: into a [`RowCount`] that
//! keeps nothing (the check) and into the matcher. One after the other, a
//! day of a million lines costs both parses in a row. [`check_and_match`]
//! runs them side by side, and bounds what a file that turns out to be
//! defective can cost: past [`HELD_BEFORE_CHECKED`] entries of the sink's
//! own (findings, numbers the ledger does not know), the matching waits for
//! the check; when the check fails, the rest of the rows are read and
//! dropped, and the sink with them. The answer is the check's: a defective
//! file is rejected with the check's error, as before, and the sink is
//! never handed back for it.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use paycode_domain::Channel;
use paycode_domain::reconciliation::{StatementRowRef, StatementSink};

use super::{RowCount, StatementError, parse_statement_file};
use crate::channel::StatementFile;

/// Entries a sink may hold before the check has passed: about a few MiB of
/// findings. A day of ordinary traffic has far fewer, so its matching never
/// waits; a million lines the ledger does not know wait for the check.
pub const HELD_BEFORE_CHECKED: usize = 16_384;

/// A whole statement that can be read more than once, each time into a sink.
pub trait StatementSource: Sync {
    /// Reads the statement into `sink`: the sink back for a whole statement.
    fn read_into<S: StatementSink>(&self, sink: S) -> Result<S, StatementError>;
}

impl StatementSource for StatementFile {
    fn read_into<S: StatementSink>(&self, sink: S) -> Result<S, StatementError> {
        parse_statement_file(self, sink)
    }
}

/// Reads `source` into a [`RowCount`] (the check) and into `sink` (the
/// matching) at once, on this thread and one more; `sink` back only when the
/// check passed. See the module's documentation.
pub fn check_and_match<F, S>(source: &F, sink: S) -> Result<S, StatementError>
where
    F: StatementSource,
    S: StatementSink,
{
    check_and_match_within(source, sink, HELD_BEFORE_CHECKED)
}

fn check_and_match_within<F, S>(source: &F, sink: S, bound: usize) -> Result<S, StatementError>
where
    F: StatementSource,
    S: StatementSink,
{
    let channel = sink.channel();
    let gate = Gate::default();
    std::thread::scope(|scope| {
        let check = scope.spawn(|| {
            // Opens the gate whatever happens, a panic included, so the
            // matching never waits for a check that will not come.
            let mut verdict = Verdict {
                gate: &gate,
                passed: false,
            };
            let checked = source.read_into(RowCount::new(channel));
            verdict.passed = checked.is_ok();
            checked
        });
        let gated = source.read_into(Gated {
            sink,
            gate: &gate,
            bound,
        });
        let checked = match check.join() {
            Ok(checked) => checked,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        checked?;
        Ok(gated?.sink)
    })
}

/// Whether the check has ended, and how: read without a lock for every row
/// the matching takes; the lock and the condition variable only serve a
/// matching that waits.
#[derive(Default)]
struct Gate {
    /// `PENDING`, `PASSED` or `FAILED`.
    checked: AtomicU8,
    lock: Mutex<()>,
    ended: Condvar,
}

const PENDING: u8 = 0;
const PASSED: u8 = 1;
const FAILED: u8 = 2;

impl Gate {
    fn open(&self, passed: bool) {
        let _locked = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.checked
            .store(if passed { PASSED } else { FAILED }, Ordering::Release);
        self.ended.notify_all();
    }

    /// Whether the check has failed, without waiting.
    fn failed(&self) -> bool {
        self.checked.load(Ordering::Acquire) == FAILED
    }

    /// Waits for the end of the check: whether it passed. Once it has
    /// ended, no lock is taken.
    fn passed(&self) -> bool {
        match self.checked.load(Ordering::Acquire) {
            PASSED => return true,
            FAILED => return false,
            _ => {}
        }
        let locked = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let _locked = self
            .ended
            .wait_while(locked, |&mut ()| {
                self.checked.load(Ordering::Acquire) == PENDING
            })
            .unwrap_or_else(PoisonError::into_inner);
        self.checked.load(Ordering::Acquire) == PASSED
    }
}

/// The check's verdict, handed to the gate when the check ends (or unwinds).
struct Verdict<'g> {
    gate: &'g Gate,
    passed: bool,
}

impl Drop for Verdict<'_> {
    fn drop(&mut self) {
        self.gate.open(self.passed);
    }
}

/// The matching's sink, paused by the gate past `bound` entries held.
struct Gated<'g, S> {
    sink: S,
    gate: &'g Gate,
    bound: usize,
}

impl<S: StatementSink> StatementSink for Gated<'_, S> {
    fn channel(&self) -> Channel {
        self.sink.channel()
    }

    fn row(&mut self, row: StatementRowRef<'_>) {
        if self.sink.entries_held() >= self.bound && !self.gate.passed() {
            return;
        }
        if self.gate.failed() {
            return;
        }
        self.sink.row(row);
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use paycode_domain::reconciliation::Statement;

    use super::*;
    use crate::testing::bills::wechat_bill_of_payments;

    fn bill(records: usize, stated: usize) -> StatementFile {
        StatementFile::WechatText(wechat_bill_of_payments(records, stated, "Coffee"))
    }

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 22).unwrap()
    }

    /// A sink that keeps every row, and counts each as an entry held.
    #[derive(Debug)]
    struct Keeper(Statement);

    impl StatementSink for Keeper {
        fn channel(&self) -> Channel {
            Channel::Wechat
        }

        fn row(&mut self, row: StatementRowRef<'_>) {
            self.0.row(row);
        }

        fn entries_held(&self) -> usize {
            self.0.rows.len()
        }
    }

    #[test]
    fn a_whole_statement_gives_back_the_sink_with_every_row_in_order() {
        let file = bill(3_000, 3_000);
        let kept =
            check_and_match_within(&file, Keeper(Statement::new(Channel::Wechat, day())), 100)
                .unwrap();
        let order_nos: Vec<String> = kept.0.rows.iter().map(|row| row.order_no.clone()).collect();
        let expected: Vec<String> = (0..3_000).map(|n| format!("ORDER{n:012}")).collect();
        assert_eq!(order_nos, expected);
    }

    #[test]
    fn a_defective_statement_is_rejected_with_the_checks_error_and_the_sink_holds_at_most_the_bound()
     {
        let file = bill(5_000, 5_001);
        let checked = file.read_into(RowCount::new(Channel::Wechat)).unwrap_err();
        let error = check_and_match_within(
            &file,
            Bounded {
                kept: Keeper(Statement::new(Channel::Wechat, day())),
                most: 0,
            },
            100,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), checked.to_string());
        assert!(error.to_string().contains("5001"), "{error}");
    }

    /// A keeper that fails the test if it ever holds more than 100 rows,
    /// the bound these tests give the gate.
    #[derive(Debug)]
    struct Bounded {
        kept: Keeper,
        most: usize,
    }

    impl StatementSink for Bounded {
        fn channel(&self) -> Channel {
            Channel::Wechat
        }

        fn row(&mut self, row: StatementRowRef<'_>) {
            self.kept.row(row);
            self.most = self.most.max(self.kept.entries_held());
            assert!(
                self.most <= 100,
                "held {} rows before the check ended",
                self.most
            );
        }

        fn entries_held(&self) -> usize {
            self.kept.entries_held()
        }
    }

    #[test]
    fn a_check_that_panics_does_not_leave_the_matching_waiting() {
        /// A statement whose check panics, and whose matching would wait
        /// for the check after 5 of its 30 rows.
        struct CheckPanics(StatementFile);
        impl StatementSource for CheckPanics {
            fn read_into<S: StatementSink>(&self, sink: S) -> Result<S, StatementError> {
                assert!(
                    !std::any::type_name::<S>().ends_with("RowCount"),
                    "the check broke"
                );
                self.0.read_into(sink)
            }
        }
        let source = CheckPanics(bill(30, 30));
        let outcome = std::panic::catch_unwind(|| {
            check_and_match_within(&source, Keeper(Statement::new(Channel::Wechat, day())), 5)
        });
        // Had the matching waited for a verdict that never came, this test
        // would hang instead.
        assert!(outcome.is_err(), "the check's panic reaches the caller");
    }
}
