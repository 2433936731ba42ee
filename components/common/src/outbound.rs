//! Every request to an external API goes through [`Outbound::send`]: it waits for the API's shared rate
//! budget, counts the request in the daily metrics, retries what is safe to retry, and turns the outcome
//! into an [`ApiError`] that says whether trying again later can help.

use std::fmt;

use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::metrics;
use crate::platform::{HttpError, HttpRequest, HttpResponse, Method, Platform};
use crate::ratelimit::RateBudget;

/// An external service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The OpenPhone API: 10 requests/s per key.
    OpenPhone,
    /// The Notion API: about 3 requests/s on average per integration.
    Notion,
    /// The S3-compatible object store.
    S3,
    /// The host serving recording files.
    Media,
}

impl Service {
    /// Lower-case name used in metrics, logs and budget keys.
    pub fn name(self) -> &'static str {
        match self {
            Service::OpenPhone => "openphone",
            Service::Notion => "notion",
            Service::S3 => "s3",
            Service::Media => "media",
        }
    }

    /// Requests allowed per second across every instance, if the service limits them.
    pub fn per_second(self) -> Option<i64> {
        match self {
            Service::OpenPhone => Some(10),
            Service::Notion => Some(3),
            Service::S3 | Service::Media => None,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request to an API did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// `429` (or Notion's `529`): come back after `retry_after_ms`.
    #[error("{service} rate limited the request")]
    RateLimited {
        /// Which API.
        service: Service,
        /// The server's `Retry-After`, in milliseconds.
        retry_after_ms: Option<u64>,
    },
    /// `5xx`, a timeout or a network failure: the request may or may not have been applied.
    #[error("{service} is unavailable: {detail}")]
    Unavailable {
        /// Which API.
        service: Service,
        /// Status, when there was a response.
        status: Option<u16>,
        /// What happened.
        detail: String,
    },
    /// A `4xx` other than `429`: trying again will not help.
    #[error("{service} refused the request with {status}: {detail}")]
    Refused {
        /// Which API.
        service: Service,
        /// Status.
        status: u16,
        /// The API's error code and message.
        detail: String,
    },
    /// The request was not sent: the host is not granted, or the request was malformed.
    #[error("{service} request not sent: {detail}")]
    NotSent {
        /// Which API.
        service: Service,
        /// Why.
        detail: String,
    },
}

/// Whether a failed operation may succeed if tried again, and how soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transience {
    /// Trying again fails the same way (a refusal, bad data): give up, say why.
    Permanent,
    /// A later attempt may succeed (an outage, a rate limit, a busy resource).
    Transient {
        /// Not before this many milliseconds, when the server or the app knows.
        retry_after_ms: Option<u64>,
    },
}

/// An error that knows whether retrying can help. Each error that wraps an API failure ([`ApiError`],
/// the object store's, the media copy's, the page writer's) classifies itself in one
/// [`transience`](Failure::transience) match, delegating to what it wraps, so the queue's retry decision
/// is made in one way everywhere.
pub trait Failure {
    /// How this failure classifies.
    fn transience(&self) -> Transience;

    /// Whether a later attempt may succeed.
    fn is_transient(&self) -> bool {
        matches!(self.transience(), Transience::Transient { .. })
    }

    /// How long to wait before the next attempt, in milliseconds, when that is known.
    fn retry_after_ms(&self) -> Option<u64> {
        match self.transience() {
            Transience::Transient { retry_after_ms } => retry_after_ms,
            Transience::Permanent => None,
        }
    }
}

impl Failure for ApiError {
    fn transience(&self) -> Transience {
        match self {
            ApiError::RateLimited { retry_after_ms, .. } => Transience::Transient {
                retry_after_ms: *retry_after_ms,
            },
            ApiError::Unavailable { .. } => Transience::Transient {
                retry_after_ms: None,
            },
            ApiError::Refused { .. } | ApiError::NotSent { .. } => Transience::Permanent,
        }
    }
}

