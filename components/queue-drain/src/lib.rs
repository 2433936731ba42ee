//! `queue-drain`: drains the event queue into Notion — kicked by the webhook on the private
//! `http://queue-drain.spin.internal/drain` — and serves `/stats`, the status page and the admin routes
//! (drain, the tick, dead letters, Notion check, Canvas lookup, setup). Routing, auth and start-up are
//! the edge's (`common::http`); the routes are `common::http::routes::QUEUE_DRAIN`.

use common::http::routes::{DrainRoute, QUEUE_DRAIN};
use common::http::serve::serve;
use common::http::{Context, Reply};
use common::sync::http::Handled;
use common::{admin, drain, sync};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

/// Admin bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    serve("queue-drain", MAX_BODY, QUEUE_DRAIN, request, out, answer).await
}

async fn answer(cx: Context, route: DrainRoute, reply: Reply) {
    let (platform, settings, request) = (&cx.platform, &*cx.settings, &cx.request);
    // Routes that change the queue answer first and drain after the response is sent.
    let (response, drain_after) = match route {
        // The tick answers 202 with its run id, then drains and (when due) syncs, after the response.
        DrainRoute::Tick => {
            return match sync::http::admin_tick(platform) {
                Handled::Done(response) => reply.send(response).await,
                Handled::Accepted(response, work) => {
                    reply.send(response).await;
                    common::app::run_accepted(platform, settings, work).await;
                }
            };
        }
        DrainRoute::Kick => (drain::answer_kick(), true),
        DrainRoute::DrainNow => (admin::drain_now(platform, settings).await, false),
        DrainRoute::DlqList => (admin::dlq::list(platform, request), false),
        DrainRoute::DlqReplay => {
            let replay = admin::dlq::replay(platform, request);
            (replay.response, replay.replayed > 0)
        }
        DrainRoute::Stats => (admin::stats(platform), false),
        DrainRoute::Status => (admin::status(platform), false),
        DrainRoute::StatusLink => (admin::status_link(platform, settings), false),
        DrainRoute::NotionCheck => (
            admin::notion_check(platform, settings, request).await,
            false,
        ),
        DrainRoute::CanvasLookup => (
            admin::canvas_lookup(platform, settings, request).await,
            false,
        ),
        DrainRoute::Setup => (admin::setup(platform, settings, request).await, false),
    };
    let linger_until = match route {
        DrainRoute::Kick => drain::kick_linger_until(request),
        _ => None,
    };
    reply.send(response).await;
    if drain_after {
        match common::app::drain(platform, settings, linger_until).await {
            Ok(report) => tracing::info!(events = report.events.len(), "drained"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "drain failed"),
        }
    }
}
