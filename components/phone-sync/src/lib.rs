//! `phone-sync`: the periodic sync of OpenPhone numbers. `POST /admin/sync` (admin token) answers `202`
//! with a run id and then syncs every number (or one) through the private route
//! `http://phone-sync.spin.internal/sync/<phone_number_id>`, which syncs one number under its lease and
//! answers with what it did. The logic is `common::sync`.

use common::api;
use common::platform::spin::{platform, read_request, send_response};
use common::sync::http::{handle as route, Handled};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;
use tracing::Instrument;

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
            let refusal = api::Response::error(503, format!("storage unavailable: {e:#}"));
            return send_response(out, refusal).await;
        }
    };
    let log_level = platform
        .vars
        .get("log_level")
        .ok()
        .flatten()
        .unwrap_or_default();
    common::telemetry::init(&log_level);
    let span = tracing::info_span!("request", component = "phone-sync", path = %request.path);
    async {
        if let Err(e) = common::migrations::ensure(&platform).await {
            let refusal = api::Response::error(503, format!("database migration failed: {e:#}"));
            return send_response(out, refusal).await;
        }
        match route(&platform, &request).await {
            Handled::Done(response) => send_response(out, response).await,
            Handled::Accepted(response, run) => {
                // The client has its 202 and run id; the run goes on in this instance.
                send_response(out, response).await;
                run.run(&platform).await;
            }
        }
    }
    .instrument(span)
    .await
}
