//! `paycode bench reconcile`: a day's WeChat bill of `--lines` lines set
//! against a ledger of about as many paid orders, with about `--planted`
//! differences planted, which must come out as findings, exactly.
//!
//! Setup (timed on its own line): one merchant's orders of one China day,
//! mostly plain payments, some with a refund, a few revoked with the money
//! returned. The ledger side is built the way the service builds it: each
//! order's payment events folded through `evolve`, then
//! `LedgerOrder::from_state`, into a `Ledger`. The bill is the sandbox's
//! WeChat text bill (current 27-column `ALL` layout, summary included) of the
//! same orders, as the channel would produce it, written to a file (in
//! `--dir`, or a temporary directory). The differences are planted in the inputs,
//! not in the text: an order or a refund left out of the channel's orders
//! (`missing_in_statement`), orders only the channel has
//! (`missing_in_ledger`), a payment of another amount (`amount_mismatch`),
//! an order listed twice (`duplicate_line`), and orders the ledger closed
//! that the channel shows paid, or paid and reversed (`status_mismatch`).
//!
//! Timed: the bill checked whole from its file by `read_wechat_bill` into a
//! sink that keeps nothing (`parse_secs`: parsing alone, the floor); then,
//! as the service does it, checked whole again while it is read with each
//! row handed to the matcher (`Reconciler`) as it is parsed, both at once
//! on two threads (`check_and_match`; `match_secs`, which is `secs`). The
//! peak resident
//! memory is the process's high-water mark (`VmHWM`), reset after the setup
//! where the kernel allows it, so it covers the ledger held and the timed
//! work (the bill is on disk, read a line at a time). The findings must be
//! the planted set, or the bench fails.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use paycode_adapters::statement::{
    RowCount, StatementError, StatementSource, check_and_match, read_wechat_bill,
};
use paycode_domain::payment::{
    Event, Fact, Paid, PaidSource, PaymentDecider, RefundRequested, Refunded, RevokeReason,
    RevokeRequested, RevokeResult, Revoked, Submitted, UserPaying,
};
use paycode_domain::reconciliation::{
    FindingKind, Ledger, LedgerOrder, ReconcilePolicy, Reconciler, Report, StatementSink,
};
use paycode_domain::{
    AuthCode, Channel, ChannelCodes, CommandId, Currency, Decider, MaskedAuthCode, MerchantId,
    Money, OrderNo, RefundNo,
};
use paycode_sandbox::codes::Behaviour;
use paycode_sandbox::statement::{
    WechatBillLayout, WechatBillMerchant, WechatBillType, wechat_bill,
};
use paycode_sandbox::truth::{SandboxOrder, SandboxOrderState, SandboxRefund};
use uuid::Uuid;

use super::{BenchArgs, BenchDir, round3, write_summary};

/// The last line of `bench reconcile`'s output.
#[derive(Debug, serde::Serialize)]
struct Summary {
    bench: &'static str,
    lines: u64,
    secs: f64,
    findings: u64,
    peak_rss_bytes: u64,
    parse_secs: f64,
    match_secs: f64,
    lines_per_sec: f64,
    orders: u64,
    setup_secs: f64,
    setup_peak_rss_bytes: u64,
    /// Resident memory once the setup is done: the ledger held.
    setup_rss_bytes: u64,
}

/// The statement's day, China time.
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).unwrap_or_default()
}

/// The China-time midnight that starts [`day`], in UTC.
fn day_start() -> DateTime<Utc> {
    day().and_time(NaiveTime::MIN).and_utc() - Duration::hours(8)
}

/// Payments fall in the first this many seconds of the day, so every
/// movement (a refund 2 minutes later at most) ends before the matcher's
/// midnight grace: none is deferred to the next day's statement.
const PAYMENT_SPAN_SECS: i64 = 85_000;
const REFUND_AFTER_SECS: i64 = 120;
const REVOKE_AFTER_SECS: i64 = 20;
const MERCHANT: &str = "m0001";
const MCH_ID: &str = "10000100";
const APPID: &str = "wx2421b1c4370ec43b";

