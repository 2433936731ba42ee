//! Admin routes of the `queue-drain` component, behind the admin bearer token: run the drain now, the
//! dead-letter queue ([`dlq`]), `/stats` and the status page ([`status_page`]), the Notion schema check
//! ([`notion_check`]), Canvas lookups ([`canvas_lookup`]) and the one-step [`setup`].

pub mod canvas_lookup;
pub mod dlq;
pub mod notion_check;
pub mod setup;
pub mod status_page;

use serde_json::json;

use crate::api::{self, Request, Response};
use crate::configuration::{AdminConfig, Loader, NotionConfig, OpenPhoneConfig, SyncConfig};
use crate::notion::Notion;
use crate::platform::Platform;
use crate::stats;

/// `Err` is the `401` to send when `request` lacks the admin token. An unset token authorizes nobody.
pub fn authorize(platform: &Platform, request: &Request) -> Result<(), Response> {
    let admin = AdminConfig::load(&mut Loader::new(&*platform.vars));
    api::require_admin(request, &admin.token)
}

/// `POST /admin/drain`: drains now and answers with what was processed.
pub async fn drain_now(platform: &Platform, request: &Request) -> Response {
    if request.method != "POST" {
        return api::method_not_allowed("POST");
    }
    if let Err(refusal) = authorize(platform, request) {
        return refusal;
    }
    match crate::app::drain(platform, None).await {
        Ok(report) => Response::json(200, &report.to_json()),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "admin drain failed");
            Response::error(500, format!("the drain failed: {e:#}"))
        }
    }
}

/// `GET /stats`: the numbers of [`stats::collect`] as JSON.
pub fn stats(platform: &Platform, request: &Request) -> Response {
    if request.method != "GET" {
        return api::method_not_allowed("GET");
    }
    if let Err(refusal) = authorize(platform, request) {
        return refusal;
    }
    match stats::collect(platform) {
        Ok(stats) => Response::json(200, &serde_json::to_value(stats).expect("stats serialize")),
        Err(e) => Response::error(500, format!("could not read the stats: {e:#}")),
    }
}

/// `GET /status`: the status page, for the admin token or a signed link from `/admin/status-link`.
pub fn status(platform: &Platform, request: &Request) -> Response {
    if request.method != "GET" {
        return api::method_not_allowed("GET");
    }
    let admin = AdminConfig::load(&mut Loader::new(&*platform.vars));
    let by_link = status_page::link_is_valid(
        admin.token.expose(),
        request.query_param("expires").as_deref(),
        request.query_param("sig").as_deref(),
        platform.clock.now_ms(),
    );
    if !by_link {
        if let Err(refusal) = api::require_admin(request, &admin.token) {
            return refusal;
        }
    }
    match stats::collect(platform).and_then(|s| Ok((s, stats::last_day(platform)?))) {
        Ok((stats, day)) => status_page::response(&stats, &day),
        Err(e) => Response::error(500, format!("could not read the stats: {e:#}")),
    }
}

/// `GET /admin/status-link`: a link to the status page that works in a browser for 15 minutes.
pub fn status_link(platform: &Platform, request: &Request) -> Response {
    if let Err(refusal) = authorize(platform, request) {
        return refusal;
    }
    let admin = AdminConfig::load(&mut Loader::new(&*platform.vars));
    let query = status_page::signed_query(admin.token.expose(), platform.clock.now_ms());
    Response::json(
        200,
        &json!({ "path": format!("/status?{query}"), "expires_in_seconds": status_page::LINK_TTL_MS / 1000 }),
    )
}

/// `POST /admin/notion/check[?fix=true]`.
pub async fn notion_check(platform: &Platform, request: &Request) -> Response {
    if request.method != "POST" {
        return api::method_not_allowed("POST");
    }
    if let Err(refusal) = authorize(platform, request) {
        return refusal;
    }
    let mut loader = Loader::new(&*platform.vars);
    let config = NotionConfig::load(&mut loader);
    if let Err(e) = loader.finish() {
        return Response::error(503, e.to_string());
    }
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

/// `POST /admin/setup` with `{"public_url": "https://…"}`: see [`setup`].
pub async fn setup(platform: &Platform, request: &Request) -> Response {
    if request.method != "POST" {
        return api::method_not_allowed("POST");
    }
    if let Err(refusal) = authorize(platform, request) {
        return refusal;
    }
    let mut loader = Loader::new(&*platform.vars);
    let notion = NotionConfig::load(&mut loader);
    let openphone = OpenPhoneConfig::load(&mut loader);
    if let Err(e) = loader.finish() {
        return Response::error(503, e.to_string());
    }
    setup::run(platform, &notion, &openphone, &request.body).await
}

/// `POST /admin/canvas/lookup`.
pub async fn canvas_lookup(platform: &Platform, request: &Request) -> Response {
    if request.method != "POST" {
        return api::method_not_allowed("POST");
    }
    if let Err(refusal) = authorize(platform, request) {
        return refusal;
    }
    let mut loader = Loader::new(&*platform.vars);
    let notion = NotionConfig::load(&mut loader);
    let sync = SyncConfig::load(&mut loader);
    if let Err(e) = loader.finish() {
        return Response::error(503, e.to_string());
    }
    canvas_lookup::lookup(platform, &notion, &sync, &request.body).await
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::queue::{NewEvent, Queue};
    use crate::testing::{migrated_platform, state_of, ADMIN_TOKEN, T0};

    fn admin_request(method: &str, token: Option<&str>) -> Request {
        Request {
            method: method.into(),
            path: "/admin/drain".into(),
            headers: token
                .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn drain_now_needs_the_token_and_reports_what_it_did() {
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
        Queue::new(&*platform.sql).enqueue(&event, T0).unwrap();

        for token in [None, Some("wrong")] {
            let refused = drain_now(&platform, &admin_request("POST", token)).await;
            assert_eq!(refused.status, 401);
            assert_eq!(state_of(&platform, "EV1"), "pending");
        }
        assert_eq!(
            drain_now(&platform, &admin_request("GET", Some(ADMIN_TOKEN)))
                .await
                .status,
            405
        );

        let response = drain_now(&platform, &admin_request("POST", Some(ADMIN_TOKEN))).await;
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
