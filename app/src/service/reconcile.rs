//! Reconciliation as the service runs it: a statement file (downloaded from
//! the channel or handed in) is checked whole (against its own totals,
//! keeping nothing) while it is read again with each row handed to the pure
//! matcher as it is parsed (no row is held), against the merchant's orders,
//! on two blocking threads; the report is then imported as events:
//!
//! 1. each revoke the statement settles (one that did not say whether money
//!    moved) as `RevokeSettled` on its order's stream, then each matched line
//!    as `StatementLineMatched` (idempotent: the decider appends nothing for
//!    a line already recorded);
//! 2. then the report as `ReconciliationRecorded` on the stream of the
//!    channel, merchant and day, unless the same file (by SHA-256) was
//!    imported before.
//!
//! A crash between the two steps is harmless: importing again re-checks
//! the matches (appending nothing) and records the report. A file that
//! does not parse is rejected whole and nothing is written.
//!
//! `preview` is the same reconciliation against a ledger it only reads
//! (`paycode reconcile --file --ledger`, an auditor's copy): the report,
//! nothing recorded.

use std::collections::BTreeMap;
use std::convert::Infallible;

use chrono::NaiveDate;
use paycode_adapters::channel::{ChannelClient, StatementFile};
use paycode_adapters::statement::{StatementError, check_and_match};
use paycode_adapters::store::{EventStore, StoreError};
use paycode_domain::ids::{parse_payment_stream, reconciliation_stream};
use paycode_domain::payment::{
    Command, CommandKind, Event, PaymentDecider, PaymentState, Rejection, evolve,
};
use paycode_domain::reconciliation::{
    self, Ledger as ReconLedger, LedgerOrder, ReconcilePolicy, Reconciler, ReconciliationDecider,
    ReconciliationRecorded, RecordReport,
};
use paycode_domain::{Channel, CommandId, MerchantId};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::service::ledger::{Ledger, LedgerError, PaymentLedgerError};