/// What happened to an order, before any planting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Paid: one payment line.
    Plain,
    /// Paid, then partly refunded: a payment and a refund line.
    Refunded,
    /// Paid, then revoked with the money returned: a payment and a `REVOKED` line.
    Reversed,
}

impl Shape {
    /// About 6 % refunded and 2 % reversed, spread pseudo-randomly.
    fn of(index: usize) -> Shape {
        match mix(index as u64) % 100 {
            0..6 => Shape::Refunded,
            6..8 => Shape::Reversed,
            _ => Shape::Plain,
        }
    }

    fn lines(self) -> usize {
        match self {
            Shape::Plain => 1,
            Shape::Refunded | Shape::Reversed => 2,
        }
    }
}

/// A difference planted on one order of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    None,
    /// The channel has no line of this (plain) order.
    MissingOrder,
    /// The channel has the payment of this refunded order, not its refund.
    MissingRefund,
    /// The channel's payment is one fen more.
    ChangedAmount,
    /// The channel lists the payment twice.
    Duplicated,
    /// The ledger closed the order (revoked before it saw a payment); the
    /// channel shows it paid, and, when `reversed`, the money returned.
    LedgerClosed {
        reversed: bool,
    },
}

/// How many differences of each kind.
#[derive(Debug, Clone, Copy)]
struct Plan {
    missing_orders: usize,
    missing_refunds: usize,
    extras: usize,
    changed: usize,
    duplicated: usize,
    closed_paid: usize,
    closed_reversed: usize,
}

impl Plan {
    /// `planted` spread evenly over the five kinds of finding.
    fn new(planted: usize) -> Plan {
        let share = |kind: usize| planted / 5 + usize::from(kind < planted % 5);
        let (missing, closed) = (share(0), share(4));
        Plan {
            missing_orders: missing - missing / 2,
            missing_refunds: missing / 2,
            extras: share(1),
            changed: share(2),
            duplicated: share(3),
            closed_paid: closed - closed / 2,
            closed_reversed: closed / 2,
        }
    }

    /// The plants on plain orders, interleaved so each kind spreads over the day.
    fn plain_plants(&self) -> Vec<Plant> {
        let kinds = [
            (self.missing_orders, Plant::MissingOrder),
            (self.changed, Plant::ChangedAmount),
            (self.duplicated, Plant::Duplicated),
            (self.closed_paid, Plant::LedgerClosed { reversed: false }),
            (self.closed_reversed, Plant::LedgerClosed { reversed: true }),
        ];
        let most = kinds.iter().map(|(count, _)| *count).max().unwrap_or(0);
        (0..most)
            .flat_map(|round| {
                kinds
                    .iter()
                    .filter(move |(count, _)| round < *count)
                    .map(|(_, plant)| *plant)
            })
            .collect()
    }

    /// Statement lines the plants add (positive) or remove.
    fn line_delta(&self) -> i64 {
        let added = self.extras + self.duplicated + self.closed_reversed;
        let removed = self.missing_orders + self.missing_refunds;
        added as i64 - removed as i64
    }
}

/// One finding as the check compares them: kind, order number, refund number.
type Expected = (FindingKind, String, Option<String>);

/// The day's orders, before they are told by the ledger or the channel:
/// what happened to each, and the difference planted on it.
struct Day {
    plan: Plan,
    shapes: Vec<Shape>,
    plants: Vec<Plant>,
}

/// SplitMix64: a cheap, well-spread hash of an index.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` elements of `candidates`, evenly spread.
fn spread(candidates: &[usize], count: usize) -> Vec<usize> {
    if count == 0 {
        return Vec::new();
    }
    let step = candidates.len() / count;
    (0..count)
        .map(|k| candidates[k * step + step / 2])
        .collect()
}

