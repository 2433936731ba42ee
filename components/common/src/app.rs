//! The composition root: the one place that decides which configuration, which handlers and which
//! writer a request runs with, so the library's modules beneath it need not know one another. A
//! component's request reaches the library through here; the modules below take what they need as
//! arguments rather than loading it.
//!
//! Today it composes the drain (the `queue-drain` component's kick and `POST /admin/drain`). The tick
//! and the periodic sync still compose themselves in `sync` (`SyncSettings::page_router`), since the
//! tick runs inside `sync`'s HTTP handler.

use anyhow::Context;

use crate::drain::DrainReport;
use crate::platform::Platform;
use crate::sync::SyncSettings;

/// Drains the queue with the app's configuration (loaded once, here) and routes; with nothing due, looks
/// again at `linger_until_ms` before stopping (a kick's `/drain?until=`).
pub async fn drain(
    platform: &Platform,
    linger_until_ms: Option<i64>,
) -> anyhow::Result<DrainReport> {
    let settings = SyncSettings::load(platform).context("drain configuration")?;
    settings.drain(platform, linger_until_ms).await
}
