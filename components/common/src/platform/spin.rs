//! The platform traits on Spin's host interfaces (spin-sdk 5.2, WASI 0.2): `wasi:keyvalue` store and
//! atomics on the `default` store, `spin:sqlite@3.0.0` on the `default` and `intake` databases, `wasi:http` outbound,
//! `fermyon:spin/variables@2.0.0`.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll};

use anyhow::{anyhow, Context};
use async_trait::async_trait;
use futures::{Stream, StreamExt};
use spin_sdk::sqlite3;
use spin_sdk::wit::wasi::keyvalue::{atomics, store};

use super::{
    Clock, HttpClient, HttpError, HttpRequest, HttpResponse, KeyValue, Method, Platform, Rows, Sql,
    StreamingResponse, Timeouts, Value, Variables,
};

/// The `default` key-value store through `wasi:keyvalue`, opened on first use.
///
/// Opening is not free on Spin: its SQLite-backed store blocks a runtime thread (`block_in_place`) on
/// every open. Webhook deliveries never touch the store, and opening it for each of them cost 0.12 ms
/// of Spin's CPU per request (0.40 against 0.28 ms, measured on `spin up` at 16 clients;
/// docs/performance.md), so the bucket is opened by the first operation that needs it, and an error
/// opening it is the error of that operation. Needs `key_value_stores = ["default"]`.
#[derive(Default)]
pub struct SpinKeyValue {
    bucket: std::cell::OnceCell<store::Bucket>,
}

impl SpinKeyValue {
    fn bucket(&self) -> anyhow::Result<&store::Bucket> {
        if let Some(bucket) = self.bucket.get() {
            return Ok(bucket);
        }
        let bucket =
            store::open("default").map_err(|e| anyhow!("opening key-value store: {e:?}"))?;
        Ok(self.bucket.get_or_init(|| bucket))
    }
}

impl KeyValue for SpinKeyValue {
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.bucket()?
            .get(key)
            .map_err(|e| anyhow!("key-value get {key:?}: {e:?}"))
    }

    fn set(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.bucket()?
            .set(key, value)
            .map_err(|e| anyhow!("key-value set {key:?}: {e:?}"))
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.bucket()?
            .delete(key)
            .map_err(|e| anyhow!("key-value delete {key:?}: {e:?}"))
    }

    fn increment(&self, key: &str, delta: i64) -> anyhow::Result<i64> {
        atomics::increment(self.bucket()?, key, delta)
            .map_err(|e| anyhow!("key-value increment {key:?}: {e:?}"))
    }

    fn keys_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .bucket()?
                .list_keys(cursor.as_deref())
                .map_err(|e| anyhow!("key-value list: {e:?}"))?;
            keys.extend(page.keys.into_iter().filter(|k| k.starts_with(prefix)));
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }
}

/// A SQLite database through `spin:sqlite@3.0.0`, opened on its first statement: a webhook delivery
/// uses only the `intake` database, and an open connection is a file Spin opens for the request. An
/// error opening it is the error of that statement. Needs the label in the component's
/// `sqlite_databases`.
pub struct SpinSqlite {
    label: &'static str,
    conn: std::cell::OnceCell<sqlite3::Connection>,
}

impl SpinSqlite {
    /// The database of `label`, not yet opened.
    pub fn new(label: &'static str) -> Self {
        Self {
            label,
            conn: std::cell::OnceCell::new(),
        }
    }

    fn connection(&self) -> anyhow::Result<&sqlite3::Connection> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let conn = sqlite3::Connection::open(self.label)
            .with_context(|| format!("opening SQLite database `{}`", self.label))?;
        Ok(self.conn.get_or_init(|| conn))
    }
}

impl Sql for SpinSqlite {
    fn execute(&self, statement: &str, params: &[Value]) -> anyhow::Result<Rows> {
        let params: Vec<sqlite3::Value> = params
            .iter()
            .map(|v| match v {
                Value::Integer(v) => sqlite3::Value::Integer(*v),
                Value::Real(v) => sqlite3::Value::Real(*v),
                Value::Text(v) => sqlite3::Value::Text(v.clone()),
                Value::Blob(v) => sqlite3::Value::Blob(v.clone()),
                Value::Null => sqlite3::Value::Null,
            })
            .collect();
        let result = self
            .connection()?
            .execute(statement, &params)
            .with_context(|| format!("executing {statement:?}"))?;
        let rows = result
            .rows
            .into_iter()
            .map(|row| {
                row.values
                    .into_iter()
                    .map(|v| match v {
                        sqlite3::Value::Integer(v) => Value::Integer(v),
                        sqlite3::Value::Real(v) => Value::Real(v),
                        sqlite3::Value::Text(v) => Value::Text(v),
                        sqlite3::Value::Blob(v) => Value::Blob(v),
                        sqlite3::Value::Null => Value::Null,
                    })
                    .collect()
            })
            .collect();
        Ok(Rows {
            columns: result.columns,
            rows,
        })
    }
}