impl Day {
    /// The orders of a bill of exactly `lines` lines with `planted` differences.
    fn new(lines: usize, planted: usize) -> anyhow::Result<Day> {
        let plan = Plan::new(planted);
        let base_lines = usize::try_from(lines as i64 - plan.line_delta())
            .ok()
            .filter(|base| *base > 0)
            .context("--lines is too small for --planted")?;
        let mut shapes = Vec::with_capacity(base_lines);
        let mut total = 0;
        while total < base_lines {
            let mut shape = Shape::of(shapes.len());
            if total + shape.lines() > base_lines {
                shape = Shape::Plain;
            }
            total += shape.lines();
            shapes.push(shape);
        }
        let of_shape = |wanted: Shape| -> Vec<usize> {
            (0..shapes.len())
                .filter(|&index| shapes[index] == wanted)
                .collect()
        };
        let (plain_orders, refunded) = (of_shape(Shape::Plain), of_shape(Shape::Refunded));
        let plain_plants = plan.plain_plants();
        anyhow::ensure!(
            plain_orders.len() >= 4 * plain_plants.len()
                && refunded.len() >= 4 * plan.missing_refunds,
            "--lines {lines} is too small for --planted {planted}"
        );
        let mut plants = vec![Plant::None; shapes.len()];
        for (index, plant) in spread(&plain_orders, plain_plants.len())
            .into_iter()
            .zip(plain_plants)
        {
            plants[index] = plant;
        }
        for index in spread(&refunded, plan.missing_refunds) {
            plants[index] = Plant::MissingRefund;
        }
        Ok(Day {
            plan,
            shapes,
            plants,
        })
    }

