//! The overview's figures, read from the same text `/metrics` serves (the
//! runtime's `render_metrics`), so the console and a Prometheus scrape can
//! never disagree: channel calls by channel and API with their mean
//! latency, pending and manual-review orders, rate-limit waits.

use std::collections::BTreeMap;

/// The calls of one channel API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calls {
    /// By normalised outcome (`paid`, `waiting_for_password`, ...).
    pub by_outcome: BTreeMap<String, u64>,
    pub latency_sum_secs: f64,
    pub latency_count: u64,
    pub rate_limit_waits: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.by_outcome.values().sum()
    }

    /// The mean latency in milliseconds, when any call was timed.
    #[expect(
        clippy::cast_precision_loss,
        reason = "a latency shown to a person, not money"
    )]
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.latency_count > 0).then(|| self.latency_sum_secs * 1000.0 / self.latency_count as f64)
    }
}

/// What the overview shows from the metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// By (channel, API).
    pub calls: BTreeMap<(String, String), Calls>,
    pub pending_orders: u64,
    pub manual_review_orders: u64,
}

/// `name{a="x",b="y"} value` as (name, labels, value); `None` for comments
/// and lines this reader does not understand.
fn sample(line: &str) -> Option<(&str, BTreeMap<&str, &str>, &str)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut parsed = BTreeMap::new();
    for pair in labels.split(',').filter(|pair| !pair.is_empty()) {
        let (key, quoted) = pair.split_once('=')?;
        parsed.insert(key, quoted.strip_prefix('"')?.strip_suffix('"')?);
    }
    Some((name, parsed, value))
}

/// Reads the figures out of the OpenMetrics text of `/metrics`.
pub fn read(metrics_text: &str) -> Figures {
    let mut figures = Figures::default();
    for line in metrics_text.lines() {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let api_key = || {
            Some((
                (*labels.get("channel")?).to_owned(),
                (*labels.get("api")?).to_owned(),
            ))
        };
        let count = || value.parse::<u64>().ok().unwrap_or(0);
        match name {
            "paycode_channel_calls_total" => {
                if let (Some(key), Some(outcome)) = (api_key(), labels.get("outcome")) {
                    *figures
                        .calls
                        .entry(key)
                        .or_default()
                        .by_outcome
                        .entry((*outcome).to_owned())
                        .or_default() += count();
                }
            }
            "paycode_channel_call_seconds_sum" => {
                if let Some(key) = api_key() {
                    figures.calls.entry(key).or_default().latency_sum_secs =
                        value.parse().unwrap_or(0.0);
                }
            }
            "paycode_channel_call_seconds_count" => {
                if let Some(key) = api_key() {
                    figures.calls.entry(key).or_default().latency_count = count();
                }
            }
            "paycode_rate_limit_waits_total" => {
                if let Some(key) = api_key() {
                    figures.calls.entry(key).or_default().rate_limit_waits = count();
                }
            }
            "paycode_pending_orders" => figures.pending_orders = count(),
            "paycode_manual_review_orders" => figures.manual_review_orders = count(),
            _ => {}
        }
    }
    figures
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use paycode_domain::Channel;
    use paycode_domain::payment::{PayOutcome, QueryOutcome};

    use super::*;
    use crate::service::metrics::Metrics;

    #[test]
    fn the_overview_reads_what_metrics_renders() {
        // Shows the figures taken from the real exposition text: calls by
        // outcome, their mean latency, rate-limit waits and both gauges.
        let metrics = Metrics::new();
        metrics.channel_call(
            Channel::Wechat,
            "pay",
            &PayOutcome::WaitingForPassword,
            Duration::from_millis(10),
        );
        metrics.channel_call(
            Channel::Wechat,
            "pay",
            &PayOutcome::WaitingForPassword,
            Duration::from_millis(30),
        );
        metrics.channel_call(
            Channel::Wechat,
            "query",
            &QueryOutcome::NotPaid,
            Duration::from_millis(4),
        );
        metrics.rate_limit_waits_seen(Channel::Wechat, "pay", 3);
        metrics.pending_orders.set(7);
        metrics.manual_review_orders.set(2);
        let figures = read(&metrics.render());
        let pay = &figures.calls[&("wechat".to_owned(), "pay".to_owned())];
        assert_eq!(pay.total(), 2);
        assert_eq!(pay.by_outcome["waiting_for_password"], 2);
        assert_eq!(pay.rate_limit_waits, 3);
        let mean = pay.mean_latency_ms().unwrap();
        assert!((mean - 20.0).abs() < 0.001, "{mean}");
        let query = &figures.calls[&("wechat".to_owned(), "query".to_owned())];
        assert_eq!(query.by_outcome["not_paid"], 1);
        assert_eq!(query.rate_limit_waits, 0);
        assert_eq!(
            (figures.pending_orders, figures.manual_review_orders),
            (7, 2)
        );
        assert_eq!(read(""), Figures::default());
    }
}
