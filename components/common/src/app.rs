//! The composition root: the one place that decides which configuration, which handlers and which
//! writer a request runs with, so the library's modules beneath it need not know one another. A
//! component's request reaches the library through here; the modules below take what they need as
//! arguments rather than loading it.
//!
//! Today it composes the drain (the `queue-drain` component's kick and `POST /admin/drain`). The tick
//! and the periodic sync still compose themselves in `sync` (`SyncSettings::page_router`), since the
//! tick runs inside `sync`'s HTTP handler.

use anyhow::Context;
use serde_json::json;

use crate::api::Response;
use crate::configuration;
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

/// `GET /health`: liveness, whether the configuration is complete (names only, never values) and whether
/// the database answers.
pub fn health(platform: &Platform, component: &str) -> Response {
    let missing = configuration::missing_required(&*platform.vars);
    let database = match platform.sql.execute("SELECT 1", &[]) {
        Ok(_) => "ok",
        Err(_) => "unavailable",
    };
    // An API that refuses our credentials pauses the drain: the app is up, but a person must act.
    let paused: Vec<serde_json::Value> = crate::drain::breaker::open_breakers(&*platform.sql)
        .unwrap_or_default()
        .into_iter()
        .map(|b| json!({ "service": b.service, "status": b.status, "since": b.opened_at }))
        .collect();
    Response::json(
        200,
        &json!({
            "status": if paused.is_empty() { "ok" } else { "paused" },
            "component": component,
            "version": env!("CARGO_PKG_VERSION"),
            "configuration": { "complete": missing.is_empty(), "missing": missing },
            "database": database,
            "credentials_refused": paused,
        }),
    )
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::{MapVariables, NativePlatformBuilder};

    #[test]
    fn health_names_missing_variables_but_shows_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let vars = MapVariables::from_pairs([
            ("openphone_api_key", "op-live-key"),
            ("admin_token", "tok"),
        ]);
        let platform = NativePlatformBuilder::new(dir.path())
            .vars(vars)
            .build()
            .unwrap();
        let response = health(&platform, "webhook");
        assert_eq!(response.status, 200);
        let body = response.json_body();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["database"], "ok");
        assert_eq!(body["configuration"]["complete"], false);
        let missing = body["configuration"]["missing"].as_array().unwrap();
        assert!(missing.iter().any(|m| m == "notion_api_key"));
        assert!(!missing.iter().any(|m| m == "openphone_api_key"));
        let text = String::from_utf8(response.body).unwrap();
        assert!(
            !text.contains("op-live-key") && !text.contains("tok\""),
            "{text}"
        );
    }
}