/// Why a reconciliation could not be carried out. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The statement file is not a whole, consistent statement of the channel.
    #[error("the statement was rejected whole, nothing imported: {0}")]
    Statement(#[from] StatementError),
    /// The channel did not hand out the statement (not yet generated, refused, unreachable).
    #[error("{0}")]
    Download(#[from] paycode_adapters::channel::StatementError),
    /// No client of that channel is configured for the merchant.
    #[error("no {channel} channel is configured for merchant {merchant}")]
    NoChannel {
        channel: Channel,
        merchant: MerchantId,
    },
    #[error(transparent)]
    Ledger(#[from] PaymentLedgerError),
}

impl From<StoreError> for ReconcileError {
    fn from(error: StoreError) -> Self {
        ReconcileError::Ledger(error.into())
    }
}

impl From<LedgerError<Infallible>> for ReconcileError {
    fn from(error: LedgerError<Infallible>) -> Self {
        ReconcileError::Ledger(error.map_rejected(|never| match never {}))
    }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The report, as recorded (or as recorded before, for a re-import).
    pub report: ReconciliationRecorded,
    /// `StatementLineMatched` events appended to order streams by this import.
    pub lines_recorded: usize,
    /// Whether the report was appended (false: the same file was imported
    /// before, or this was a `preview`).
    pub report_recorded: bool,
    /// A `preview`: the ledger was only read, nothing was recorded.
    pub preview: bool,
}

/// Lowercase hex SHA-256 of the statement file's bytes.
pub fn statement_sha256(file: &StatementFile) -> String {
    let bytes: &[u8] = match file {
        StatementFile::WechatText(text) => text.as_bytes(),
        StatementFile::AlipayZip(bytes) => bytes,
        StatementFile::NoStatement { code } => code.as_bytes(),
    };
    hex::encode(Sha256::digest(bytes))
}

/// Downloads the day's statement from the channel, then imports it.
pub async fn download_and_import(
    ledger: &Ledger<PaymentDecider>,
    client: &dyn ChannelClient,
    merchant: &MerchantId,
    date: NaiveDate,
    key_name: Option<&str>,
) -> Result<Imported, ReconcileError> {
    let file = client.download_statement(date).await?;
    import(ledger, merchant, client.channel(), date, file, key_name).await
}

/// Runs CPU-bound work (parsing, matching) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Parses `file` whole, reconciles it against the merchant's orders and
/// records the outcome (see the module's doc). Every event it writes
/// records `key_name`, the API key whose request it is (`None`: the
/// command line).
pub async fn import(
    ledger: &Ledger<PaymentDecider>,
    merchant: &MerchantId,
    channel: Channel,
    date: NaiveDate,
    file: StatementFile,
    key_name: Option<&str>,
) -> Result<Imported, ReconcileError> {
    let caused = |command: Command| Command {
        key_name: key_name.map(str::to_owned),
        ..command
    };
    let (report, sha256) =
        reconcile_file(ledger.store().as_ref(), merchant, channel, date, file).await?;

    let mut lines_recorded = 0;
    for settled in &report.settled {
        let command = caused(Command::new(
            derived_command_id(&sha256, format!("settle/{}", settled.order_no)),
            CommandKind::SettleRevoke {
                money_moved: settled.money_moved,
                statement_date: date,
            },
        ));
        match ledger
            .execute_on_order(merchant, &settled.order_no, &command)
            .await
        {
            // Settled before (a re-import, or a crash after this step): nothing to do.
            Ok(_) | Err(PaymentLedgerError::Rejected(Rejection::NothingToSettle)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    for matched in report.matched.iter().filter(|m| !m.already_recorded) {
        let command = caused(Command::new(
            derived_command_id(&sha256, match_key(&matched)),
            CommandKind::MatchStatementLine(matched.line.clone()),
        ));
        let executed = ledger
            .execute_on_order(merchant, &matched.order_no, &command)
            .await?;
        lines_recorded += executed.appended.len();
    }

    let days = ledger.with_decider(ReconciliationDecider);
    let stream = reconciliation_stream(channel, merchant, date);
    let record = RecordReport {
        id: derived_command_id(&sha256, format!("report/{stream}")),
        key_name: key_name.map(str::to_owned),
        report: ReconciliationRecorded::from_report(&report, &sha256),
    };
    let executed = days.execute(&stream, &record).await?;
    let report_recorded = !executed.appended.is_empty();
    Ok(Imported {
        report: ReconciliationRecorded::from_report(&report, &sha256),
        lines_recorded,
        report_recorded,
        preview: false,
    })
}

/// Parses `file` whole and reconciles it against the merchant's orders in
/// `store`, recording nothing: the report `import` would record.
pub async fn preview(
    store: &dyn EventStore,
    merchant: &MerchantId,
    channel: Channel,
    date: NaiveDate,
    file: StatementFile,
) -> Result<Imported, ReconcileError> {
    let (report, sha256) = reconcile_file(store, merchant, channel, date, file).await?;
    Ok(Imported {
        report: ReconciliationRecorded::from_report(&report, &sha256),
        lines_recorded: 0,
        report_recorded: false,
        preview: true,
    })
}

/// The matcher's report of `file` against the merchant's orders, and the
/// file's SHA-256. The merchant's orders are read first; then, off the
/// async workers, the file is checked whole (a pass that keeps nothing)
/// and matched row by row as it is parsed, both at once on two threads
/// (`check_and_match`). A defective file costs the ledger read and at most
/// a bounded part of the matching, and is rejected with the check's error.
async fn reconcile_file(
    store: &dyn EventStore,
    merchant: &MerchantId,
    channel: Channel,
    date: NaiveDate,
    file: StatementFile,
) -> Result<(reconciliation::Report, String), ReconcileError> {
    let orders = merchant_orders(store, merchant).await?;
    let (report, sha256) = blocking(move || {
        let sha256 = statement_sha256(&file);
        let policy = ReconcilePolicy::default();
        let reconciler = Reconciler::new(channel, date, &orders, &policy);
        check_and_match(&file, reconciler).map(|matched| (matched.finish(), sha256))
    })
    .await?;
    Ok((report, sha256))
}

/// The latest recorded report of a channel, merchant and day.
pub async fn latest(
    ledger: &Ledger<PaymentDecider>,
    merchant: &MerchantId,
    channel: Channel,
    date: NaiveDate,
) -> Result<Option<ReconciliationRecorded>, ReconcileError> {
    let stream = reconciliation_stream(channel, merchant, date);
    let days = ledger.with_decider(ReconciliationDecider);
    Ok(days.history_of(&stream).await?.state.latest)
}

/// Every order of the merchant, folded from the log in global order.
async fn merchant_orders(
    store: &dyn EventStore,
    merchant: &MerchantId,
) -> Result<ReconLedger, ReconcileError> {
    // Ordered by stream, so a report and its settlements list alike run after run.
    let mut states: BTreeMap<String, PaymentState> = BTreeMap::new();
    let mut position = 1;
    loop {
        let batch = store.read_all(position, 10_000).await?;
        let Some(last) = batch.last() else { break };
        position = last.position + 1;
        for recorded in batch {
            match parse_payment_stream(&recorded.stream) {
                Some((owner, _)) if &owner == merchant => {}
                _ => continue,
            }
            let event: Event =
                recorded
                    .decode()
                    .map_err(|source| PaymentLedgerError::Undecodable {
                        stream: recorded.stream.clone(),
                        source,
                    })?;
            let state = states
                .entry(recorded.stream.clone())
                .or_insert(PaymentState::Initial);
            *state = evolve(std::mem::replace(state, PaymentState::Initial), &event).map_err(
                |refused| PaymentLedgerError::Invariant {
                    stream: recorded.stream,
                    version: Some(recorded.version),
                    violation: refused.violation,
                },
            )?;
        }
    }
    Ok(states
        .values()
        .filter_map(LedgerOrder::from_state)
        .collect())
}

/// A command id that is the same every time this statement is imported, so
/// a retried append is recognised by the store as the same append.
fn derived_command_id(sha256: &str, part: String) -> CommandId {
    let digest = Sha256::digest(format!("{sha256}/{part}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    CommandId(Uuid::from_bytes(bytes))
}

/// What tells one matched line from another within a statement.
fn match_key(matched: &reconciliation::Match) -> String {
    format!(
        "{}/{:?}/{}",
        matched.order_no,
        matched.line.kind,
        matched
            .line
            .refund_no
            .as_ref()
            .map(std::string::ToString::to_string)
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use chrono::{TimeZone, Utc};
    use paycode_adapters::clock::ManualClock;
    use paycode_adapters::store::MemoryStore;

    use super::*;

    /// A WeChat ALL bill of `records` records whose stated count is one too
    /// many: parsed whole, then rejected.
    fn bill_with_a_wrong_count(records: usize) -> String {
        paycode_adapters::testing::bills::wechat_bill_of_payments(records, records + 1, "Coffee")
    }

    /// On a runtime of one thread, a task keeps running while a statement
    /// is parsed: the parse is on a blocking thread, not on the thread that
    /// answers requests. (Parsed inline, the ticking task would not run once
    /// before the import returned.)
    #[test]
    fn a_statement_is_parsed_off_the_async_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let ledger = Ledger::new(
                Arc::new(MemoryStore::new()),
                PaymentDecider::default(),
                Arc::new(ManualClock::starting_at(
                    Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap(),
                )),
            );
            let ticks = Arc::new(AtomicU64::new(0));
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        ticks.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }
            });
            let imported = import(
                &ledger,
                &MerchantId::parse("demo").unwrap(),
                Channel::Wechat,
                NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
                StatementFile::WechatText(bill_with_a_wrong_count(20_000)),
                None,
            )
            .await;
            assert!(
                matches!(imported, Err(ReconcileError::Statement(_))),
                "{imported:?}"
            );
            ticker.abort();
            let ticks = ticks.load(Ordering::Relaxed);
            assert!(
                ticks > 1,
                "the other task ran {ticks} times during the parse"
            );
        });
    }
}
