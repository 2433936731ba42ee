//! An S3-compatible object store (Cloudflare R2, or any other) over the platform's HTTP.
//!
//! [`ObjectStore`] is the protocol, with no I/O: it signs requests with AWS SigV4 ([`super::sigv4`]:
//! query-string signing, path-style addressing, region `auto`) and reads the answers (`xml`). [`S3Client`] sends
//! them through [`Outbound`] (metrics, retries, [`ApiError`]), and [`ObjectWriter`] uploads a stream of
//! bytes as one `PutObject` when it is small and as a multipart upload, part by part, when it is not, so
//! memory holds at most one part whatever the object's size.

use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;

use super::sigv4::{self, Credentials};

use crate::configuration::StorageConfig;
use crate::http_url::{HttpUrl, UrlError};
use crate::outbound::{ApiError, Failure, Outbound, Retry, Service, Transience};
use crate::platform::{HttpRequest, HttpResponse, Method, Platform};

/// The region of every signature's credential scope. R2 documents `auto`; a store that checks the region
/// is reached through an endpoint of that region anyway.
pub const REGION: &str = "auto";
/// Lifetime of a presigned `GET` URL: the longest SigV4 allows (`X-Amz-Expires` of at most 7 days).
pub const MAX_PRESIGNED_EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Smallest part S3 and R2 accept in a multipart upload, the last part excepted.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Part size of multipart uploads, and the size above which an object is uploaded in parts.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// Keys per `ListObjectsV2` page: the most S3 returns.
pub const LIST_PAGE_SIZE: usize = 1000;
/// R2 refuses an object whose user metadata is larger than about 2 KB (names and values together).
pub const MAX_METADATA_BYTES: usize = 2048;
/// Parts one multipart upload may have.
const MAX_PARTS: usize = 10_000;
/// Lifetime of the signature of a request this client sends itself: enough for its inline retries.
const REQUEST_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// Why an object store request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request failed or was refused; [`Failure::is_transient`] says whether a retry may help.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A `2xx` whose content is not what the request calls for (S3 may answer a multipart completion
    /// with `200` and an `<Error>` body).
    #[error("unexpected answer from the object store to {action}: {detail}")]
    Unexpected {
        /// The S3 action.
        action: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The object's metadata is over [`MAX_METADATA_BYTES`]; nothing was sent.
    #[error("metadata of {key} is {bytes} bytes, over the {MAX_METADATA_BYTES}-byte limit")]
    MetadataTooLarge {
        /// The object key.
        key: String,
        /// Size of names and values together.
        bytes: usize,
    },
    /// The object needs more parts than a multipart upload may have.
    #[error("{key} needs more than {MAX_PARTS} parts of {part_size} bytes")]
    TooManyParts {
        /// The object key.
        key: String,
        /// The part size in use.
        part_size: usize,
    },
}

impl Failure for StoreError {
    fn transience(&self) -> Transience {
        match self {
            StoreError::Api(e) => e.transience(),
            StoreError::Unexpected { .. } => Transience::Transient {
                retry_after_ms: None,
            },
            StoreError::MetadataTooLarge { .. } | StoreError::TooManyParts { .. } => {
                Transience::Permanent
            }
        }
    }
}

/// What an object is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectAttributes {
    /// `Content-Type`.
    pub content_type: String,
    /// User metadata, sent as `x-amz-meta-<name>`: lower-case ASCII names and short ASCII values, at
    /// most [`MAX_METADATA_BYTES`] together (never free text such as a transcript).
    pub metadata: Vec<(String, String)>,
}

impl ObjectAttributes {
    /// The headers that carry the attributes; they are signed, so they are sent exactly like this.
    fn headers(&self) -> Vec<(String, String)> {
        std::iter::once(("content-type".to_owned(), self.content_type.clone()))
            .chain(
                self.metadata
                    .iter()
                    .map(|(name, value)| (format!("x-amz-meta-{name}"), value.clone())),
            )
            .collect()
    }

    fn check_size(&self, key: &str) -> Result<(), StoreError> {
        let bytes = self.metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
        if bytes > MAX_METADATA_BYTES {
            return Err(StoreError::MetadataTooLarge {
                key: key.to_owned(),
                bytes,
            });
        }
        Ok(())
    }
}

/// An object as `HeadObject` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: u64,
    /// `Content-Type`, if the store keeps one.
    pub content_type: Option<String>,
    /// User metadata, names without the `x-amz-meta-` prefix.
    pub metadata: Vec<(String, String)>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// `LastModified`, as the store wrote it (ISO 8601).
    pub last_modified: Option<String>,
}

/// One page of a `ListObjectsV2` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page, in key order.
    pub objects: Vec<ListedObject>,
    /// Pass to the next [`S3Client::list`] to read on; `None` on the last page.
    pub next_continuation_token: Option<String>,
}

/// A presigned `GET` URL and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    /// The URL, signature in the query.
    pub url: String,
    /// Unix milliseconds after which the store refuses it.
    pub expires_at_ms: i64,
}

/// A bucket and the credentials to use it: builds signed requests and reads answers, with no I/O.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    /// `scheme://authority` of the endpoint.
    origin: String,
    /// The `Host` header: the authority without a default port.
    host: String,
    /// The endpoint's path and the bucket, encoded, with no trailing `/`: `/<bucket>` usually.
    bucket_path: String,
    credentials: Credentials,
}

