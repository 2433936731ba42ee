//! `webhook`: OpenPhone webhook intake and `/health`.

use common::api;
use common::platform::spin::{platform, read_request, send_response};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

/// The largest webhook body accepted; OpenPhone's payloads are a few kilobytes.
const MAX_BODY: usize = 1024 * 1024;

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
    let response = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/health") => api::health(&platform, "webhook"),
        (_, "/health") => api::method_not_allowed("GET"),
        (_, path) => api::not_found(path),
    };
    send_response(out, response).await;
}