impl ApiError {
    /// What an answer of `service` with `status`, not a success, means: `429` is a rate limit (come back
    /// after `retry_after_ms`, the response's `Retry-After`), `408` and `5xx` an outage, any other
    /// status a refusal. The APIs, unlike the media host (a plain file server), have two more: `529`,
    /// Notion's rate limit, and `409`, Notion's `conflict_error` ("make sure the parameters are up to
    /// date and try again"), an outage.
    pub fn from_status(
        service: Service,
        status: u16,
        retry_after_ms: Option<u64>,
        detail: String,
    ) -> Self {
        let api = service != Service::Media;
        if status == 429 || (api && status == 529) {
            ApiError::RateLimited {
                service,
                retry_after_ms,
            }
        } else if matches!(status, 408 | 500..=599) || (api && status == 409) {
            ApiError::Unavailable {
                service,
                status: Some(status),
                detail,
            }
        } else {
            ApiError::Refused {
                service,
                status,
                detail,
            }
        }
    }

    /// A request to `service` that got no answer: a network failure or timeout may have been applied,
    /// one the host refused to send was not.
    pub fn unanswered(service: Service, error: HttpError) -> Self {
        match error {
            HttpError::Network(detail) => ApiError::Unavailable {
                service,
                status: None,
                detail,
            },
            HttpError::NotAllowed(detail) | HttpError::InvalidRequest(detail) => {
                ApiError::NotSent { service, detail }
            }
        }
    }

    /// The HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::RateLimited { .. } => Some(429),
            ApiError::Unavailable { status, .. } => *status,
            ApiError::Refused { status, .. } => Some(*status),
            ApiError::NotSent { .. } => None,
        }
    }
}

/// Which failures a request may be retried on within the same call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: retry rate limits, `5xx` and network errors.
    Idempotent,
    /// Creates and appends: retry only rate limits (the server did not apply the request); after a `5xx`
    /// or a network error the caller must find out whether it landed before trying again.
    RateLimitOnly,
}

/// Attempts per call; the queue retries the event later with its own backoff.
const MAX_ATTEMPTS: u32 = 3;
/// The longest one [`Outbound::send`] may take, waits for the rate budget and inline retries included.
/// Work runs under a lease that guarantees half a slot after each check, less its margin (60 s − 10 s
/// with [`crate::lease::LeaseConfig::default`]): a call that ended later could write after the lease
/// passed to someone else. What does not fit is left to the queue's retry.
pub const MAX_SEND_MS: i64 = 40_000;
/// An attempt is not started with less time than this left.
const MIN_ATTEMPT_MS: i64 = 1_000;
/// A `Retry-After` longer than this is not waited for inline: the event is rescheduled instead.
const MAX_INLINE_WAIT_MS: u64 = 10_000;

/// Sends requests for one service with one credential.
pub struct Outbound<'a> {
    platform: &'a Platform,
    service: Service,
    budget: Option<RateBudget<'a>>,
}

impl<'a> Outbound<'a> {
    /// An outbound channel for `service`; `credential` identifies whose budget the requests spend (it is
    /// hashed, never stored).
    pub fn new(platform: &'a Platform, service: Service, credential: &str) -> Self {
        let budget = service.per_second().map(|limit| {
            let digest = Sha256::digest(credential.as_bytes());
            let id: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            RateBudget::new(platform, format!("{}:{id}", service.name()), limit)
        });
        Self {
            platform,
            service,
            budget,
        }
    }

    /// Sends `request`, retrying as `retry` allows, within [`MAX_SEND_MS`] in all.
    pub async fn send(&self, request: HttpRequest, retry: Retry) -> Result<HttpResponse, ApiError> {
        let clock = &self.platform.clock;
        let deadline = clock.now_ms() + MAX_SEND_MS;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send_once(request.clone(), deadline).await;
            let error = match result {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            let retryable = matches!(
                (&error, retry),
                (ApiError::RateLimited { .. }, _)
                    | (ApiError::Unavailable { .. }, Retry::Idempotent)
            );
            if !retryable || attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            let wait = match error.retry_after_ms() {
                Some(ms) if ms > MAX_INLINE_WAIT_MS => return Err(error),
                Some(ms) => ms,
                None => backoff_ms(attempt),
            };
            let left = deadline - clock.now_ms();
            if i64::try_from(wait).unwrap_or(i64::MAX) + MIN_ATTEMPT_MS > left {
                return Err(error);
            }
            clock.sleep_ms(wait).await;
        }
    }

