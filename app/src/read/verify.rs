//! `paycode verify`: re-walks the whole log and reports every event that
//! is not what was appended, or that the payment rules would never have
//! decided.
//!
//! Two kinds of check, both pure (`StreamCheck`, fed one recorded event of
//! a stream at a time, so that it is unit-tested without a store):
//! - **The chain** (every stream): versions run 0, 1, 2, ... without gaps;
//!   each event's `previous_hash` is the hash of the event before it
//!   (`GENESIS` at version 0); each `hash` is `chain::recompute` of the
//!   event's own fields. An edited payload, type, id or link shows here.
//! - **The rules** (payment streams): the events decode and fold through the
//!   domain's `evolve`, which refuses any event that breaks an invariant
//!   (`paycode_domain::invariants`: `Submitted` first and once; after a
//!   terminal status only statement matches; refunds only on a paid order,
//!   for refunds it knows, never above the payment; every event fitting
//!   the order's status); and `Submitted` names the order the stream is
//!   named after.
//!
//! Two walks feed it. Over the `EventStore` port (any store, EventStoreDB
//! included) the log comes in global order and `Verifier` keeps every
//! stream's state. A SQLite ledger is read in stream order instead
//! (`verify_sqlite`, `StreamOrderVerifier`): its streams are cut into
//! ranges of consecutive ids, and one thread per core takes a range at a
//! time, reads it one stream after another by the `(stream_id, version)`
//! index (`SqliteStore::scan_range`, borrowing each row: nothing copied)
//! and checks it as it reads; the ranges' reports are joined in stream
//! order. Memory holds one stream's state per thread, whatever the size of
//! the ledger (and the problems found, to be printed).
//!
//! A problem is reported as `stream@version: what`. The walk goes on after
//! a problem so that one run shows them all: an event that breaks a rule
//! leaves the order's state as it was. After an event that does not decode,
//! the rules of that stream are no longer checked (its state is unknown),
//! its chain still is.

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use paycode_adapters::store::chain::to_hex;
use paycode_adapters::store::{
    ChainHash, EventRef, EventStore, GENESIS, RecordedEvent, SqliteStore, StoreError,
};
use paycode_domain::ids::parse_payment_stream;
use paycode_domain::invariants::Violation;
use paycode_domain::payment::{Event, Fact, PaymentState, evolve};
use serde::Serialize;

use crate::config::store::{LedgerSource, OpenedLedger, open_ledger_read_only};

/// How many events one `read_all` asks for.
pub const READ_PAGE_EVENTS: usize = 1_000;
/// Streams per range of a SQLite verify: a thread reads and checks one
/// range at a time, holding one stream's state; a range's report waits for
/// the ranges before it to be joined.
pub const STREAMS_PER_RANGE: u64 = 2_048;
/// Threads reading and checking ranges at most.
const THREADS_MAX: usize = 8;

/// One thing wrong with one stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub stream: String,
    pub version: u64,
    pub kind: ProblemKind,
}

/// What is wrong. Chain problems first, then the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The stream's versions skip or repeat: an event was removed or added.
    VersionOutOfSequence { expected: u64 },
    /// `previous_hash` is not the hash of the stream's event before it.
    PreviousHashMismatch {
        expected: ChainHash,
        stored: ChainHash,
    },
    /// `hash` is not the hash of the event's own fields: the event was
    /// changed after it was appended.
    HashMismatch {
        computed: ChainHash,
        stored: ChainHash,
    },
    /// The payload does not decode as the event its type names.
    Undecodable { detail: String },
    /// `Submitted` names another merchant or order than the stream does.
    WrongOrder,
    /// The event breaks one of the payment's invariants (see
    /// `paycode_domain::invariants`): `evolve` refuses it, and the order's
    /// state is checked on as it was before it.
    Broken(Violation),
}

impl ProblemKind {
    /// A stable snake_case name, for `--format json`: the kind, or for a
    /// broken invariant the invariant's own code.
    pub fn code(&self) -> &'static str {
        match self {
            ProblemKind::VersionOutOfSequence { .. } => "version_out_of_sequence",
            ProblemKind::PreviousHashMismatch { .. } => "previous_hash_mismatch",
            ProblemKind::HashMismatch { .. } => "hash_mismatch",
            ProblemKind::Undecodable { .. } => "undecodable",
            ProblemKind::WrongOrder => "wrong_order",
            ProblemKind::Broken(violation) => violation.code(),
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::VersionOutOfSequence { expected } => {
                write!(f, "version out of sequence (expected version {expected})")
            }
            ProblemKind::PreviousHashMismatch { expected, stored } => write!(
                f,
                "broken link: previous_hash {} is not the hash of the event before ({})",
                to_hex(stored),
                to_hex(expected)
            ),
            ProblemKind::HashMismatch { computed, stored } => write!(
                f,
                "broken link: the event was changed after it was appended (stored hash {}, its contents hash to {})",
                to_hex(stored),
                to_hex(computed)
            ),
            ProblemKind::Undecodable { detail } => write!(f, "does not decode: {detail}"),
            ProblemKind::WrongOrder => {
                f.write_str("Submitted names another merchant or order than the stream")
            }
            ProblemKind::Broken(violation) => violation.fmt(f),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}: {}", self.stream, self.version, self.kind)
    }
}

