//! `cron`: the minute tick for the spin-trigger-cron plugin. The export is bound with `wit-bindgen` from
//! the app's `cron` world in `wit/` (spin-cron-sdk is not on crates.io); the work itself is the same
//! `common` function as `POST /admin/tick`, run in-process because `*.spin.internal` is not reachable from
//! a cron component.

wit_bindgen::generate!({
    path: "../../wit",
    world: "openphone-notion-sync:app/cron",
    generate_all,
});

use common::platform::spin::platform;

struct Tick;

impl Guest for Tick {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        spin_sdk::http::run(async move {
            let platform = platform().map_err(|e| Error::Other(format!("{e:#}")))?;
            common::telemetry::init(
                &platform
                    .vars
                    .get("log_level")
                    .ok()
                    .flatten()
                    .unwrap_or_default(),
            );
            let span = tracing::info_span!(
                "tick",
                component = "cron",
                scheduled_at = metadata.timestamp
            );
            let _entered = span.enter();
            common::migrations::ensure(&platform)
                .await
                .map_err(|e| Error::Other(format!("{e:#}")))?;
            tracing::info!("tick");
            Ok(())
        })
    }
}

export!(Tick);
