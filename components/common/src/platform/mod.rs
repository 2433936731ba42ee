//! The platform the shared logic runs on, behind five small traits: key-value (with atomic increment),
//! SQL, outbound HTTP, clock and variables.
//!
//! On `wasm32` the `spin` module implements them with Spin's host interfaces; natively the [`native`]
//! module implements them with the same semantics as Spin's stores (one SQLite file for key-value, one
//! for each SQL database), so the logic is tested natively against real SQLite and real HTTP.

use std::pin::Pin;
use std::rc::Rc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};

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

/// How long an outbound request may wait at each stage, as `wasi:http` request options carry them (Spin
/// honours all three; without them a request may wait ten minutes for an answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To open the connection (TCP and TLS).
    pub connect_ms: u64,
    /// From sending the request to the response's status and headers.
    pub first_byte_ms: u64,
    /// Between two pieces of the response body.
    pub between_bytes_ms: u64,
}

impl Timeouts {
    /// The limits of every API request. They keep one request well inside a lease's guaranteed half
    /// slot (see [`crate::lease::LeaseConfig`]): an API that has not started answering in 20 s is
    /// treated as unavailable, and the work is retried from the queue.
    pub const API: Timeouts = Timeouts {
        connect_ms: 5_000,
        first_byte_ms: 20_000,
        between_bytes_ms: 20_000,
    };

    /// These limits with the first byte due within `ms` at the latest (never below a second).
    pub fn first_byte_within(self, ms: u64) -> Timeouts {
        Timeouts {
            first_byte_ms: self.first_byte_ms.min(ms.max(1_000)),
            ..self
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts::API
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
    /// Body bytes (empty for none). Shared, not copied, when the request is cloned: a retry keeps the
    /// request while an attempt sends it, and an upload part is 8 MiB.
    pub body: Bytes,
    /// How long each stage of the exchange may take.
    pub timeouts: Timeouts,
}

impl HttpRequest {
    /// A request with no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Bytes::new(),
            timeouts: Timeouts::API,
        }
    }

    /// Sets the stage limits.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = serde_json::to_vec(body)
            .expect("a JSON value always serializes")
            .into();
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

/// The body of a [`StreamingResponse`]: chunks as they arrive.
type ChunkStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, HttpError>>>>;

/// A response whose body is read chunk by chunk, so a large download never sits in memory whole.
/// Dropping it before the end abandons the rest of the body.
pub struct StreamingResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    body: ChunkStream,
}

impl StreamingResponse {
    /// A response whose body is `body`, read on demand.
    pub fn new(
        status: u16,
        headers: Vec<(String, String)>,
        body: impl Stream<Item = Result<Vec<u8>, HttpError>> + 'static,
    ) -> Self {
        Self {
            status,
            headers,
            body: Box::pin(body),
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of the body (never empty), or `None` at its end. An error means the body was cut
    /// short: the connection failed or timed out.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        loop {
            match self.body.next().await.transpose()? {
                Some(chunk) if chunk.is_empty() => continue,
                other => return Ok(other),
            }
        }
    }
}

impl From<HttpResponse> for StreamingResponse {
    /// A buffered response as a stream of one chunk.
    fn from(response: HttpResponse) -> Self {
        let body = (!response.body.is_empty()).then_some(Ok(response.body));
        Self::new(
            response.status,
            response.headers,
            futures::stream::iter(body),
        )
    }
}

impl std::fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Outbound HTTP.
#[async_trait(?Send)]
pub trait HttpClient {
    /// Sends `request` and reads the whole response.
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError>;

    /// Sends `request` and returns as soon as the status and headers are in; the body is read with
    /// [`StreamingResponse::next_chunk`]. The default reads the whole body first, which is right for
    /// test doubles; the real clients override it so memory does not grow with the body.
    async fn send_streaming(&self, request: HttpRequest) -> Result<StreamingResponse, HttpError> {
        self.send(request).await.map(StreamingResponse::from)
    }
}

/// Wall-clock time and waiting.
#[async_trait(?Send)]
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Waits `ms` milliseconds without blocking other work of the same instance.
    async fn sleep_ms(&self, ms: u64);
}

/// The system's wall clock in milliseconds since the Unix epoch: the host's time natively, `wasi:clocks`'
/// wall clock on Spin (std reads it there), so both platforms' clocks tell time the same way.
pub fn system_now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit in i64")
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
    /// The app's database (SQLite label `default`): the queue, the page map, cursors, caches, metrics.
    pub sql: Rc<dyn Sql>,
    /// The intake database (SQLite label `intake`): the deliveries the webhook stored, until a drain
    /// moves them into the queue ([`crate::queue::deliveries`]). It may be the app's database file too.
    pub intake: Rc<dyn Sql>,
    /// Outbound HTTP.
    pub http: Rc<dyn HttpClient>,
    /// Time.
    pub clock: Rc<dyn Clock>,
    /// Application variables.
    pub vars: Rc<dyn Variables>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffered_response_streams_as_one_chunk() {
        let response = HttpResponse {
            status: 200,
            headers: vec![("content-length".into(), "3".into())],
            body: b"abc".to_vec(),
        };
        let mut streaming = StreamingResponse::from(response);
        assert_eq!(streaming.header("Content-Length"), Some("3"));
        futures::executor::block_on(async {
            assert_eq!(streaming.next_chunk().await.unwrap().unwrap(), b"abc");
            assert!(streaming.next_chunk().await.unwrap().is_none());
        });
        let mut empty = StreamingResponse::from(HttpResponse {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        });
        assert!(futures::executor::block_on(empty.next_chunk())
            .unwrap()
            .is_none());
    }

    #[test]
    fn empty_chunks_are_skipped() {
        let chunks = vec![Ok(Vec::new()), Ok(b"x".to_vec()), Ok(Vec::new())];
        let mut streaming = StreamingResponse::new(200, Vec::new(), futures::stream::iter(chunks));
        futures::executor::block_on(async {
            assert_eq!(streaming.next_chunk().await.unwrap().unwrap(), b"x");
            assert!(streaming.next_chunk().await.unwrap().is_none());
        });
    }
}
