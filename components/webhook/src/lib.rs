//! `webhook`: OpenPhone webhook intake (`POST /webhooks/openphone`) and `/health`. The event is stored
//! and answered before any API work; then the drain is kicked.

use common::api;
use common::platform::spin::{platform, read_request, send_response};
use common::webhook::intake;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;
use tracing::Instrument;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let request = match read_request(request, intake::MAX_BODY_BYTES).await {
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
    let span = tracing::info_span!("request", component = "webhook", method = %request.method, path = %request.path);
    async move {
        match request.path.as_str() {
            "/webhooks/openphone" => {
                if let Err(e) = common::migrations::ensure(&platform).await {
                    tracing::error!(error = %format!("{e:#}"), "migrations failed");
                    let refusal =
                        api::Response::error(503, "the database is not ready; deliver again later");
                    return send_response(out, refusal).await;
                }
                let intake = intake::handle(&platform, &request);
                send_response(out, intake.response).await;
                common::webhook::kick::after_intake(&platform, intake.kick_drain).await;
            }
            "/health" if request.method == "GET" => {
                send_response(out, api::health(&platform, "webhook")).await
            }
            "/health" => send_response(out, api::method_not_allowed("GET")).await,
            path => send_response(out, api::not_found(path)).await,
        }
    }
    .instrument(span)
    .await
}
