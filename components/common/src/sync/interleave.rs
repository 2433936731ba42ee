//! Lets a number's webhook events in while its periodic sync holds the number's lease. The sync holds the
//! lease for up to [`SyncOptions::number_budget_ms`](super::SyncOptions::number_budget_ms) (10 minutes), and
//! a drain that finds the number busy gives its events back; so before each of its own writes the sync
//! processes, under the lease it holds, the number's events that are due or were just given back
//! ([`drain::drain_key_under`]). An event then waits for one page of the sync (a second or two at Notion's
//! 3 requests/s), not for the sync, and the number still has one writer at a time, its events in order.

use crate::drain::{self, DrainOptions, Router};
use crate::lease::Lease;
use crate::platform::Platform;

use super::SyncSettings;

/// The drain of one number, run by the sync that holds its lease.
pub struct Interleave<'a> {
    platform: &'a Platform,
    router: Router,
    options: DrainOptions,
    lease: &'a Lease,
    phone_number_id: &'a str,
}

impl<'a> Interleave<'a> {
    /// The drain of `phone_number_id`'s events under `lease`, writing pages as the `queue-drain`
    /// component does (recordings copied when object storage is configured).
    pub fn new(
        platform: &'a Platform,
        settings: &SyncSettings,
        lease: &'a Lease,
        phone_number_id: &'a str,
    ) -> Self {
        Self {
            platform,
            router: settings.pages.router(platform),
            options: DrainOptions::from_config(&settings.pages.sync),
            lease,
            phone_number_id,
        }
    }

    /// Processes the number's waiting events; returns how many were processed (whatever their outcome).
    /// A failure here is logged and leaves the events to the next drain: the sync goes on.
    pub async fn let_in(&self) -> u32 {
        match drain::drain_key_under(
            self.platform,
            &self.router,
            &self.options,
            self.lease,
            self.phone_number_id,
        )
        .await
        {
            Ok(events) => {
                if !events.is_empty() {
                    tracing::info!(
                        events = events.len(),
                        "webhook events processed between the sync's pages"
                    );
                }
                u32::try_from(events.len()).unwrap_or(u32::MAX)
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "letting the number's events in failed");
                0
            }
        }
    }
}
