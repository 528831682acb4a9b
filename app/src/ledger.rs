//! The ledger service: the one path by which anything is written. It loads
//! an order's stream, folds it, asks the decider, and appends the decided
//! events with the exact expected version. A conflict means another writer
//! moved the stream: reload and decide again, a bounded number of times.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use paycode_adapters::clock::Clock;
use paycode_adapters::store::{EventStore, ExpectedVersion, NewEvent, StoreError};
use paycode_domain::ids::payment_stream;
use paycode_domain::payment::stored::{self, DecodeError};
use paycode_domain::payment::{Command, Event, PaymentDecider, PaymentState, Rejection};
use paycode_domain::{MerchantId, OrderNo};

/// How often a command is decided again after losing a race for the stream.
pub const CONFLICT_RETRIES_MAX: u32 = 8;
/// How often an append whose outcome is unknown is retried (idempotent: same ids, same version).
pub const UNAVAILABLE_RETRIES_MAX: u32 = 2;

/// One event of an order's history as stored.
#[derive(Debug, Clone)]
pub struct HistoryEvent {
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    pub event: Event,
}

/// An order's full history and the state it folds to.
#[derive(Debug, Clone)]
pub struct OrderHistory {
    pub events: Vec<HistoryEvent>,
    pub state: PaymentState,
}

impl OrderHistory {
    /// The version of the last event, `None` when the order does not exist.
    pub fn version(&self) -> Option<u64> {
        self.events.last().map(|e| e.version)
    }
}

/// What executing a command did.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The history after the command (including its events).
    pub history: OrderHistory,
    /// The events this command appended (empty when it was already carried out).
    pub appended: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The command breaks a business rule; nothing was written.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store failed; whether the append landed is unknown only if it says
    /// `Unavailable`, and then retrying the same command is safe.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event does not decode: stop and get an operator.
    #[error("stream {stream} holds an event that does not decode: {source}")]
    Undecodable {
        stream: String,
        #[source]
        source: DecodeError,
    },
    /// Others kept moving the stream; the caller may try again later.
    #[error("stream {stream} kept changing; gave up after {attempts} attempts")]
    Contention { stream: String, attempts: u32 },
}

/// Decides and records commands against the event store.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<dyn EventStore>,
    decider: Arc<PaymentDecider>,
    clock: Arc<dyn Clock>,
}

impl Ledger {
    pub fn new(store: Arc<dyn EventStore>, decider: PaymentDecider, clock: Arc<dyn Clock>) -> Self {
        Ledger {
            store,
            decider: Arc::new(decider),
            clock,
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn decider(&self) -> &PaymentDecider {
        &self.decider
    }

    /// The order's history, oldest first.
    pub async fn history(
        &self,
        merchant: &MerchantId,
        order_no: &OrderNo,
    ) -> Result<OrderHistory, LedgerError> {
        self.history_of(&payment_stream(merchant, order_no)).await
    }

    /// The history of a payment stream by name.
    pub async fn history_of(&self, stream: &str) -> Result<OrderHistory, LedgerError> {
        let recorded = self.store.read_stream(stream).await?;
        let mut events = Vec::with_capacity(recorded.len());
        let mut state = PaymentState::Initial;
        for record in recorded {
            let event = stored::decode(&record.event_type, record.schema_version, &record.data)
                .map_err(|source| LedgerError::Undecodable {
                    stream: stream.to_owned(),
                    source,
                })?;
            state = paycode_domain::payment::evolve(state, &event);
            events.push(HistoryEvent {
                version: record.version,
                recorded_at: record.recorded_at,
                event,
            });
        }
        Ok(OrderHistory { events, state })
    }

    /// Decides `command` against the order's current state and records the
    /// events. Returns the state after, or the first rule it breaks.
    pub async fn execute(
        &self,
        merchant: &MerchantId,
        order_no: &OrderNo,
        command: &Command,
    ) -> Result<Executed, LedgerError> {
        let stream = payment_stream(merchant, order_no);
        for _ in 0..CONFLICT_RETRIES_MAX {
            let mut history = self.history_of(&stream).await?;
            let events = self
                .decider
                .decide(&history.state, command, self.clock.now())?;
            if events.is_empty() {
                return Ok(Executed {
                    history,
                    appended: events,
                });
            }
            let expected = ExpectedVersion::after(history.version());
            let new_events: Vec<NewEvent> = events
                .iter()
                .enumerate()
                .map(|(index, event)| {
                    let encoded = stored::encode(event);
                    NewEvent {
                        event_id: command.id.event_id(index),
                        event_type: encoded.name.to_owned(),
                        schema_version: encoded.schema_version,
                        data: encoded.data,
                    }
                })
                .collect();
            match self
                .append_retrying_unavailable(&stream, expected, new_events)
                .await
            {
                Ok(recorded_at) => {
                    for (version, event) in (expected.next_version()..).zip(&events) {
                        history.state = paycode_domain::payment::evolve(history.state, event);
                        history.events.push(HistoryEvent {
                            version,
                            recorded_at,
                            event: event.clone(),
                        });
                    }
                    return Ok(Executed {
                        history,
                        appended: events,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(LedgerError::Contention {
            stream,
            attempts: CONFLICT_RETRIES_MAX,
        })
    }

    async fn append_retrying_unavailable(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<DateTime<Utc>, StoreError> {
        let mut attempt = 0;
        loop {
            match self.store.append(stream, expected, events.clone()).await {
                Ok(_) => return Ok(self.clock.now()),
                // Same ids, same expected version: a retry cannot append twice.
                Err(StoreError::Unavailable(_)) if attempt < UNAVAILABLE_RETRIES_MAX => {
                    attempt += 1
                }
                Err(error) => return Err(error),
            }
        }
    }
}
