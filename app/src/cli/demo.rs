//! `paycode demo`: a stretch of traffic through the sandbox, start to finish.
//! Starts the service on its embedded defaults in a temporary directory (the
//! ledger in SQLite, the sandbox in-process) on a simulated clock, drives a
//! realistic mix of the sandbox's test payment codes and refunds through the
//! HTTP API, moves time on until every order has settled, reconciles each
//! channel's statements the next morning through the API, and prints a
//! summary: orders by final status, channel calls by API, reconciliation
//! findings, time taken.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use paycode_adapters::clock::{Clock, ManualClock};
use paycode_adapters::lease::LocalLeases;
use paycode_adapters::store::SqliteStore;
use paycode_domain::calendar::{china_date, china_midnight};
use paycode_domain::reconciliation::ReconcilePolicy;
use paycode_domain::{MerchantId, Policy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use paycode::config::embedded::{DEMO_API_KEY, DEMO_MERCHANT, InProcessSandbox, SandboxOptions};
use paycode::http::ApiKey;
use paycode::service::{Parts, Service};

/// The mix of test codes (last two digits) and their weights in percent.
const MIX: [(&str, u32); 10] = [
    ("00", 55),
    ("01", 10),
    ("02", 6),
    ("03", 5),
    ("04", 5),
    ("05", 2),
    ("06", 4),
    ("07", 2),
    ("08", 3),
    ("09", 8),
];

fn pick_suffix(rng: &mut StdRng) -> &'static str {
    let mut roll = rng.gen_range(0..100);
    for (suffix, weight) in MIX {
        if roll < weight {
            return suffix;
        }
        roll -= weight;
    }
    "00"
}

