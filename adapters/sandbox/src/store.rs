//! Where the sandbox keeps its truth: one SQLite database (a file at the
//! configured `state_path`, so that a restarted sandbox still knows every
//! order it was told about; in memory when none is configured).
//!
//! Two tables, `orders` and `refunds`, keyed by channel, merchant (`mch_id`
//! or `app_id`) and order number; times are UTC milliseconds. The payment
//! code is stored only masked, with its last two digits (which choose the
//! behaviour): never in full.

use std::path::Path;

use chrono::{DateTime, Utc};
use paycode_domain::Channel;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::codes::Behaviour;
use super::truth::{SandboxOrder, SandboxOrderState, SandboxRefund};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    channel TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    trade_no TEXT NOT NULL,
    amount_fen INTEGER NOT NULL,
    subject TEXT NOT NULL,
    auth_code_masked TEXT NOT NULL,
    code_suffix TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    paid_at_ms INTEGER,
    ended_at_ms INTEGER,
    closed_by_channel INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, merchant_id, out_trade_no)
);
CREATE INDEX IF NOT EXISTS orders_by_trade_no ON orders (channel, merchant_id, trade_no);
CREATE TABLE IF NOT EXISTS refunds (
    channel TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    out_trade_no TEXT NOT NULL,
    refund_no TEXT NOT NULL,
    refund_id TEXT NOT NULL,
    amount_fen INTEGER NOT NULL,
    requested_at_ms INTEGER NOT NULL,
    succeeds_at_ms INTEGER NOT NULL,
    PRIMARY KEY (channel, merchant_id, out_trade_no, refund_no)
);
CREATE INDEX IF NOT EXISTS refunds_by_number ON refunds (channel, merchant_id, refund_no);
CREATE INDEX IF NOT EXISTS refunds_by_id ON refunds (channel, merchant_id, refund_id);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// The counter of pay requests for one order number.
fn pay_request_counter(channel: Channel, merchant_id: &str, out_trade_no: &str) -> String {
    format!(
        "pay_requests/{}/{merchant_id}/{out_trade_no}",
        channel.as_str()
    )
}

/// The sandbox's database. Not `Sync`: the sandbox holds it in a mutex and
/// never across an `.await`.
#[derive(Debug)]
pub struct TruthStore {
    conn: Connection,
}