/// Outbound HTTP through `wasi:http/outgoing-handler`.
pub struct SpinHttp;

#[async_trait(?Send)]
impl HttpClient for SpinHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response: spin_sdk::http::Response = send_as(request).await?;
        Ok(HttpResponse {
            status: *response.status(),
            headers: response
                .headers()
                .map(|(n, v)| {
                    (
                        n.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
            body: response.into_body(),
        })
    }

    async fn send_streaming(&self, request: HttpRequest) -> Result<StreamingResponse, HttpError> {
        let response: spin_sdk::http::IncomingResponse = send_as(request).await?;
        let status = response.status();
        let headers = header_pairs(&response.headers());
        let chunks = response.take_body_stream().map(|chunk| {
            chunk.map_err(|e| {
                HttpError::Network(format!(
                    "reading the response body: {}",
                    e.to_debug_string()
                ))
            })
        });
        let body = SpinBody {
            chunks: Box::pin(chunks),
            _response: response,
        };
        Ok(StreamingResponse::new(status, headers, body))
    }
}

/// A response body being read, and the response it belongs to. The body stream is a child resource of
/// the response: the host traps if the response is dropped first, and fields drop in declaration order.
struct SpinBody {
    chunks: Pin<Box<dyn Stream<Item = Result<Vec<u8>, HttpError>>>>,
    _response: spin_sdk::http::IncomingResponse,
}

impl Stream for SpinBody {
    type Item = Result<Vec<u8>, HttpError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.chunks.as_mut().poll_next(cx)
    }
}

/// The largest piece of a request body copied out at a time.
const BODY_PIECE: usize = 64 * 1024;

/// Sends `request` through `wasi:http/outgoing-handler` with its [`Timeouts`] as request options, reading
/// the response as `R` (whole, or as a stream). spin-sdk's own `send` passes no options, and a request
/// without them may wait ten minutes for an answer — longer than any lease the work runs under.
async fn send_as<R>(request: HttpRequest) -> Result<R, HttpError>
where
    R: spin_sdk::http::conversions::TryFromIncomingResponse,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    use futures::SinkExt;
    use spin_sdk::http::conversions::TryIntoOutgoingRequest;
    use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;

    let method = match request.method {
        Method::Get => spin_sdk::http::Method::Get,
        Method::Head => spin_sdk::http::Method::Head,
        Method::Post => spin_sdk::http::Method::Post,
        Method::Put => spin_sdk::http::Method::Put,
        Method::Patch => spin_sdk::http::Method::Patch,
        Method::Delete => spin_sdk::http::Method::Delete,
    };
    let mut builder = spin_sdk::http::Request::builder();
    builder.method(method).uri(&request.url);
    for (name, value) in &request.headers {
        builder.header(name, value);
    }
    let (outgoing, _) = builder
        .body(Vec::new())
        .build()
        .try_into_outgoing_request()
        .map_err(|e| HttpError::InvalidRequest(format!("{e:#}")))?;
    let mut body_sink = outgoing.take_body();
    let response = outgoing_handler::handle(outgoing, Some(request_options(request.timeouts)))
        .map_err(classify)?;
    // The sink takes owned chunks; the body is shared with the caller's retry, so it goes out in small
    // copied pieces rather than as one copy of the whole (an upload part is 8 MiB).
    for piece in request.body.chunks(BODY_PIECE) {
        body_sink
            .send(piece.to_vec())
            .await
            .map_err(|e| HttpError::Network(format!("writing the request body: {e}")))?;
    }
    // Dropping the sink finishes the body, which lets the host complete the request.
    drop(body_sink);
    let response = incoming_response(response).await.map_err(classify)?;
    R::try_from_incoming_response(response)
        .await
        .map_err(|e| HttpError::Network(format!("reading the response: {}", e.into())))
}