impl ObjectStore {
    /// The bucket `bucket` at `endpoint` (`scheme://host[:port]`, path-style requests).
    pub fn new(
        endpoint: &str,
        bucket: &str,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> anyhow::Result<Self> {
        let url = match HttpUrl::parse(endpoint) {
            Ok(url) => url,
            Err(UrlError::NotHttp) => bail!("s3_endpoint {endpoint:?} is not an http(s) URL"),
            Err(e) => bail!("s3_endpoint {endpoint:?} is {e}"),
        };
        let host = url.host();
        // Credentials in the endpoint would end up in every presigned URL, and a query would be
        // replaced by the signature's: refused rather than silently dropped.
        if url.has_credentials() {
            bail!("s3_endpoint must not contain credentials; set s3_access_key_id and s3_secret_access_key");
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!("s3_endpoint {endpoint:?} must not have a query or fragment");
        }
        if bucket.is_empty() {
            bail!("the bucket name is empty");
        }
        // `HttpUrl::port` is `None` for the scheme's default port, which the `Host` header leaves out too.
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        // Path-style: R2 serves both, and virtual-host style would need a grant per bucket host.
        let bucket_path = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            sigv4::encode(bucket, false)
        );
        Ok(Self {
            origin: format!("{}://{host}", url.scheme()),
            host,
            bucket_path,
            credentials: Credentials::new(access_key_id, secret_access_key),
        })
    }

    /// The store that `config` names.
    pub fn from_config(config: &StorageConfig) -> anyhow::Result<Self> {
        Self::new(
            &config.endpoint,
            &config.bucket,
            config.access_key_id.expose(),
            config.secret_access_key.expose(),
        )
    }

    /// A URL anyone can `GET` the object `key` with until [`MAX_PRESIGNED_EXPIRY`] after `now_ms`.
    pub fn presign_get(&self, key: &str, now_ms: i64) -> PresignedUrl {
        let expiry_ms = i64::try_from(MAX_PRESIGNED_EXPIRY.as_millis()).expect("7 days fit in i64");
        PresignedUrl {
            url: self.sign(
                Method::Get,
                &self.object_path(key),
                &[],
                &[],
                MAX_PRESIGNED_EXPIRY,
                now_ms,
            ),
            expires_at_ms: now_ms + expiry_ms,
        }
    }

    /// The path of `key`: appended to the bucket's rather than resolved against it, so a key starting
    /// with `/` cannot leave the bucket's path.
    fn object_path(&self, key: &str) -> String {
        format!("{}/{}", self.bucket_path, sigv4::encode(key, true))
    }

    fn sign(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(String, String)],
        expires_in: Duration,
        now_ms: i64,
    ) -> String {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        sigv4::presign(
            &sigv4::Request {
                method: method.as_str(),
                origin: &self.origin,
                host: &self.host,
                path,
                query,
                headers: &headers,
            },
            &self.credentials,
            sigv4::Scope {
                region: REGION,
                service: "s3",
            },
            now_ms,
            expires_in.as_secs(),
        )
    }

    fn head_object(&self, key: &str, now_ms: i64) -> HttpRequest {
        let path = self.object_path(key);
        let url = self.sign(Method::Head, &path, &[], &[], REQUEST_EXPIRY, now_ms);
        HttpRequest::new(Method::Head, url)
    }

    fn put_object(
        &self,
        key: &str,
        attributes: &ObjectAttributes,
        body: Bytes,
        now_ms: i64,
    ) -> HttpRequest {
        let headers = attributes.headers();
        let path = self.object_path(key);
        let url = self.sign(Method::Put, &path, &[], &headers, REQUEST_EXPIRY, now_ms);
        with_body(HttpRequest::new(Method::Put, url), headers, body)
    }

    fn delete_object(&self, key: &str, now_ms: i64) -> HttpRequest {
        let path = self.object_path(key);
        let url = self.sign(Method::Delete, &path, &[], &[], REQUEST_EXPIRY, now_ms);
        HttpRequest::new(Method::Delete, url)
    }

    fn list_objects(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
        now_ms: i64,
    ) -> HttpRequest {
        let max_keys = max_keys.to_string();
        // `encoding-type=url`: keys come back percent-encoded, so a key with characters XML 1.0 cannot
        // carry still lists.
        let mut query = vec![
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("prefix", prefix),
            ("max-keys", max_keys.as_str()),
        ];
        if let Some(token) = continuation {
            query.push(("continuation-token", token));
        }
        let path = format!("{}/", self.bucket_path);
        let url = self.sign(Method::Get, &path, &query, &[], REQUEST_EXPIRY, now_ms);
        HttpRequest::new(Method::Get, url)
    }

    fn create_multipart_upload(
        &self,
        key: &str,
        attributes: &ObjectAttributes,
        now_ms: i64,
    ) -> HttpRequest {
        let headers = attributes.headers();
        let path = self.object_path(key);
        let url = self.sign(
            Method::Post,
            &path,
            &[("uploads", "")],
            &headers,
            REQUEST_EXPIRY,
            now_ms,
        );
        let mut request = HttpRequest::new(Method::Post, url);
        request.headers = headers;
        request
    }

    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u16,
        body: Bytes,
        now_ms: i64,
    ) -> HttpRequest {
        let part_number = part_number.to_string();
        let query = [
            ("partNumber", part_number.as_str()),
            ("uploadId", upload_id),
        ];
        let path = self.object_path(key);
        let url = self.sign(Method::Put, &path, &query, &[], REQUEST_EXPIRY, now_ms);
        with_body(HttpRequest::new(Method::Put, url), Vec::new(), body)
    }

    fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
        now_ms: i64,
    ) -> HttpRequest {
        let path = self.object_path(key);
        let url = self.sign(
            Method::Post,
            &path,
            &[("uploadId", upload_id)],
            &[],
            REQUEST_EXPIRY,
            now_ms,
        );
        let mut body = String::from("<CompleteMultipartUpload>");
        for (i, etag) in etags.iter().enumerate() {
            body.push_str(&format!(
                "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                i + 1,
                xml::escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        with_body(
            HttpRequest::new(Method::Post, url),
            Vec::new(),
            body.into_bytes().into(),
        )
    }

    fn abort_multipart_upload(&self, key: &str, upload_id: &str, now_ms: i64) -> HttpRequest {
        let path = self.object_path(key);
        let query = [("uploadId", upload_id)];
        let url = self.sign(Method::Delete, &path, &query, &[], REQUEST_EXPIRY, now_ms);
        HttpRequest::new(Method::Delete, url)
    }
}

/// Adds `headers` and a body with its explicit `Content-Length`: without it a WASI host may send the
/// body chunked, and S3 refuses a `PUT` of unknown length.
fn with_body(mut request: HttpRequest, headers: Vec<(String, String)>, body: Bytes) -> HttpRequest {
    request.headers = headers;
    request
        .headers
        .push(("content-length".to_owned(), body.len().to_string()));
    request.body = body;
    request
}

/// The object `HeadObject` found, or `None` for a `404`.
fn parse_head(response: &HttpResponse) -> Result<Option<ObjectInfo>, StoreError> {
    if response.status == 404 {
        return Ok(None);
    }
    let size = response
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| StoreError::Unexpected {
            action: "HeadObject",
            detail: "no Content-Length".into(),
        })?;
    let metadata = response
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let name = name.strip_prefix("x-amz-meta-")?.to_owned();
            Some((name, value.clone()))
        })
        .collect();
    Ok(Some(ObjectInfo {
        size,
        content_type: response.header("content-type").map(str::to_owned),
        metadata,
    }))
}

