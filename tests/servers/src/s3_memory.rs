//! [`MemoryS3`]: an in-memory S3 bucket served by an axum router, for callers that run the app in one
//! process on a virtual clock (the simulation in `tests/sim`). The signature itself is checked by the
//! real S3 server of the other tests ([`crate::S3Server`], `s3s-fs`); this double checks what it can
//! without the secret, and otherwise refuses what S3 refuses:
//!
//! - every request carries SigV4 for its access key, as a presigned query (`X-Amz-Credential`,
//!   `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-Signature`; `403` once expired by the double's clock) or as
//!   headers (`Authorization` and `x-amz-content-sha256` and `x-amz-date`);
//! - path-style `/<bucket>/<key>` only, one bucket (`NoSuchBucket` otherwise);
//! - `PutObject` and `UploadPart` need a `Content-Length` that matches the body; `UploadPart` needs a
//!   known upload and a part number in 1..=10000; `CompleteMultipartUpload` needs parts in ascending
//!   order whose ETags match, each but the last at least 5 MiB (`EntityTooSmall`);
//! - `HeadObject`, `GetObject`, `DeleteObject` (idempotent, `204`), `AbortMultipartUpload`, and
//!   `ListObjectsV2` with `prefix`, `max-keys`, `continuation-token` and `encoding-type=url`.
//!
//! Its clock is set by the caller ([`MemoryS3::set_now_ms`]) so `LastModified` and expiry follow virtual
//! time; [`MemoryS3::history`] lists every object written or deleted, with that time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::s3::StoredObject;

/// The smallest part but the last of a multipart upload, as S3 enforces it.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Part numbers S3 accepts.
const MAX_PART_NUMBER: u32 = 10_000;
/// How far ahead of the server's clock a signature's date may be.
const CLOCK_TOLERANCE_MS: i64 = 15 * 60 * 1000;
/// The body S3 is willing to read into memory here: far above any simulated recording.
const MAX_BODY: usize = 64 * 1024 * 1024;
const XML_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// What happened to an object, for [`MemoryS3::history`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Written by `PutObject` or `CompleteMultipartUpload`.
    Written,
    /// Deleted by `DeleteObject` (a key that was there).
    Deleted,
}

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    etag: String,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    last_modified: i64,
}

#[derive(Debug, Default)]
struct Upload {
    key: String,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    parts: BTreeMap<u32, (String, Bytes)>,
}

#[derive(Debug, Default)]
struct State_ {
    objects: BTreeMap<String, Object>,
    uploads: BTreeMap<String, Upload>,
    next_upload: u64,
    history: Vec<(i64, String, Change)>,
}

#[derive(Debug)]
struct Shared {
    bucket: String,
    access_key: String,
    now_ms: AtomicI64,
    state: Mutex<State_>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// An in-memory bucket; clones share it.
#[derive(Debug, Clone)]
pub struct MemoryS3 {
    shared: Arc<Shared>,
}

impl MemoryS3 {
    /// An empty bucket named `bucket` that accepts signatures by `access_key`, its clock at `now_ms`.
    pub fn new(bucket: &str, access_key: &str, now_ms: i64) -> Self {
        Self {
            shared: Arc::new(Shared {
                bucket: bucket.to_owned(),
                access_key: access_key.to_owned(),
                now_ms: AtomicI64::new(now_ms),
                state: Mutex::new(State_::default()),
            }),
        }
    }

    /// The routes, to call in-process (`tower::ServiceExt::oneshot`) or serve.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .fallback(handle)
            .with_state(self.shared.clone())
    }

