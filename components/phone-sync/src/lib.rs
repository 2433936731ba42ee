//! `phone-sync`: the periodic sync of OpenPhone numbers. `POST /admin/sync` (admin token) answers `202`
//! with a run id and then syncs every number (or one) through the private route
//! `http://phone-sync.spin.internal/sync/<phone_number_id>`, which syncs one number under its lease and
//! answers with what it did. The logic is `common::sync`; routing, auth and start-up are the edge's
//! (`common::http`), the routes `common::http::routes::PHONE_SYNC`.

use common::http::routes::{SyncRoute, PHONE_SYNC};
use common::http::serve::serve;
use common::http::{Context, Reply};
use common::sync::http::{admin_sync, sync_one, Handled};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

const MAX_BODY: usize = 64 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    serve("phone-sync", MAX_BODY, PHONE_SYNC, request, out, answer).await
}

async fn answer(cx: Context, route: SyncRoute, reply: Reply) {
    match route {
        SyncRoute::One => {
            let report = sync_one(&cx.platform, &cx.settings, &cx.request).await;
            reply.send(report).await
        }
        SyncRoute::Admin => match admin_sync(&cx.platform, &cx.settings, &cx.request) {
            Handled::Done(response) => reply.send(response).await,
            Handled::Accepted(response, run) => {
                // The client has its 202 and run id; the run goes on in this instance.
                reply.send(response).await;
                common::app::run_accepted(&cx.platform, &cx.settings, run).await;
            }
        },
    }
}