fn parse_list(response: &HttpResponse) -> Result<ListPage, StoreError> {
    let unexpected = |detail: String| StoreError::Unexpected {
        action: "ListObjectsV2",
        detail,
    };
    let body =
        std::str::from_utf8(&response.body).map_err(|_| unexpected("body is not UTF-8".into()))?;
    let root = xml::root(body, "ListBucketResult").map_err(unexpected)?;
    let mut objects = Vec::new();
    for contents in xml::children(root, "Contents") {
        let raw_key = xml::child_text(contents, "Key")
            .ok_or_else(|| unexpected("an object without a <Key>".into()))?;
        // Requested with `encoding-type=url`: stores that honour it encode every key.
        let key = match xml::child_text(root, "EncodingType").as_deref() {
            Some("url") => sigv4::decode(&raw_key).ok_or_else(|| {
                unexpected(format!("key {raw_key:?} is not percent-encoded UTF-8"))
            })?,
            _ => raw_key,
        };
        let size = match xml::child_text(contents, "Size") {
            Some(size) => size
                .trim()
                .parse()
                .map_err(|_| unexpected(format!("size {size:?} of {key} is not a number")))?,
            None => 0,
        };
        objects.push(ListedObject {
            key,
            size,
            last_modified: xml::child_text(contents, "LastModified"),
        });
    }
    let truncated = xml::child_text(root, "IsTruncated").is_some_and(|t| t.trim() == "true");
    let next_continuation_token = if truncated {
        Some(
            xml::child_text(root, "NextContinuationToken")
                .ok_or_else(|| unexpected("truncated without a <NextContinuationToken>".into()))?,
        )
    } else {
        None
    };
    Ok(ListPage {
        objects,
        next_continuation_token,
    })
}

fn parse_upload_id(response: &HttpResponse) -> Result<String, StoreError> {
    let unexpected = |detail: String| StoreError::Unexpected {
        action: "CreateMultipartUpload",
        detail,
    };
    let body =
        std::str::from_utf8(&response.body).map_err(|_| unexpected("body is not UTF-8".into()))?;
    let root = xml::root(body, "InitiateMultipartUploadResult").map_err(unexpected)?;
    xml::child_text(root, "UploadId")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| unexpected("no <UploadId>".into()))
}

fn parse_part_etag(response: &HttpResponse) -> Result<String, StoreError> {
    response
        .header("etag")
        .map(str::to_owned)
        .ok_or_else(|| StoreError::Unexpected {
            action: "UploadPart",
            detail: "no ETag".into(),
        })
}

fn check_completed(response: &HttpResponse) -> Result<(), StoreError> {
    let unexpected = |detail: String| StoreError::Unexpected {
        action: "CompleteMultipartUpload",
        detail,
    };
    let body =
        std::str::from_utf8(&response.body).map_err(|_| unexpected("body is not UTF-8".into()))?;
    // The store may keep the connection alive with whitespace before the result, and report a failure
    // after a 200 status as an <Error> document.
    xml::root(body, "CompleteMultipartUploadResult")
        .map(drop)
        .map_err(unexpected)
}

/// Sends object store requests for one [`ObjectStore`].
pub struct S3Client<'a> {
    platform: &'a Platform,
    store: &'a ObjectStore,
    outbound: Outbound<'a>,
}

impl<'a> S3Client<'a> {
    /// A client for `store` on `platform`.
    pub fn new(platform: &'a Platform, store: &'a ObjectStore) -> Self {
        Self {
            platform,
            store,
            outbound: Outbound::new(platform, Service::S3, store.credentials.access_key_id()),
        }
    }

    fn now_ms(&self) -> i64 {
        self.platform.clock.now_ms()
    }

