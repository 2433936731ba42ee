//! `POST /admin/canvas/lookup`: `{"phone": "..."}` or `{"email": "..."}` → the Canvas page found, and how
//! (`cache` or `query`), with the normalized key — to see why a call was or was not linked.

use serde_json::{json, Value};

use crate::api::Response;
use crate::canvas::{Canvas, Lookup};
use crate::configuration::{NotionConfig, SyncConfig};
use crate::notion::Notion;
use crate::outbound::ApiError;
use crate::platform::Platform;

/// Answers a lookup request body.
pub async fn lookup(
    platform: &Platform,
    notion_config: &NotionConfig,
    sync_config: &SyncConfig,
    body: &[u8],
) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Response::error(
            400,
            "the body must be JSON: {\"phone\": \"...\"} or {\"email\": \"...\"}",
        );
    };
    let notion = Notion::new(platform, notion_config);
    let canvas = Canvas::new(
        platform,
        &notion,
        notion_config.canvas_database_id.as_deref(),
        &sync_config.self_phone_numbers,
    );
    let result: Result<Lookup, ApiError> = match (body["phone"].as_str(), body["email"].as_str()) {
        (Some(phone), None) => canvas.by_phone(phone).await,
        (None, Some(email)) => canvas.by_email(email).await,
        _ => return Response::error(400, "give exactly one of \"phone\" or \"email\" (a string)"),
    };
    match result {
        Ok(found) => Response::json(
            200,
            &json!({ "page_id": found.page_id, "source": found.source.as_str(), "normalized": found.normalized }),
        ),
        Err(e) => Response::error(502, format!("the Canvas lookup failed: {e}")),
    }
}
