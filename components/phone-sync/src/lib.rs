//! `phone-sync`: the periodic sync of OpenPhone numbers. `POST /admin/sync` (admin token) for all numbers
//! or one; the private `http://phone-sync.spin.internal/sync/<phone_number_id>` for one number under its
//! lease.

use common::api;
use common::configuration::{AdminConfig, Loader};
use common::platform::spin::{platform, read_request, send_response};
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::http_component;

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
    let mut loader = Loader::new(&*platform.vars);
    let admin = AdminConfig::load(&mut loader);
    let response = match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/admin/sync") => match api::require_admin(&request, &admin.token) {
            Err(refusal) => refusal,
            Ok(()) => api::Response::error(501, "the periodic sync is not available in this build"),
        },
        (_, "/admin/sync") => api::method_not_allowed("POST"),
        ("POST", path) if path.starts_with("/sync/") => {
            api::Response::error(501, "the per-number sync is not available in this build")
        }
        (_, path) => api::not_found(path),
    };
    send_response(out, response).await;
}