    /// The size, type and metadata of `key`, or `None` when there is no such object.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let request = self.store.head_object(key, self.now_ms());
        let response = self.outbound.send(request, Retry::Idempotent).await?;
        parse_head(&response)
    }

    /// Stores `body` at `key` with one `PutObject`; for bodies over a part, use [`S3Client::writer`].
    pub async fn put(
        &self,
        key: &str,
        attributes: &ObjectAttributes,
        body: impl Into<Bytes>,
    ) -> Result<(), StoreError> {
        attributes.check_size(key)?;
        let request = self
            .store
            .put_object(key, attributes, body.into(), self.now_ms());
        self.outbound.send(request, Retry::Idempotent).await?;
        Ok(())
    }

    /// One page of the objects whose key starts with `prefix`: at most `max_keys` (up to
    /// [`LIST_PAGE_SIZE`]), from the start or from `continuation` (the previous page's
    /// [`ListPage::next_continuation_token`]).
    pub async fn list(
        &self,
        prefix: &str,
        continuation: Option<&str>,
        max_keys: usize,
    ) -> Result<ListPage, StoreError> {
        let request = self
            .store
            .list_objects(prefix, continuation, max_keys, self.now_ms());
        let response = self.outbound.send(request, Retry::Idempotent).await?;
        parse_list(&response)
    }

    /// Deletes `key`; deleting an absent key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let request = self.store.delete_object(key, self.now_ms());
        self.outbound.send(request, Retry::Idempotent).await?;
        Ok(())
    }

    /// An upload of `key` fed chunk by chunk: one `PutObject` if the whole object fits in `part_size`
    /// (at least [`MIN_PART_SIZE`]), else a multipart upload with parts of `part_size`.
    pub fn writer(
        &self,
        key: &str,
        attributes: ObjectAttributes,
        part_size: usize,
    ) -> ObjectWriter<'_, 'a> {
        ObjectWriter {
            client: self,
            key: key.to_owned(),
            attributes,
            part_size: part_size.max(MIN_PART_SIZE),
            buffer: Vec::new(),
            upload: None,
            size: 0,
        }
    }

    async fn create_multipart_upload(
        &self,
        key: &str,
        attributes: &ObjectAttributes,
    ) -> Result<String, StoreError> {
        attributes.check_size(key)?;
        let request = self
            .store
            .create_multipart_upload(key, attributes, self.now_ms());
        // A repeat after an unknown outcome only leaves an unused upload, which the store's lifecycle
        // (R2: 7 days) removes.
        let response = self.outbound.send(request, Retry::Idempotent).await?;
        parse_upload_id(&response)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u16,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let request = self
            .store
            .upload_part(key, upload_id, part_number, body, self.now_ms());
        let response = self.outbound.send(request, Retry::Idempotent).await?;
        parse_part_etag(&response)
    }

    async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        etags: &[String],
    ) -> Result<(), StoreError> {
        let request = self
            .store
            .complete_multipart_upload(key, upload_id, etags, self.now_ms());
        // Repeating a completion that landed fails with NoSuchUpload, a 404 that would look permanent;
        // the caller's next attempt finds the finished object with HeadObject instead.
        let response = self.outbound.send(request, Retry::RateLimitOnly).await?;
        check_completed(&response)
    }

    async fn abort_multipart_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let request = self
            .store
            .abort_multipart_upload(key, upload_id, self.now_ms());
        self.outbound.send(request, Retry::Idempotent).await?;
        Ok(())
    }
}

/// A multipart upload in progress.
struct Multipart {
    upload_id: String,
    etags: Vec<String>,
}

/// Uploads one object from chunks as they arrive, holding at most one part in memory.
///
/// Feed it with [`ObjectWriter::write`] and end with [`ObjectWriter::finish`]; a caller that gives up
/// half-way (its source failed, or a write failed) calls [`ObjectWriter::abort`] so no parts are left
/// behind.
pub struct ObjectWriter<'c, 'a> {
    client: &'c S3Client<'a>,
    key: String,
    attributes: ObjectAttributes,
    part_size: usize,
    buffer: Vec<u8>,
    upload: Option<Multipart>,
    size: u64,
}

impl ObjectWriter<'_, '_> {
    /// Adds `data` to the object, uploading a part whenever a full one is buffered and more follows.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), StoreError> {
        while !data.is_empty() {
            // A full buffer is sent only once more data arrives, so an object of exactly one part
            // still goes up as a single PutObject.
            if self.buffer.len() == self.part_size {
                self.upload_buffered_part().await?;
            }
            if self.buffer.capacity() == 0 {
                self.buffer.reserve_exact(self.part_size);
            }
            let take = data.len().min(self.part_size - self.buffer.len());
            self.buffer.extend_from_slice(&data[..take]);
            self.size += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    async fn upload_buffered_part(&mut self) -> Result<(), StoreError> {
        let client = self.client;
        if self.upload.is_none() {
            let upload_id = client
                .create_multipart_upload(&self.key, &self.attributes)
                .await?;
            self.upload = Some(Multipart {
                upload_id,
                etags: Vec::new(),
            });
        }
        let upload = self.upload.as_mut().expect("created above");
        let part_number = upload.etags.len() + 1;
        if part_number > MAX_PARTS {
            return Err(StoreError::TooManyParts {
                key: self.key.clone(),
                part_size: self.part_size,
            });
        }
        let part_number = u16::try_from(part_number).expect("at most 10000 parts");
        // The buffer goes out with the request (as `Bytes`, without a copy, shared with the retries
        // rather than cloned) and is allocated again only when more data arrives.
        let body = Bytes::from(std::mem::take(&mut self.buffer));
        let etag = client
            .upload_part(&self.key, &upload.upload_id, part_number, body)
            .await?;
        upload.etags.push(etag);
        Ok(())
    }

    /// Uploads what is left and completes the object; returns its size. On failure a multipart upload
    /// is aborted before the error is returned.
    pub async fn finish(mut self) -> Result<u64, StoreError> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.client.put(&self.key, &self.attributes, body).await?;
            return Ok(self.size);
        }
        match self.complete().await {
            Ok(()) => Ok(self.size),
            Err(e) => {
                self.abort().await;
                Err(e)
            }
        }
    }

    async fn complete(&mut self) -> Result<(), StoreError> {
        if !self.buffer.is_empty() {
            self.upload_buffered_part().await?;
        }
        let upload = self
            .upload
            .as_ref()
            .expect("a multipart upload was started");
        self.client
            .complete_multipart_upload(&self.key, &upload.upload_id, &upload.etags)
            .await
    }

    /// Abandons the object: a multipart upload is aborted so its parts do not linger (a failure to
    /// abort is logged; the store's lifecycle removes the parts eventually).
    pub async fn abort(self) {
        let Some(upload) = &self.upload else {
            return;
        };
        if let Err(e) = self
            .client
            .abort_multipart_upload(&self.key, &upload.upload_id)
            .await
        {
            tracing::warn!(key = %self.key, error = %e, "could not abort a multipart upload");
        }
    }
}