/// What a walk found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub streams: u64,
    pub events: u64,
    /// In the order met: the log's global order over the port, stream
    /// order (streams by their first event, then versions) for SQLite.
    pub problems: Vec<Problem>,
}

/// `--format json`: the report as one object.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    streams: u64,
    events: u64,
    problems: Vec<JsonProblem<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonProblem<'a> {
    stream: &'a str,
    version: u64,
    kind: &'static str,
    what: String,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The summary line, then one line per problem.
    pub fn render(&self) -> String {
        let mut out = format!(
            "verified {} streams, {} events: {} problem{}\n",
            self.streams,
            self.events,
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        );
        for problem in &self.problems {
            let _ = writeln!(out, "{problem}");
        }
        out
    }

    /// One JSON object: `streams`, `events`, and `problems`, each with its
    /// `stream`, `version`, `kind` (a stable code) and `what` (the text of
    /// `render`). Ends with a newline.
    pub fn render_json(&self) -> String {
        let report = JsonReport {
            streams: self.streams,
            events: self.events,
            problems: self
                .problems
                .iter()
                .map(|problem| JsonProblem {
                    stream: &problem.stream,
                    version: problem.version,
                    kind: problem.kind.code(),
                    what: problem.kind.to_string(),
                })
                .collect(),
        };
        let mut out = serde_json::to_string_pretty(&report)
            .unwrap_or_else(|error| unreachable!("a report serialises: {error}"));
        out.push('\n');
        out
    }

    /// Adds the report of the streams after this one's.
    fn join(&mut self, other: VerifyReport) {
        self.streams += other.streams;
        self.events += other.events;
        self.problems.extend(other.problems);
    }
}

/// What the walk knows of one stream: the pure check of its events, fed
/// in version order.
#[derive(Debug)]
pub struct StreamCheck {
    /// The version the next event must have.
    next_version: u64,
    /// The stored hash of the last event seen (what the next must link to).
    last_hash: ChainHash,
    /// The folded payment, for payment streams whose events all decoded.
    payment: Option<PaymentState>,
}

impl StreamCheck {
    /// The check of a stream before its first event.
    pub fn new(stream: &str) -> Self {
        StreamCheck {
            next_version: 0,
            last_hash: GENESIS,
            payment: parse_payment_stream(stream).map(|_| PaymentState::Initial),
        }
    }

    /// Checks the stream's next event against what came before it, adding
    /// what is wrong with it to `problems`.
    pub fn check(&mut self, event: &EventRef<'_>, problems: &mut Vec<Problem>) {
        let mut found = Vec::new();
        if event.version != self.next_version {
            found.push(ProblemKind::VersionOutOfSequence {
                expected: self.next_version,
            });
        }
        if event.previous_hash != self.last_hash {
            found.push(ProblemKind::PreviousHashMismatch {
                expected: self.last_hash,
                stored: event.previous_hash,
            });
        }
        let computed = event.recompute();
        if computed != event.hash {
            found.push(ProblemKind::HashMismatch {
                computed,
                stored: event.hash,
            });
        }
        self.next_version = event.version.saturating_add(1);
        self.last_hash = event.hash;

        if let Some(state) = &mut self.payment {
            match event.decode::<Event>() {
                Ok(decoded) => {
                    if names_another_order(event.stream, &decoded) {
                        found.push(ProblemKind::WrongOrder);
                    }
                    // Folded in place: the state is moved only into and out of `evolve`.
                    let before = std::mem::replace(state, PaymentState::Initial);
                    *state = match evolve(before, &decoded) {
                        Ok(after) => after,
                        Err(refused) => {
                            found.push(ProblemKind::Broken(refused.violation));
                            refused.state
                        }
                    };
                }
                // The state is unknown from here: stop checking the rules.
                Err(error) => {
                    self.payment = None;
                    found.push(ProblemKind::Undecodable {
                        detail: error.to_string(),
                    });
                }
            }
        }
        problems.extend(found.into_iter().map(|kind| Problem {
            stream: event.stream.to_owned(),
            version: event.version,
            kind,
        }));
    }
}