    /// One attempt, started and answered before `deadline` (epoch ms) or given up as unavailable.
    async fn send_once(
        &self,
        mut request: HttpRequest,
        deadline: i64,
    ) -> Result<HttpResponse, ApiError> {
        let service = self.service;
        let out_of_time = || ApiError::Unavailable {
            service,
            status: None,
            detail: format!("no answer within the {MAX_SEND_MS} ms a request may take"),
        };
        if let Some(budget) = &self.budget {
            let left = deadline - self.platform.clock.now_ms() - MIN_ATTEMPT_MS;
            budget
                .acquire_within(left.min(crate::ratelimit::MAX_WAIT_MS))
                .await
                .map_err(|e| ApiError::Unavailable {
                    service,
                    status: None,
                    detail: format!("rate budget unavailable: {e:#}"),
                })?;
        }
        let left = deadline - self.platform.clock.now_ms();
        if left < MIN_ATTEMPT_MS {
            return Err(out_of_time());
        }
        request.timeouts = request
            .timeouts
            .first_byte_within(u64::try_from(left).unwrap_or(0));
        let method = request.method;
        let path = path_of(&request.url).to_owned();
        let span = tracing::info_span!("outbound", service = service.name(), method = method.as_str(), path = %path);
        let started = self.platform.clock.now_ms();
        metrics::count(self.platform, &format!("requests.{}", service.name()), 1);
        let result = self
            .platform
            .http
            .send(request)
            .instrument(span.clone())
            .await;
        let _entered = span.enter();
        let duration_ms = self.platform.clock.now_ms() - started;
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(duration_ms, error = %e, "request failed");
                metrics::count(self.platform, &format!("errors.{}", service.name()), 1);
                return Err(ApiError::unanswered(service, e));
            }
        };
        let status = response.status;
        tracing::debug!(status, duration_ms, "response");
        if (200..300).contains(&status) || (method == Method::Head && status == 404) {
            return Ok(response);
        }
        metrics::count(self.platform, &format!("errors.{}", service.name()), 1);
        let detail = error_detail(&response);
        tracing::warn!(status, duration_ms, detail = %detail, "request refused");
        let retry_after =
            retry_after_ms(response.header("retry-after"), self.platform.clock.now_ms());
        Err(ApiError::from_status(service, status, retry_after, detail))
    }
}

/// An `application/x-www-form-urlencoded`-style query with `+` (E.164!) encoded as `%2B`.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but unreserved characters.
pub fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Exponential backoff with jitter for inline retries: ~0.5 s, 1 s, 2 s …
fn backoff_ms(attempt: u32) -> u64 {
    let base = 500u64 << attempt.saturating_sub(1).min(6);
    base + crate::ids::random_u64() % (base / 2 + 1)
}

fn path_of(url: &str) -> &str {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = without_scheme
        .find('/')
        .map_or("/", |i| &without_scheme[i..]);
    path.split('?').next().unwrap_or(path)
}

/// A `Retry-After` header's value, seconds or an HTTP date, in milliseconds from `now_ms`.
pub fn retry_after_ms(header: Option<&str>, now_ms: i64) -> Option<u64> {
    let raw = header?.trim();
    if let Ok(seconds) = raw.parse::<f64>() {
        return (seconds >= 0.0).then_some((seconds * 1000.0) as u64);
    }
    let at = http_date_ms(raw)?;
    Some(u64::try_from(at - now_ms).unwrap_or(0))
}

