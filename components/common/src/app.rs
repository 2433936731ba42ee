//! The composition root: the one place that decides which configuration, which handlers and which
//! writer a request runs with, so the library's modules beneath it need not know one another. A
//! component's request reaches the library through here, with the [`Settings`] the edge made for it;
//! the modules below take what they need as arguments rather than loading it.
//!
//! It composes the drain (the `queue-drain` component's kick and `POST /admin/drain`), the tick (the
//! cron component's and `POST /admin/tick`'s: the drain, then `sync`'s steps), the work a `202` accepted
//! and `/health`. The drain routes events to the page handlers of the request's [`PageSettings`]
//! ([`PageSettings::router`]), the same a number's sync lets its events in with.

use anyhow::Context;
use serde_json::json;

use crate::api::Response;
use crate::configuration::Settings;
use crate::drain::{self, DrainOptions, DrainReport};
use crate::pages::PageSettings;
use crate::platform::Platform;
use crate::sync::http::{Accepted, Finished};
use crate::sync::{TickReport, Via, PHONE_SYNC_URL};

/// Drains the queue with the request's settings and the page routes; with nothing due, looks again at
/// `linger_until_ms` before stopping (a kick's `/drain?until=`, [`DrainOptions::linger_until_ms`]).
pub async fn drain(
    platform: &Platform,
    settings: &Settings,
    linger_until_ms: Option<i64>,
) -> anyhow::Result<DrainReport> {
    let pages = PageSettings::load(settings).context("drain configuration")?;
    let options = DrainOptions {
        linger_until_ms,
        ..DrainOptions::from_config(&pages.sync)
    };
    drain::drain_retrying(platform, &pages.router(platform), &options).await
}

/// Runs one tick recorded as `run_id`: the drain, then the rest of [`crate::sync::tick`].
pub async fn tick(platform: &Platform, settings: &Settings, run_id: &str, via: &Via) -> TickReport {
    let drained = drain(platform, settings, None);
    crate::sync::tick(platform, settings, run_id, via, drained).await
}

/// Runs work a `202` accepted (`POST /admin/sync`, `POST /admin/tick`), each number's sync through
/// `phone-sync`'s private route.
pub async fn run_accepted(
    platform: &Platform,
    settings: &Settings,
    accepted: Accepted,
) -> Finished {
    let via = Via::Chained(PHONE_SYNC_URL.to_owned());
    match accepted {
        Accepted::Sync { run_id, request } => {
            Finished::Sync(crate::sync::run(platform, settings, &run_id, &request, &via).await)
        }
        Accepted::Tick { run_id } => Finished::Tick(tick(platform, settings, &run_id, &via).await),
    }
}

/// `GET /health`: liveness, whether the configuration is complete (names only, never values) and whether
/// the app's database and the intake database answer.
pub fn health(platform: &Platform, settings: &Settings, component: &str) -> Response {
    let missing = settings.missing_required();
    let answers = |sql: &dyn crate::platform::Sql| match sql.execute("SELECT 1", &[]) {
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
            "database": answers(&*platform.sql),
            "intake_database": answers(&*platform.intake),
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
        let response = health(&platform, &Settings::new(platform.vars.clone()), "webhook");
        assert_eq!(response.status, 200);
        let body = response.json_body();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["database"], "ok");
        assert_eq!(body["intake_database"], "ok");
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

    #[test]
    fn health_says_which_database_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let platform = NativePlatformBuilder::new(dir.path()).build().unwrap();
        let platform = Platform {
            intake: std::rc::Rc::new(crate::testing::UnavailableSql),
            ..platform
        };
        let body = health(&platform, &Settings::new(platform.vars.clone()), "webhook").json_body();
        assert_eq!(
            (&body["database"], &body["intake_database"]),
            (&json!("ok"), &json!("unavailable"))
        );
    }
}
