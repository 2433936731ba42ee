//! What processes one event: the [`EventHandler`] trait, the errors that decide an event's fate, and the
//! [`Router`] from event type to handler.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use async_trait::async_trait;

use crate::domain::EventType;
use crate::lease::{Lease, LeaseLost};
use crate::queue::QueuedEvent;

/// Why an event was not processed; decides what the queue does with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Worth another attempt later (network trouble, 5xx): back to `pending` with backoff, no sooner
    /// than `retry_after`; `dead` once the event is older than `queue_max_age_hours`.
    #[error("{message}")]
    Retryable {
        /// What failed.
        message: String,
        /// The API's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time (400/404 from an API, bad data): `dead` at once.
    #[error("{message}")]
    Permanent {
        /// What failed.
        message: String,
    },
    /// Nothing failed, but another worker holds what the event needs (a page being created): back to
    /// `pending` after `retry_after`, without spending an attempt.
    #[error("{message}")]
    Busy {
        /// What is busy.
        message: String,
        /// When to look again.
        retry_after: Duration,
    },
    /// Nothing is wrong with the event: the API asked us to slow down (`429`), or this drain's lease on
    /// the number ran out. Back to `pending` after `retry_after`, without spending an attempt; never
    /// `dead` for it.
    #[error("{message}")]
    Throttled {
        /// What happened.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// An API refuses our credentials (`401`, `403`): every event would fail alike until a person
    /// fixes the token or the sharing. The drain opens the API's breaker and pauses; the event waits,
    /// unspent.
    #[error("{message}")]
    Unauthorized {
        /// The API (`notion`, `openphone`).
        service: String,
        /// Its status.
        status: u16,
        /// What it said.
        message: String,
    },
}

impl ProcessError {
    /// A retryable error without `Retry-After`.
    pub fn retryable(message: impl Into<String>) -> Self {
        ProcessError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        ProcessError::Permanent {
            message: message.into(),
        }
    }
}

impl From<LeaseLost> for ProcessError {
    fn from(lost: LeaseLost) -> Self {
        ProcessError::Throttled {
            message: format!("{lost}; stopped before the next write"),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Processes one event of a type it is routed.
#[async_trait(?Send)]
pub trait EventHandler {
    /// Processes `event`, of type `event_type` (its `type` column, parsed once by the drain), while the
    /// drain holds `lease` on the event's number. A handler writes in steps and calls [`Lease::check`]
    /// before each (`?` turns a lost lease into a retryable error).
    async fn handle(
        &self,
        event_type: EventType,
        event: &QueuedEvent,
        lease: &Lease,
    ) -> Result<(), ProcessError>;
}

/// Event type → handler. A type with no handler is marked `skipped` by the drain.
#[derive(Clone, Default)]
pub struct Router {
    routes: HashMap<EventType, Rc<dyn EventHandler>>,
}

impl Router {
    /// A router with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `event_type` to `handler`, replacing any earlier route.
    pub fn route(mut self, event_type: EventType, handler: Rc<dyn EventHandler>) -> Self {
        self.routes.insert(event_type, handler);
        self
    }

    /// The handler of `event_type`.
    pub fn handler(&self, event_type: EventType) -> Option<&dyn EventHandler> {
        self.routes.get(&event_type).map(Rc::as_ref)
    }
}