/// An HTTP date as epoch milliseconds: RFC 9110's `Wed, 21 Oct 2015 07:28:00 GMT`, the weekday optional,
/// the zone `GMT`, `UT`, `UTC`, `Z` or `±hhmm`. By hand: chrono's RFC 2822 parser brought its whole
/// format-string machinery, about 14 KB of every component that calls an API, for this one header.
fn http_date_ms(raw: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let dated = raw.split_once(',').map_or(raw, |(_, rest)| rest);
    let mut parts = dated.split_ascii_whitespace();
    let day: u32 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month_name))?;
    let year: i32 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: u32 = clock.next()?.parse().ok()?;
    let minute: u32 = clock.next()?.parse().ok()?;
    let second: u32 = clock.next().map_or(Some(0), |s| s.parse().ok())?;
    let zone = parts.next()?;
    if clock.next().is_some() || parts.next().is_some() {
        return None;
    }
    let offset_minutes = match zone {
        "GMT" | "UT" | "UTC" | "Z" => 0,
        _ => {
            let sign = match zone.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = zone.get(1..).filter(|d| d.len() == 4)?;
            let hours: i64 = digits.get(..2)?.parse().ok()?;
            let minutes: i64 = digits.get(2..)?.parse().ok()?;
            sign * (hours * 60 + minutes)
        }
    };
    let at = chrono::NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()? + 1, day)?
        .and_hms_opt(hour, minute, second)?;
    Some(at.and_utc().timestamp_millis() - offset_minutes * 60_000)
}

