//! `cron`: the minute tick for the spin-trigger-cron plugin. The export is bound with `wit-bindgen` from
//! the app's `cron` world in `wit/` (spin-cron-sdk is not on crates.io); the work itself is
//! `common::app::tick`, the same function as `POST /admin/tick`, run in-process because
//! `*.spin.internal` is not reachable from a cron component. Its start-up is the edge's
//! (`common::http::serve::run_trigger`), as for an HTTP request minus the routing.

wit_bindgen::generate!({
    path: "../../wit",
    world: "openphone-notion-sync:app/cron",
    generate_all,
});

use common::http::serve::run_trigger;
use common::platform::spin::platform;
use common::sync::runs::{self, RunKind};
use common::sync::Via;

struct Tick;

impl Guest for Tick {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(async move {
            run_trigger(
                "cron",
                metadata.timestamp,
                platform(),
                |platform, settings| async move {
                    let run_id = runs::start(&platform, RunKind::Tick, None)?;
                    let report =
                        common::app::tick(&platform, &settings, &run_id, &Via::in_process()).await;
                    // Failures are in the tick's `sync_runs` row; the plugin only logs an error result.
                    match report.errors.last() {
                        Some(error) => Err(anyhow::anyhow!("{error}")),
                        None => Ok(()),
                    }
                },
            )
            .await
            .map_err(|e| Error::Other(format!("{e:#}")))
        })
    }
}

export!(Tick);
