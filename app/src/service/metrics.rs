//! Prometheus metrics of the service (`GET /metrics`): commands by outcome,
//! channel calls by API and outcome with latency, pending and manual-review
//! orders, rate-limit waits, store append latency. Labels never hold an
//! order number, a payment code or a key.

use std::sync::Arc;
use std::time::Duration;

use paycode_domain::Channel;
use paycode_domain::payment::{PayOutcome, QueryOutcome, RefundOutcome, RevokeOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    channel: &'static str,
    api: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    channel: &'static str,
    api: &'static str,
}

/// The short label of a channel outcome.
pub trait OutcomeLabel {
    fn label(&self) -> &'static str;
}

impl OutcomeLabel for PayOutcome {
    fn label(&self) -> &'static str {
        match self {
            PayOutcome::Paid { .. } => "paid",
            PayOutcome::WaitingForPassword => "waiting_for_password",
            PayOutcome::Failed { .. } => "failed",
            PayOutcome::Unknown { .. } => "unknown",
            PayOutcome::NotSent { .. } => "not_sent",
        }
    }
}

impl OutcomeLabel for QueryOutcome {
    fn label(&self) -> &'static str {
        match self {
            QueryOutcome::Paid { .. } => "paid",
            QueryOutcome::WaitingForPassword => "waiting_for_password",
            QueryOutcome::NotPaid => "not_paid",
            QueryOutcome::NotFound => "not_found",
            QueryOutcome::Closed => "closed",
            QueryOutcome::Failed { .. } => "failed",
            QueryOutcome::RefundedElsewhere => "refunded_elsewhere",
            QueryOutcome::OtherTrade { .. } => "other_trade",
            QueryOutcome::Unknown { .. } => "unknown",
        }
    }
}

impl OutcomeLabel for RevokeOutcome {
    fn label(&self) -> &'static str {
        match self {
            RevokeOutcome::Done { .. } => "done",
            RevokeOutcome::MustRetry { .. } => "must_retry",
            RevokeOutcome::WindowClosed { .. } => "window_closed",
            RevokeOutcome::Unknown { .. } => "unknown",
        }
    }
}

impl OutcomeLabel for RefundOutcome {
    fn label(&self) -> &'static str {
        match self {
            RefundOutcome::Accepted { .. } => "accepted",
            RefundOutcome::Processing => "processing",
            RefundOutcome::Succeeded { .. } => "succeeded",
            RefundOutcome::Failed { .. } => "failed",
            RefundOutcome::Abnormal { .. } => "abnormal",
            RefundOutcome::NotFound => "not_found",
            RefundOutcome::Unknown { .. } => "unknown",
        }
    }
}

/// Every metric, cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    commands: Family<CommandLabels, Counter>,
    channel_calls: Family<CallLabels, Counter>,
    channel_latency: Family<ApiLabels, Histogram>,
    rate_limit_waits: Family<ApiLabels, Counter>,
    pub pending_orders: Gauge,
    pub manual_review_orders: Gauge,
    store_append_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("paycode");
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Commands decided, by command and outcome",
            commands.clone(),
        );
        let channel_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "channel_calls",
            "Channel calls, by channel, API and normalised outcome",
            channel_calls.clone(),
        );
        let channel_latency = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "channel_call_seconds",
            "Channel call latency",
            channel_latency.clone(),
        );
        let rate_limit_waits = Family::<ApiLabels, Counter>::default();
        registry.register(
            "rate_limit_waits",
            "Channel calls that waited for a rate-limit token",
            rate_limit_waits.clone(),
        );
        let pending_orders = Gauge::default();
        registry.register(
            "pending_orders",
            "Orders with a due action",
            pending_orders.clone(),
        );
        let manual_review_orders = Gauge::default();
        registry.register(
            "manual_review_orders",
            "Orders waiting for an operator",
            manual_review_orders.clone(),
        );
        let store_append_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "store_append_seconds",
            "Event store append latency",
            store_append_seconds.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            commands,
            channel_calls,
            channel_latency,
            rate_limit_waits,
            pending_orders,
            manual_review_orders,
            store_append_seconds,
        }
    }

    pub fn command(&self, command: &'static str, outcome: &'static str) {
        self.commands
            .get_or_create(&CommandLabels { command, outcome })
            .inc();
    }

    pub fn channel_call(
        &self,
        channel: Channel,
        api: &'static str,
        outcome: &impl OutcomeLabel,
        took: Duration,
    ) {
        let channel = channel.as_str();
        self.channel_calls
            .get_or_create(&CallLabels {
                channel,
                api,
                outcome: outcome.label(),
            })
            .inc();
        self.channel_latency
            .get_or_create(&ApiLabels { channel, api })
            .observe(took.as_secs_f64());
    }

    /// Brings the rate-limit wait counter up to `total`, the clients' running
    /// count for this channel and API (summed over merchants).
    pub fn rate_limit_waits_seen(&self, channel: Channel, api: &'static str, total: u64) {
        let counter = self.rate_limit_waits.get_or_create(&ApiLabels {
            channel: channel.as_str(),
            api,
        });
        let seen = counter.get();
        if total > seen {
            counter.inc_by(total - seen);
        }
    }

    pub fn store_append(&self, took: Duration) {
        self.store_append_seconds.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_their_labels() {
        let metrics = Metrics::new();
        metrics.command("submit_payment", "accepted");
        metrics.channel_call(
            Channel::Wechat,
            "pay",
            &PayOutcome::WaitingForPassword,
            Duration::from_millis(3),
        );
        metrics.pending_orders.set(7);
        let text = metrics.render();
        assert!(
            text.contains(
                "paycode_commands_total{command=\"submit_payment\",outcome=\"accepted\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("paycode_channel_calls_total{channel=\"wechat\",api=\"pay\",outcome=\"waiting_for_password\"} 1"), "{text}");
        assert!(text.contains("paycode_pending_orders 7"), "{text}");
        assert!(
            text.contains("paycode_channel_call_seconds_bucket"),
            "{text}"
        );
    }
}
