//! The ledger: the one path by which anything is written, for every
//! aggregate (`Ledger<PaymentDecider>` for orders,
//! `Ledger<ReconciliationDecider>` for statement days). It loads a stream,
//! folds it, asks the decider, checks the decided events against the
//! invariants, and appends them with the exact expected version. A conflict
//! means another writer moved the stream: reload and decide again, a
//! bounded number of times.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use paycode_adapters::clock::Clock;
use paycode_adapters::store::{EventStore, ExpectedVersion, NewEvent, StoreError};
use paycode_domain::ids::payment_stream;
use paycode_domain::invariants::Violation;
use paycode_domain::payment::PaymentDecider;
use paycode_domain::stored::{self, DecodeError, EventSchema};
use paycode_domain::{Decider, MerchantId, OrderNo};

/// How often a command is decided again after losing a race for the stream.
pub const CONFLICT_RETRIES_MAX: u32 = 8;
/// How often an append whose outcome is unknown is retried (idempotent: same ids, same version).
pub const UNAVAILABLE_RETRIES_MAX: u32 = 2;

/// One event of a stream's history as stored.
#[derive(Debug, Clone)]
pub struct Recorded<E> {
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    pub event: E,
}

/// A stream's full history and the state it folds to.
#[derive(Debug, Clone)]
pub struct History<D: Decider> {
    pub events: Vec<Recorded<D::Event>>,
    pub state: D::State,
}

impl<D: Decider> History<D> {
    /// The version of the last event, `None` when the stream does not exist.
    pub fn version(&self) -> Option<u64> {
        self.events.last().map(|e| e.version)
    }
}

/// An order's history.
pub type OrderHistory = History<PaymentDecider>;

