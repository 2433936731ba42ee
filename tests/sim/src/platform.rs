//! The app's platform inside the simulation: a skewed view of the virtual clock, and outbound HTTP that
//! reaches the OpenPhone and Notion doubles in-process through the fault plan, with Spin's request
//! timeouts. The key-value store and the database are the native SQLite ones, shared by every instance.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use async_trait::async_trait;
use axum::body::Body;
use common::platform::{Clock, HttpClient, HttpError, HttpRequest, HttpResponse, Method};
use rand::Rng;
use tower::ServiceExt;

use super::executor::{Sleep, World};
use super::faults::{Api, Failure, FaultPlan};

/// One instance's view of the virtual clock: the true time plus its skew.
pub struct SimClock {
    /// The world.
    pub world: Rc<World>,
    /// How far this instance's wall clock is ahead of the true time (ms, may be negative).
    pub skew_ms: i64,
}

#[async_trait(?Send)]
impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.world.now() + self.skew_ms
    }

    async fn sleep_ms(&self, ms: u64) {
        let deadline = self.world.now() + i64::try_from(ms).unwrap_or(i64::MAX / 2);
        Sleep::until(self.world.clone(), deadline).await;
    }
}

/// What the simulated network saw: requests per API, faults injected, and the budget check.
#[derive(Default)]
pub struct Traffic {
    /// Requests that reached each API's double (or were failed on the way).
    pub requests: BTreeMap<&'static str, u64>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Notion's published limit as a token bucket on the true time: (tokens, last refill).
    notion_bucket: Option<(f64, i64)>,
    /// Requests that arrived when Notion's bucket was empty: the app exceeded the budget.
    pub over_budget: Vec<String>,
    /// A digest of every request in order, with its true time: two runs of a seed must agree on it.
    pub digest: u64,
}

impl Traffic {
    fn fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }

    /// Adds `request` to the digest. The doubles listen on ports the system picks, so their base URLs
    /// (`bases`) are replaced by their names wherever they appear, in the URL or in the body.
    fn record(&mut self, now: i64, request: &HttpRequest, bases: &[(&str, &str)]) {
        let mut text = format!(
            "{} {} {}",
            request.method.as_str(),
            request.url,
            String::from_utf8_lossy(&request.body)
        );
        for (base, name) in bases {
            text = text.replace(base, name);
        }
        let mut hash = self.digest ^ now as u64;
        for byte in text.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.digest = hash;
    }

    /// Takes a token from Notion's bucket (burst 10, 3 per second); false when it was empty.
    fn notion_token(&mut self, now: i64) -> bool {
        let limit = test_servers::notion::RateLimit::NOTION;
        let (tokens, last) = self.notion_bucket.unwrap_or((f64::from(limit.burst), now));
        let refilled =
            (tokens + (now - last) as f64 / 1000.0 * limit.per_second).min(f64::from(limit.burst));
        if refilled >= 1.0 {
            self.notion_bucket = Some((refilled - 1.0, now));
            true
        } else {
            self.notion_bucket = Some((refilled, now));
            false
        }
    }
}

/// Starts a drain on an instance, lingering until the given time.
pub type Kick = Box<dyn Fn(usize, Option<i64>)>;

/// Where each API lives in the simulation.
pub struct Network {
    /// The world.
    pub world: Rc<World>,
    /// Notion's routes and base URL.
    pub notion: (axum::Router, String),
    /// OpenPhone's API routes and base URL.
    pub openphone: (axum::Router, String),
    /// OpenPhone's media host routes and base URL.
    pub media: (axum::Router, String),
    /// The object store's routes and endpoint, and the bucket (whose clock follows the true time).
    pub s3: (axum::Router, String, test_servers::MemoryS3),
    /// The faults of this run.
    pub plan: FaultPlan,
    /// What happened.
    pub traffic: RefCell<Traffic>,
    /// Starts a drain on an instance (the webhook's kick of the private route); set once the
    /// instances exist.
    pub kick: RefCell<Option<Kick>>,
}

/// One instance's outbound HTTP.
pub struct SimHttp {
    /// The shared network.
    pub network: Rc<Network>,
    /// The instance that sends.
    pub instance: usize,
}

impl SimHttp {
    fn latency(&self, api: Api) -> i64 {
        let (low, high) = match api {
            Api::Notion => (80, 600),
            Api::OpenPhone => (40, 300),
            Api::Media => (20, 200),
            Api::S3 => (30, 400),
        };
        self.network.world.random(|r| r.gen_range(low..=high))
    }

    async fn wait(&self, ms: i64) {
        let world = self.network.world.clone();
        let deadline = world.now() + ms.max(0);
        Sleep::until(world, deadline).await;
    }