/// How a refund is named in a request.
#[derive(Debug, Clone, Copy)]
pub enum RefundKey<'a> {
    /// The merchant's refund number.
    Number(&'a str),
    /// The channel's refund id.
    Id(&'a str),
}

impl TruthStore {
    /// Opens (creating if needed) the database at `path`, or an in-memory one.
    pub fn open(path: Option<&Path>) -> rusqlite::Result<TruthStore> {
        TruthStore::open_with(path, true)
    }

    /// As [`TruthStore::open`]; `durable = false` skips the fsyncs (for
    /// benchmarks that keep the truth in a file only to keep it out of memory).
    pub fn open_with(path: Option<&Path>, durable: bool) -> rusqlite::Result<TruthStore> {
        let conn = match path {
            Some(path) => {
                let conn = Connection::open(path)?;
                // WAL with full sync: a crash test may kill the process right
                // after an answer, and the answered truth must be on disk.
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
                conn
            }
            None => Connection::open_in_memory()?,
        };
        conn.execute_batch(SCHEMA)?;
        Ok(TruthStore { conn })
    }

    /// The next number of a sequence that survives restarts.
    pub fn next_number(&mut self, name: &str) -> rusqlite::Result<u64> {
        let value: i64 = self
            .conn
            .prepare_cached(
                "INSERT INTO counters (name, value) VALUES (?1, 1)
                 ON CONFLICT (name) DO UPDATE SET value = value + 1
                 RETURNING value",
            )?
            .query_row(params![name], |row| row.get(0))?;
        Ok(u64::try_from(value).unwrap_or_default())
    }

    /// Counts one pay request for an order number, whatever its answer: a
    /// crash test proves with it that no order was sent to pay twice.
    pub fn count_pay_request(
        &mut self,
        channel: Channel,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> rusqlite::Result<u64> {
        self.next_number(&pay_request_counter(channel, merchant_id, out_trade_no))
    }

    /// How many pay requests named this order number (0 when none did).
    pub fn pay_requests(
        &self,
        channel: Channel,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> rusqlite::Result<u64> {
        let value: Option<i64> = self
            .conn
            .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
            .query_row(
                params![pay_request_counter(channel, merchant_id, out_trade_no)],
                |row| row.get(0),
            )
            .optional()?;
        Ok(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }

    /// The order under `out_trade_no`.
    pub fn load(
        &self,
        channel: Channel,
        merchant_id: &str,
        out_trade_no: &str,
    ) -> rusqlite::Result<Option<SandboxOrder>> {
        self.load_where("out_trade_no", channel, merchant_id, out_trade_no)
    }

    /// The order under the channel's number (`transaction_id`, `trade_no`).
    pub fn load_by_trade_no(
        &self,
        channel: Channel,
        merchant_id: &str,
        trade_no: &str,
    ) -> rusqlite::Result<Option<SandboxOrder>> {
        self.load_where("trade_no", channel, merchant_id, trade_no)
    }

    /// The order number of the refund named by `key`.
    pub fn order_of_refund(
        &self,
        channel: Channel,
        merchant_id: &str,
        key: RefundKey<'_>,
    ) -> rusqlite::Result<Option<String>> {
        let (column, value) = match key {
            RefundKey::Number(number) => ("refund_no", number),
            RefundKey::Id(id) => ("refund_id", id),
        };
        self.conn
            .prepare_cached(&format!(
                "SELECT out_trade_no FROM refunds
                 WHERE channel = ?1 AND merchant_id = ?2 AND {column} = ?3
                 ORDER BY requested_at_ms LIMIT 1"
            ))?
            .query_row(params![channel.as_str(), merchant_id, value], |row| {
                row.get(0)
            })
            .optional()
    }

    /// Every order of a merchant, oldest first.
    pub fn orders_of(
        &self,
        channel: Channel,
        merchant_id: &str,
    ) -> rusqlite::Result<Vec<SandboxOrder>> {
        let mut statement = self.conn.prepare(
            "SELECT * FROM orders WHERE channel = ?1 AND merchant_id = ?2
             ORDER BY created_at_ms, out_trade_no",
        )?;
        let rows = statement.query_map(params![channel.as_str(), merchant_id], order_of_row)?;
        let mut orders = Vec::new();
        for row in rows {
            let mut order = row?;
            order.refunds = self.refunds_of(&order)?;
            orders.push(order);
        }
        Ok(orders)
    }

    /// Writes the order and any refund not yet stored, in one transaction.
    /// Refunds are never changed once taken: their lifecycle is a function
    /// of their times.
    pub fn save(&mut self, order: &SandboxOrder) -> rusqlite::Result<()> {
        let (paid_at, ended_at, by_channel) = match order.state {
            SandboxOrderState::WaitingForPassword | SandboxOrderState::Failed => {
                (None, None, false)
            }
            SandboxOrderState::Paid { paid_at } => (Some(paid_at), None, false),
            SandboxOrderState::Closed {
                closed_at,
                by_channel,
            } => (None, Some(closed_at), by_channel),
            SandboxOrderState::Reversed {
                paid_at,
                reversed_at,
            } => (Some(paid_at), Some(reversed_at), false),
        };
        let channel = order.channel.as_str();
        let transaction = self.conn.transaction()?;
        transaction
            .prepare_cached(
                "INSERT OR REPLACE INTO orders (channel, merchant_id, out_trade_no, trade_no,
                amount_fen, subject, auth_code_masked, code_suffix, created_at_ms, state,
                paid_at_ms, ended_at_ms, closed_by_channel)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                channel,
                order.merchant_id,
                order.out_trade_no,
                order.trade_no,
                fen_to_sql(order.amount_fen),
                order.subject,
                order.auth_code_masked,
                order.code_suffix,
                order.created_at.timestamp_millis(),
                order.state.name(),
                paid_at.map(|t| t.timestamp_millis()),
                ended_at.map(|t| t.timestamp_millis()),
                by_channel,
            ])?;
        for refund in &order.refunds {
            transaction
                .prepare_cached(
                    "INSERT OR IGNORE INTO refunds (channel, merchant_id, out_trade_no, refund_no,
                    refund_id, amount_fen, requested_at_ms, succeeds_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    channel,
                    order.merchant_id,
                    order.out_trade_no,
                    refund.refund_no,
                    refund.refund_id,
                    fen_to_sql(refund.amount_fen),
                    refund.requested_at.timestamp_millis(),
                    refund.succeeds_at.timestamp_millis(),
                ])?;
        }
        transaction.commit()
    }

    fn load_where(
        &self,
        column: &str,
        channel: Channel,
        merchant_id: &str,
        value: &str,
    ) -> rusqlite::Result<Option<SandboxOrder>> {
        let order = self
            .conn
            .prepare_cached(&format!(
                "SELECT * FROM orders WHERE channel = ?1 AND merchant_id = ?2 AND {column} = ?3
                 LIMIT 1"
            ))?
            .query_row(params![channel.as_str(), merchant_id, value], order_of_row)
            .optional()?;
        match order {
            Some(mut order) => {
                order.refunds = self.refunds_of(&order)?;
                Ok(Some(order))
            }
            None => Ok(None),
        }
    }

    fn refunds_of(&self, order: &SandboxOrder) -> rusqlite::Result<Vec<SandboxRefund>> {
        let mut statement = self.conn.prepare_cached(
            "SELECT refund_no, refund_id, amount_fen, requested_at_ms, succeeds_at_ms
             FROM refunds WHERE channel = ?1 AND merchant_id = ?2 AND out_trade_no = ?3
             ORDER BY requested_at_ms, refund_no",
        )?;
        let rows = statement.query_map(
            params![
                order.channel.as_str(),
                order.merchant_id,
                order.out_trade_no
            ],
            |row| {
                Ok(SandboxRefund {
                    refund_no: row.get(0)?,
                    refund_id: row.get(1)?,
                    amount_fen: fen_from_sql(row.get(2)?),
                    requested_at: time(row.get(3)?),
                    succeeds_at: time(row.get(4)?),
                })
            },
        )?;
        rows.collect()
    }
}

fn order_of_row(row: &Row<'_>) -> rusqlite::Result<SandboxOrder> {
    let channel: String = row.get("channel")?;
    let channel = Channel::parse(&channel).unwrap_or(Channel::Wechat);
    let code_suffix: String = row.get("code_suffix")?;
    let state: String = row.get("state")?;
    let paid_at: Option<i64> = row.get("paid_at_ms")?;
    let ended_at: Option<i64> = row.get("ended_at_ms")?;
    let by_channel: bool = row.get("closed_by_channel")?;
    let created_at = time(row.get("created_at_ms")?);
    let state = match (state.as_str(), paid_at, ended_at) {
        ("paid", Some(paid_at), _) => SandboxOrderState::Paid {
            paid_at: time(paid_at),
        },
        ("failed", _, _) => SandboxOrderState::Failed,
        ("closed", _, Some(closed_at)) => SandboxOrderState::Closed {
            closed_at: time(closed_at),
            by_channel,
        },
        ("reversed", Some(paid_at), Some(reversed_at)) => SandboxOrderState::Reversed {
            paid_at: time(paid_at),
            reversed_at: time(reversed_at),
        },
        _ => SandboxOrderState::WaitingForPassword,
    };
    Ok(SandboxOrder {
        channel,
        merchant_id: row.get("merchant_id")?,
        out_trade_no: row.get("out_trade_no")?,
        trade_no: row.get("trade_no")?,
        amount_fen: fen_from_sql(row.get("amount_fen")?),
        subject: row.get("subject")?,
        auth_code_masked: row.get("auth_code_masked")?,
        behaviour: Behaviour::from_last_two_digits(&code_suffix),
        code_suffix,
        created_at,
        state,
        refunds: Vec::new(),
    })
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Amounts are at most 100,000,000.00 yuan, far inside both types.
fn fen_to_sql(fen: u64) -> i64 {
    i64::try_from(fen).unwrap_or(i64::MAX)
}

fn fen_from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::truth::tests::{order, start};

    #[test]
    fn pay_requests_are_counted_per_order_number_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.db");
        {
            let mut store = TruthStore::open(Some(&path)).unwrap();
            assert_eq!(store.pay_requests(Channel::Wechat, "m1", "A").unwrap(), 0);
            store.count_pay_request(Channel::Wechat, "m1", "A").unwrap();
            store.count_pay_request(Channel::Wechat, "m1", "A").unwrap();
            store.count_pay_request(Channel::Alipay, "m1", "A").unwrap();
        }
        let store = TruthStore::open(Some(&path)).unwrap();
        assert_eq!(store.pay_requests(Channel::Wechat, "m1", "A").unwrap(), 2);
        assert_eq!(store.pay_requests(Channel::Alipay, "m1", "A").unwrap(), 1);
        assert_eq!(store.pay_requests(Channel::Wechat, "m2", "A").unwrap(), 0);
    }

    #[test]
    fn every_state_and_refund_reads_back_as_written_after_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.db");
        let mut orders = Vec::new();
        for (n, digits) in ["00", "02", "03", "06", "09"].iter().enumerate() {
            let mut order = order(Channel::Wechat, digits);
            order.trade_no = format!("T{n}");
            orders.push(order);
        }
        orders[1].settle(start() + Duration::seconds(60));
        orders[2].state = SandboxOrderState::Failed;
        orders[3].revoke(start() + Duration::seconds(30));
        orders[4].request_refund("R1", 300, || "RID1".to_owned(), start());
        {
            let mut store = TruthStore::open(Some(&path)).unwrap();
            for order in &orders {
                store.save(order).unwrap();
            }
            assert_eq!(store.next_number("trade").unwrap(), 1);
        }
        let mut store = TruthStore::open(Some(&path)).unwrap();
        for order in &orders {
            let read = store
                .load(Channel::Wechat, "m1", &order.out_trade_no)
                .unwrap();
            assert_eq!(read.as_ref(), Some(order));
        }
        assert_eq!(
            store
                .load_by_trade_no(Channel::Wechat, "m1", "T4")
                .unwrap()
                .map(|o| o.out_trade_no),
            Some("A-09".to_owned())
        );
        assert_eq!(
            store
                .order_of_refund(Channel::Wechat, "m1", RefundKey::Number("R1"))
                .unwrap(),
            Some("A-09".to_owned())
        );
        assert_eq!(
            store
                .order_of_refund(Channel::Wechat, "m1", RefundKey::Id("RID1"))
                .unwrap(),
            Some("A-09".to_owned())
        );
        assert_eq!(
            store.load(Channel::Alipay, "m1", "A-00").unwrap(),
            None,
            "channels are apart"
        );
        assert_eq!(store.orders_of(Channel::Wechat, "m1").unwrap().len(), 5);
        assert_eq!(
            store.next_number("trade").unwrap(),
            2,
            "numbers survive restarts"
        );
    }
}
