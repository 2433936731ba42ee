//! `cron`: the minute tick for the spin-trigger-cron plugin. The export is bound with `wit-bindgen` from
//! the app's `cron` world in `wit/` (spin-cron-sdk is not on crates.io); the work itself is
//! `common::sync::tick`, the same function as `POST /admin/tick`, run in-process because
//! `*.spin.internal` is not reachable from a cron component.

wit_bindgen::generate!({
    path: "../../wit",
    world: "openphone-notion-sync:app/cron",
    generate_all,
});

use common::platform::spin::platform;
use common::sync::runs::{self, RunKind};
use common::sync::Via;
use tracing::Instrument;

struct Tick;

impl Guest for Tick {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(async move {
            let platform = platform().map_err(|e| Error::Other(format!("{e:#}")))?;
            let log_level = platform
                .vars
                .get("log_level")
                .ok()
                .flatten()
                .unwrap_or_default();
            common::telemetry::init(&log_level);
            let span = tracing::info_span!(
                "cron",
                component = "cron",
                scheduled_at = metadata.timestamp
            );
            async {
                common::migrations::ensure_checked(&platform)
                    .await
                    .map_err(|e| Error::Other(format!("{e:#}")))?;
                let run_id = runs::start(&platform, RunKind::Tick, None)
                    .map_err(|e| Error::Other(format!("{e:#}")))?;
                let report = common::sync::tick(&platform, &run_id, &Via::InProcess).await;
                // Failures are in the tick's `sync_runs` row; the plugin only logs an error result.
                match report.errors.last() {
                    Some(error) => Err(Error::Other(error.clone())),
                    None => Ok(()),
                }
            }
            .instrument(span)
            .await
        })
    }
}

export!(Tick);
