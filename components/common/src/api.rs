//! The HTTP types shared by the components: request and response free of Spin types, and JSON errors
//! (`/health` is composed in [`crate::app`]). Routing, the admin token and the start-up every request
//! shares are the edge, [`crate::http`].

use serde_json::json;

/// An incoming request, body fully read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Method, upper case.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(raw: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response to write back.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).expect("a JSON value always serializes"),
        }
    }

    /// `{"error": "<what and why>"}`.
    pub fn error(status: u16, message: impl AsRef<str>) -> Self {
        Self::json(status, &json!({ "error": message.as_ref() }))
    }

    /// An HTML page.
    pub fn html(status: u16, body: String) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: body.into_bytes(),
        }
    }

    /// The body parsed as JSON (for tests and callers that inspect responses).
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The one answer when the platform or the database fails, at the edge or in a handler. It names no cause: a stranger must not read
/// our database's errors, and the sender (OpenPhone, a person) can only retry anyway.
pub fn unavailable() -> Response {
    Response::error(503, "the database is unavailable; try again later")
}

/// `405` naming the allowed methods.
pub fn method_not_allowed(allowed: &str) -> Response {
    let mut response = Response::error(405, format!("method not allowed; use {allowed}"));
    response.headers.push(("allow".into(), allowed.into()));
    response
}

/// `404` for a path no route serves.
pub fn not_found(path: &str) -> Response {
    let path: String = path.chars().take(100).collect();
    Response::error(404, format!("no route for {path}"))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let request = Request {
            query: "phone_number_id=PN1&since=2025-10-20T00%3A00%3A00Z&x".into(),
            ..Default::default()
        };
        assert_eq!(
            request.query_param("phone_number_id").as_deref(),
            Some("PN1")
        );
        assert_eq!(
            request.query_param("since").as_deref(),
            Some("2025-10-20T00:00:00Z")
        );
        assert_eq!(request.query_param("x").as_deref(), Some(""));
        assert_eq!(request.query_param("y"), None);
        assert_eq!(percent_decode("100%"), "100%");
    }
}