/// Runs the demo with `orders` payments; returns the summary text.
pub async fn run(orders: usize, seed: u64) -> anyhow::Result<String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let clock = ManualClock::starting_at(Utc::now());
    let simulation_start = clock.now();
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let options = SandboxOptions {
        state_path: Some(dir.path().join("sandbox.db")),
        client_timeout: Duration::from_millis(500),
        slow_answer: Duration::from_secs(1),
        ..SandboxOptions::default()
    };
    let in_process = InProcessSandbox::for_demo(options, shared.clone()).await?;
    let store = Arc::new(SqliteStore::open(dir.path().join("paycode.db"))?);
    let parts = Parts {
        store,
        channels: in_process.channels.clone(),
        clock: shared.clone(),
        policy: Policy::default(),
        api_keys: vec![ApiKey::full(
            DEMO_API_KEY,
            MerchantId::parse(DEMO_MERCHANT)?,
            "api_keys[0]",
        )],
        limits: paycode::http::limits::ServerLimits::unthrottled(),
        fingerprint_key: paycode::service::fingerprint::FingerprintKey::random(),
        leases: Arc::new(LocalLeases),
        ids: Arc::new(paycode_adapters::ids::RandomIds),
    };
    let service = Service::start(parts).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = service.router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<String>| {
        let request = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(DEMO_API_KEY);
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(body),
            None => request,
        };
        async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            anyhow::Ok((status, value))
        }
    };

    let bar = ProgressBar::new(orders as u64 * 2);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len}").expect("a valid template"),
    );
    bar.set_message("paying");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut refunds_planned = Vec::new();
    for n in 0..orders {
        let suffix = pick_suffix(&mut rng);
        let (prefix, channel) = if rng.gen_bool(0.5) {
            ("1345678901234567", "wechat")
        } else {
            ("28456789012345678", "alipay")
        };
        let fen: u64 = rng.gen_range(100..50_000);
        let order_no = format!("DEMO{n:05}");
        let body = format!(
            r#"{{"order_no":"{order_no}","auth_code":"{prefix}{suffix}","amount":"{}.{:02}","subject":"Demo {channel}"}}"#,
            fen / 100,
            fen % 100
        );
        let (status, answer) =
            call(reqwest::Method::POST, "/v1/payments".into(), Some(body)).await?;
        anyhow::ensure!(status == 201, "creating {order_no}: {status} {answer}");
        if rng.gen_bool(0.25) {
            refunds_planned.push((order_no, fen / 2));
        }
        // Customers arrive a few seconds apart.
        clock.advance(chrono::Duration::seconds(rng.gen_range(1..8)));
        tokio::time::sleep(Duration::from_millis(1)).await;
        bar.inc(1);
    }
    bar.set_message("settling");
    let mut refunds_sent = 0;
    let mut settled = BTreeMap::<String, String>::new();
    let mut rounds = 0;
    while settled.len() < orders {
        rounds += 1;
        anyhow::ensure!(
            rounds < 20_000,
            "orders did not settle: {} of {orders}",
            settled.len()
        );
        for n in 0..orders {
            let order_no = format!("DEMO{n:05}");
            if settled.contains_key(&order_no) {
                continue;
            }
            let (_, payment) = call(
                reqwest::Method::GET,
                format!("/v1/payments/{order_no}"),
                None,
            )
            .await?;
            let status = payment["status"].as_str().unwrap_or("").to_owned();
            let done = payment["pending_action"].is_null()
                && !matches!(status.as_str(), "paying" | "revoking");
            if !done {
                continue;
            }
            if status == "paid" {
                if let Some(position) = refunds_planned.iter().position(|(o, _)| *o == order_no) {
                    let (_, fen) = refunds_planned.remove(position);
                    let body = format!(
                        r#"{{"refund_no":"{order_no}-R1","amount":"{}.{:02}","reason":"demo"}}"#,
                        fen / 100,
                        fen % 100
                    );
                    call(
                        reqwest::Method::POST,
                        format!("/v1/payments/{order_no}/refunds"),
                        Some(body),
                    )
                    .await?;
                    refunds_sent += 1;
                    continue;
                }
            }
            settled.insert(order_no, status);
            bar.inc(1);
        }
        clock.advance(chrono::Duration::seconds(2));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    bar.finish_with_message("settled");
    let settled_at = clock.now();

    // The morning after: reconcile each channel's statement of every China
    // day the traffic touched, through the API as a back office would.
    let (days, morning) = statement_days(simulation_start, settled_at, &ReconcilePolicy::default());
    clock.advance(morning - settled_at);
    let mut reconciliations = Vec::new();
    for channel in ["wechat", "alipay"] {
        let mut day = *days.start();
        while day <= *days.end() {
            let body = format!(r#"{{"channel":"{channel}","date":"{day}"}}"#);
            let (status, report) = call(
                reqwest::Method::POST,
                "/v1/reconciliations".into(),
                Some(body),
            )
            .await?;
            anyhow::ensure!(
                status == 200,
                "reconciling {channel} {day}: {status} {report}"
            );
            reconciliations.push(report);
            day = day.succ_opt().context("the calendar ends")?;
        }
    }

    // A revoke the channel answered without saying whether money had moved
    // (status `revoked`) is settled by the statement just reconciled.
    for (order_no, status) in &mut settled {
        if status == "revoked" {
            let (_, payment) = call(
                reqwest::Method::GET,
                format!("/v1/payments/{order_no}"),
                None,
            )
            .await?;
            payment["status"].as_str().unwrap_or("").clone_into(status);
        }
    }

    let mut by_status = BTreeMap::<&str, usize>::new();
    for status in settled.values() {
        *by_status.entry(status.as_str()).or_default() += 1;
    }
    let mut by_api = BTreeMap::<String, usize>::new();
    for (channel, api, count) in in_process.sandbox.call_counts() {
        *by_api
            .entry(format!("{channel} {api:?}").to_lowercase())
            .or_default() += usize::try_from(count).unwrap_or(usize::MAX);
    }
    let mut out = String::new();
    out.push_str(&format!(
        "\npaycode demo: {orders} payments, {refunds_sent} refunds, all settled\n\n"
    ));
    out.push_str(&format!("{:<22}{:>8}\n", "final status", "orders"));
    for (status, count) in &by_status {
        out.push_str(&format!("{status:<22}{count:>8}\n"));
    }
    out.push_str(&format!("\n{:<30}{:>8}\n", "channel calls", "count"));
    for (api, count) in &by_api {
        out.push_str(&format!("{api:<30}{count:>8}\n"));
    }
    out.push_str(&format!(
        "\n{:<22}{:>8}{:>9}{:>10}  kinds\n",
        "reconciliation", "lines", "matched", "findings"
    ));
    for report in &reconciliations {
        let findings = report["findings"].as_array().cloned().unwrap_or_default();
        let mut kinds = BTreeMap::<String, usize>::new();
        for finding in &findings {
            *kinds
                .entry(finding["kind"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        out.push_str(&format!(
            "{:<22}{:>8}{:>9}{:>10}  {}\n",
            format!(
                "{} {}",
                report["channel"].as_str().unwrap_or("?"),
                report["date"].as_str().unwrap_or("?")
            ),
            report["statement_lines"].as_u64().unwrap_or_default(),
            report["matched"].as_u64().unwrap_or_default(),
            findings.len(),
            kinds.join(", ")
        ));
    }
    out.push_str(&format!(
        "\ntook {:.1} s of wall time for {} of simulated time\n",
        started.elapsed().as_secs_f64(),
        humanize(settled_at - simulation_start)
    ));
    server.abort();
    service.shutdown().await;
    Ok(out)
}

/// The China days whose statements settle traffic from `start` to `end`,
/// and the morning (10:00 China time) after the last of them, when both
/// channels have published it. A movement in the last
/// `midnight_grace_secs` of a day belongs to the next day's statement, so
/// traffic that ends just before midnight needs that next day too.
fn statement_days(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    policy: &ReconcilePolicy,
) -> (RangeInclusive<NaiveDate>, DateTime<Utc>) {
    let grace = chrono::Duration::seconds(i64::from(policy.midnight_grace_secs));
    let first = china_date(start);
    let last = china_date(end + grace);
    let next = last.succ_opt().expect("the calendar goes on");
    (
        first..=last,
        china_midnight(next) + chrono::Duration::hours(10),
    )
}

fn humanize(span: chrono::Duration) -> String {
    let secs = span.num_seconds();
    format!("{}m {:02}s", secs / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn china(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        paycode_domain::calendar::china_time()
            .with_ymd_and_hms(2026, 12, day, hour, minute, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn traffic_within_a_day_is_reconciled_on_that_day_the_next_morning() {
        let (days, morning) = statement_days(
            china(3, 14, 0),
            china(3, 14, 4),
            &ReconcilePolicy::default(),
        );
        let third = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert_eq!(days, third..=third);
        assert_eq!(morning, china(4, 10, 0));
    }

    #[test]
    fn traffic_ending_in_the_last_minutes_before_midnight_needs_the_next_days_statement() {
        // A revoke at 23:57 is expected on the 4th's statement (grace 300 s):
        // reconciling only the 3rd would leave it unsettled.
        let (days, morning) = statement_days(
            china(3, 23, 54),
            china(3, 23, 57),
            &ReconcilePolicy::default(),
        );
        assert_eq!(
            days,
            NaiveDate::from_ymd_opt(2026, 12, 3).unwrap()
                ..=NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
        );
        assert_eq!(morning, china(5, 10, 0));
    }
}