/// The pure core of the walk over the port: feed it every recorded event
/// in global order, then `finish`. Keeps every stream's state.
#[derive(Debug, Default)]
pub struct Verifier {
    streams: HashMap<String, StreamCheck>,
    events: u64,
    problems: Vec<Problem>,
}

impl Verifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one event against what came before it in its stream.
    pub fn check(&mut self, event: &RecordedEvent) {
        self.events += 1;
        let walk = self
            .streams
            .entry(event.stream.clone())
            .or_insert_with(|| StreamCheck::new(&event.stream));
        walk.check(&event.borrowed(), &mut self.problems);
    }

    pub fn finish(self) -> VerifyReport {
        VerifyReport {
            streams: self.streams.len() as u64,
            events: self.events,
            problems: self.problems,
        }
    }
}

/// The pure core of a walk in stream order: every event of a stream comes
/// before any event of the next, so only the current stream's state is
/// kept. (A stream met again after another would be checked as a new one:
/// feed it nothing but stream-ordered events.)
#[derive(Debug, Default)]
pub struct StreamOrderVerifier {
    current: Option<(String, StreamCheck)>,
    report: VerifyReport,
}

impl StreamOrderVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks one event: the next of the current stream, or the first of the next one.
    pub fn check(&mut self, event: &EventRef<'_>) {
        self.report.events += 1;
        let same = matches!(&self.current, Some((stream, _)) if stream == event.stream);
        if !same {
            self.report.streams += 1;
            self.current = Some((event.stream.to_owned(), StreamCheck::new(event.stream)));
        }
        if let Some((_, walk)) = &mut self.current {
            walk.check(event, &mut self.report.problems);
        }
    }

    pub fn finish(self) -> VerifyReport {
        self.report
    }
}

/// Whether `event` is a `Submitted` for another merchant or order than
/// the payment stream it is in.
fn names_another_order(stream: &str, event: &Event) -> bool {
    let Fact::Submitted(submitted) = &event.fact else {
        return false;
    };
    parse_payment_stream(stream).is_none_or(|(merchant, order_no)| {
        merchant != submitted.merchant_id || order_no != submitted.order_no
    })
}

/// Walks every event of `store` in global order, `READ_PAGE_EVENTS` at a
/// time, over the port (any store).
pub async fn verify_store(store: &dyn EventStore) -> Result<VerifyReport, StoreError> {
    verify_store_with(store, &ProgressBar::hidden()).await
}

async fn verify_store_with(
    store: &dyn EventStore,
    progress: &ProgressBar,
) -> Result<VerifyReport, StoreError> {
    progress.set_length(store.head_position().await?);
    let mut verifier = Verifier::new();
    let mut position = 1;
    loop {
        let page = store.read_all(position, READ_PAGE_EVENTS).await?;
        let Some(last) = page.last() else { break };
        position = last.position + 1;
        for event in &page {
            verifier.check(event);
        }
        progress.set_position(last.position);
    }
    Ok(verifier.finish())
}

