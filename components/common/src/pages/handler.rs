//! The drain's handler for the event types that write pages: parses the stored payload and writes it
//! ([`events::apply`]) with a [`Writer`](super::Writer) under the number's lease, turning write errors
//! into the queue's retry decisions.

use std::rc::Rc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;

use super::{events, PageSettings, WriteError};
use crate::domain::EventType;
use crate::drain::{EventHandler, ProcessError, Router};
use crate::lease::Lease;
use crate::notion::Notion;
use crate::openphone::OpenPhone;
use crate::outbound::{ApiError, Failure};
use crate::platform::Platform;
use crate::queue::QueuedEvent;

/// Writes calls and messages to Notion.
pub struct PageHandler {
    platform: Platform,
    settings: PageSettings,
}

impl PageHandler {
    /// A handler with the request's platform and settings ([`PageSettings::router`] is how the app
    /// makes one).
    pub fn new(platform: Platform, settings: PageSettings) -> Self {
        Self { platform, settings }
    }

    /// The routes the app runs with: every processed event type to this handler.
    pub fn router(self) -> Router {
        let pages: Rc<dyn EventHandler> = Rc::new(self);
        EventType::ALL
            .into_iter()
            .fold(Router::new(), |router, event_type| {
                router.route(event_type, pages.clone())
            })
    }
}

impl From<WriteError> for ProcessError {
    fn from(error: WriteError) -> Self {
        match &error {
            // A create claimed by another worker (or by one that crashed: the claim goes stale) is
            // waited for, not failed: attempts are for failures.
            WriteError::Busy => {
                return ProcessError::Busy {
                    message: error.to_string(),
                    retry_after: Duration::from_millis(error.retry_after_ms().unwrap_or(30_000)),
                }
            }
            WriteError::Api(ApiError::RateLimited { retry_after_ms, .. }) => {
                return ProcessError::Throttled {
                    retry_after: Duration::from_millis(retry_after_ms.unwrap_or(30_000)),
                    message: error.to_string(),
                }
            }
            WriteError::LeaseLost(_) => {
                return ProcessError::Throttled {
                    message: error.to_string(),
                    retry_after: Duration::from_secs(5),
                }
            }
            WriteError::Api(ApiError::Refused {
                service,
                status: status @ (401 | 403),
                ..
            }) => {
                return ProcessError::Unauthorized {
                    service: service.name().to_owned(),
                    status: *status,
                    message: error.to_string(),
                }
            }
            _ => {}
        }
        if error.is_transient() {
            ProcessError::Retryable {
                message: error.to_string(),
                retry_after: error.retry_after_ms().map(Duration::from_millis),
            }
        } else {
            ProcessError::permanent(error.to_string())
        }
    }
}

#[async_trait(?Send)]
impl EventHandler for PageHandler {
    async fn handle(
        &self,
        event_type: EventType,
        event: &QueuedEvent,
        lease: &Lease,
    ) -> Result<(), ProcessError> {
        let payload: serde_json::Value = serde_json::from_str(&event.payload)
            .map_err(|e| ProcessError::permanent(format!("stored payload is not JSON: {e}")))?;
        let notion = Notion::new(&self.platform, &self.settings.notion);
        let openphone = OpenPhone::new(&self.platform, &self.settings.openphone);
        let writer = self
            .settings
            .writer(&self.platform, &notion, &openphone, lease)
            .map_err(|e| {
                ProcessError::permanent(format!("object storage is misconfigured: {e:#}"))
            })?;
        let span = tracing::info_span!("write_page", event_id = %event.id, %event_type,
            resource_id = event.resource_id.as_deref().unwrap_or_default(),
            phone_number_id = event.phone_number_id.as_deref().unwrap_or_default());
        match events::apply(&writer, event_type, &payload)
            .instrument(span)
            .await
        {
            // The page was deleted or trashed by a person: the sync respects that (see `/stats`).
            Err(WriteError::PageGone { page_id }) => {
                tracing::info!(event_id = %event.id, page_id, "page deleted in Notion; the event is done without writing");
                Ok(())
            }
            other => Ok(other.map(drop)?),
        }
    }
}
