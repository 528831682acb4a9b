//! `paycode history ORDER_NO [--merchant ID] [--config FILE]`: an order's
//! timeline with the status after every event.

use std::sync::Arc;

use paycode::config::Config;
use paycode::config::store::open_store;
use paycode::service::ledger::Ledger;
use paycode_adapters::clock::SystemClock;
use paycode_domain::payment::PaymentDecider;
use paycode_domain::{MerchantId, OrderNo};
use paycode_projections::statuses_after;

/// The timeline, as printed.
pub async fn run(config: Option<Config>, order_no: &str, merchant: &str) -> anyhow::Result<String> {
    let config = config.unwrap_or_else(Config::embedded);
    let order_no =
        OrderNo::parse(order_no).map_err(|error| anyhow::anyhow!("ORDER_NO: {error}"))?;
    let merchant =
        MerchantId::parse(merchant).map_err(|error| anyhow::anyhow!("--merchant: {error}"))?;
    let store = open_store(&config)?;
    let ledger = Ledger::new(store, PaymentDecider::default(), Arc::new(SystemClock));
    let history = ledger.history(&merchant, &order_no).await?;
    if history.events.is_empty() {
        anyhow::bail!("no order {order_no} for merchant {merchant}");
    }
    let mut out = format!("order {order_no} of merchant {merchant}\n");
    out.push_str(&format!(
        "{:>4}  {:<24}  {:<22}  {:<18}  {}\n",
        "ver", "at", "event", "status after", "details"
    ));
    let statuses = statuses_after(history.events.iter().map(|recorded| &recorded.event));
    for (recorded, status_after) in history.events.iter().zip(statuses) {
        let mut data = serde_json::to_value(&recorded.event).unwrap_or_default();
        let name = recorded.event.fact.stored_name();
        if let Some(object) = data.as_object_mut() {
            for key in ["type", "at", "command_id"] {
                object.remove(key);
            }
        }
        out.push_str(&format!(
            "{:>4}  {:<24}  {:<22}  {:<18}  {}\n",
            recorded.version,
            recorded.event.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            name,
            status_after.map_or("-", |status| status.as_str()),
            data,
        ));
    }
    Ok(out)
}