fn request_options(timeouts: Timeouts) -> spin_sdk::wit::wasi::http0_2_0::types::RequestOptions {
    const NANOS_PER_MS: u64 = 1_000_000;
    let options = spin_sdk::wit::wasi::http0_2_0::types::RequestOptions::new();
    // Each setter fails only when the host does not support that option; the request then goes without it.
    let _ = options.set_connect_timeout(Some(timeouts.connect_ms * NANOS_PER_MS));
    let _ = options.set_first_byte_timeout(Some(timeouts.first_byte_ms * NANOS_PER_MS));
    let _ = options.set_between_bytes_timeout(Some(timeouts.between_bytes_ms * NANOS_PER_MS));
    options
}

/// Waits for the response's status and headers, yielding to the instance's other tasks meanwhile.
async fn incoming_response(
    response: spin_sdk::wit::wasi::http0_2_0::types::FutureIncomingResponse,
) -> Result<spin_sdk::http::IncomingResponse, spin_sdk::http::ErrorCode> {
    until_ready(
        || {
            response.get().map(|taken| {
                taken.unwrap_or_else(|()| {
                    Err(spin_sdk::http::ErrorCode::InternalError(Some(
                        "the response was already taken".into(),
                    )))
                })
            })
        },
        || response.subscribe(),
    )
    .await
}

/// Waits until `ready` gives a value. While it does not, the pollable from `subscribe` is registered
/// with spin-sdk's executor, which runs the instance's other tasks until the pollable is ready.
async fn until_ready<T>(
    mut ready: impl FnMut() -> Option<T>,
    subscribe: impl Fn() -> wasi::io::poll::Pollable,
) -> T {
    let mut registration: Option<spin_executor::CancelOnDropToken> = None;
    futures::future::poll_fn(|cx| {
        if let Some(value) = ready() {
            return Poll::Ready(value);
        }
        // Replacing the token cancels the previous registration.
        let token = spin_executor::push_waker_and_get_token(subscribe(), cx.waker().clone());
        registration.replace(token.into());
        Poll::Pending
    })
    .await
}

fn classify(code: spin_sdk::http::ErrorCode) -> HttpError {
    use spin_sdk::http::ErrorCode as E;
    match code {
        E::HttpRequestDenied => HttpError::NotAllowed("denied by allowed_outbound_hosts".into()),
        E::HttpRequestUriInvalid => HttpError::InvalidRequest(format!("{code:?}")),
        E::ConnectionTimeout | E::ConnectionReadTimeout | E::HttpResponseTimeout => {
            HttpError::Network(format!("timed out ({code:?})"))
        }
        other => HttpError::Network(format!("{other:?}")),
    }
}

/// Wall clock from `wasi:clocks`.
pub struct SpinClock;

#[async_trait(?Send)]
impl Clock for SpinClock {
    fn now_ms(&self) -> i64 {
        super::system_now_ms()
    }

    async fn sleep_ms(&self, ms: u64) {
        // A `wasi:clocks` pollable handed to spin-sdk's executor: the instance's other tasks (other numbers'
        // groups of a drain) run while this one waits. `std::thread::sleep` would block them all.
        use wasi::clocks::monotonic_clock;
        let deadline = monotonic_clock::now().saturating_add(ms.saturating_mul(1_000_000));
        until_ready(
            || (monotonic_clock::now() >= deadline).then_some(()),
            || monotonic_clock::subscribe_instant(deadline),
        )
        .await
    }
}

/// Spin variables visible to this component.
pub struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        use spin_sdk::variables::Error;
        match spin_sdk::variables::get(name) {
            Ok(value) => Ok(Some(value)),
            Err(Error::Undefined(_)) | Err(Error::InvalidName(_)) => Ok(None),
            Err(e) => Err(anyhow!("reading variable {name}: {e}")),
        }
    }
}

/// The platform of one Spin request: the default key-value store, the `default` and `intake`
/// databases, outbound HTTP, variables.
pub fn platform() -> anyhow::Result<Platform> {
    Ok(Platform {
        kv: Rc::new(SpinKeyValue::default()),
        sql: Rc::new(SpinSqlite::new("default")),
        intake: Rc::new(SpinSqlite::new("intake")),
        http: Rc::new(SpinHttp),
        clock: Rc::new(SpinClock),
        vars: Rc::new(SpinVariables),
    })
}

/// A Spin header list as the app's `(lower-case name, value)` pairs; a value that is not UTF-8 is read
/// lossily.
pub(crate) fn header_pairs(headers: &spin_sdk::http::Fields) -> Vec<(String, String)> {
    headers
        .entries()
        .into_iter()
        .map(|(n, v)| {
            (
                n.to_ascii_lowercase(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}
