//! The platform the shared logic runs on, behind five small traits: key-value (with atomic increment),
//! SQL, outbound HTTP, clock and variables.
//!
//! On `wasm32` the [`spin`] module implements them with Spin's host interfaces; natively the [`native`]
//! module implements them with the same semantics as Spin's default stores (one SQLite file for key-value,
//! one for SQL), so the logic is tested natively against real SQLite and real HTTP.

use std::rc::Rc;

use async_trait::async_trait;

#[cfg(not(target_arch = "wasm32"))]
pub mod native;
#[cfg(target_arch = "wasm32")]
pub mod spin;

mod sql;

pub use sql::{Row, Rows, Value};

/// Key-value store with the semantics common to every Spin backend: no TTL, and `increment` as the only
/// atomic operation. A key that is `increment`ed must never be `set` or `get` (Spin's default store keeps
/// counters as 8-byte integers and panics on anything else).
pub trait KeyValue {
    /// The value of `key`, if any.
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Sets `key` to `value`.
    fn set(&self, key: &str, value: &[u8]) -> anyhow::Result<()>;
    /// Deletes `key`; deleting an absent key is not an error.
    fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Atomically adds `delta` to the counter at `key` (absent counts as 0) and returns the new value.
    fn increment(&self, key: &str, delta: i64) -> anyhow::Result<i64>;
    /// Every key in the store that starts with `prefix`.
    fn keys_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<String>>;
}

/// A SQL database speaking SQLite's dialect. Each call runs exactly one statement; state transitions are
/// written as single statements so they hold on a remote libSQL too.
pub trait Sql {
    /// Runs one statement with positional parameters (`?1`, `?2`, …) and returns its rows.
    fn execute(&self, statement: &str, params: &[Value]) -> anyhow::Result<Rows>;
}

/// HTTP method of an outbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// An outbound HTTP request with a buffered body.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty for none).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = serde_json::to_vec(body).expect("a JSON value always serializes");
        self.header("content-type", "application/json")
    }
}

/// A response to an [`HttpRequest`], body fully read.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why an outbound request got no response. An API status code is not an error at this level.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The host is not in the component's `allowed_outbound_hosts`.
    #[error("destination not allowed: {0}")]
    NotAllowed(String),
    /// Connection refused, reset, DNS failure, timeout: the request may or may not have reached the server.
    #[error("network error: {0}")]
    Network(String),
    /// The request could not be built (bad URL, bad header).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// Outbound HTTP.
#[async_trait(?Send)]
pub trait HttpClient {
    /// Sends `request` and reads the whole response.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError>;
}

/// Wall-clock time and waiting.
#[async_trait(?Send)]
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Waits `ms` milliseconds without blocking other work of the same instance.
    async fn sleep_ms(&self, ms: u64);
}

/// Application variables (Spin variables, `SPIN_VARIABLE_*` locally, Secrets on SpinKube).
pub trait Variables {
    /// The value of `name`, or `None` when it is not defined or not visible to this component.
    fn get(&self, name: &str) -> anyhow::Result<Option<String>>;
}

/// The capabilities one request works with. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    /// The default key-value store.
    pub kv: Rc<dyn KeyValue>,
    /// The default SQL database.
    pub sql: Rc<dyn Sql>,
    /// Outbound HTTP.
    pub http: Rc<dyn HttpClient>,
    /// Time.
    pub clock: Rc<dyn Clock>,
    /// Application variables.
    pub vars: Rc<dyn Variables>,
}