    /// Each order with its difference.
    fn orders(&self) -> impl Iterator<Item = (DayOrder, Plant)> + '_ {
        let orders = self.shapes.len();
        self.shapes
            .iter()
            .zip(&self.plants)
            .enumerate()
            .map(move |(index, (&shape, &plant))| (DayOrder::new(index, orders, shape), plant))
    }

    /// The `index`-th order only the channel has (`missing_in_ledger`).
    fn extra_order_no(index: usize) -> String {
        format!("X{index:09}")
    }

    /// The findings the planted differences must give, each once.
    fn expected(&self) -> BTreeSet<Expected> {
        let mut expected = BTreeSet::new();
        for (order, plant) in self.orders() {
            let order_no = order.order_no();
            let finding = match plant {
                Plant::None => continue,
                Plant::MissingOrder => (FindingKind::MissingInStatement, order_no, None),
                Plant::MissingRefund => (
                    FindingKind::MissingInStatement,
                    order_no,
                    Some(order.refund_no()),
                ),
                Plant::ChangedAmount => (FindingKind::AmountMismatch, order_no, None),
                Plant::Duplicated => (FindingKind::DuplicateLine, order_no, None),
                Plant::LedgerClosed { .. } => (FindingKind::StatusMismatch, order_no, None),
            };
            expected.insert(finding);
        }
        for extra in 0..self.plan.extras {
            expected.insert((
                FindingKind::MissingInLedger,
                Day::extra_order_no(extra),
                None,
            ));
        }
        expected
    }

    /// The ledger, built as the service builds it: each order folded when
    /// the ledger asks for it, never a vector of every `LedgerOrder` first.
    fn ledger(&self) -> anyhow::Result<Ledger> {
        let masked = AuthCode::parse("134567890123456700")?.masked();
        let merchant = MerchantId::parse(MERCHANT)?;
        self.orders()
            .map(|(order, plant)| order.ledger_order(&merchant, &masked, plant))
            .collect()
    }

    /// Writes the channel's bill of the day.
    fn write_bill(&self, bill: &mut impl Write) -> anyhow::Result<()> {
        let orders = self.shapes.len();
        let mut channel_orders =
            Vec::with_capacity(orders + self.plan.extras + self.plan.duplicated);
        for (order, plant) in self.orders() {
            if let Some(channel_order) = order.channel_order(plant) {
                if plant == Plant::Duplicated {
                    channel_orders.push(channel_order.clone());
                }
                channel_orders.push(channel_order);
            }
        }
        for extra in 0..self.plan.extras {
            let order = DayOrder::new(extra * orders / self.plan.extras, orders, Shape::Plain);
            let mut channel_order = order.channel_order(Plant::None).context("an extra order")?;
            channel_order.out_trade_no = Day::extra_order_no(extra);
            channel_order.trade_no = format!("4200000{}9{extra:012}", day().format("%Y%m%d"));
            channel_orders.push(channel_order);
        }
        let now = day_start() + Duration::days(1) + Duration::hours(10);
        let text = wechat_bill(
            WechatBillMerchant {
                appid: APPID,
                mch_id: MCH_ID,
            },
            WechatBillLayout::Current,
            WechatBillType::All,
            &channel_orders,
            day(),
            now,
            &[],
        )
        .context("the channel's orders make no bill")?;
        bill.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// One order of the day, before it is told by the ledger or the channel.
struct DayOrder {
    index: usize,
    shape: Shape,
    amount_fen: u64,
    paid_at: DateTime<Utc>,
}

impl DayOrder {
    fn new(index: usize, orders: usize, shape: Shape) -> DayOrder {
        let offset_secs = 10 + index as i64 * PAYMENT_SPAN_SECS / orders.max(1) as i64;
        DayOrder {
            index,
            shape,
            // 1.00 to 999.99 yuan.
            amount_fen: 100 + mix(index as u64 ^ 0x5EED) % 99_900,
            paid_at: day_start() + Duration::seconds(offset_secs),
        }
    }

    fn order_no(&self) -> String {
        format!("P{:09}", self.index)
    }

    fn refund_no(&self) -> String {
        format!("R{:09}", self.index)
    }

    fn trade_no(&self) -> String {
        format!("4200000{}{:013}", day().format("%Y%m%d"), self.index)
    }

    fn refund_id(&self) -> String {
        format!("50300{}{:015}", day().format("%Y%m%d"), self.index)
    }

    /// A partial refund: about a third of the payment, at least a fen.
    fn refund_fen(&self) -> u64 {
        (self.amount_fen / 3).max(1)
    }

    fn refunded_at(&self) -> DateTime<Utc> {
        self.paid_at + Duration::seconds(REFUND_AFTER_SECS)
    }

    fn reversed_at(&self) -> DateTime<Utc> {
        self.paid_at + Duration::seconds(REVOKE_AFTER_SECS)
    }

    /// The order as the ledger holds it: its events folded, then compacted.
    fn ledger_order(
        &self,
        merchant: &MerchantId,
        masked: &MaskedAuthCode,
        plant: Plant,
    ) -> anyhow::Result<LedgerOrder> {
        let created_at = self.paid_at - Duration::seconds(2);
        let mut command = 0u128;
        let mut event = |at: DateTime<Utc>, fact: Fact| {
            command += 1;
            Event {
                at,
                command_id: CommandId(Uuid::from_u128(((self.index as u128) << 32) | command)),
                key_name: None,
                fact,
            }
        };
        let mut events = vec![event(
            created_at,
            Fact::Submitted(Submitted {
                merchant_id: merchant.clone(),
                order_no: OrderNo::parse(&self.order_no())?,
                channel: Channel::Wechat,
                amount: Money::from_fen(self.amount_fen)?,
                currency: Currency::Cny,
                subject: "Coffee".to_owned(),
                auth_code: masked.clone(),
                auth_code_fingerprint: None,
                deadline_at: created_at + Duration::seconds(60),
                first_query_at: created_at + Duration::seconds(10),
                revoke_not_before: created_at + Duration::seconds(15),
            }),
        )];
        if let Plant::LedgerClosed { .. } = plant {
            // The customer was still typing the password at the deadline; the
            // reverse closed the order as far as the ledger could tell.
            let deadline = created_at + Duration::seconds(60);
            events.extend([
                event(
                    created_at + Duration::seconds(1),
                    Fact::UserPaying(UserPaying {
                        codes: ChannelCodes::new().with("err_code", "USERPAYING"),
                        next_query_at: created_at + Duration::seconds(6),
                    }),
                ),
                event(
                    deadline,
                    Fact::RevokeRequested(RevokeRequested {
                        reason: RevokeReason::DeadlineReached,
                        not_before: deadline,
                    }),
                ),
                event(
                    deadline + Duration::seconds(1),
                    Fact::Revoked(Revoked {
                        result: RevokeResult::Closed,
                        attempt: 1,
                        codes: ChannelCodes::new().with("action", "close"),
                    }),
                ),
            ]);
        } else {
            events.push(event(
                self.paid_at,
                Fact::Paid(Paid {
                    channel_trade_no: self.trade_no(),
                    paid_at: self.paid_at,
                    paid_at_stated: true,
                    source: PaidSource::PayAnswer,
                    codes: ChannelCodes::new().with("result_code", "SUCCESS"),
                }),
            ));
            match self.shape {
                Shape::Plain => {}
                Shape::Refunded => {
                    let refund_no = RefundNo::parse(&self.refund_no())?;
                    let requested_at = self.refunded_at() - Duration::seconds(1);
                    events.extend([
                        event(
                            requested_at,
                            Fact::RefundRequested(RefundRequested {
                                refund_no: refund_no.clone(),
                                amount: Money::from_fen(self.refund_fen())?,
                                reason: "returned goods".to_owned(),
                                first_query_at: requested_at + Duration::seconds(10),
                                settle_by: requested_at + Duration::days(1),
                            }),
                        ),
                        event(
                            self.refunded_at(),
                            Fact::Refunded(Refunded {
                                refund_no,
                                amount: Money::from_fen(self.refund_fen())?,
                                channel_refund_no: Some(self.refund_id()),
                                refunded_at: self.refunded_at(),
                                codes: ChannelCodes::new().with("result_code", "SUCCESS"),
                            }),
                        ),
                    ]);
                }
                Shape::Reversed => {
                    let requested_at = self.reversed_at() - Duration::seconds(1);
                    events.extend([
                        event(
                            requested_at,
                            Fact::RevokeRequested(RevokeRequested {
                                reason: RevokeReason::MerchantRequested,
                                not_before: requested_at,
                            }),
                        ),
                        event(
                            self.reversed_at(),
                            Fact::Revoked(Revoked {
                                result: RevokeResult::Unspecified,
                                attempt: 1,
                                codes: ChannelCodes::new().with("result_code", "SUCCESS"),
                            }),
                        ),
                    ]);
                }
            }
        }
        let state = PaymentDecider::default()
            .replay(&events)
            .context("a history the rules allow")?;
        LedgerOrder::from_state(&state).context("a submitted order has a ledger form")
    }

    /// The order as the channel knows it, or `None` when it left it out.
    fn channel_order(&self, plant: Plant) -> Option<SandboxOrder> {
        let state = match (self.shape, plant) {
            (_, Plant::MissingOrder) => return None,
            (Shape::Reversed, _) | (_, Plant::LedgerClosed { reversed: true }) => {
                SandboxOrderState::Reversed {
                    paid_at: self.paid_at,
                    reversed_at: self.reversed_at(),
                }
            }
            _ => SandboxOrderState::Paid {
                paid_at: self.paid_at,
            },
        };
        let refunds = match (self.shape, plant) {
            (Shape::Refunded, Plant::None) => vec![SandboxRefund {
                refund_no: self.refund_no(),
                refund_id: self.refund_id(),
                amount_fen: self.refund_fen(),
                requested_at: self.refunded_at() - Duration::seconds(1),
                succeeds_at: self.refunded_at(),
            }],
            _ => Vec::new(),
        };
        let amount_fen = match plant {
            Plant::ChangedAmount => self.amount_fen + 1,
            _ => self.amount_fen,
        };
        Some(SandboxOrder {
            channel: Channel::Wechat,
            merchant_id: MCH_ID.to_owned(),
            out_trade_no: self.order_no(),
            trade_no: self.trade_no(),
            amount_fen,
            subject: "Coffee".to_owned(),
            auth_code_masked: "13**************00".to_owned(),
            code_suffix: "00".to_owned(),
            behaviour: Behaviour::PaidAtOnce,
            created_at: self.paid_at - Duration::seconds(2),
            state,
            refunds,
        })
    }
}

/// The findings of `report` must be exactly `expected`, each once.
fn check(report: &Report, expected: &BTreeSet<Expected>) -> anyhow::Result<()> {
    let found: BTreeSet<Expected> = report
        .findings
        .iter()
        .map(|finding| {
            (
                finding.kind,
                finding.order_no.clone().unwrap_or_default(),
                finding.refund_no.clone(),
            )
        })
        .collect();
    let unexpected: Vec<_> = found.difference(expected).collect();
    let missed: Vec<_> = expected.difference(&found).collect();
    let repeated = report.findings.len() - found.len();
    if unexpected.is_empty() && missed.is_empty() && repeated == 0 {
        return Ok(());
    }
    for finding in unexpected.iter().take(20) {
        println!("unexpected finding: {finding:?}");
    }
    for finding in missed.iter().take(20) {
        println!("planted, not found: {finding:?}");
    }
    anyhow::bail!(
        "the findings are not the planted differences: {} unexpected, {} not found, {} repeated",
        unexpected.len(),
        missed.len(),
        repeated
    )
}

/// A line of `/proc/self/status` in bytes (`VmHWM`, `VmRSS`); 0 elsewhere.
pub(super) fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with(field))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Resets the high-water mark of resident memory to the current resident
/// size (Linux: `5` to `/proc/self/clear_refs`). False where it cannot.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// `--bill-to`: the bill of `day`, written to `path` by the process that runs it.
fn write_bill_file(day: &Day, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut bill = std::io::BufWriter::new(file);
    day.write_bill(&mut bill)?;
    bill.flush()?;
    Ok(())
}

