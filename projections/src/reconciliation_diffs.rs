//! The reconciliation-diffs read model: the findings of each statement day's
//! latest report (`reconciliation-{merchant}-{channel}-{date}` streams), one
//! row per finding. A corrected statement of the same day records a new
//! report; its findings then replace the earlier ones, as the day's report
//! does in `GET /v1/reconciliations/{channel}/{date}`.

use chrono::{DateTime, NaiveDate, Utc};
use paycode_domain::reconciliation::{
    Finding, ReconciliationEvent, ReconciliationFact, ReconciliationRecorded,
};
use paycode_domain::{Channel, MerchantId};
use serde::Serialize;

use crate::fold::PositionedEvent;
use crate::projection::{Projection, Source};

/// One decoded reconciliation event as the store recorded it.
pub type PositionedReconciliation<'a> = PositionedEvent<'a, ReconciliationEvent>;

/// Which statement day a fold is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DayKey {
    pub merchant_id: MerchantId,
    pub channel: Channel,
    pub date: NaiveDate,
}

/// One statement day folded from its reconciliation stream: the latest report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayFold {
    pub key: DayKey,
    /// The latest report and when it was recorded (`None` before any).
    pub latest: Option<(DateTime<Utc>, ReconciliationRecorded)>,
    /// The version of the stream's last event.
    pub version: u64,
}

impl DayFold {
    pub fn new(key: DayKey) -> Self {
        DayFold {
            key,
            latest: None,
            version: 0,
        }
    }

    /// Moves the fold by the event at `version` of the day's stream.
    pub fn apply(&mut self, version: u64, event: &ReconciliationEvent) {
        match &event.fact {
            ReconciliationFact::Recorded(recorded) => {
                self.latest = Some((event.at, recorded.clone()));
            }
        }
        self.version = version;
    }
}

impl Source for DayFold {
    type Id = DayKey;

    fn id(&self) -> &DayKey {
        &self.key
    }
}

/// Which finding a row is: its day and its index in the report's sorted findings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DiffKey {
    pub merchant_id: MerchantId,
    pub channel: Channel,
    pub date: NaiveDate,
    pub finding: u32,
}

/// One finding of a day's latest report, with the report it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffRow {
    #[serde(flatten)]
    pub finding: Finding,
    /// SHA-256 of the statement file the report was made from.
    pub statement_sha256: String,
    /// When the report was recorded.
    pub reconciled_at: DateTime<Utc>,
}

/// One row per finding of each statement day's latest report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconciliationDiffs;

impl Projection for ReconciliationDiffs {
    const NAME: &'static str = "reconciliation_diffs";
    type Key = DiffKey;
    type Row = DiffRow;
    type Source = DayFold;

    fn rows_of(day: &DayFold, rows: &mut Vec<(DiffKey, DiffRow)>) {
        let Some((at, report)) = &day.latest else {
            return;
        };
        for (index, finding) in report.findings.iter().enumerate() {
            let key = DiffKey {
                merchant_id: day.key.merchant_id.clone(),
                channel: day.key.channel,
                date: day.key.date,
                finding: u32::try_from(index).unwrap_or(u32::MAX),
            };
            let row = DiffRow {
                finding: finding.clone(),
                statement_sha256: report.statement_sha256.clone(),
                reconciled_at: *at,
            };
            rows.push((key, row));
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use paycode_domain::CommandId;
    use paycode_domain::reconciliation::FindingKind;
    use uuid::Uuid;

    use super::*;
    use crate::projection::Table;

    fn finding(kind: FindingKind, order_no: &str) -> Finding {
        Finding {
            kind,
            order_no: Some(order_no.into()),
            refund_no: None,
            ledger_amount: Some("1.00".parse().unwrap()),
            statement_amount: None,
            detail: "detail".into(),
        }
    }

    fn report(sha: &str, findings: Vec<Finding>) -> ReconciliationEvent {
        ReconciliationEvent {
            at: Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap(),
            command_id: CommandId(Uuid::from_u128(1)),
            key_name: None,
            fact: ReconciliationFact::Recorded(ReconciliationRecorded {
                channel: Channel::Wechat,
                date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
                statement_sha256: sha.into(),
                statement_lines: 10,
                matched: 8,
                revokes_settled: 0,
                findings,
            }),
        }
    }

    fn day() -> DayFold {
        DayFold::new(DayKey {
            merchant_id: MerchantId::parse("demo").unwrap(),
            channel: Channel::Wechat,
            date: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
        })
    }

    #[test]
    fn a_report_gives_one_row_per_finding_and_a_clean_day_none() {
        let mut fold = day();
        let mut table = Table::<ReconciliationDiffs>::default();
        table.refresh(&fold, None);
        assert!(table.is_empty());

        fold.apply(
            0,
            &report(
                "a",
                vec![
                    finding(FindingKind::MissingInLedger, "A1"),
                    finding(FindingKind::AmountMismatch, "A2"),
                ],
            ),
        );
        table.refresh(&fold, None);
        let rows: Vec<_> = table.rows().values().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].finding.order_no.as_deref(), Some("A1"));
        assert_eq!(rows[1].finding.kind, FindingKind::AmountMismatch);
        assert_eq!(rows[1].statement_sha256, "a");
        let json = serde_json::to_value(rows[1]).unwrap();
        assert_eq!(json["kind"], "amount_mismatch");
        assert_eq!(json["ledger_amount"], "1.00");
    }

    #[test]
    fn a_corrected_statement_replaces_the_days_findings_and_reports_the_rows_gone() {
        let mut fold = day();
        let mut table = Table::<ReconciliationDiffs>::default();
        fold.apply(
            0,
            &report(
                "a",
                vec![
                    finding(FindingKind::MissingInLedger, "A1"),
                    finding(FindingKind::DuplicateLine, "A3"),
                ],
            ),
        );
        table.refresh(&fold, None);
        fold.apply(
            1,
            &report("b", vec![finding(FindingKind::StatusMismatch, "A9")]),
        );
        let mut changes = Vec::new();
        table.refresh(&fold, Some(&mut changes));
        assert_eq!(table.len(), 1);
        let row = table.rows().values().next().unwrap();
        assert_eq!(row.finding.order_no.as_deref(), Some("A9"));
        assert_eq!(row.statement_sha256, "b");
        // Finding 1 is gone, finding 0 changed.
        let gone: Vec<_> = changes
            .iter()
            .filter(|change| change.row.is_none())
            .map(|change| change.key.finding)
            .collect();
        assert_eq!(gone, [1]);
        assert_eq!(changes.len(), 2);
    }
}
