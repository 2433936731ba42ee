//! `webhook`: OpenPhone webhook intake (`POST /webhooks/openphone`) and `/health`. The event is stored
//! and answered before any API work; then the drain is kicked. Routing, auth and start-up are the edge's
//! (`common::http`); the routes are `common::http::routes::WEBHOOK`.

use common::http::routes::{WebhookRoute, WEBHOOK};
use common::http::serve::serve;
use common::http::{Context, Reply};
use common::webhook::intake;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    serve(
        "webhook",
        intake::MAX_BODY_BYTES,
        WEBHOOK,
        request,
        out,
        answer,
    )
    .await
}

async fn answer(cx: Context, route: WebhookRoute, reply: Reply) {
    match route {
        WebhookRoute::Intake => {
            let intake = intake::handle(&cx.platform, &cx.settings, &cx.request).await;
            reply.send(intake.response).await;
            common::webhook::kick::after_intake(&cx.platform, intake.kick_window).await;
        }
        WebhookRoute::Health => {
            reply
                .send(common::app::health(
                    &cx.platform,
                    &cx.settings,
                    cx.component,
                ))
                .await
        }
    }
}