/// The bill at `path`, read a line at a time.
fn open_bill(path: &Path) -> anyhow::Result<BufReader<File>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(BufReader::with_capacity(1 << 16, file))
}

/// The bill at `path` checked whole (parsing alone), as the service does
/// first: its rows.
fn check_bill(path: &Path) -> anyhow::Result<u64> {
    let counted = read_wechat_bill(open_bill(path)?, RowCount::new(Channel::Wechat))
        .context("the generated bill does not parse")?;
    Ok(counted.rows)
}

/// The bill on disk, read a line at a time whenever a pass asks for it.
struct BillFile<'p>(&'p Path);

impl StatementSource for BillFile<'_> {
    fn read_into<S: StatementSink>(&self, sink: S) -> Result<S, StatementError> {
        let bill = open_bill(self.0).map_err(|error| StatementError::NotABill {
            reason: format!("{error:#}"),
        })?;
        read_wechat_bill(bill, sink)
    }
}

/// The bill at `path` checked whole and matched against `ledger` row by
/// row at once, on two threads, as the service does.
fn reconcile_bill(path: &Path, ledger: &Ledger) -> anyhow::Result<Report> {
    let policy = ReconcilePolicy::default();
    let reconciler = Reconciler::new(Channel::Wechat, day(), ledger, &policy);
    let reconciler = check_and_match(&BillFile(path), reconciler)
        .context("the generated bill does not parse")?;
    Ok(reconciler.finish())
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let lines = usize::try_from(args.lines)?;
    let planted = usize::try_from(args.planted)?;
    anyhow::ensure!(lines > 0, "--lines must be at least 1");
    println!(
        "bench reconcile: a WeChat bill of {lines} lines, about {planted} planted differences"
    );
    let day = Day::new(lines, planted)?;
    if let Some(path) = &args.bill_to {
        return write_bill_file(&day, path);
    }
    let dir = BenchDir::new(args.dir.as_deref())?;
    let bill_path = dir.path().join("bench-reconcile-bill.csv");

    let setup_started = Instant::now();
    // Another process writes the bill: generating a million channel orders
    // leaves hundreds of MiB the allocator keeps, which would count here.
    let status = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "reconcile", "--lines"])
        .arg(args.lines.to_string())
        .arg("--planted")
        .arg(args.planted.to_string())
        .arg("--bill-to")
        .arg(&bill_path)
        .status()
        .context("running the bench to write the bill")?;
    anyhow::ensure!(status.success(), "writing the bill failed: {status}");
    let expected = day.expected();
    let ledger = day.ledger()?;
    drop(day);
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let setup_peak = proc_status_bytes("VmHWM:");
    let setup_rss = proc_status_bytes("VmRSS:");
    println!(
        "setup: {} ledger orders folded from their events, a bill of {:.1} MiB on disk, in {setup_secs:.2} s; \
         peak resident memory {:.0} MiB, {:.0} MiB after",
        ledger.len(),
        super::file_len(&bill_path) as f64 / 1_048_576.0,
        setup_peak as f64 / 1_048_576.0,
        setup_rss as f64 / 1_048_576.0,
    );
    let reset = reset_peak_rss();

    let parse_started = Instant::now();
    let rows = check_bill(&bill_path)?;
    let parse_secs = parse_started.elapsed().as_secs_f64();
    let match_started = Instant::now();
    let report = reconcile_bill(&bill_path, &ledger)?;
    let match_secs = match_started.elapsed().as_secs_f64();
    let peak_rss_bytes = proc_status_bytes("VmHWM:");
    let secs = match_secs;
    let lines_per_sec = rows as f64 / secs;
    println!(
        "parse: the bill checked whole, {rows} lines in {parse_secs:.3} s ({:.0} lines/s): \
         the floor, parsing alone",
        rows as f64 / parse_secs
    );
    println!(
        "match: checked whole and matched row by row at once, as the service does, {} matched, \
         {} findings in {match_secs:.3} s ({:.0} lines/s)",
        report.matched.len(),
        report.findings.len(),
        rows as f64 / match_secs
    );
    println!(
        "total: {secs:.3} s ({lines_per_sec:.0} lines/s); peak resident memory {:.0} MiB{}",
        peak_rss_bytes as f64 / 1_048_576.0,
        if reset {
            " (the ledger held and the timed work)"
        } else {
            " (setup included: the peak could not be reset)"
        }
    );
    anyhow::ensure!(
        rows == args.lines && report.statement_lines == args.lines,
        "the bill has {rows} lines ({} matched against), not the {} asked for",
        report.statement_lines,
        args.lines
    );
    check(&report, &expected)?;
    println!(
        "check: the {} planted differences were found, nothing else",
        expected.len()
    );
    write_summary(&Summary {
        bench: "reconcile",
        lines: rows,
        secs: round3(secs),
        findings: report.findings.len() as u64,
        peak_rss_bytes,
        parse_secs: round3(parse_secs),
        match_secs: round3(match_secs),
        lines_per_sec: lines_per_sec.round(),
        orders: ledger.len() as u64,
        setup_secs: round3(setup_secs),
        setup_peak_rss_bytes: setup_peak,
        setup_rss_bytes: setup_rss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The findings planted, and the report of the bill against the ledger.
    fn run_small(lines: usize, planted: usize) -> (BTreeSet<Expected>, Report) {
        let day = Day::new(lines, planted).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bill.csv");
        write_bill_file(&day, &path).unwrap();
        assert_eq!(
            check_bill(&path).unwrap() as usize,
            lines,
            "the bill has the lines asked for"
        );
        let report = reconcile_bill(&path, &day.ledger().unwrap()).unwrap();
        assert_eq!(report.statement_lines as usize, lines);
        (day.expected(), report)
    }

    #[test]
    fn the_planted_differences_are_found_exactly_and_nothing_else() {
        let (expected, report) = run_small(2_000, 20);
        assert_eq!(expected.len(), 20);
        let kinds: BTreeSet<FindingKind> = expected.iter().map(|(kind, ..)| *kind).collect();
        assert_eq!(kinds.len(), 5, "every kind of finding is planted");
        check(&report, &expected).unwrap();
        assert!(
            expected.iter().any(
                |(kind, _, refund_no)| *kind == FindingKind::MissingInStatement
                    && refund_no.is_some()
            ),
            "a missing refund is planted too"
        );
    }

    #[test]
    fn the_check_fails_when_a_planted_difference_is_not_found() {
        let (mut expected, report) = run_small(2_000, 10);
        let planted = expected.pop_first().unwrap();
        let error = check(&report, &expected).unwrap_err();
        assert!(error.to_string().contains("1 unexpected"), "{error}");
        expected.insert(planted);
        check(&report, &expected).unwrap();
    }

    #[test]
    fn without_plants_every_line_matches() {
        let (expected, report) = run_small(500, 0);
        assert!(expected.is_empty());
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.matched.len(), 500);
    }
}
