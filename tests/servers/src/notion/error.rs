//! Notion's error body: `{object: "error", status, code, message}` (notion-api.md §9).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// An error response of the Notion API.
#[derive(Debug)]
pub(crate) struct NotionError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl NotionError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// `400 validation_error`: a body that breaks the schema or a size limit.
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "validation_error", message)
    }

    /// `400 validation_error` for a value over a length limit, worded like Notion's.
    pub(crate) fn too_long(path: &str, max: usize, actual: usize) -> Self {
        Self::validation(format!(
            "body failed validation: {path}.length should be ≤ `{max}`, instead was `{actual}`."
        ))
    }

    /// `404 object_not_found`: missing, not shared, or an id of the wrong kind.
    pub(crate) fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            404,
            "object_not_found",
            format!(
                "Could not find {kind} with ID: {id}. Make sure the relevant pages and databases are shared with your integration."
            ),
        )
    }

    /// `400 validation_error` for what the real API accepts but this server does not model; kept loud
    /// so a test never passes by accident on an unmodelled feature.
    pub(crate) fn unsupported(what: &str) -> Self {
        Self::validation(format!("{what} is not supported by the Notion test server"))
    }

    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for NotionError {
    fn into_response(self) -> Response {
        let body = json!({
            "object": "error",
            "status": self.status.as_u16(),
            "code": self.code,
            "message": self.message,
            "request_id": "00000000-0000-4000-8000-000000000000",
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}