/// What executing a command did.
#[derive(Debug, Clone)]
pub struct Executed<D: Decider> {
    /// The history after the command (including its events).
    pub history: History<D>,
    /// The events this command appended (empty when it was already carried out).
    pub appended: Vec<D::Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError<R> {
    /// The command breaks a business rule; nothing was written.
    #[error(transparent)]
    Rejected(R),
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
    /// A stored event (at `version`), or one the decider just decided
    /// (`version` `None`; nothing was written), breaks an invariant. A bug
    /// or a damaged ledger: stop and get an operator (`paycode verify`).
    #[error("stream {stream} breaks an invariant at {}: {violation}", version.map_or("the decided events".to_owned(), |v| format!("version {v}")))]
    Invariant {
        stream: String,
        version: Option<u64>,
        violation: Violation,
    },
    /// Others kept moving the stream; the caller may try again later.
    #[error("stream {stream} kept changing; gave up after {attempts} attempts")]
    Contention { stream: String, attempts: u32 },
}

impl<R> LedgerError<R> {
    /// The same failure, with the rejection (if it is one) converted.
    pub fn map_rejected<S>(self, convert: impl FnOnce(R) -> S) -> LedgerError<S> {
        match self {
            LedgerError::Rejected(rejection) => LedgerError::Rejected(convert(rejection)),
            LedgerError::Store(error) => LedgerError::Store(error),
            LedgerError::Undecodable { stream, source } => {
                LedgerError::Undecodable { stream, source }
            }
            LedgerError::Invariant {
                stream,
                version,
                violation,
            } => LedgerError::Invariant {
                stream,
                version,
                violation,
            },
            LedgerError::Contention { stream, attempts } => {
                LedgerError::Contention { stream, attempts }
            }
        }
    }
}

/// Decides and records commands of one aggregate against the event store.
#[derive(Debug)]
pub struct Ledger<D> {
    store: Arc<dyn EventStore>,
    decider: Arc<D>,
    clock: Arc<dyn Clock>,
}

impl<D> Clone for Ledger<D> {
    fn clone(&self) -> Self {
        Ledger {
            store: self.store.clone(),
            decider: self.decider.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<D> Ledger<D>
where
    D: Decider,
    D::Event: EventSchema + Clone,
{
    pub fn new(store: Arc<dyn EventStore>, decider: D, clock: Arc<dyn Clock>) -> Self {
        Ledger {
            store,
            decider: Arc::new(decider),
            clock,
        }
    }

    /// The same store and clock with another aggregate's decider.
    pub fn with_decider<O: Decider>(&self, decider: O) -> Ledger<O> {
        Ledger {
            store: self.store.clone(),
            decider: Arc::new(decider),
            clock: self.clock.clone(),
        }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn decider(&self) -> &D {
        &self.decider
    }

    /// The history of a stream by name, oldest first.
    pub async fn history_of(&self, stream: &str) -> Result<History<D>, LedgerError<D::Rejection>> {
        let recorded = self.store.read_stream(stream).await?;
        let mut events = Vec::with_capacity(recorded.len());
        let mut state = self.decider.initial_state();
        for record in recorded {
            let event: D::Event = record.decode().map_err(|source| LedgerError::Undecodable {
                stream: stream.to_owned(),
                source,
            })?;
            state =
                self.decider
                    .evolve(state, &event)
                    .map_err(|refused| LedgerError::Invariant {
                        stream: stream.to_owned(),
                        version: Some(record.version),
                        violation: refused.violation,
                    })?;
            events.push(Recorded {
                version: record.version,
                recorded_at: record.recorded_at,
                event,
            });
        }
        Ok(History { events, state })
    }

    /// A stream's history before its first event: what a command that
    /// starts a stream is decided against (`execute_from`).
    pub fn empty_history(&self) -> History<D> {
        History {
            events: Vec::new(),
            state: self.decider.initial_state(),
        }
    }

    /// Decides `command` against the stream's current state and records the
    /// events. Returns the history after, or the first rule it breaks.
    pub async fn execute(
        &self,
        stream: &str,
        command: &D::Command,
    ) -> Result<Executed<D>, LedgerError<D::Rejection>> {
        self.execute_from(stream, None, command).await
    }

    /// `execute`, deciding first against `known`: a history of the stream
    /// the caller holds already (what an `execute` returned, or
    /// `empty_history` for a stream it starts), which saves reading the
    /// stream back. `known` is trusted only as far as the store's fence
    /// lets it: the append expects `known`'s version, so a `known` that is
    /// behind is refused as a conflict, and the stream is read and decided
    /// again. A decision that writes nothing (a rejection, or no event) is
    /// never taken from `known`: it is made again on the stream as read.
    pub async fn execute_from(
        &self,
        stream: &str,
        mut known: Option<History<D>>,
        command: &D::Command,
    ) -> Result<Executed<D>, LedgerError<D::Rejection>> {
        for _ in 0..CONFLICT_RETRIES_MAX {
            let (history, trusted) = match known.take() {
                Some(history) => (history, false),
                None => (self.history_of(stream).await?, true),
            };
            let decided = self
                .decider
                .decide(&history.state, command, self.clock.now());
            let events = match decided {
                Ok(events) if !events.is_empty() => events,
                // From the stream as read: the answer.
                Ok(events) if trusted => {
                    return Ok(Executed {
                        history,
                        appended: events,
                    });
                }
                Err(rejection) if trusted => return Err(LedgerError::Rejected(rejection)),
                // From `known`: read the stream and decide again.
                Ok(_) | Err(_) => continue,
            };
            let expected = ExpectedVersion::after(history.version());
            let History {
                events: mut recorded,
                state,
            } = history;
            // An event that breaks an invariant is never written.
            let state = self.fold_decided(stream, state, &events)?;
            let command_id = D::command_id(command);
            let new_events: Vec<NewEvent> = events
                .iter()
                .enumerate()
                .map(|(index, event)| {
                    NewEvent::encoded(command_id.event_id(index), stored::encode(event))
                })
                .collect();
            match self
                .append_retrying_unavailable(stream, expected, new_events)
                .await
            {
                Ok(recorded_at) => {
                    recorded.extend((expected.next_version()..).zip(&events).map(
                        |(version, event)| Recorded {
                            version,
                            recorded_at,
                            event: event.clone(),
                        },
                    ));
                    return Ok(Executed {
                        history: History {
                            events: recorded,
                            state,
                        },
                        appended: events,
                    });
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(LedgerError::Contention {
            stream: stream.to_owned(),
            attempts: CONFLICT_RETRIES_MAX,
        })
    }

    /// The state after the decided events. A decided event that breaks an
    /// invariant is a bug in the decider: loud in tests (a panic), refused
    /// in production (nothing is written, the error names the invariant).
    fn fold_decided(
        &self,
        stream: &str,
        state: D::State,
        events: &[D::Event],
    ) -> Result<D::State, LedgerError<D::Rejection>> {
        events.iter().try_fold(state, |state, event| {
            self.decider.evolve(state, event).map_err(|refused| {
                #[cfg(debug_assertions)]
                panic!(
                    "the decider decided an event that breaks an invariant on {stream}: {}",
                    refused.violation
                );
                #[cfg(not(debug_assertions))]
                LedgerError::Invariant {
                    stream: stream.to_owned(),
                    version: None,
                    violation: refused.violation,
                }
            })
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
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

impl Ledger<PaymentDecider> {
    /// The order's history, oldest first.
    pub async fn history(
        &self,
        merchant: &MerchantId,
        order_no: &OrderNo,
    ) -> Result<OrderHistory, PaymentLedgerError> {
        self.history_of(&payment_stream(merchant, order_no)).await
    }

    /// Decides and records a command on the order's stream.
    pub async fn execute_on_order(
        &self,
        merchant: &MerchantId,
        order_no: &OrderNo,
        command: &paycode_domain::payment::Command,
    ) -> Result<Executed<PaymentDecider>, PaymentLedgerError> {
        self.execute(&payment_stream(merchant, order_no), command)
            .await
    }
}

/// What the payment ledger answers when it cannot record a command.
pub type PaymentLedgerError = LedgerError<paycode_domain::payment::Rejection>;

#[cfg(test)]
mod tests {
    //! The ledger over any decider: an event that breaks an invariant is
    //! never written, whatever the decider says.

    use chrono::TimeZone;
    use paycode_adapters::clock::ManualClock;
    use paycode_adapters::store::MemoryStore;
    use paycode_domain::payment::{
        ChannelAnswer, Command, CommandKind, Event, Fact, PayOutcome, PaymentState, Rejection,
        SubmitPayment,
    };
    use paycode_domain::{AuthCode, CommandId, Refused};
    use uuid::Uuid;

    use super::*;

    /// The payment decider, except that it records every pay answer twice:
    /// a bug the invariants must catch (a second `Paid` does not fit).
    #[derive(Debug, Clone, Default)]
    struct PaysTwice(PaymentDecider);

    impl Decider for PaysTwice {
        type State = PaymentState;
        type Command = Command;
        type Event = Event;
        type Rejection = Rejection;

        fn initial_state(&self) -> PaymentState {
            self.0.initial_state()
        }

        fn decide(
            &self,
            state: &PaymentState,
            command: &Command,
            now: DateTime<Utc>,
        ) -> Result<Vec<Event>, Rejection> {
            let mut events = self.0.decide(state, command, now)?;
            if let Some(paid) = events.iter().find(|e| matches!(e.fact, Fact::Paid(_))) {
                events.push(paid.clone());
            }
            Ok(events)
        }

        fn evolve(
            &self,
            state: PaymentState,
            event: &Event,
        ) -> Result<PaymentState, Refused<PaymentState>> {
            self.0.evolve(state, event)
        }

        fn is_terminal(&self, state: &PaymentState) -> bool {
            self.0.is_terminal(state)
        }

        fn command_id(command: &Command) -> CommandId {
            command.id
        }
    }

    #[tokio::test]
    async fn a_decided_event_that_breaks_an_invariant_is_a_loud_failure_and_never_written() {
        // Debug builds (tests) panic; release builds answer LedgerError::Invariant. Either way
        // nothing reaches the store: the check comes before the append.
        let store = Arc::new(MemoryStore::new());
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let ledger = Ledger::new(
            store.clone(),
            PaysTwice::default(),
            Arc::new(ManualClock::starting_at(start)),
        );
        let stream = "payment-demo-A1";
        ledger.execute(stream, &submit_a1(1)).await.unwrap();
        let paid = pay_answer(2, start);
        let outcome = tokio::spawn(async move { ledger.execute(stream, &paid).await }).await;
        match outcome {
            Err(panicked) => {
                let message = panicked.into_panic();
                let message = message
                    .downcast_ref::<String>()
                    .expect("a formatted panic message");
                assert!(
                    message.contains("breaks an invariant on payment-demo-A1: Paid does not fit"),
                    "{message}"
                );
            }
            Ok(answer) => assert!(
                matches!(answer, Err(LedgerError::Invariant { version: None, .. })),
                "{answer:?}"
            ),
        }
        assert_eq!(store.read_stream(stream).await.unwrap().len(), 1);
    }

    fn submit_a1(id: u128) -> Command {
        Command::new(
            CommandId(Uuid::from_u128(id)),
            CommandKind::SubmitPayment(SubmitPayment {
                merchant_id: MerchantId::parse("demo").unwrap(),
                order_no: OrderNo::parse("A1").unwrap(),
                auth_code: AuthCode::parse("134567890123456789").unwrap(),
                auth_code_fingerprint: None,
                amount: "1.00".parse().unwrap(),
                subject: "Coffee".into(),
            }),
        )
    }

    fn pay_answer(id: u128, at: DateTime<Utc>) -> Command {
        Command::new(
            CommandId(Uuid::from_u128(id)),
            CommandKind::RecordPayAnswer(ChannelAnswer::new(PayOutcome::Paid {
                channel_trade_no: "4200000001".into(),
                paid_at: Some(at),
            })),
        )
    }

    #[tokio::test]
    async fn a_known_history_that_is_behind_the_log_is_refused_by_the_fence_and_read_again() {
        let store = Arc::new(MemoryStore::new());
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let ledger = Ledger::new(
            store.clone(),
            PaymentDecider::default(),
            Arc::new(ManualClock::starting_at(start)),
        );
        let stream = "payment-demo-A1";
        let submitted = ledger
            .execute_from(stream, Some(ledger.empty_history()), &submit_a1(1))
            .await
            .unwrap();
        assert_eq!(submitted.history.version(), Some(0));
        // Someone else records the pay answer; this caller still holds `submitted`.
        ledger.execute(stream, &pay_answer(2, start)).await.unwrap();

        // A second submission decided on the empty history: the append is
        // refused, the stream read, and the rejection comes from the log.
        let again = ledger
            .execute_from(stream, Some(ledger.empty_history()), &submit_a1(3))
            .await;
        assert!(
            matches!(
                again,
                Err(LedgerError::Rejected(Rejection::AlreadySubmitted))
            ),
            "{again:?}"
        );
        // A command decided on the stale history: written after the log's
        // head, decided against the paid order (which keeps it as a late answer).
        let late = ledger
            .execute_from(stream, Some(submitted.history), &pay_answer(4, start))
            .await
            .unwrap();
        let recorded = store.read_stream(stream).await.unwrap();
        assert_eq!(recorded.len(), late.history.events.len());
        assert_eq!(late.history.version(), Some(recorded.len() as u64 - 1));
        assert!(matches!(late.history.state, PaymentState::Paid(_)));
    }

    #[tokio::test]
    async fn a_rejection_decided_on_a_known_history_is_decided_again_on_the_log() {
        let store = Arc::new(MemoryStore::new());
        let start = Utc.with_ymd_and_hms(2026, 11, 22, 2, 0, 0).unwrap();
        let ledger = Ledger::new(
            store.clone(),
            PaymentDecider::default(),
            Arc::new(ManualClock::starting_at(start)),
        );
        let stream = "payment-demo-A1";
        ledger.execute(stream, &submit_a1(1)).await.unwrap();
        // The caller holds a history from before the submission: against it
        // a pay answer is refused, against the log it is recorded.
        let executed = ledger
            .execute_from(stream, Some(ledger.empty_history()), &pay_answer(2, start))
            .await
            .unwrap();
        assert!(matches!(executed.history.state, PaymentState::Paid(_)));
        assert_eq!(store.read_stream(stream).await.unwrap().len(), 2);
    }
}