    /// Sets the double's clock (epoch ms): `LastModified` of what is written next, and the expiry of
    /// presigned requests.
    pub fn set_now_ms(&self, now_ms: i64) {
        self.shared.now_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Every object, by key.
    pub fn objects(&self) -> Vec<StoredObject> {
        self.shared
            .lock()
            .objects
            .iter()
            .map(|(key, object)| StoredObject {
                key: key.clone(),
                size: object.data.len() as u64,
            })
            .collect()
    }

    /// Whether `key` is in the bucket.
    pub fn contains(&self, key: &str) -> bool {
        self.shared.lock().objects.contains_key(key)
    }

    /// Every write and delete, in order: (time, key, what).
    pub fn history(&self) -> Vec<(i64, String, Change)> {
        self.shared.lock().history.clone()
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.shared.lock().uploads.len()
    }
}

/// An S3 error answer, small enough to return in a `Result`.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: &'static str,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

fn refuse(status: StatusCode, code: &'static str, message: &'static str) -> Refusal {
    Refusal {
        status,
        code,
        message,
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        escape(message)
    );
    (status, [("content-type", "application/xml")], body).into_response()
}

fn xml(body: String) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/xml")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"),
    )
        .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn http_date(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// A deterministic ETag (FNV-1a of the bytes), quoted as S3 quotes it.
fn etag_of(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("k={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A key as `encoding-type=url` lists it: everything but unreserved characters and `/` escaped.
fn url_encode_key(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks the request's SigV4 credentials (not the signature: that needs the secret, which `s3s-fs`
/// checks in the other tests). `Err` is S3's answer.
fn authorize(
    shared: &Shared,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let denied = |message: &'static str| refuse(StatusCode::FORBIDDEN, "AccessDenied", message);
    let credential_ok = |credential: &str| {
        credential
            .split('/')
            .next()
            .is_some_and(|key| key == shared.access_key)
            && credential.ends_with("/s3/aws4_request")
    };
    let parse_date = |date: &str| {
        NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|d| d.and_utc().timestamp_millis())
    };
    let now = shared.now();
    if query.contains_key("X-Amz-Signature") {
        if query.get("X-Amz-Algorithm").map(String::as_str) != Some("AWS4-HMAC-SHA256") {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                "X-Amz-Algorithm must be AWS4-HMAC-SHA256",
            ));
        }
        if !query
            .get("X-Amz-Credential")
            .is_some_and(|c| credential_ok(c))
        {
            return Err(denied("The AWS Access Key Id you provided does not exist"));
        }
        let Some(signed_at) = query.get("X-Amz-Date").and_then(|d| parse_date(d)) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                "X-Amz-Date is missing or malformed",
            ));
        };
        let Some(expires_s) = query
            .get("X-Amz-Expires")
            .and_then(|e| e.parse::<i64>().ok())
            .filter(|e| (1..=7 * 24 * 3600).contains(e))
        else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be between 1 and 604800 seconds",
            ));
        };
        if signed_at > now + CLOCK_TOLERANCE_MS {
            return Err(denied("Request is not valid yet"));
        }
        if now > signed_at + expires_s * 1000 {
            return Err(denied("Request has expired"));
        }
        return Ok(());
    }
    let Some(authorization) = header(headers, "authorization") else {
        return Err(denied("Access Denied"));
    };
    let Some(credential) = authorization
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .and_then(|rest| rest.split(',').next())
    else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "AuthorizationHeaderMalformed",
            "The authorization header is malformed",
        ));
    };
    if !credential_ok(credential) {
        return Err(denied("The AWS Access Key Id you provided does not exist"));
    }
    if header(headers, "x-amz-content-sha256").is_none() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Missing required header for this request: x-amz-content-sha256",
        ));
    }
    let Some(signed_at) = header(headers, "x-amz-date").and_then(parse_date) else {
        return Err(denied(
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    if (signed_at - now).abs() > CLOCK_TOLERANCE_MS {
        return Err(denied(
            "The difference between the request time and the current time is too large",
        ));
    }
    Ok(())
}

fn attributes(headers: &HeaderMap) -> (Option<String>, Vec<(String, String)>) {
    let content_type = header(headers, "content-type").map(str::to_owned);
    let metadata = headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.as_str().strip_prefix("x-amz-meta-")?;
            Some((name.to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    (content_type, metadata)
}

/// The body, checked against `Content-Length` as S3 reads it.
async fn body_of(request: Request) -> Result<Bytes, Refusal> {
    let declared = header(request.headers(), "content-length").map(str::to_owned);
    let Some(declared) = declared.and_then(|d| d.trim().parse::<usize>().ok()) else {
        return Err(refuse(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        ));
    };
    let body = to_bytes(request.into_body(), MAX_BODY).await.map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        )
    })?;
    if body.len() != declared {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length HTTP header",
        ));
    }
    Ok(body)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let query: BTreeMap<String, String> = request
        .uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<BTreeMap<_, _>>()
        })
        .unwrap_or_default();
    if let Err(refused) = authorize(&shared, &query, request.headers()) {
        return refused.into_response();
    }
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let (bucket, key) = match path.split_once('/') {
        Some((bucket, key)) => (bucket.to_owned(), percent_decode(key)),
        None => (path.clone(), String::new()),
    };
    if bucket != shared.bucket {
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
        );
    }
    let method = request.method().clone();
    if key.is_empty() {
        return match (method, query.get("list-type").map(String::as_str)) {
            (Method::GET, Some("2")) => list(&shared, &query),
            _ => error(
                StatusCode::NOT_IMPLEMENTED,
                "NotImplemented",
                "Only ListObjectsV2 is served on the bucket",
            ),
        };
    }
    let upload_id = query.get("uploadId").cloned();
    match (method, upload_id) {
        (Method::PUT, None) => put(&shared, key, request).await,
        (Method::PUT, Some(upload_id)) => {
            upload_part(&shared, &key, &upload_id, &query, request).await
        }
        (Method::HEAD, None) | (Method::GET, None) => {
            let head = request.method() == Method::HEAD;
            get(&shared, &key, head)
        }
        (Method::DELETE, None) => {
            let now = shared.now();
            let mut state = shared.lock();
            if state.objects.remove(&key).is_some() {
                state.history.push((now, key, Change::Deleted));
            }
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::POST, None) if query.contains_key("uploads") => {
            let (content_type, metadata) = attributes(request.headers());
            let mut state = shared.lock();
            state.next_upload += 1;
            let upload_id = format!("upload-{}", state.next_upload);
            state.uploads.insert(
                upload_id.clone(),
                Upload {
                    key: key.clone(),
                    content_type,
                    metadata,
                    parts: BTreeMap::new(),
                },
            );
            xml(format!(
                "<InitiateMultipartUploadResult xmlns=\"{XML_NS}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>",
                escape(&shared.bucket),
                escape(&key)
            ))
        }
        (Method::POST, Some(upload_id)) => complete(&shared, &key, &upload_id, request).await,
        (Method::DELETE, Some(upload_id)) => {
            let mut state = shared.lock();
            match state.uploads.get(&upload_id) {
                Some(upload) if upload.key == key => {
                    state.uploads.remove(&upload_id);
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => no_such_upload(),
            }
        }
        _ => error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "A header or query you provided implies functionality that is not implemented",
        ),
    }
}

