//! The integration tests of `paycode-adapters`, in one test binary (one
//! link of every dependency instead of one per file): the channel clients
//! against local peers (and against a redirect), the statement parsers,
//! the event-store contract suite on every store, and the read-only open of
//! a ledger.

mod alipay_client;
mod read_only;
mod redirects;
mod statement_parsers;
mod store_contract;
mod store_contract_eventstoredb;
mod store_relayout;
mod support;
mod wechat_client;