/// Walks every event of a SQLite ledger in stream order (see the module's
/// doc): the streams in ranges of `STREAMS_PER_RANGE`, each range read and
/// checked by one of the threads (one per core), the ranges' reports joined
/// in order. Blocking.
pub fn verify_sqlite(
    store: &SqliteStore,
    progress: &ProgressBar,
) -> Result<VerifyReport, StoreError> {
    let ranges = store.stream_ranges(STREAMS_PER_RANGE)?;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, THREADS_MAX)
        .min(ranges.len().max(1));
    let next = AtomicUsize::new(0);
    let (checked, reports) = mpsc::channel::<(usize, Result<VerifyReport, StoreError>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let (ranges, next, checked) = (&ranges, &next, checked.clone());
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(range) = ranges.get(index) else {
                        break;
                    };
                    let mut verifier = StreamOrderVerifier::new();
                    let scanned = store.scan_range(*range, |event| verifier.check(event));
                    let report = scanned.map(|()| verifier.finish());
                    if checked.send((index, report)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(checked);
        // Ranges come back in any order; they are joined in stream order.
        let mut report = VerifyReport::default();
        let mut waiting = BTreeMap::new();
        let mut joined = 0usize;
        for (index, part) in reports {
            let part = part?;
            progress.inc(part.events);
            waiting.insert(index, part);
            while let Some(part) = waiting.remove(&joined) {
                report.join(part);
                joined += 1;
            }
        }
        if joined < ranges.len() {
            return Err(StoreError::Unavailable(
                "a verify thread stopped early".into(),
            ));
        }
        Ok(report)
    })
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("verifying {bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// `paycode verify [--ledger PATH | --config FILE]`: the ledger opened
/// read-only (SQLite `./paycode.db` without either). A file that does not
/// exist is an error, never created. The report says whether the log is clean.
pub async fn run(source: &LedgerSource, show_progress: bool) -> anyhow::Result<VerifyReport> {
    let opened = open_ledger_read_only(source)?;
    let progress = progress_bar(show_progress);
    let report = match opened {
        OpenedLedger::Sqlite(store) => {
            let head = store.head_position().await.context("reading the log")?;
            progress.set_length(head);
            let bar = progress.clone();
            let store = Arc::clone(&store);
            tokio::task::spawn_blocking(move || verify_sqlite(&store, &bar))
                .await
                .context("the verify task")?
        }
        OpenedLedger::Port(store) => verify_store_with(store.as_ref(), &progress).await,
    }
    .context("reading the log")?;
    progress.finish_and_clear();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use paycode_adapters::store::chain::{chain_hash, recompute};
    use paycode_domain::payment::{
        ChannelAnswer, Command, CommandKind, PayOutcome, PaymentDecider, RefundOutcome,
        RefundRequested, RequestRefund, RevokeOutcome, RevokeReason, RevokeResult, SubmitPayment,
    };
    use paycode_domain::{AuthCode, CommandId, MerchantId, OrderNo, RefundNo};
    use uuid::Uuid;

    use paycode_domain::Decider;
    use paycode_domain::money::Total;
    use paycode_domain::payment::PaymentStatus;
    use paycode_domain::stored;

    use super::*;

    const STREAM: &str = "payment-demo-V1";

    /// A payment's history decided by the real decider, then stored as a
    /// store would: each event chained to the one before.
    struct Scenario {
        decider: PaymentDecider,
        state: PaymentState,
        events: Vec<Event>,
        now: DateTime<Utc>,
        commands: u128,
    }

    impl Scenario {
        /// Paid 10.00, refunded 4.00, then a forged RefundRequested of 7.00
        /// (more than the 6.00 left) with an intact chain.
        fn over_refunded() -> Scenario {
            let mut ledger = Scenario::paid("10.00");
            ledger.refund("R1", "4.00");
            let requested_at = ledger.now;
            ledger.forge(Fact::RefundRequested(RefundRequested {
                refund_no: RefundNo::parse("R2").unwrap(),
                amount: "7.00".parse().unwrap(),
                reason: "forged".to_owned(),
                first_query_at: requested_at,
                settle_by: requested_at,
            }));
            ledger
        }

        fn submitted(amount: &str) -> Scenario {
            let mut ledger = Scenario {
                decider: PaymentDecider::default(),
                state: PaymentState::Initial,
                events: Vec::new(),
                now: Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap(),
                commands: 0,
            };
            ledger.when(CommandKind::SubmitPayment(SubmitPayment {
                merchant_id: MerchantId::parse("demo").unwrap(),
                order_no: OrderNo::parse("V1").unwrap(),
                auth_code: AuthCode::parse("134567890123456789").unwrap(),
                auth_code_fingerprint: None,
                amount: amount.parse().unwrap(),
                subject: "Coffee".to_owned(),
            }));
            ledger
        }

        fn paid(amount: &str) -> Scenario {
            let mut ledger = Scenario::submitted(amount);
            let paid_at = ledger.now;
            ledger.when(CommandKind::RecordPayAnswer(ChannelAnswer::new(
                PayOutcome::Paid {
                    channel_trade_no: "4200000001".to_owned(),
                    paid_at: Some(paid_at),
                },
            )));
            ledger
        }

        fn when(&mut self, kind: CommandKind) {
            self.commands += 1;
            self.now += Duration::seconds(1);
            let command = Command::new(CommandId(Uuid::from_u128(self.commands)), kind);
            let events = self
                .decider
                .decide(&self.state, &command, self.now)
                .expect("the decider accepts the scenario");
            for event in events {
                self.state = evolve(self.state.clone(), &event).expect("a decided event");
                self.events.push(event);
            }
        }

        fn refund(&mut self, refund_no: &str, amount: &str) {
            self.when(CommandKind::RequestRefund(RequestRefund {
                refund_no: RefundNo::parse(refund_no).unwrap(),
                amount: amount.parse().unwrap(),
                reason: "returned".to_owned(),
            }));
        }

        /// Appends an event the decider would not have decided.
        fn forge(&mut self, fact: Fact) {
            self.events.push(Event {
                at: self.now,
                command_id: CommandId(Uuid::from_u128(999)),
                key_name: None,
                fact,
            });
        }

        fn recorded(&self) -> Vec<RecordedEvent> {
            chained(STREAM, &self.events)
        }
    }

    fn chained(stream: &str, events: &[Event]) -> Vec<RecordedEvent> {
        let mut previous_hash = GENESIS;
        (0u64..)
            .zip(events)
            .map(|(version, event)| {
                let encoded = stored::encode(event);
                let event_id = Uuid::from_u128(u128::from(version) + 1);
                let hash = chain_hash(
                    &previous_hash,
                    stream,
                    version,
                    event_id,
                    encoded.name,
                    encoded.schema_version,
                    &encoded.data,
                );
                let recorded = RecordedEvent {
                    stream: stream.to_owned(),
                    version,
                    position: version + 1,
                    event_id,
                    event_type: encoded.name.to_owned(),
                    schema_version: encoded.schema_version,
                    data: encoded.data,
                    recorded_at: event.at,
                    previous_hash,
                    hash,
                };
                previous_hash = hash;
                recorded
            })
            .collect()
    }

    fn verify(events: &[RecordedEvent]) -> VerifyReport {
        let mut verifier = Verifier::new();
        for event in events {
            verifier.check(event);
        }
        verifier.finish()
    }

    fn kinds(report: &VerifyReport) -> Vec<(u64, ProblemKind)> {
        report
            .problems
            .iter()
            .map(|problem| (problem.version, problem.kind.clone()))
            .collect()
    }

    #[test]
    fn a_history_the_decider_made_verifies_clean() {
        // Shows that a paid, partly refunded, then fully refunded order
        // passes every check, and the summary counts it.
        let mut ledger = Scenario::paid("10.00");
        ledger.refund("R1", "4.00");
        ledger.refund("R2", "6.00");
        for refund_no in ["R1", "R2"] {
            let refunded_at = ledger.now;
            ledger.when(CommandKind::RecordRefundAnswer {
                refund_no: RefundNo::parse(refund_no).unwrap(),
                answer: ChannelAnswer::new(RefundOutcome::Succeeded {
                    channel_refund_no: None,
                    refunded_at,
                }),
            });
        }
        assert_eq!(ledger.state.status(), Some(PaymentStatus::Refunded));
        let report = verify(&ledger.recorded());
        assert_eq!(report.problems, Vec::new(), "{}", report.render());
        assert_eq!((report.streams, report.events), (1, 6));
        assert!(report.is_clean());
        assert_eq!(
            report.render(),
            "verified 1 streams, 6 events: 0 problems\n"
        );
    }

    #[test]
    fn an_edited_payload_is_reported_at_its_stream_and_version() {
        // Shows the chain catching a changed byte: exactly that event's hash
        // no longer matches; the events after it still link to its stored hash.
        let mut ledger = Scenario::paid("10.00");
        ledger.refund("R1", "4.00");
        let mut events = ledger.recorded();
        let subject = events[0]
            .data
            .windows(6)
            .position(|window| window == b"Coffee")
            .expect("the subject is in the payload");
        events[0].data[subject] = b'T';
        let report = verify(&events);
        assert_eq!(report.problems.len(), 1, "{}", report.render());
        let problem = &report.problems[0];
        assert_eq!((problem.stream.as_str(), problem.version), (STREAM, 0));
        assert!(matches!(problem.kind, ProblemKind::HashMismatch { .. }));
        assert!(
            problem
                .to_string()
                .starts_with("payment-demo-V1@0: broken link"),
            "{problem}"
        );
    }

    #[test]
    fn a_rehashed_edit_breaks_the_next_link() {
        // Shows that recomputing the edited event's own hash does not hide
        // the edit: the next event's previous_hash no longer matches.
        let mut ledger = Scenario::paid("10.00");
        ledger.refund("R1", "4.00");
        let mut events = ledger.recorded();
        events[1].data = events[1].data.replace_first(b"4200000001", b"4200000002");
        events[1].hash = recompute(&events[1]);
        let report = verify(&events);
        assert_eq!(
            kinds(&report),
            vec![(
                2,
                ProblemKind::PreviousHashMismatch {
                    expected: events[1].hash,
                    stored: events[2].previous_hash,
                }
            )],
            "{}",
            report.render()
        );
    }

    #[test]
    fn a_removed_event_is_a_gap_and_a_broken_link() {
        // Shows that deleting an event from the middle of a stream is seen
        // at the event after the hole (and here the rules see it too: the
        // refund now follows an unpaid order).
        let mut ledger = Scenario::paid("10.00");
        ledger.refund("R1", "4.00");
        let mut events = ledger.recorded();
        events.remove(1);
        let report = verify(&events);
        let found = kinds(&report);
        assert!(
            found.contains(&(2, ProblemKind::VersionOutOfSequence { expected: 1 })),
            "{}",
            report.render()
        );
        assert!(
            found.iter().any(|(version, kind)| *version == 2
                && matches!(kind, ProblemKind::PreviousHashMismatch { .. })),
            "{}",
            report.render()
        );
        assert!(
            found.contains(&(
                2,
                ProblemKind::Broken(Violation::RefundWithoutPayment {
                    status: Some(PaymentStatus::Paying),
                    event_type: "RefundRequested",
                })
            )),
            "{}",
            report.render()
        );
        assert_eq!(found.len(), 3, "{}", report.render());
    }

    #[test]
    fn refunds_above_the_payment_are_reported_even_with_an_intact_chain() {
        // Shows the rules check: a RefundRequested the decider would have
        // refused (balance 6.00 left, 7.00 asked) is a problem of its own.
        let ledger = Scenario::over_refunded();
        let report = verify(&ledger.recorded());
        assert_eq!(
            kinds(&report),
            vec![(
                3,
                ProblemKind::Broken(Violation::RefundsExceedPayment {
                    refunds: Total::sum(["4.00".parse().unwrap(), "7.00".parse().unwrap()])
                        .unwrap(),
                    paid: "10.00".parse().unwrap(),
                })
            )]
        );
        assert_eq!(
            report.problems[0].to_string(),
            "payment-demo-V1@3: refunds of 11.00 exceed the payment of 10.00"
        );
    }

    #[test]
    fn nothing_but_statement_matches_follows_a_terminal_status() {
        // Shows that a closed order that gets another answer is reported,
        // and that the status comes from the domain's own `is_terminal`.
        let mut ledger = Scenario::submitted("10.00");
        ledger.now += Duration::seconds(60);
        ledger.when(CommandKind::RequestRevoke {
            reason: RevokeReason::MerchantRequested,
        });
        ledger.when(CommandKind::RecordRevokeAnswer(ChannelAnswer::new(
            RevokeOutcome::Done {
                result: RevokeResult::Closed,
            },
        )));
        assert_eq!(ledger.state.status(), Some(PaymentStatus::Closed));
        let paid_at = ledger.now;
        ledger.forge(Fact::Paid(paycode_domain::payment::Paid {
            channel_trade_no: "4200000009".to_owned(),
            paid_at,
            paid_at_stated: true,
            source: paycode_domain::payment::PaidSource::Query,
            codes: paycode_domain::ChannelCodes::new(),
        }));
        let report = verify(&ledger.recorded());
        assert_eq!(
            kinds(&report),
            vec![(
                3,
                ProblemKind::Broken(Violation::AfterTerminal {
                    status: PaymentStatus::Closed,
                    event_type: "Paid",
                })
            )]
        );
    }

    #[test]
    fn refund_events_need_a_paid_order_and_a_known_refund() {
        // Shows the refund bookkeeping rules: a refund on an unpaid order, an
        // answer for a refund never requested, and a request reusing a number.
        let mut unpaid = Scenario::submitted("10.00");
        let at = unpaid.now;
        unpaid.forge(Fact::RefundRequested(RefundRequested {
            refund_no: RefundNo::parse("R1").unwrap(),
            amount: "1.00".parse().unwrap(),
            reason: "forged".to_owned(),
            first_query_at: at,
            settle_by: at,
        }));
        assert_eq!(
            kinds(&verify(&unpaid.recorded())),
            vec![(
                1,
                ProblemKind::Broken(Violation::RefundWithoutPayment {
                    status: Some(PaymentStatus::Paying),
                    event_type: "RefundRequested",
                })
            )]
        );

        let mut paid = Scenario::paid("10.00");
        paid.refund("R1", "1.00");
        let at = paid.now;
        paid.forge(Fact::RefundFailed(paycode_domain::payment::RefundFailed {
            refund_no: RefundNo::parse("R9").unwrap(),
            code: "X".to_owned(),
            codes: paycode_domain::ChannelCodes::new(),
        }));
        paid.forge(Fact::RefundRequested(RefundRequested {
            refund_no: RefundNo::parse("R1").unwrap(),
            amount: "1.00".parse().unwrap(),
            reason: "again".to_owned(),
            first_query_at: at,
            settle_by: at,
        }));
        assert_eq!(
            kinds(&verify(&paid.recorded())),
            vec![
                (
                    3,
                    ProblemKind::Broken(Violation::UnknownRefund {
                        refund_no: RefundNo::parse("R9").unwrap()
                    })
                ),
                (
                    4,
                    ProblemKind::Broken(Violation::RefundNoReused {
                        refund_no: RefundNo::parse("R1").unwrap()
                    })
                ),
            ]
        );
    }

    #[test]
    fn a_stream_must_start_with_the_submission_of_its_own_order() {
        // Shows the first-event rules: Submitted first, for the order the
        // stream is named after, and only once.
        let ledger = Scenario::paid("10.00");
        let events = chained("payment-demo-OTHER", &ledger.events);
        assert_eq!(kinds(&verify(&events)), vec![(0, ProblemKind::WrongOrder)]);
        let events = chained(STREAM, &ledger.events[1..]);
        assert_eq!(
            kinds(&verify(&events)),
            vec![(
                0,
                ProblemKind::Broken(Violation::NotSubmittedFirst { event_type: "Paid" })
            )]
        );
        let mut twice = ledger.events.clone();
        twice.push(ledger.events[0].clone());
        assert_eq!(
            kinds(&verify(&chained(STREAM, &twice))),
            vec![(2, ProblemKind::Broken(Violation::SubmittedAgain))]
        );
    }

    #[test]
    fn an_undecodable_event_is_reported_once_and_the_chain_still_checked() {
        // Shows that a payload that no longer decodes is one problem, and
        // that later chain breaks in that stream are still found.
        let mut ledger = Scenario::paid("10.00");
        ledger.refund("R1", "4.00");
        let mut events = chained(STREAM, &ledger.events);
        events[1].data = b"{}".to_vec();
        events[1].hash = recompute(&events[1]);
        events[2].previous_hash = events[1].hash;
        events[2].data.push(b' ');
        let report = verify(&events);
        let found = kinds(&report);
        assert!(
            matches!(found[0], (1, ProblemKind::Undecodable { .. })),
            "{}",
            report.render()
        );
        assert!(
            matches!(found[1], (2, ProblemKind::HashMismatch { .. })),
            "{}",
            report.render()
        );
        assert_eq!(found.len(), 2, "{}", report.render());
    }

    #[test]
    fn other_streams_are_checked_for_their_chain_only() {
        // Shows that a stream that is not a payment's is walked for its
        // chain, without the payment rules.
        let ledger = Scenario::paid("10.00");
        let mut events = chained("reconciliation-wechat-2026-11-21", &ledger.events[1..]);
        assert!(verify(&events).is_clean());
        events[0].version = 5;
        assert_eq!(
            kinds(&verify(&events)),
            vec![
                (5, ProblemKind::VersionOutOfSequence { expected: 0 }),
                (
                    5,
                    ProblemKind::HashMismatch {
                        computed: recompute(&events[0]),
                        stored: events[0].hash
                    }
                ),
            ]
        );
    }

    #[tokio::test]
    async fn verify_store_walks_a_real_store_in_pages() {
        // Shows the walk over the port: more events than one page, several
        // streams, all clean when the store chained them.
        use paycode_adapters::store::{ExpectedVersion, MemoryStore, NewEvent};
        let store = MemoryStore::new();
        for order in 0..=(READ_PAGE_EVENTS / 2) {
            let ledger = Scenario::paid("1.00");
            let stream = format!("payment-demo-V{order}");
            let mut events = ledger.events.clone();
            if let Fact::Submitted(submitted) = &mut events[0].fact {
                submitted.order_no = OrderNo::parse(&format!("V{order}")).unwrap();
            }
            let new: Vec<NewEvent> = events
                .iter()
                .map(|event| {
                    let encoded = stored::encode(event);
                    NewEvent::encoded(Uuid::new_v4(), encoded)
                })
                .collect();
            store
                .append(&stream, ExpectedVersion::NoStream, new)
                .await
                .expect("append");
        }
        let report = verify_store(&store).await.expect("walk");
        assert!(report.is_clean(), "{}", report.render());
        assert_eq!(report.streams, (READ_PAGE_EVENTS / 2 + 1) as u64);
        assert_eq!(report.events, 2 * report.streams);
    }

    /// Every problem as a sortable line, for comparing walks that meet
    /// problems in different orders.
    fn sorted_lines(report: &VerifyReport) -> Vec<String> {
        let mut lines: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
        lines.sort();
        lines
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_ordered_walk_of_sqlite_finds_what_the_global_walk_finds() {
        // Shows that reading a SQLite ledger stream by stream, in ranges
        // checked side by side, reports exactly what the global walk does:
        // many interleaved sample orders (more streams than one range), a
        // long stream, and edits made in the file to two payments and an
        // event of the long stream.
        use paycode_adapters::store::{ExpectedVersion, NewEvent, SqliteStore};
        use paycode_projections::sample;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paycode.db");
        let store = SqliteStore::open(&path).unwrap();
        let orders = usize::try_from(2 * STREAMS_PER_RANGE + 100).unwrap();
        let log = sample::log("demo", orders, 11);
        for sampled in &log {
            let expected = ExpectedVersion::after(sampled.version.checked_sub(1));
            let event = NewEvent::encoded(Uuid::new_v4(), stored::encode(&sampled.event));
            store
                .append(&sampled.stream, expected, vec![event])
                .await
                .unwrap();
        }
        let long_stream = 6_000;
        for start in (0..long_stream).step_by(1_000) {
            let batch = (start..(start + 1_000).min(long_stream))
                .map(|n| NewEvent {
                    event_id: Uuid::new_v4(),
                    event_type: "Noted".to_owned(),
                    schema_version: 1,
                    data: format!("{{\"n\":{n}}}").into_bytes(),
                })
                .collect();
            let expected = ExpectedVersion::after((start as u64).checked_sub(1));
            store.append("other-long", expected, batch).await.unwrap();
        }
        store.close().await.unwrap();
        let conn = rusqlite::Connection::open(&path).unwrap();
        let edited = conn
            .execute(
                "UPDATE events SET data = CAST(replace(CAST(data AS TEXT), '\"Sample\"', '\"Simple\"') AS BLOB) \
                 WHERE position IN (SELECT position FROM events WHERE event_type = 'Submitted' LIMIT 2)",
                [],
            )
            .unwrap();
        assert_eq!(edited, 2);
        let edited = conn
            .execute(
                "UPDATE events SET data = CAST('{\"n\":5001}' AS BLOB) WHERE data = CAST('{\"n\":5000}' AS BLOB)",
                [],
            )
            .unwrap();
        assert_eq!(edited, 1);
        drop(conn);

        let store = SqliteStore::open_read_only(&path).unwrap();
        let global = verify_store(&store).await.unwrap();
        let by_stream = verify_sqlite(&store, &ProgressBar::hidden()).unwrap();
        assert_eq!(global.events, (log.len() + long_stream) as u64);
        assert_eq!(global.streams, 2 * STREAMS_PER_RANGE + 101);
        assert_eq!(
            (by_stream.streams, by_stream.events),
            (global.streams, global.events)
        );
        assert_eq!(global.problems.len(), 3, "{}", global.render());
        assert_eq!(sorted_lines(&by_stream), sorted_lines(&global));
        assert!(
            by_stream
                .problems
                .iter()
                .any(|problem| problem.stream == "other-long" && problem.version == 5_000),
            "{}",
            by_stream.render()
        );
        // Stream order: each stream's problems together, by version.
        let order: Vec<(&str, u64)> = by_stream
            .problems
            .iter()
            .map(|problem| (problem.stream.as_str(), problem.version))
            .collect();
        let mut grouped = order.clone();
        grouped.sort_by_key(|(stream, _)| order.iter().position(|(s, _)| s == stream));
        assert_eq!(order, grouped);
    }

    #[test]
    fn the_json_report_names_each_problem_by_stream_version_and_code() {
        // Shows the machine-readable form: the counts, and per problem its
        // place, a stable code (a violation's own code for a rule) and the text.
        let ledger = Scenario::over_refunded();
        let mut events = ledger.recorded();
        events[0].data.push(b' ');
        let report = verify(&events);
        let json: serde_json::Value = serde_json::from_str(&report.render_json()).unwrap();
        assert_eq!(json["streams"], 1);
        assert_eq!(json["events"], 4);
        let problems = json["problems"].as_array().unwrap();
        let codes: Vec<(&str, u64, &str)> = problems
            .iter()
            .map(|problem| {
                (
                    problem["stream"].as_str().unwrap(),
                    problem["version"].as_u64().unwrap(),
                    problem["kind"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            codes,
            [
                (STREAM, 0, "hash_mismatch"),
                (STREAM, 3, "refunds_exceed_payment"),
            ]
        );
        assert_eq!(
            problems[1]["what"],
            "refunds of 11.00 exceed the payment of 10.00"
        );
        let clean = VerifyReport::default().render_json();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&clean).unwrap(),
            serde_json::json!({"streams": 0, "events": 0, "problems": []})
        );
    }

    /// `replace_first` for byte strings of equal length, for the tests.
    trait ReplaceFirst {
        fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl ReplaceFirst for Vec<u8> {
        fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
            assert_eq!(from.len(), to.len());
            let mut out = self.clone();
            let at = self
                .windows(from.len())
                .position(|window| window == from)
                .expect("the bytes to replace are there");
            out[at..at + to.len()].copy_from_slice(to);
            out
        }
    }
}
