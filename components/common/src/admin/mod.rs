//! Admin routes of the `queue-drain` component, behind the admin bearer token (checked by the edge,
//! [`crate::http`], before any of these runs): run the drain now, the
//! dead-letter queue ([`dlq`]), `/stats` and the status page ([`status_page`]), the Notion schema check
//! ([`mod@notion_check`]), Canvas lookups ([`mod@canvas_lookup`]) and the one-step [`mod@setup`].

pub mod canvas_lookup;
pub mod dlq;
pub mod notion_check;
pub mod setup;
pub mod status_page;

use serde_json::json;

use crate::api::{Request, Response};
use crate::configuration::{NotionConfig, OpenPhoneConfig, Settings, SyncConfig};
use crate::notion::Notion;
use crate::platform::Platform;
use crate::stats;

/// `POST /admin/drain`: drains now and answers with what was processed.
pub async fn drain_now(platform: &Platform, settings: &Settings) -> Response {
    match crate::app::drain(platform, settings, None).await {
        Ok(report) => Response::json(200, &report.to_json()),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "admin drain failed");
            Response::error(500, format!("the drain failed: {e:#}"))
        }
    }
}

/// `GET /stats`: the numbers of [`stats::collect`] as JSON.
pub fn stats(platform: &Platform) -> Response {
    match stats::collect(platform) {
        Ok(stats) => Response::json(200, &serde_json::to_value(stats).expect("stats serialize")),
        Err(e) => Response::error(500, format!("could not read the stats: {e:#}")),
    }
}

/// `GET /status`: the status page, for the admin token or a signed link from `/admin/status-link` (the edge
/// checks either).
pub fn status(platform: &Platform) -> Response {
    match stats::collect(platform).and_then(|s| Ok((s, stats::last_day(platform)?))) {
        Ok((stats, day)) => status_page::response(&stats, &day),
        Err(e) => Response::error(500, format!("could not read the stats: {e:#}")),
    }
}

/// `GET /admin/status-link`: a link to the status page that works in a browser for 15 minutes.
pub fn status_link(platform: &Platform, settings: &Settings) -> Response {
    let admin = settings.admin();
    let query = status_page::signed_query(admin.token.expose(), platform.clock.now_ms());
    Response::json(
        200,
        &json!({ "path": format!("/status?{query}"), "expires_in_seconds": status_page::LINK_TTL_MS / 1000 }),
    )
}

/// `POST /admin/notion/check[?fix=true]`.
pub async fn notion_check(platform: &Platform, settings: &Settings, request: &Request) -> Response {
    let config = match settings.load(NotionConfig::load) {
        Ok(config) => config,
        Err(e) => return Response::error(503, e.to_string()),
    };
    let fix = request.query_param("fix").as_deref() == Some("true");
    let notion = Notion::new(platform, &config);
    match notion_check::check(
        &notion,
        &config.calls_database_id,
        &config.messages_database_id,
        config.canvas_database_id.as_deref(),
        fix,
    )
    .await
    {
        Ok(checks) => {
            let ok = checks.iter().all(notion_check::DatabaseCheck::ok);
            Response::json(200, &json!({ "ok": ok, "fixed": fix, "databases": checks }))
        }
        Err(e) => Response::error(502, format!("Notion could not be checked: {e}")),
    }
}

/// `POST /admin/setup` with `{"public_url": "https://…"}`: see [`mod@setup`].
pub async fn setup(platform: &Platform, settings: &Settings, request: &Request) -> Response {
    let (notion, openphone) =
        match settings.load(|l| (NotionConfig::load(l), OpenPhoneConfig::load(l))) {
            Ok(sections) => sections,
            Err(e) => return Response::error(503, e.to_string()),
        };
    setup::run(platform, &notion, &openphone, &request.body).await
}

/// `POST /admin/canvas/lookup`.
pub async fn canvas_lookup(
    platform: &Platform,
    settings: &Settings,
    request: &Request,
) -> Response {
    let (notion, sync) = match settings.load(|l| (NotionConfig::load(l), SyncConfig::load(l))) {
        Ok(sections) => sections,
        Err(e) => return Response::error(503, e.to_string()),
    };
    canvas_lookup::lookup(platform, &notion, &sync, &request.body).await
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::queue::{NewEvent, Queue};
    use crate::testing::{migrated_platform, state_of, T0};

    #[tokio::test]
    async fn drain_now_reports_what_it_did() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let event = NewEvent {
            id: "EV1",
            event_type: "call.completed",
            phone_number_id: Some("PN1"),
            resource_id: Some("AC1"),
            created_at: T0,
            payload: "{}",
            skip_reason: None,
        };
        Queue::of(&platform).enqueue(&event, T0).unwrap();

        let settings = Settings::new(platform.vars.clone());
        let response = drain_now(&platform, &settings).await;
        assert_eq!(response.status, 200);
        let body = response.json_body();
        // The stored payload has no call in it: a permanent error, dead at once with the reason.
        assert_eq!(body["dead"], 1, "{body}");
        assert_eq!(body["events"][0]["id"], "EV1");
        assert_eq!(body["events"][0]["outcome"], "dead");
        let error = body["events"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("bad event data"), "{error}");
        assert_eq!(state_of(&platform, "EV1"), "dead");
    }
}