    async fn call(&self, router: &axum::Router, request: &HttpRequest) -> HttpResponse {
        // The bucket answers by the true time of the moment the request reaches it.
        self.network.s3.2.set_now_ms(self.network.world.now());
        let path = request
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_owned()))
            .unwrap_or_else(|| "/".into());
        let mut builder = axum::http::Request::builder()
            .method(request.method.as_str())
            .uri(path);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let http_request = builder
            .body(Body::from(request.body.to_vec()))
            .expect("the app's requests are well formed");
        let response = router
            .clone()
            .oneshot(http_request)
            .await
            .expect("axum routers are infallible");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        HttpResponse {
            status,
            headers,
            body,
        }
    }
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

#[async_trait(?Send)]
impl HttpClient for SimHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let network = &self.network;
        let now = network.world.now();
        if let Some(query) = request.url.strip_prefix(common::drain::DRAIN_URL) {
            let until = common::drain::kick_linger_until(&common::api::Request {
                query: query.trim_start_matches('?').to_owned(),
                ..common::api::Request::default()
            });
            if let Some(kick) = &*network.kick.borrow() {
                kick(self.instance, until);
            }
            return Ok(answer(202, &[], ""));
        }
        let (api, router) = if request.url.starts_with(&network.notion.1) {
            (Api::Notion, &network.notion.0)
        } else if request.url.starts_with(&network.openphone.1) {
            (Api::OpenPhone, &network.openphone.0)
        } else if request.url.starts_with(&network.media.1) {
            (Api::Media, &network.media.0)
        } else if request.url.starts_with(&network.s3.1) {
            (Api::S3, &network.s3.0)
        } else {
            return Err(HttpError::NotAllowed(request.url));
        };
        {
            let mut traffic = network.traffic.borrow_mut();
            let bases = [
                (network.notion.1.as_str(), "<notion>"),
                (network.openphone.1.as_str(), "<openphone>"),
                (network.media.1.as_str(), "<media>"),
                (network.s3.1.as_str(), "<s3>"),
            ];
            traffic.record(now, &request, &bases);
            *traffic.requests.entry(api.name()).or_default() += 1;
        }
        let timeouts = request.timeouts;
        let latency = self.latency(api);
        let failure = network.plan.failure(api, now, &network.world);
        // Every request that reaches Notion spends its budget, whatever the answer (a fault's, or a
        // request that hangs); only a refused connection never reached it.
        let over_budget = api == Api::Notion
            && !matches!(failure, Some(Failure::Unreachable))
            && !network.traffic.borrow_mut().notion_token(now);
        if over_budget {
            network.traffic.borrow_mut().over_budget.push(format!(
                "{} {} at {now} by instance {}",
                request.method.as_str(),
                request.url,
                self.instance
            ));
        }
        if let Some(failure) = failure {
            network.traffic.borrow_mut().fault(failure.name());
            match failure {
                Failure::Unreachable => {
                    self.wait(latency.min(i64::try_from(timeouts.connect_ms).unwrap_or(0)))
                        .await;
                    return Err(HttpError::Network("connection refused".into()));
                }
                Failure::Status(status, retry_after) => {
                    self.wait(latency).await;
                    let retry = retry_after.to_string();
                    let headers: Vec<(&str, &str)> = if status == 429 {
                        vec![("retry-after", retry.as_str())]
                    } else {
                        Vec::new()
                    };
                    let body = format!(
                        r#"{{"object":"error","status":{status},"code":"simulated","message":"simulated failure"}}"#
                    );
                    return Ok(answer(status, &headers, &body));
                }
                Failure::Hang { hang_ms, ghost } => {
                    let limit = i64::try_from(timeouts.first_byte_ms).unwrap_or(i64::MAX / 2);
                    let writes = request.method != Method::Get && request.method != Method::Head;
                    if ghost && writes {
                        // The server does the work; the answer never comes back in time.
                        self.call(router, &request).await;
                    }
                    if hang_ms <= limit {
                        self.wait(hang_ms).await;
                        if !(ghost && writes) {
                            return Ok(self.call(router, &request).await);
                        }
                    } else {
                        self.wait(limit).await;
                    }
                    return Err(HttpError::Network(
                        "timed out waiting for the response".into(),
                    ));
                }
            }
        }
        if over_budget {
            self.wait(latency).await;
            return Ok(answer(
                429,
                &[("retry-after", "1")],
                r#"{"object":"error","status":429,"code":"rate_limited","message":"simulated budget"}"#,
            ));
        }
        self.wait(latency).await;
        Ok(self.call(router, &request).await)
    }
}