/// The API's own error code and message, short, from a JSON error body (never the request's data).
fn error_detail(response: &HttpResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap_or_default();
    let code = body.get("code").and_then(|c| c.as_str());
    let message = body
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("no error message");
    let message: String = message.chars().take(300).collect();
    match code {
        Some(code) => format!("{code}: {message}"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(retry_after_ms(Some("2"), 0), Some(2000));
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            retry_after_ms(Some("Wed, 21 Oct 2015 07:28:05 GMT"), now),
            Some(5000)
        );
        assert_eq!(retry_after_ms(None, 0), None);
    }

    #[test]
    fn statuses_mean_what_each_service_means_by_them() {
        let class = |service, status| match ApiError::from_status(
            service,
            status,
            Some(1000),
            String::new(),
        ) {
            ApiError::RateLimited {
                retry_after_ms: Some(1000),
                ..
            } => "rate limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Refused { .. } => "refused",
            other => panic!("{other:?}"),
        };
        for service in [Service::OpenPhone, Service::Notion, Service::S3] {
            assert_eq!(class(service, 429), "rate limited");
            assert_eq!(class(service, 529), "rate limited");
            assert_eq!(class(service, 409), "unavailable");
            assert_eq!(class(service, 408), "unavailable");
            assert_eq!(class(service, 503), "unavailable");
            assert_eq!(class(service, 400), "refused");
        }
        // The media host is a file server: Notion's 529 and 409 mean nothing special there.
        assert_eq!(class(Service::Media, 429), "rate limited");
        assert_eq!(class(Service::Media, 529), "unavailable");
        assert_eq!(class(Service::Media, 409), "refused");
        assert_eq!(class(Service::Media, 408), "unavailable");
        assert_eq!(class(Service::Media, 403), "refused");
    }

    #[test]
    fn http_dates_read_as_chrono_reads_them() {
        for date in [
            "Wed, 21 Oct 2015 07:28:05 GMT",
            "wed, 21 oct 2015 07:28:05 GMT",
            "21 Oct 2015 07:28:05 GMT",
            "Wed, 21 Oct 2015 07:28 GMT",
            "Sun, 1 Feb 2026 23:59:59 +0000",
            "Wed, 21 Oct 2015 09:28:05 +0200",
            "Tue, 20 Oct 2015 21:58:05 -0930",
            "Thu, 29 Feb 2024 00:00:00 UT",
        ] {
            let chrono = chrono::DateTime::parse_from_rfc2822(date)
                .unwrap()
                .timestamp_millis();
            assert_eq!(http_date_ms(date), Some(chrono), "{date}");
        }
        for bad in [
            "",
            "soon",
            "Wed, 21 Foo 2015 07:28:05 GMT",
            "Wed, 30 Feb 2015 07:28:05 GMT",
            "Wed, 21 Oct 2015 25:28:05 GMT",
            "Wed, 21 Oct 2015 07:28:05",
            "Wed, 21 Oct 2015 07:28:05 GMT extra",
            "Wed, 21 Oct 2015 07:28:05 +02",
        ] {
            assert_eq!(http_date_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn error_detail_keeps_code_and_message_short() {
        let body = format!(
            r#"{{"object":"error","code":"validation_error","message":"{}"}}"#,
            "x".repeat(1000)
        );
        let detail = error_detail(&HttpResponse {
            status: 400,
            headers: Vec::new(),
            body: body.into_bytes(),
        });
        assert!(detail.starts_with("validation_error: xxx"));
        assert!(detail.len() < 330);
    }

    #[test]
    fn queries_encode_plus_and_reserved_characters() {
        assert_eq!(
            encode_query(&[
                ("participants", "+15555550123"),
                ("createdAfter", "2025-10-20T00:00:00Z")
            ]),
            "participants=%2B15555550123&createdAfter=2025-10-20T00%3A00%3A00Z"
        );
    }

    #[test]
    fn paths_drop_scheme_host_and_query() {
        assert_eq!(
            path_of("https://api.openphone.com/v1/calls?participants=%2B1555"),
            "/v1/calls"
        );
        assert_eq!(path_of("http://127.0.0.1:9/"), "/");
    }

    /// An API that takes each request's whole first-byte limit and then fails, on a clock the fake
    /// moves: what one `send` would cost in real time.
    struct HangingApi {
        clock: std::rc::Rc<crate::platform::native::ManualClock>,
        first_byte_limits: std::cell::RefCell<Vec<u64>>,
    }

    #[async_trait::async_trait(?Send)]
    impl crate::platform::HttpClient for HangingApi {
        async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
            self.first_byte_limits
                .borrow_mut()
                .push(request.timeouts.first_byte_ms);
            self.clock
                .advance_ms(i64::try_from(request.timeouts.first_byte_ms).unwrap());
            Err(HttpError::Network("timed out".into()))
        }
    }

    #[tokio::test]
    async fn a_send_ends_within_its_deadline_however_long_each_attempt_hangs() {
        use crate::platform::native::{ManualClock, NativePlatformBuilder};
        use crate::platform::Clock;
        use std::rc::Rc;

        let dir = tempfile::tempdir().unwrap();
        let clock = Rc::new(ManualClock::at(1_760_000_000_000));
        let api = Rc::new(HangingApi {
            clock: clock.clone(),
            first_byte_limits: Default::default(),
        });
        let platform = NativePlatformBuilder::new(dir.path())
            .clock(clock.clone())
            .http(api.clone())
            .build()
            .unwrap();
        crate::migrations::ensure_checked(&platform).await.unwrap();
        let outbound = Outbound::new(&platform, Service::OpenPhone, "key");
        let started = clock.now_ms();
        let error = outbound
            .send(
                HttpRequest::new(Method::Get, "http://127.0.0.1:9/v1/calls"),
                Retry::Idempotent,
            )
            .await
            .unwrap_err();
        let took = clock.now_ms() - started;
        assert!(error.is_transient(), "{error}");
        assert!(took <= MAX_SEND_MS, "one send took {took} ms");
        let limits = api.first_byte_limits.borrow().clone();
        // 20 s, then what is left after the backoff (less than 20 s): never past the deadline.
        assert_eq!(limits[0], crate::platform::Timeouts::API.first_byte_ms);
        assert!(limits.len() >= 2 && limits[1] < limits[0], "{limits:?}");
    }

    #[test]
    fn backoff_grows_and_stays_jittered() {
        for attempt in 1..5 {
            let base = 500u64 << (attempt - 1);
            let wait = backoff_ms(attempt);
            assert!(wait >= base && wait <= base + base / 2, "{attempt}: {wait}");
        }
    }
}
