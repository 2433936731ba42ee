//! [`FlakyS3`]: a loopback proxy in front of the S3 server that refuses a seeded fraction of uploads with
//! `503 SlowDown`, as R2 and S3 do under load. `s3s-fs` injects no faults of its own, so this is how the
//! app's upload retries get exercised against a store that still checks every signature.
//!
//! Everything else is forwarded unchanged, the `Host` header included: the app signs for the proxy's
//! address, and `s3s-fs` verifies the signature against the `Host` it receives, so signatures still hold.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::task::JoinHandle;

/// The largest body the proxy buffers; the soak's recordings are far smaller.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Headers that describe one hop, not the message: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "content-length",
];

#[derive(Debug)]
struct Faults {
    refuse_puts: f64,
    rng: ChaCha8Rng,
    refused: u64,
    forwarded: u64,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    faults: Arc<Mutex<Faults>>,
    client: reqwest::Client,
}

/// A running proxy; dropping it stops it.
pub struct FlakyS3 {
    endpoint: String,
    faults: Arc<Mutex<Faults>>,
    server: JoinHandle<()>,
}

impl FlakyS3 {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) on a free loopback port, on the current
    /// Tokio runtime, refusing each `PUT` (a whole object or a multipart part) with probability
    /// `refuse_puts`, drawn from an RNG seeded with `seed`.
    pub async fn start(upstream: &str, refuse_puts: f64, seed: u64) -> anyhow::Result<FlakyS3> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the S3 proxy")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let faults = Arc::new(Mutex::new(Faults {
            refuse_puts: refuse_puts.clamp(0.0, 1.0),
            rng: ChaCha8Rng::seed_from_u64(seed),
            refused: 0,
            forwarded: 0,
        }));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            faults: faults.clone(),
            client: reqwest::Client::builder().no_proxy().build()?,
        };
        let router = axum::Router::new().fallback(forward).with_state(shared);
        let server = tokio::spawn(async move {
            // Serving ends only when the task is aborted on drop.
            let _ = axum::serve(listener, router).await;
        });
        Ok(FlakyS3 {
            endpoint,
            faults,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`, for `s3_endpoint`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Changes the fraction of `PUT`s refused (0 turns the faults off).
    pub fn set_refuse_puts(&self, fraction: f64) {
        self.lock().refuse_puts = fraction.clamp(0.0, 1.0);
    }

    /// Uploads refused so far.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// Requests forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.lock().forwarded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FlakyS3 {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(shared): State<Shared>, request: Request) -> Response {
    let refuse = {
        let mut faults = shared.faults.lock().unwrap_or_else(PoisonError::into_inner);
        let refuse_puts = faults.refuse_puts;
        let refuse = request.method() == Method::PUT && faults.rng.gen_bool(refuse_puts);
        if refuse {
            faults.refused += 1;
        } else {
            faults.forwarded += 1;
        }
        refuse
    };
    if refuse {
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate.</Message></Error>";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/xml")],
            body,
        )
            .into_response();
    }
    match relay(&shared, request).await {
        Ok(response) => response,
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the S3 proxy could not reach the store: {e:#}"),
        )
            .into_response(),
    }
}

async fn relay(shared: &Shared, request: Request) -> anyhow::Result<Response> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .context("reading the request body")?;
    let mut upstream = shared
        .client
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream
        .send()
        .await
        .context("forwarding to the S3 server")?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !is_hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    let bytes = answer
        .bytes()
        .await
        .context("reading the S3 server's answer")?;
    response
        .body(Body::from(bytes))
        .context("building the proxied response")
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}