fn no_such_upload() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
}

async fn put(shared: &Shared, key: String, request: Request) -> Response {
    if request.headers().contains_key("x-amz-copy-source") {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "CopyObject is not served",
        );
    }
    let (content_type, metadata) = attributes(request.headers());
    let data = match body_of(request).await {
        Ok(data) => data,
        Err(refused) => return refused.into_response(),
    };
    let etag = etag_of(&data);
    store(shared, key, data, etag.clone(), content_type, metadata);
    (StatusCode::OK, [("etag", etag)]).into_response()
}

fn store(
    shared: &Shared,
    key: String,
    data: Bytes,
    etag: String,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
) {
    let now = shared.now();
    let mut state = shared.lock();
    state.history.push((now, key.clone(), Change::Written));
    state.objects.insert(
        key,
        Object {
            data,
            etag,
            content_type,
            metadata,
            last_modified: now,
        },
    );
}

fn get(shared: &Shared, key: &str, head: bool) -> Response {
    let state = shared.lock();
    let Some(object) = state.objects.get(key) else {
        return if head {
            StatusCode::NOT_FOUND.into_response()
        } else {
            error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            )
        };
    };
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-length", object.data.len())
        .header("etag", &object.etag)
        .header("last-modified", http_date(object.last_modified))
        .header(
            "content-type",
            object
                .content_type
                .as_deref()
                .unwrap_or("binary/octet-stream"),
        );
    for (name, value) in &object.metadata {
        response = response.header(format!("x-amz-meta-{name}"), value);
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from(object.data.clone())
    };
    response.body(body).unwrap_or_else(|_| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "bad header",
        )
    })
}

async fn upload_part(
    shared: &Shared,
    key: &str,
    upload_id: &str,
    query: &BTreeMap<String, String>,
    request: Request,
) -> Response {
    let Some(part_number) = query
        .get("partNumber")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
        );
    };
    let known = shared
        .lock()
        .uploads
        .get(upload_id)
        .is_some_and(|u| u.key == key);
    if !known {
        return no_such_upload();
    }
    let data = match body_of(request).await {
        Ok(data) => data,
        Err(refused) => return refused.into_response(),
    };
    let etag = etag_of(&data);
    let mut state = shared.lock();
    // Aborted while the body was read.
    let Some(upload) = state.uploads.get_mut(upload_id) else {
        return no_such_upload();
    };
    upload.parts.insert(part_number, (etag.clone(), data));
    (StatusCode::OK, [("etag", etag)]).into_response()
}