/// The little XML the S3 answers need: the root element, child elements by name, their text. S3's
/// documents are flat and carry no CDATA or repeated nesting of one name, which keeps this a scanner
/// rather than a parser.
mod xml {
    /// The content of the document's root element, which must be `<name>`; an `<Error>` document
    /// (S3 sends one even after a `200`) or any other root is an error that says what came.
    pub(super) fn root<'a>(body: &'a str, name: &str) -> Result<&'a str, String> {
        let mut rest = body.trim_start();
        // The declaration and comments before the root.
        while rest.starts_with("<?") || rest.starts_with("<!--") {
            let end = if rest.starts_with("<?") { "?>" } else { "-->" };
            let close = rest.find(end).ok_or("an unterminated XML prolog")?;
            rest = rest[close + end.len()..].trim_start();
        }
        let tag = rest
            .strip_prefix('<')
            .and_then(|r| {
                r.split(|c: char| c == '>' || c == '/' || c.is_whitespace())
                    .next()
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| format!("not an XML document: {}", shown(body)))?;
        if tag == name {
            return element(rest, name)
                .map(|(content, _)| content)
                .ok_or_else(|| format!("<{name}> is not closed: {}", shown(body)));
        }
        if tag == "Error" {
            let content = element(rest, "Error").map_or("", |(c, _)| c);
            let code = child_text(content, "Code").unwrap_or_default();
            let message = child_text(content, "Message").unwrap_or_default();
            return Err(format!(
                "the store answered with an error: {code}: {message}"
            ));
        }
        Err(format!("expected <{name}>, got <{tag}>: {}", shown(body)))
    }

    /// The contents of each `<name>` element in `parent`, in order.
    pub(super) fn children<'a>(
        mut parent: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a str> {
        std::iter::from_fn(move || {
            let (content, rest) = element(parent, name)?;
            parent = rest;
            Some(content)
        })
    }

    /// The text of the first `<name>` element in `parent`, unescaped.
    pub(super) fn child_text(parent: &str, name: &str) -> Option<String> {
        element(parent, name).map(|(content, _)| unescape(content))
    }

    /// `text` with the characters that XML text cannot hold as they are escaped.
    pub(super) fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }

    /// The first `<name …>…</name>` (or `<name/>`) in `xml`: its content and what follows it.
    fn element<'a>(xml: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
        let mut from = 0;
        loop {
            let at = from + xml[from..].find('<')?;
            let after = &xml[at + 1..];
            let is_it = after.strip_prefix(name).is_some_and(|r| {
                r.starts_with(|c: char| c == '>' || c == '/' || c.is_whitespace())
            });
            if !is_it {
                from = at + 1;
                continue;
            }
            let open_end = at + 1 + after.find('>')?;
            if xml[..open_end].ends_with('/') {
                return Some(("", &xml[open_end + 1..]));
            }
            let content = &xml[open_end + 1..];
            let close = content.find(&format!("</{name}>"))?;
            return Some((&content[..close], &content[close + name.len() + 3..]));
        }
    }

    /// Replaces the five predefined entities and numeric character references; anything else is
    /// kept as written.
    fn unescape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(amp) = rest.find('&') {
            out.push_str(&rest[..amp]);
            rest = &rest[amp..];
            let Some(semi) = rest.find(';') else { break };
            let entity = &rest[1..semi];
            let decoded = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => entity
                    .strip_prefix("#x")
                    .map(|hex| u32::from_str_radix(hex, 16))
                    .or_else(|| entity.strip_prefix('#').map(str::parse))
                    .and_then(Result::ok)
                    .and_then(char::from_u32),
            };
            match decoded {
                Some(c) => {
                    out.push(c);
                    rest = &rest[semi + 1..];
                }
                None => {
                    out.push('&');
                    rest = &rest[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// The start of `body`, for an error message.
    fn shown(body: &str) -> String {
        body.trim().chars().take(300).collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn text_is_unescaped_and_escaped() {
            let doc = "<R><K a=\"1\">a&amp;b&lt;&#x263A;&#65;&bogus;</K><E/></R>";
            let root = root(doc, "R").unwrap();
            assert_eq!(
                child_text(root, "K").as_deref(),
                Some("a&b<\u{263A}A&bogus;")
            );
            assert_eq!(child_text(root, "E").as_deref(), Some(""));
            assert_eq!(child_text(root, "Missing"), None);
            assert_eq!(escape("\"a&b<c>\""), "\"a&amp;b&lt;c&gt;\"");
        }

        #[test]
        fn other_roots_and_unclosed_documents_are_errors() {
            assert!(root("<Other/>", "R").unwrap_err().contains("<Other>"));
            assert!(root("<R><K>", "R").unwrap_err().contains("not closed"));
            assert!(root("", "R").is_err());
            assert!(root("<?xml version=\"1.0\"", "R").is_err());
            // A name that only starts like the wanted one is not it.
            assert_eq!(
                children("<KeyCount>1</KeyCount><Key>k</Key>", "Key").collect::<Vec<_>>(),
                ["k"]
            );
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::storage::testing::{count, s3_server, storage_config, TestPlatform};
    use test_servers::openphone::media_pattern;

    const T0: i64 = 1_760_990_400_000; // 2025-10-20T20:00:00Z

    fn r2() -> ObjectStore {
        ObjectStore::new(
            "https://0123abcd.r2.cloudflarestorage.com",
            "recordings",
            "AKID",
            "SECRET",
        )
        .unwrap()
    }

    fn attributes() -> ObjectAttributes {
        ObjectAttributes {
            content_type: "audio/mpeg".into(),
            metadata: vec![
                ("call-id".into(), "AC1".into()),
                ("segment".into(), "1".into()),
            ],
        }
    }

    fn query(url: &str, name: &str) -> Option<String> {
        url::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn endpoints_that_cannot_sign_are_refused_with_what_is_wrong() {
        let err = |endpoint: &str| {
            ObjectStore::new(endpoint, "b", "AKID", "SECRET")
                .unwrap_err()
                .to_string()
        };
        assert!(err("ftp://h").contains("not an http(s) URL"));
        assert!(err("h:9000").contains("not an http(s) URL"));
        let with_secret = err("https://user:hunter2@h");
        assert!(
            with_secret.contains("must not contain credentials"),
            "{with_secret}"
        );
        assert!(!with_secret.contains("hunter2"), "{with_secret}");
        assert!(err("https://h/?x=1").contains("query"));
        // International domain names are not supported (url without ICU): only ASCII hosts.
        assert!(err("https://bücher.example").contains("is not a URL"));
        ObjectStore::new("https://xn--bcher-kva.example", "b", "AKID", "S").unwrap();
        let store =
            ObjectStore::new("http://127.0.0.1:80/base/", "my bucket", "AKID", "S").unwrap();
        let url = store.presign_get("/k", T0).url;
        assert!(
            url.starts_with("http://127.0.0.1/base/my%20bucket//k?"),
            "{url}"
        );
    }

    #[test]
    fn presigned_gets_are_path_style_region_auto_and_last_seven_days() {
        let url = r2().presign_get("recordings/2025/10/20/AC1-1.mp3", T0);
        assert!(
            url.url.starts_with(
                "https://0123abcd.r2.cloudflarestorage.com/recordings/recordings/2025/10/20/AC1-1.mp3?"
            ),
            "{}",
            url.url
        );
        assert_eq!(query(&url.url, "X-Amz-Expires").as_deref(), Some("604800"));
        assert_eq!(
            query(&url.url, "X-Amz-Credential").as_deref(),
            Some("AKID/20251020/auto/s3/aws4_request")
        );
        assert_eq!(
            query(&url.url, "X-Amz-Date").as_deref(),
            Some("20251020T200000Z")
        );
        assert_eq!(url.expires_at_ms, T0 + 7 * 24 * 3600 * 1000);
    }

    #[test]
    fn uploads_send_exactly_the_headers_they_sign_and_their_length() {
        let request = r2().put_object("k.mp3", &attributes(), vec![7; 10].into(), T0);
        assert_eq!(request.method, Method::Put);
        assert_eq!(
            query(&request.url, "X-Amz-SignedHeaders").as_deref(),
            Some("content-type;host;x-amz-meta-call-id;x-amz-meta-segment")
        );
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-type"), Some("audio/mpeg"));
        assert_eq!(header("x-amz-meta-call-id"), Some("AC1"));
        assert_eq!(header("x-amz-meta-segment"), Some("1"));
        assert_eq!(header("content-length"), Some("10"));
        let part = r2().upload_part("k.mp3", "up-1", 3, vec![0; 5].into(), T0);
        assert_eq!(query(&part.url, "partNumber").as_deref(), Some("3"));
        assert_eq!(query(&part.url, "uploadId").as_deref(), Some("up-1"));
        let complete =
            r2().complete_multipart_upload("k.mp3", "up-1", &["\"a\"".into(), "\"b\"".into()], T0);
        let body = String::from_utf8(complete.body.to_vec()).unwrap();
        assert!(
            body.contains("<PartNumber>1</PartNumber>")
                && body.contains("<PartNumber>2</PartNumber>"),
            "{body}"
        );
    }

    #[test]
    fn heads_read_size_type_and_metadata_and_404_is_absent() {
        assert_eq!(parse_head(&response(404, &[], "")).unwrap(), None);
        let info = parse_head(&response(
            200,
            &[
                ("content-length", "1234"),
                ("content-type", "audio/mp4"),
                ("x-amz-meta-call-id", "AC9"),
            ],
            "",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(info.size, 1234);
        assert_eq!(info.content_type.as_deref(), Some("audio/mp4"));
        assert_eq!(
            info.metadata,
            vec![("call-id".to_owned(), "AC9".to_owned())]
        );
        assert!(parse_head(&response(200, &[], "")).is_err());
    }

    #[test]
    fn a_completion_that_reports_an_error_with_200_is_transient() {
        let error = "  <?xml version=\"1.0\"?><Error><Code>InternalError</Code><Message>try again</Message></Error>";
        let err = check_completed(&response(200, &[], error)).unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("InternalError"), "{err}");
        let ok = "\n <?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket><Key>k</Key><ETag>\"e-2\"</ETag></CompleteMultipartUploadResult>";
        check_completed(&response(200, &[], ok)).unwrap();
    }

    #[test]
    fn listings_follow_continuation_tokens_only_when_truncated() {
        let page = |truncated: bool, token: &str| {
            format!(
                "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Name>b</Name><Prefix>r/</Prefix><KeyCount>1</KeyCount><MaxKeys>1</MaxKeys>\
                 <IsTruncated>{truncated}</IsTruncated>{token}<EncodingType>url</EncodingType>\
                 <Contents><Key>r/a%2Bb.mp3</Key><Size>5</Size><LastModified>2025-10-20T20:00:00.000Z</LastModified></Contents>\
                 </ListBucketResult>"
            )
        };
        let first = parse_list(&response(
            200,
            &[],
            &page(true, "<NextContinuationToken>tok-2</NextContinuationToken>"),
        ))
        .unwrap();
        assert_eq!(first.next_continuation_token.as_deref(), Some("tok-2"));
        assert_eq!(first.objects[0].key, "r/a+b.mp3");
        assert_eq!(first.objects[0].size, 5);
        let last = parse_list(&response(200, &[], &page(false, ""))).unwrap();
        assert_eq!(last.next_continuation_token, None);
    }

    #[tokio::test]
    async fn metadata_over_the_limit_is_refused_before_anything_is_sent() {
        let test = TestPlatform::new().await;
        let store = r2();
        let client = S3Client::new(&test.platform, &store);
        let mut big = attributes();
        big.metadata
            .push(("transcript".into(), "words ".repeat(400)));
        let err = client.put("k.mp3", &big, vec![1]).await.unwrap_err();
        assert!(matches!(err, StoreError::MetadataTooLarge { .. }), "{err}");
        assert!(!err.is_transient());
        assert!(test.http.take_actions().is_empty());
    }

    #[tokio::test]
    async fn objects_round_trip_through_a_sigv4_checking_server() {
        let s3 = s3_server();
        let test = TestPlatform::new().await;
        let store = ObjectStore::from_config(&storage_config(&s3)).unwrap();
        let client = S3Client::new(&test.platform, &store);
        let keys = ["r/2025/a.mp3", "r/2025/b.mp3", "r/2025/c.mp3"];
        for (i, key) in keys.iter().enumerate() {
            client
                .put(key, &attributes(), vec![b'x'; i + 1])
                .await
                .unwrap();
        }
        client
            .put("v/other.mp3", &attributes(), vec![1])
            .await
            .unwrap();

        let info = client.head("r/2025/b.mp3").await.unwrap().unwrap();
        assert_eq!(info.size, 2);
        assert_eq!(info.content_type.as_deref(), Some("audio/mpeg"));
        assert!(
            info.metadata.contains(&("call-id".into(), "AC1".into())),
            "{info:?}"
        );
        assert_eq!(client.head("r/2025/none.mp3").await.unwrap(), None);

        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = client.list("r/", token.as_deref(), 2).await.unwrap();
            pages += 1;
            listed.extend(page.objects.into_iter().map(|o| (o.key, o.size)));
            token = page.next_continuation_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(pages, 2);
        assert_eq!(
            listed,
            vec![
                ("r/2025/a.mp3".to_owned(), 1),
                ("r/2025/b.mp3".to_owned(), 2),
                ("r/2025/c.mp3".to_owned(), 3)
            ]
        );

        client.delete("r/2025/a.mp3").await.unwrap();
        assert_eq!(client.head("r/2025/a.mp3").await.unwrap(), None);
        client.delete("r/2025/a.mp3").await.unwrap();
        assert_eq!(s3.objects().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_refused_for_good() {
        let s3 = s3_server();
        let test = TestPlatform::new().await;
        let mut config = storage_config(&s3);
        config.secret_access_key = crate::configuration::Secret::new("not-the-secret");
        let store = ObjectStore::from_config(&config).unwrap();
        let client = S3Client::new(&test.platform, &store);
        let err = client
            .put("k.mp3", &attributes(), vec![1, 2, 3])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Api(ApiError::Refused { status: 403, .. })),
            "{err}"
        );
        assert!(!err.is_transient());
        let err = client.head("k.mp3").await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Api(ApiError::Refused { status: 403, .. })),
            "{err}"
        );
        assert!(s3.objects().unwrap().is_empty());
        // Refused requests are not retried: one request each.
        assert_eq!(test.http.take_actions(), ["PutObject", "HeadObject"]);
    }

    #[tokio::test]
    async fn presigned_urls_download_the_bytes_and_tampering_is_refused() {
        let s3 = s3_server();
        let test = TestPlatform::new().await;
        let store = ObjectStore::from_config(&storage_config(&s3)).unwrap();
        let client = S3Client::new(&test.platform, &store);
        let bytes = media_pattern(0, 70_000);
        client
            .put("r/a.mp3", &attributes(), bytes.clone())
            .await
            .unwrap();
        client
            .put("r/b.mp3", &attributes(), vec![0; 3])
            .await
            .unwrap();

        let presigned = store.presign_get("r/a.mp3", test.platform.clock.now_ms());
        let got = reqwest::get(&presigned.url).await.unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(
            got.headers()["content-type"].to_str().unwrap(),
            "audio/mpeg"
        );
        assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);

        let other_key = presigned.url.replace("/r/a.mp3?", "/r/b.mp3?");
        assert_eq!(reqwest::get(&other_key).await.unwrap().status(), 403);
        let longer = presigned
            .url
            .replace("X-Amz-Expires=604800", "X-Amz-Expires=604799");
        assert_eq!(reqwest::get(&longer).await.unwrap().status(), 403);
    }

    #[tokio::test]
    async fn large_objects_go_up_in_parts_and_arrive_whole() {
        let s3 = s3_server();
        let test = TestPlatform::new().await;
        let store = ObjectStore::from_config(&storage_config(&s3)).unwrap();
        let client = S3Client::new(&test.platform, &store);
        let len = 2 * DEFAULT_PART_SIZE + 123_457;
        let mut writer = client.writer("r/big.mp3", attributes(), DEFAULT_PART_SIZE);
        let mut offset = 0;
        while offset < len {
            let n = (len - offset).min(64 * 1024);
            writer
                .write(&media_pattern(offset as u64, n))
                .await
                .unwrap();
            offset += n;
        }
        assert_eq!(writer.finish().await.unwrap(), len as u64);
        let actions = test.http.take_actions();
        assert_eq!(
            actions,
            [
                "CreateMultipartUpload",
                "UploadPart",
                "UploadPart",
                "UploadPart",
                "CompleteMultipartUpload"
            ]
        );
        assert!(s3.object_bytes("r/big.mp3").unwrap() == media_pattern(0, len));
        let info = client.head("r/big.mp3").await.unwrap().unwrap();
        assert_eq!(info.content_type.as_deref(), Some("audio/mpeg"));
        assert!(
            info.metadata.contains(&("segment".into(), "1".into())),
            "{info:?}"
        );
    }

    /// Answers the first attempt of every `UploadPart` with a `503` (as a store that is briefly
    /// unavailable does) and sends everything else, remembering each part attempt's body.
    #[derive(Default)]
    struct FirstPartAttemptFails {
        inner: crate::platform::native::ReqwestClient,
        part_attempts: std::cell::RefCell<Vec<(String, Bytes)>>,
    }

    #[async_trait::async_trait(?Send)]
    impl crate::platform::HttpClient for FirstPartAttemptFails {
        async fn send(
            &self,
            request: HttpRequest,
        ) -> Result<HttpResponse, crate::platform::HttpError> {
            if crate::storage::testing::action(request.method, &request.url) == "UploadPart" {
                let part = query(&request.url, "partNumber").expect("a part number");
                let mut attempts = self.part_attempts.borrow_mut();
                let first = !attempts.iter().any(|(p, _)| *p == part);
                attempts.push((part, request.body.clone()));
                if first {
                    return Ok(response(503, &[], "<Error><Code>SlowDown</Code></Error>"));
                }
            }
            self.inner.send(request).await
        }
    }

    #[tokio::test]
    async fn a_failed_part_is_sent_again_with_the_same_shared_bytes() {
        use crate::platform::native::{ManualClock, NativePlatformBuilder};
        use std::rc::Rc;

        let s3 = s3_server();
        let dir = tempfile::tempdir().unwrap();
        let http = Rc::new(FirstPartAttemptFails::default());
        let platform = NativePlatformBuilder::new(dir.path())
            .http(http.clone())
            .clock(Rc::new(ManualClock::at(
                crate::storage::testing::real_now_ms(),
            )))
            .build()
            .unwrap();
        crate::migrations::ensure_checked(&platform).await.unwrap();
        let store = ObjectStore::from_config(&storage_config(&s3)).unwrap();
        let client = S3Client::new(&platform, &store);
        let len = MIN_PART_SIZE + 1000;
        let mut writer = client.writer("r/retried.mp3", attributes(), MIN_PART_SIZE);
        for chunk in media_pattern(0, len).chunks(64 * 1024) {
            writer.write(chunk).await.unwrap();
        }
        assert_eq!(writer.finish().await.unwrap(), len as u64);
        assert!(s3.object_bytes("r/retried.mp3").unwrap() == media_pattern(0, len));
        let attempts = http.part_attempts.take();
        let parts: Vec<&str> = attempts.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(parts, ["1", "1", "2", "2"]);
        for pair in attempts.chunks(2) {
            let (failed, resent) = (&pair[0].1, &pair[1].1);
            assert!(failed == resent, "part {} changed on its retry", pair[0].0);
            // The retry sends the very bytes the failed attempt had, not a copy of them.
            assert_eq!(failed.as_ptr(), resent.as_ptr(), "part {}", pair[0].0);
        }
        assert_eq!(attempts[0].1.len(), MIN_PART_SIZE);
    }

    #[tokio::test]
    async fn objects_up_to_one_part_go_up_in_a_single_put() {
        let s3 = s3_server();
        let test = TestPlatform::new().await;
        let store = ObjectStore::from_config(&storage_config(&s3)).unwrap();
        let client = S3Client::new(&test.platform, &store);
        for (key, len) in [("r/empty.mp3", 0), ("r/exact.mp3", DEFAULT_PART_SIZE)] {
            let mut writer = client.writer(key, attributes(), DEFAULT_PART_SIZE);
            for chunk in media_pattern(0, len).chunks(1 << 20) {
                writer.write(chunk).await.unwrap();
            }
            assert_eq!(writer.finish().await.unwrap(), len as u64);
            assert_eq!(test.http.take_actions(), ["PutObject"], "{key}");
            assert_eq!(s3.object_bytes(key).unwrap().len(), len);
        }
    }

    #[tokio::test]
    async fn an_abandoned_multipart_upload_is_aborted() {
        let s3 = s3_server();
        let test = TestPlatform::new().await;
        let store = ObjectStore::from_config(&storage_config(&s3)).unwrap();
        let client = S3Client::new(&test.platform, &store);
        let mut writer = client.writer("r/cut.mp3", attributes(), MIN_PART_SIZE);
        writer
            .write(&media_pattern(0, MIN_PART_SIZE + 10))
            .await
            .unwrap();
        let upload_id = writer.upload.as_ref().unwrap().upload_id.clone();
        writer.abort().await;
        let actions = test.http.take_actions();
        assert_eq!(count(&actions, "AbortMultipartUpload"), 1, "{actions:?}");
        let err = client
            .upload_part("r/cut.mp3", &upload_id, 2, vec![1].into())
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Api(ApiError::Refused { .. })),
            "{err}"
        );
        assert!(s3.objects().unwrap().is_empty());
    }
}
