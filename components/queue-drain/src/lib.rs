//! `queue-drain`: drains the event queue into Notion — kicked by the webhook on the private
//! `http://queue-drain.spin.internal/drain` — and serves `/stats`, the status page and the admin routes
//! (drain, the tick, dead letters, Notion check, Canvas lookup, setup).

use common::platform::spin::{platform, read_request, send_response};
use common::sync::http::Handled;
use common::{admin, api, drain, sync};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;
use tracing::Instrument;

/// Admin bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let request = match read_request(request, MAX_BODY).await {
        Ok(request) => request,
        Err(refusal) => return send_response(out, refusal).await,
    };
    let platform = match platform() {
        Ok(p) => p,
        Err(e) => {
            return send_response(
                out,
                api::Response::error(503, format!("storage unavailable: {e:#}")),
            )
            .await
        }
    };
    common::telemetry::init(
        &platform
            .vars
            .get("log_level")
            .ok()
            .flatten()
            .unwrap_or_default(),
    );
    let span = tracing::info_span!("request", component = "queue-drain", method = %request.method, path = %request.path);
    async move {
        if let Err(e) = common::migrations::ensure(&platform).await {
            tracing::error!(error = %format!("{e:#}"), "migrations failed");
            let refusal = api::Response::error(503, format!("the database is not ready: {e:#}"));
            return send_response(out, refusal).await;
        }
        // The tick answers 202 with its run id, then drains and (when due) syncs, after the response.
        if request.path == "/admin/tick" {
            return match sync::http::admin_tick(&platform, &request) {
                Handled::Done(response) => send_response(out, response).await,
                Handled::Accepted(response, work) => {
                    send_response(out, response).await;
                    work.run(&platform).await;
                }
            };
        }
        // Routes that change the queue answer first and drain after the response is sent.
        let (response, drain_after) = match request.path.as_str() {
            "/drain" => drain::answer_kick(&request),
            "/admin/drain" => (admin::drain_now(&platform, &request).await, false),
            "/admin/dlq" => (admin::dlq::list(&platform, &request), false),
            "/admin/dlq/replay" => {
                let replay = admin::dlq::replay(&platform, &request);
                (replay.response, replay.replayed > 0)
            }
            "/stats" => (admin::stats(&platform, &request), false),
            "/status" => (admin::status(&platform, &request), false),
            "/admin/status-link" => (admin::status_link(&platform, &request), false),
            "/admin/notion/check" => (admin::notion_check(&platform, &request).await, false),
            "/admin/canvas/lookup" => (admin::canvas_lookup(&platform, &request).await, false),
            "/admin/setup" => (admin::setup(&platform, &request).await, false),
            path => (api::not_found(path), false),
        };
        let linger_until = match request.path.as_str() {
            "/drain" => drain::kick_linger_until(&request),
            _ => None,
        };
        send_response(out, response).await;
        if drain_after {
            match common::app::drain(&platform, linger_until).await {
                Ok(report) => tracing::info!(events = report.events.len(), "drained"),
                Err(e) => tracing::error!(error = %format!("{e:#}"), "drain failed"),
            }
        }
    }
    .instrument(span)
    .await
}