/// The `(PartNumber, ETag)` pairs of a `CompleteMultipartUpload` body, in its order.
fn parse_parts(body: &str) -> Option<Vec<(u32, String)>> {
    let inner = |text: &str, tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&close)?;
        Some(text[start..end].trim().to_owned())
    };
    let mut parts = Vec::new();
    for chunk in body.split("<Part>").skip(1) {
        let part = chunk.split("</Part>").next()?;
        let number = inner(part, "PartNumber")?.parse().ok()?;
        let etag = inner(part, "ETag")?.replace("&quot;", "\"");
        parts.push((number, etag));
    }
    (!parts.is_empty() && body.contains("<CompleteMultipartUpload")).then_some(parts)
}

async fn complete(shared: &Shared, key: &str, upload_id: &str, request: Request) -> Response {
    let body = match to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return error(StatusCode::BAD_REQUEST, "MalformedXML", "unreadable body"),
    };
    let Some(listed) = std::str::from_utf8(&body).ok().and_then(parse_parts) else {
        return error(
            StatusCode::BAD_REQUEST,
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
        );
    };
    let mut state = shared.lock();
    let Some(upload) = state.uploads.get(upload_id).filter(|u| u.key == key) else {
        return no_such_upload();
    };
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidPartOrder",
            "The list of parts was not in ascending order.",
        );
    }
    let mut data = Vec::new();
    for (i, (number, etag)) in listed.iter().enumerate() {
        let Some((stored_etag, part)) = upload.parts.get(number).filter(|(e, _)| e == etag) else {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidPart",
                "One or more of the specified parts could not be found.",
            );
        };
        debug_assert_eq!(stored_etag, etag);
        if i + 1 < listed.len() && part.len() < MIN_PART_SIZE {
            return error(
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed object size.",
            );
        }
        data.extend_from_slice(part);
    }
    let upload = state.uploads.remove(upload_id).expect("found above");
    drop(state);
    let etag = format!("\"{}-{}\"", etag_of(&data).trim_matches('"'), listed.len());
    store(
        shared,
        key.to_owned(),
        Bytes::from(data),
        etag.clone(),
        upload.content_type,
        upload.metadata,
    );
    xml(format!(
        "<CompleteMultipartUploadResult xmlns=\"{XML_NS}\"><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
        escape(&shared.bucket),
        escape(key),
        escape(&etag)
    ))
}

fn list(shared: &Shared, query: &BTreeMap<String, String>) -> Response {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let max_keys = match query.get("max-keys").map(|m| m.parse::<usize>()) {
        None => 1000,
        Some(Ok(m)) => m.min(1000),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidArgument",
                "Provided max-keys not an integer or within integer range",
            )
        }
    };
    let after = match query.get("continuation-token") {
        None => None,
        Some(token) => match token.strip_prefix("after:") {
            Some(key) => Some(key.to_owned()),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                )
            }
        },
    };
    let encode = query.get("encoding-type").map(String::as_str) == Some("url");
    let shown = |key: &str| {
        if encode {
            url_encode_key(key)
        } else {
            escape(key)
        }
    };
    let state = shared.lock();
    let mut matching = state
        .objects
        .iter()
        .filter(|(key, _)| key.starts_with(&prefix))
        .filter(|(key, _)| after.as_deref().is_none_or(|after| key.as_str() > after));
    let page: Vec<_> = matching.by_ref().take(max_keys).collect();
    let truncated = matching.next().is_some();
    let mut body = format!(
        "<ListBucketResult xmlns=\"{XML_NS}\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{}</KeyCount><MaxKeys>{max_keys}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        escape(&shared.bucket),
        shown(&prefix),
        page.len()
    );
    if encode {
        body.push_str("<EncodingType>url</EncodingType>");
    }
    if truncated {
        if let Some((last, _)) = page.last() {
            body.push_str(&format!(
                "<NextContinuationToken>after:{}</NextContinuationToken>",
                escape(last)
            ));
        }
    }
    for (key, object) in &page {
        body.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            shown(key),
            iso(object.last_modified),
            escape(&object.etag),
            object.data.len()
        ));
    }
    body.push_str("</ListBucketResult>");
    xml(body)
}
