//! Recordings and voicemails copied from OpenPhone's media host into the object store, so the links in
//! Notion keep working after OpenPhone's own URLs stop.
//!
//! - **Keys.** `recordings/YYYY/MM/DD/<callId>-<n>.<ext>` for segment `n` (from 1) of a call's recording,
//!   `voicemails/YYYY/MM/DD/<callId>.<ext>` for its voicemail; the date is the call's `createdAt` in UTC,
//!   the extension follows the content type ([`extension_for`]). Objects carry their content type and
//!   small metadata (call id, segment, duration), never a transcript.
//! - **Streaming.** The download is read chunk by chunk into an [`ObjectWriter`],
//!   which sends a part whenever one is full: memory holds one part (8 MiB; twice while `Outbound`
//!   keeps a copy of the request for its retries), whatever the file's size. Segments are copied one
//!   after another for the same reason.
//! - **Idempotent.** `media_objects` records every copy. A copy recorded as stored costs no request at
//!   all. Otherwise the download is started, and once its headers are in, `HeadObject` tells whether the
//!   store already has an object of that size under the key; only if not are the bytes uploaded.
//! - **Links.** Notion gets `recordings_public_base_url/<key>` when that is set, else a presigned `GET`
//!   URL valid for 7 days (the longest SigV4 allows), whose expiry is kept in `media_objects`;
//!   [`MediaCopier::refresh_expiring_links`] proposes new links for those about to expire, and
//!   [`MediaCopier::record_links`] records them once the call's page has them.
//! - **Retention.** An object the housekeeping deleted for its age is remembered in `retired_media`
//!   ([`retirement_of`] names its call and segment from the key); a later copy of the same file copies
//!   nothing and answers [`StoredMedia::Retired`], so the page keeps no fresh link to media meant to be
//!   gone and the bucket does not get it back.
//! - **Failures.** A `404` (or `410`) from the media host is not an error: the media is recorded as
//!   `gone` ([`StoredMedia::Gone`], which `/stats` counts). A failed download or upload is a
//!   [`MediaError`] whose [`Failure::is_transient`] says whether retrying the event can help; nothing
//!   is recorded, and a half-done multipart upload is aborted.
//!
//! Writing a call page: copy first, then give the page our URL for each segment that is stored and
//! OpenPhone's for the others, write the page, and only then return a transient copy error so the
//! event is retried:
//!
//! ```ignore
//! let copier = MediaCopier::new(platform, &storage_config, &openphone_config.media_base)?;
//! let results = copier.copy_recordings(&call_id, created_at, &sources).await;
//! let links: Vec<String> = results
//!     .iter()
//!     .zip(&sources)
//!     .map(|(result, source)| match result {
//!         Ok(stored) => stored.url().unwrap_or(&source.url).to_owned(),
//!         Err(_) => source.url.clone(),
//!     })
//!     .collect();
//! // … write the page with `links`, then surface the first error, if any.
//! ```

use anyhow::Context;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::s3::{
    ObjectAttributes, ObjectStore, ObjectWriter, S3Client, StoreError, DEFAULT_PART_SIZE,
};
use crate::configuration::StorageConfig;
use crate::metrics;
use crate::outbound::{retry_after_ms, ApiError, Failure, Service, Transience};
use crate::platform::{
    HttpError, HttpRequest, HttpResponse, Method, Platform, Row, StreamingResponse, Value,
};

pub(super) const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// A stored presigned link is handed out again only if it stays valid at least this long.
pub(super) const REUSE_MARGIN_MS: i64 = DAY_MS;

/// What a media file is to its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaKind {
    /// A segment of the call's recording.
    Recording,
    /// The call's voicemail.
    Voicemail,
}

impl MediaKind {
    fn as_str(self) -> &'static str {
        match self {
            MediaKind::Recording => "recording",
            MediaKind::Voicemail => "voicemail",
        }
    }
}

/// A file on OpenPhone's media host, as a call, recording or voicemail payload describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaSource {
    /// Where OpenPhone serves it; must be on `openphone_media_base`.
    pub url: String,
    /// OpenPhone's `type` (MIME), if given; else the download's `Content-Type` is used.
    pub content_type: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
}

/// A copy in the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Object key.
    pub key: String,
    /// The link for Notion: public or presigned.
    pub url: String,
    /// Unix milliseconds when a presigned `url` stops working; `None` for a public one.
    pub url_expires_at: Option<i64>,
    /// Bytes.
    pub size: u64,
    /// Content type it is served with.
    pub content_type: String,
    /// Whether this call uploaded the bytes (`false`: the object was already there).
    pub uploaded: bool,
}

/// What became of a media file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredMedia {
    /// Copied (now or before).
    Stored(StoredObject),
    /// The media host no longer has the file (`404`/`410`): there is nothing to copy. Recorded in
    /// `media_objects` under the key it would have had.
    Gone {
        /// The key the copy would have had.
        key: String,
    },
    /// Retention deleted our copy (it is in `retired_media`): nothing is copied again.
    Retired {
        /// The key the copy had.
        key: String,
    },
}

impl StoredMedia {
    /// The link to our copy, when there is one.
    pub fn url(&self) -> Option<&str> {
        match self {
            StoredMedia::Stored(object) => Some(&object.url),
            StoredMedia::Gone { .. } | StoredMedia::Retired { .. } => None,
        }
    }
}

/// Why a media file could not be copied (a file the media host no longer has is not an error, see
/// [`StoredMedia::Gone`]).
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The URL is not on `openphone_media_base`, the only media host the app may reach.
    #[error("{url} is not on the media host {media_base} (openphone_media_base)")]
    NotOnMediaHost {
        /// The URL, without its query.
        url: String,
        /// The configured media host.
        media_base: String,
    },
    /// A call id or segment number that cannot name an object.
    #[error("invalid media target: {0}")]
    InvalidTarget(String),
    /// The download failed or was refused.
    #[error("downloading {url}: {error}")]
    Download {
        /// The URL, without its query.
        url: String,
        /// What happened.
        error: ApiError,
    },
    /// The download ended before its announced length.
    #[error("download of {url} ended after {received} of {expected} bytes")]
    Truncated {
        /// The URL, without its query.
        url: String,
        /// Bytes read.
        received: u64,
        /// `Content-Length`.
        expected: u64,
    },
    /// The object store failed or refused.
    #[error("storing {key}: {error}")]
    Store {
        /// The object key.
        key: String,
        /// What happened.
        error: StoreError,
    },
    /// `media_objects` could not be read or written.
    #[error("media_objects: {0:#}")]
    Database(anyhow::Error),
}

impl Failure for MediaError {
    fn transience(&self) -> Transience {
        match self {
            MediaError::NotOnMediaHost { .. } | MediaError::InvalidTarget(_) => {
                Transience::Permanent
            }
            MediaError::Download { error, .. } => error.transience(),
            MediaError::Store { error, .. } => error.transience(),
            MediaError::Truncated { .. } | MediaError::Database(_) => Transience::Transient {
                retry_after_ms: None,
            },
        }
    }
}

impl From<anyhow::Error> for MediaError {
    fn from(error: anyhow::Error) -> Self {
        MediaError::Database(error)
    }
}

/// The current links of a call's stored media, as [`MediaCopier::refresh_expiring_links`] proposes them
/// (renewed ones included, not yet recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLinks {
    /// `AC…`.
    pub call_id: String,
    /// `(segment, url)` of every stored recording segment, in segment order (a gone segment is absent).
    pub recordings: Vec<(u32, String)>,
    /// The stored voicemail's link.
    pub voicemail: Option<String>,
    /// The links that changed, to record with [`MediaCopier::record_links`] once the page has them.
    pub renewed: Vec<RenewedLink>,
}

/// A link that a renewal changed, not yet recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewedLink {
    /// `recording` or `voicemail`.
    pub kind: String,
    /// Segment number (1 for a voicemail).
    pub segment: i64,
    /// The new link.
    pub url: String,
    /// When a presigned link stops working.
    pub expires_at: Option<i64>,
}

/// Adds `renewed` to the links renewed for `owner` (a call or message id); rows come ordered by owner, so
/// a new owner starts a new group.
pub(super) fn group_renewed(
    changed: &mut Vec<(String, Vec<RenewedLink>)>,
    owner: &str,
    renewed: RenewedLink,
) {
    match changed.last_mut() {
        Some((id, links)) if id == owner => links.push(renewed),
        _ => changed.push((owner.to_owned(), vec![renewed])),
    }
}

/// The extension of an object key for `content_type`: `mp3`, `m4a`, `wav`, `ogg`, `webm`, else `bin`.
pub fn extension_for(content_type: &str) -> &'static str {
    match essence(content_type).as_str() {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/ogg" => "ogg",
        "audio/webm" => "webm",
        _ => "bin",
    }
}

/// `type/subtype` in lower case, without parameters.
pub(super) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// OpenPhone's declared type, else the one the media host served; a type `extension` knows wins over an
/// unknown one (hosts often serve `application/octet-stream`).
pub(super) fn choose_content_type(
    declared: Option<&str>,
    served: Option<&str>,
    extension: fn(&str) -> &'static str,
) -> String {
    let candidates: Vec<String> = [declared, served]
        .into_iter()
        .flatten()
        .map(essence)
        .filter(|c| !c.is_empty())
        .collect();
    candidates
        .iter()
        .find(|c| extension(c) != "bin")
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_owned()
}

/// `YYYY/MM/DD` (UTC) of an object key; written out rather than with chrono's `format`, whose
/// format-string machinery is about 10 KB of every component.
pub(super) fn key_date(at: DateTime<Utc>) -> String {
    use chrono::Datelike;
    format!("{:04}/{:02}/{:02}", at.year(), at.month(), at.day())
}

/// What an object key is a copy of, as `retired_media` names it: `(owner id, kind, segment)` for
/// `recordings/…/<callId>-<n>.<ext>`, `voicemails/…/<callId>.<ext>` and `media/…/<messageId>-<n>.<ext>`;
/// `None` for a key the copiers do not make.
pub fn retirement_of(key: &str) -> Option<(String, &'static str, u32)> {
    let (prefix, rest) = key.split_once('/')?;
    // `YYYY/MM/DD/` then the file name.
    let name = rest.get(11..).filter(|_| rest.get(10..11) == Some("/"))?;
    let (stem, _extension) = name.rsplit_once('.')?;
    let numbered = || {
        let (owner, n) = stem.rsplit_once('-')?;
        let n = n.parse::<u32>().ok().filter(|n| *n > 0)?;
        Some((owner.to_owned(), n))
    };
    let (owner, kind, segment) = match prefix {
        "recordings" => numbered().map(|(owner, n)| (owner, "recording", n))?,
        "voicemails" => (stem.to_owned(), "voicemail", 1),
        "media" => numbered().map(|(owner, n)| (owner, "media", n))?,
        _ => return None,
    };
    (!owner.is_empty() && !owner.contains('/')).then_some((owner, kind, segment))
}

/// One media file of one call.
struct Target<'a> {
    call_id: &'a str,
    created_at: DateTime<Utc>,
    kind: MediaKind,
    segment: u32,
}

impl Target<'_> {
    fn validate(&self) -> Result<(), MediaError> {
        let id_ok = !self.call_id.is_empty()
            && self.call_id.len() <= 128
            && self
                .call_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok {
            return Err(MediaError::InvalidTarget(format!(
                "call id {:?} cannot be part of an object key",
                self.call_id
            )));
        }
        if self.segment == 0 {
            return Err(MediaError::InvalidTarget(
                "recording segments are numbered from 1".into(),
            ));
        }
        Ok(())
    }

    fn key(&self, extension: &str) -> String {
        let date = key_date(self.created_at);
        match self.kind {
            MediaKind::Recording => format!(
                "recordings/{date}/{}-{}.{extension}",
                self.call_id, self.segment
            ),
            MediaKind::Voicemail => format!("voicemails/{date}/{}.{extension}", self.call_id),
        }
    }

    fn metadata(&self, duration: Option<f64>) -> Vec<(String, String)> {
        let mut metadata = vec![
            ("call-id".to_owned(), self.call_id.to_owned()),
            ("segment".to_owned(), self.segment.to_string()),
        ];
        if let Some(seconds) = duration.filter(|d| d.is_finite()) {
            metadata.push(("duration".to_owned(), seconds.to_string()));
        }
        metadata
    }

    fn params(&self) -> [Value; 3] {
        [
            self.call_id.into(),
            self.kind.as_str().into(),
            self.segment.into(),
        ]
    }
}

/// A `media_objects` row (its target aside).
struct MediaRow {
    key: String,
    state: String,
    size: Option<i64>,
    content_type: Option<String>,
    url: Option<String>,
    url_expires_at: Option<i64>,
}

impl MediaRow {
    fn from_row(row: &Row<'_>) -> anyhow::Result<Self> {
        Ok(Self {
            key: row.str("key")?.to_owned(),
            state: row.str("state")?.to_owned(),
            size: row.opt_i64("size")?,
            content_type: row.opt_str("content_type")?.map(str::to_owned),
            url: row.opt_str("url")?.map(str::to_owned),
            url_expires_at: row.opt_i64("url_expires_at")?,
        })
    }
}

/// A download that was started.
enum Download {
    /// `2xx`: headers are in, the body is not read yet.
    Found(StreamingResponse),
    /// `404`/`410`.
    Gone,
}

/// What a streamed copy found ([`MediaCopier::transfer`]).
pub(super) enum Transfer {
    /// In the store: uploaded now, or already there with the download's size.
    Stored {
        key: String,
        content_type: String,
        size: u64,
        uploaded: bool,
    },
    /// The media host answered `404`/`410`: nothing to copy; `key` is the one the copy would have had.
    Gone { key: String, content_type: String },
    /// Retention retired `key` while the copy was under way: nothing was uploaded.
    Retired { key: String },
}

/// Copies a call's media (and, in [`super::message_media`], a message's) to the object store and keeps
/// their links current.
pub struct MediaCopier<'a> {
    pub(super) platform: &'a Platform,
    store: ObjectStore,
    media_base: url::Url,
    pub(super) public_base_url: Option<String>,
}

impl<'a> MediaCopier<'a> {
    /// A copier into the store of `storage`, downloading only from `media_base`
    /// (`openphone_media_base`).
    pub fn new(
        platform: &'a Platform,
        storage: &StorageConfig,
        media_base: &str,
    ) -> anyhow::Result<Self> {
        let media_base = media_base
            .parse()
            .with_context(|| format!("openphone_media_base {media_base:?} is not a URL"))?;
        Ok(Self {
            platform,
            store: ObjectStore::from_config(storage)?,
            media_base,
            public_base_url: storage.public_base_url.clone(),
        })
    }

    /// Copies segment `segment` (from 1) of the recording of call `call_id`, created at
    /// `call_created_at`.
    pub async fn copy_recording(
        &self,
        call_id: &str,
        call_created_at: DateTime<Utc>,
        segment: u32,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        let target = Target {
            call_id,
            created_at: call_created_at,
            kind: MediaKind::Recording,
            segment,
        };
        self.copy(&target, source).await
    }

    /// Copies every segment of a call's recording, `sources` in OpenPhone's order (segment 1 first);
    /// one result per segment, in the same order. Segments are copied one after another, so memory
    /// holds one part at a time.
    pub async fn copy_recordings(
        &self,
        call_id: &str,
        call_created_at: DateTime<Utc>,
        sources: &[MediaSource],
    ) -> Vec<Result<StoredMedia, MediaError>> {
        let mut results = Vec::with_capacity(sources.len());
        for (segment, source) in (1..).zip(sources) {
            results.push(
                self.copy_recording(call_id, call_created_at, segment, source)
                    .await,
            );
        }
        results
    }

    /// Copies the voicemail of call `call_id`, created at `call_created_at`.
    pub async fn copy_voicemail(
        &self,
        call_id: &str,
        call_created_at: DateTime<Utc>,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        let target = Target {
            call_id,
            created_at: call_created_at,
            kind: MediaKind::Voicemail,
            segment: 1,
        };
        self.copy(&target, source).await
    }

    /// Proposes new links for those that stop working within `within_days` days (and, when
    /// `recordings_public_base_url` changed, those that no longer follow it); returns, per call whose
    /// links change, all of its current links, for the caller to write to the call's page and then
    /// [`MediaCopier::record_links`]. Nothing is recorded here, so a page write that fails leaves the
    /// links due. No request is sent: presigning is local.
    pub fn refresh_expiring_links(&self, within_days: u32) -> anyhow::Result<Vec<CallLinks>> {
        let now = self.platform.clock.now_ms();
        let valid_until = now + i64::from(within_days) * DAY_MS;
        let rows = match &self.public_base_url {
            Some(base) => self.platform.sql.execute(
                "SELECT call_id, kind, segment, key, url, url_expires_at FROM media_objects
                 WHERE state = 'stored'
                   AND (url_expires_at IS NOT NULL OR url IS NULL OR substr(url, 1, length(?1)) != ?1)
                 ORDER BY call_id",
                &[format!("{base}/").into()],
            )?,
            None => self.platform.sql.execute(
                "SELECT call_id, kind, segment, key, url, url_expires_at FROM media_objects
                 WHERE state = 'stored' AND (url_expires_at IS NULL OR url_expires_at < ?1)
                 ORDER BY call_id",
                &[valid_until.into()],
            )?,
        };
        let mut changed: Vec<(String, Vec<RenewedLink>)> = Vec::new();
        for row in rows.iter() {
            let call_id = row.str("call_id")?;
            let key = row.str("key")?;
            let Some((url, expires_at)) = self.relink(
                key,
                row.opt_str("url")?,
                row.opt_i64("url_expires_at")?,
                valid_until,
            ) else {
                continue;
            };
            let renewed = RenewedLink {
                kind: row.str("kind")?.to_owned(),
                segment: row.i64("segment")?,
                url,
                expires_at,
            };
            group_renewed(&mut changed, call_id, renewed);
        }
        changed
            .into_iter()
            .map(|(call_id, renewed)| {
                let mut links = self.call_links(&call_id)?;
                for r in &renewed {
                    match r.kind.as_str() {
                        "recording" => {
                            let segment = u32::try_from(r.segment).context("segment number")?;
                            match links.recordings.iter_mut().find(|(s, _)| *s == segment) {
                                Some(entry) => entry.1 = r.url.clone(),
                                None => links.recordings.push((segment, r.url.clone())),
                            }
                        }
                        _ => links.voicemail = Some(r.url.clone()),
                    }
                }
                links.recordings.sort_by_key(|(segment, _)| *segment);
                links.renewed = renewed;
                Ok(links)
            })
            .collect()
    }

    /// Records the renewed links of `links` once they are on the call's page, so a page write that
    /// failed leaves them due for the next run.
    pub fn record_links(&self, links: &CallLinks) -> anyhow::Result<()> {
        let now = self.platform.clock.now_ms();
        for r in &links.renewed {
            self.platform.sql.execute(
                "UPDATE media_objects SET url = ?4, url_expires_at = ?5, updated_at = ?6
                 WHERE call_id = ?1 AND kind = ?2 AND segment = ?3",
                &[
                    links.call_id.as_str().into(),
                    r.kind.as_str().into(),
                    r.segment.into(),
                    r.url.as_str().into(),
                    Value::from(r.expires_at),
                    now.into(),
                ],
            )?;
        }
        Ok(())
    }

    fn call_links(&self, call_id: &str) -> anyhow::Result<CallLinks> {
        let rows = self.platform.sql.execute(
            "SELECT kind, segment, url FROM media_objects
             WHERE call_id = ?1 AND state = 'stored' AND url IS NOT NULL ORDER BY kind, segment",
            &[call_id.into()],
        )?;
        let mut links = CallLinks {
            call_id: call_id.to_owned(),
            recordings: Vec::new(),
            voicemail: None,
            renewed: Vec::new(),
        };
        for row in rows.iter() {
            let url = row.str("url")?.to_owned();
            match row.str("kind")? {
                "recording" => {
                    let segment = u32::try_from(row.i64("segment")?).context("segment number")?;
                    links.recordings.push((segment, url));
                }
                _ => links.voicemail = Some(url),
            }
        }
        Ok(links)
    }

    /// The link `key` should have now, when it differs from the stored `url` (public base changed,
    /// presigned link expiring before `valid_until`, or none yet).
    pub(super) fn relink(
        &self,
        key: &str,
        url: Option<&str>,
        url_expires_at: Option<i64>,
        valid_until: i64,
    ) -> Option<(String, Option<i64>)> {
        match &self.public_base_url {
            Some(base) => {
                let public = format!("{base}/{key}");
                (url != Some(public.as_str())).then_some((public, None))
            }
            None => match (url, url_expires_at) {
                (Some(_), Some(expires_at)) if expires_at > valid_until => None,
                _ => {
                    let presigned = self.store.presign_get(key, self.platform.clock.now_ms());
                    Some((presigned.url, Some(presigned.expires_at_ms)))
                }
            },
        }
    }

    async fn copy(
        &self,
        target: &Target<'_>,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        target.validate()?;
        let span = tracing::info_span!(
            "media_copy",
            call_id = target.call_id,
            kind = target.kind.as_str(),
            segment = target.segment
        );
        let result = self
            .copy_in_span(target, source)
            .instrument(span.clone())
            .await;
        match &result {
            Ok(StoredMedia::Stored(object)) => span.in_scope(|| {
                tracing::info!(key = %object.key, size = object.size, uploaded = object.uploaded, "media stored");
            }),
            Ok(StoredMedia::Gone { key }) => span.in_scope(|| {
                tracing::warn!(key = %key, "media gone from the media host");
            }),
            Ok(StoredMedia::Retired { key }) => span.in_scope(|| {
                tracing::info!(key = %key, "media retired by retention: not copied again");
            }),
            Err(e) => span.in_scope(|| {
                tracing::warn!(error = %e, transient = e.is_transient(), "media copy failed");
            }),
        }
        result
    }

    async fn copy_in_span(
        &self,
        target: &Target<'_>,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        if let Some(key) = self.retired(target.call_id, target.kind.as_str(), target.segment)? {
            return Ok(StoredMedia::Retired { key });
        }
        if let Some(row) = self.find(target)? {
            if row.state == "stored" {
                return Ok(StoredMedia::Stored(self.reuse(target, row)?));
            }
        }
        let metadata = target.metadata(source.duration);
        let (key, content_type, size, uploaded) = match self
            .transfer(
                source,
                extension_for,
                |extension| target.key(extension),
                metadata,
            )
            .await?
        {
            Transfer::Gone { key, content_type } => {
                self.record(
                    target,
                    &MediaRow {
                        key: key.clone(),
                        state: "gone".into(),
                        size: None,
                        content_type: Some(content_type),
                        url: None,
                        url_expires_at: None,
                    },
                )?;
                return Ok(StoredMedia::Gone { key });
            }
            Transfer::Retired { key } => return Ok(StoredMedia::Retired { key }),
            Transfer::Stored {
                key,
                content_type,
                size,
                uploaded,
            } => (key, content_type, size, uploaded),
        };
        let (url, url_expires_at) = self.new_link(&key);
        let recorded = self.record(
            target,
            &MediaRow {
                key: key.clone(),
                state: "stored".into(),
                size: Some(i64::try_from(size).context("object size")?),
                content_type: Some(content_type.clone()),
                url: Some(url.clone()),
                url_expires_at,
            },
        )?;
        if !recorded {
            return Ok(StoredMedia::Retired { key });
        }
        Ok(StoredMedia::Stored(StoredObject {
            key,
            url,
            url_expires_at,
            size,
            content_type,
            uploaded,
        }))
    }

    /// The link of a new copy under `key`: public, or presigned from now.
    pub(super) fn new_link(&self, key: &str) -> (String, Option<i64>) {
        let now = self.platform.clock.now_ms();
        self.relink(key, None, None, now)
            .expect("a key without a link always gets one")
    }

    /// Streams `source` from the media host into the store under `key(extension)`, the extension given
    /// by `extension` for the content type ([`choose_content_type`]); an object already under that key
    /// with the download's size is not uploaded again. Records nothing: that is the caller's.
    pub(super) async fn transfer(
        &self,
        source: &MediaSource,
        extension: fn(&str) -> &'static str,
        key: impl Fn(&str) -> String,
        metadata: Vec<(String, String)>,
    ) -> Result<Transfer, MediaError> {
        self.check_on_media_host(&source.url)?;
        let download = match self.download(&source.url).await? {
            Download::Found(download) => download,
            Download::Gone => {
                let content_type =
                    choose_content_type(source.content_type.as_deref(), None, extension);
                return Ok(Transfer::Gone {
                    key: key(extension(&content_type)),
                    content_type,
                });
            }
        };
        let content_type = choose_content_type(
            source.content_type.as_deref(),
            download.header("content-type"),
            extension,
        );
        let key = key(extension(&content_type));
        let expected = download
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let client = S3Client::new(self.platform, &self.store);
        let store_error = |error| MediaError::Store {
            key: key.clone(),
            error,
        };
        let existing = client.head(&key).await.map_err(store_error)?;
        // Retention writes its tombstone before it deletes: an object missing here because retention
        // took it is already in `retired_media`, and must not be uploaded again.
        if existing.is_none() && self.key_retired(&key)? {
            return Ok(Transfer::Retired { key });
        }
        let (size, uploaded) = match (expected, existing) {
            // Dropping the download here abandons its body unread.
            (Some(expected), Some(existing)) if existing.size == expected => (expected, false),
            _ => {
                let attributes = ObjectAttributes {
                    content_type: content_type.clone(),
                    metadata,
                };
                let size = self
                    .upload(&client, &key, attributes, download, expected, &source.url)
                    .await?;
                (size, true)
            }
        };
        Ok(Transfer::Stored {
            key,
            content_type,
            size,
            uploaded,
        })
    }

    /// A copy recorded earlier, its link renewed if it is about to stop working.
    fn reuse(&self, target: &Target<'_>, row: MediaRow) -> anyhow::Result<StoredObject> {
        let now = self.platform.clock.now_ms();
        let (url, url_expires_at) = match self.relink(
            &row.key,
            row.url.as_deref(),
            row.url_expires_at,
            now + REUSE_MARGIN_MS,
        ) {
            Some((url, expires_at)) => {
                let mut params = target.params().to_vec();
                params.extend([url.as_str().into(), Value::from(expires_at), now.into()]);
                self.platform.sql.execute(
                    "UPDATE media_objects SET url = ?4, url_expires_at = ?5, updated_at = ?6
                     WHERE call_id = ?1 AND kind = ?2 AND segment = ?3",
                    &params,
                )?;
                (url, expires_at)
            }
            None => (row.url.context("a stored link")?, row.url_expires_at),
        };
        Ok(StoredObject {
            key: row.key,
            url,
            url_expires_at,
            size: u64::try_from(row.size.unwrap_or(0)).unwrap_or(0),
            content_type: row.content_type.unwrap_or_default(),
            uploaded: false,
        })
    }

    fn check_on_media_host(&self, url: &str) -> Result<(), MediaError> {
        let base = &self.media_base;
        let on_host = url::Url::parse(url).is_ok_and(|u| {
            u.scheme() == base.scheme()
                && u.host_str() == base.host_str()
                && u.port_or_known_default() == base.port_or_known_default()
        });
        if on_host {
            Ok(())
        } else {
            Err(MediaError::NotOnMediaHost {
                url: without_query(url),
                media_base: base.as_str().trim_end_matches('/').to_owned(),
            })
        }
    }

    /// Starts a `GET` of `url` and returns once its headers are in; counted and logged like every
    /// external request (the body is streamed, which [`Outbound`](crate::outbound::Outbound) cannot do).
    async fn download(&self, url: &str) -> Result<Download, MediaError> {
        let shown = without_query(url);
        let path = url::Url::parse(url)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        let span = tracing::info_span!("outbound", service = "media", method = "GET", path = %path);
        async {
            let service = Service::Media;
            let started = self.platform.clock.now_ms();
            metrics::count(self.platform, "requests.media", 1);
            let result = self
                .platform
                .http
                .send_streaming(HttpRequest::new(Method::Get, url))
                .await;
            let duration_ms = self.platform.clock.now_ms() - started;
            let error = match result {
                Ok(response) if (200..300).contains(&response.status) => {
                    tracing::debug!(status = response.status, duration_ms, "response");
                    return Ok(Download::Found(response));
                }
                Ok(response) if matches!(response.status, 404 | 410) => {
                    tracing::debug!(status = response.status, duration_ms, "response");
                    return Ok(Download::Gone);
                }
                Ok(response) => {
                    let status = response.status;
                    let detail = format!("status {status}");
                    match status {
                        429 => {
                            let headers_only = HttpResponse {
                                status,
                                headers: response.headers.clone(),
                                body: Vec::new(),
                            };
                            ApiError::RateLimited {
                                service,
                                retry_after_ms: retry_after_ms(
                                    &headers_only,
                                    self.platform.clock.now_ms(),
                                ),
                            }
                        }
                        408 | 500..=599 => ApiError::Unavailable {
                            service,
                            status: Some(status),
                            detail,
                        },
                        _ => ApiError::Refused {
                            service,
                            status,
                            detail,
                        },
                    }
                }
                Err(HttpError::Network(detail)) => ApiError::Unavailable {
                    service,
                    status: None,
                    detail,
                },
                Err(HttpError::NotAllowed(detail) | HttpError::InvalidRequest(detail)) => {
                    ApiError::NotSent { service, detail }
                }
            };
            metrics::count(self.platform, "errors.media", 1);
            tracing::warn!(duration_ms, error = %error, "download failed");
            Err(MediaError::Download { url: shown, error })
        }
        .instrument(span)
        .await
    }

    /// Streams `download` into the object `key`; returns the bytes stored.
    async fn upload(
        &self,
        client: &S3Client<'_>,
        key: &str,
        attributes: ObjectAttributes,
        mut download: StreamingResponse,
        expected: Option<u64>,
        url: &str,
    ) -> Result<u64, MediaError> {
        let mut writer = client.writer(key, attributes, DEFAULT_PART_SIZE);
        let pumped = pump(&mut download, &mut writer, expected, url, key).await;
        drop(download);
        match pumped {
            Ok(()) => writer.finish().await.map_err(|error| MediaError::Store {
                key: key.to_owned(),
                error,
            }),
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    fn find(&self, target: &Target<'_>) -> anyhow::Result<Option<MediaRow>> {
        let rows = self.platform.sql.execute(
            "SELECT key, state, size, content_type, url, url_expires_at FROM media_objects
             WHERE call_id = ?1 AND kind = ?2 AND segment = ?3",
            &target.params(),
        )?;
        rows.first().map(|row| MediaRow::from_row(&row)).transpose()
    }

    /// The key of the copy of `segment` of `owner`'s `kind` that retention retired, if it did.
    pub(super) fn retired(
        &self,
        owner: &str,
        kind: &str,
        segment: u32,
    ) -> anyhow::Result<Option<String>> {
        let rows = self.platform.sql.execute(
            "SELECT key FROM retired_media WHERE owner_id = ?1 AND kind = ?2 AND segment = ?3",
            &[owner.into(), kind.into(), segment.into()],
        )?;
        rows.first()
            .map(|row| row.str("key").map(str::to_owned))
            .transpose()
    }

    /// Whether retention retired `key`.
    fn key_retired(&self, key: &str) -> anyhow::Result<bool> {
        let rows = self.platform.sql.execute(
            "SELECT 1 AS retired FROM retired_media WHERE key = ?1",
            &[key.into()],
        )?;
        Ok(!rows.is_empty())
    }

    /// Records `row` for `target`, unless retention retired its key meanwhile (then `false`: a copy
    /// recorded after the walk deleted it would link to nothing).
    fn record(&self, target: &Target<'_>, row: &MediaRow) -> anyhow::Result<bool> {
        let mut params = target.params().to_vec();
        params.extend([
            row.key.as_str().into(),
            row.state.as_str().into(),
            Value::from(row.size),
            Value::from(row.content_type.as_deref()),
            Value::from(row.url.as_deref()),
            Value::from(row.url_expires_at),
            self.platform.clock.now_ms().into(),
        ]);
        let rows = self.platform.sql.execute(
            "INSERT INTO media_objects (call_id, kind, segment, key, state, size, content_type, url,
                                        url_expires_at, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10
             WHERE NOT EXISTS (SELECT 1 FROM retired_media WHERE key = ?4)
             ON CONFLICT (call_id, kind, segment) DO UPDATE SET
                 key = excluded.key, state = excluded.state, size = excluded.size,
                 content_type = excluded.content_type, url = excluded.url,
                 url_expires_at = excluded.url_expires_at, updated_at = excluded.updated_at
             RETURNING call_id",
            &params,
        )?;
        Ok(!rows.is_empty())
    }
}

/// Moves the body of `download` into `writer`, checking it against its announced length.
async fn pump(
    download: &mut StreamingResponse,
    writer: &mut ObjectWriter<'_, '_>,
    expected: Option<u64>,
    url: &str,
    key: &str,
) -> Result<(), MediaError> {
    let mut received = 0u64;
    loop {
        let chunk = download
            .next_chunk()
            .await
            .map_err(|e| MediaError::Download {
                url: without_query(url),
                error: ApiError::Unavailable {
                    service: Service::Media,
                    status: None,
                    detail: e.to_string(),
                },
            })?;
        let Some(chunk) = chunk else { break };
        received += chunk.len() as u64;
        writer
            .write(&chunk)
            .await
            .map_err(|error| MediaError::Store {
                key: key.to_owned(),
                error,
            })?;
    }
    match expected {
        Some(expected) if expected != received => Err(MediaError::Truncated {
            url: without_query(url),
            received,
            expected,
        }),
        _ => Ok(()),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::io::Write;

    use test_servers::openphone::media_pattern;
    use test_servers::{OpenPhoneServer, S3Server};

    use super::*;
    use crate::storage::s3::ObjectInfo;
    use crate::storage::testing::{
        count, media_server, raw_media_host, s3_server, storage_config, TestPlatform,
    };

    const CALL: &str = "ACbaee66e137f0467dbed5ad4bc8d60800";

    /// 2025-10-20 19:59:59 in New York is already the 21st in UTC.
    fn created_at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-10-20T19:59:59-05:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn source(url: String, content_type: Option<&str>, duration: Option<f64>) -> MediaSource {
        MediaSource {
            url,
            content_type: content_type.map(str::to_owned),
            duration,
        }
    }

    struct Env {
        s3: S3Server,
        media: OpenPhoneServer,
        test: TestPlatform,
    }

    impl Env {
        async fn start() -> Self {
            Self {
                s3: s3_server(),
                media: media_server(),
                test: TestPlatform::new().await,
            }
        }

        fn copier(&self) -> MediaCopier<'_> {
            MediaCopier::new(
                &self.test.platform,
                &storage_config(&self.s3),
                &self.media.media_base_url(),
            )
            .unwrap()
        }

        async fn head(&self, key: &str) -> Option<ObjectInfo> {
            let store = ObjectStore::from_config(&storage_config(&self.s3)).unwrap();
            S3Client::new(&self.test.platform, &store)
                .head(key)
                .await
                .unwrap()
        }

        fn rows(&self) -> Vec<(String, String, Option<i64>)> {
            let rows = self
                .test
                .platform
                .sql
                .execute(
                    "SELECT key, state, size FROM media_objects ORDER BY kind, segment",
                    &[],
                )
                .unwrap();
            rows.iter()
                .map(|r| {
                    (
                        r.str("key").unwrap().to_owned(),
                        r.str("state").unwrap().to_owned(),
                        r.opt_i64("size").unwrap(),
                    )
                })
                .collect()
        }
    }

    fn stored(result: &Result<StoredMedia, MediaError>) -> &StoredObject {
        match result {
            Ok(StoredMedia::Stored(object)) => object,
            other => panic!("not stored: {other:?}"),
        }
    }

    #[test]
    fn extensions_follow_the_content_type() {
        for (content_type, extension) in [
            ("audio/mpeg", "mp3"),
            ("Audio/MPEG; charset=binary", "mp3"),
            ("audio/mp4", "m4a"),
            ("audio/m4a", "m4a"),
            ("audio/x-m4a", "m4a"),
            ("audio/wav", "wav"),
            ("audio/x-wav", "wav"),
            ("audio/ogg", "ogg"),
            ("audio/webm", "webm"),
            ("application/octet-stream", "bin"),
            ("", "bin"),
        ] {
            assert_eq!(extension_for(content_type), extension, "{content_type}");
        }
        assert_eq!(
            choose_content_type(
                Some("audio/mpeg"),
                Some("application/octet-stream"),
                extension_for
            ),
            "audio/mpeg"
        );
        assert_eq!(
            choose_content_type(
                Some("application/octet-stream"),
                Some("audio/ogg"),
                extension_for
            ),
            "audio/ogg"
        );
        assert_eq!(
            choose_content_type(None, Some("video/mp4"), extension_for),
            "video/mp4"
        );
        assert_eq!(
            choose_content_type(None, None, extension_for),
            "application/octet-stream"
        );
    }

    #[test]
    fn keys_are_dated_in_utc_and_numbered_from_one() {
        let target = |kind, segment| Target {
            call_id: CALL,
            created_at: created_at(),
            kind,
            segment,
        };
        assert_eq!(
            target(MediaKind::Recording, 2).key("m4a"),
            format!("recordings/2025/10/21/{CALL}-2.m4a")
        );
        assert_eq!(
            target(MediaKind::Voicemail, 1).key("mp3"),
            format!("voicemails/2025/10/21/{CALL}.mp3")
        );
        assert!(target(MediaKind::Recording, 0).validate().is_err());
        for bad in ["", "AC1/../x", "AC 1", "AC1?x"] {
            let t = Target {
                call_id: bad,
                ..target(MediaKind::Recording, 1)
            };
            assert!(t.validate().is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn every_segment_lands_under_its_key_with_its_type_and_link() {
        let env = Env::start().await;
        let one = media_pattern(0, 300_000);
        let two = media_pattern(7, 200_000);
        let sources = [
            source(
                env.media
                    .add_media("/opstatics/a.mp3", "audio/mpeg", one.clone()),
                Some("audio/mpeg"),
                Some(112.0),
            ),
            // No declared type: the one the media host serves decides.
            source(
                env.media
                    .add_media("/opstatics/b", "audio/mp4", two.clone()),
                None,
                Some(3.5),
            ),
            source(
                env.media
                    .add_media("/opstatics/c.ogg", "audio/ogg", vec![1; 10]),
                Some("audio/ogg"),
                None,
            ),
        ];
        let results = env
            .copier()
            .copy_recordings(CALL, created_at(), &sources)
            .await;
        let actions = env.test.http.take_actions();
        assert_eq!(count(&actions, "PutObject"), 3, "{actions:?}");
        assert_eq!(count(&actions, "HeadObject"), 3, "{actions:?}");
        let keys: Vec<&str> = results.iter().map(|r| stored(r).key.as_str()).collect();
        assert_eq!(
            keys,
            [
                format!("recordings/2025/10/21/{CALL}-1.mp3"),
                format!("recordings/2025/10/21/{CALL}-2.m4a"),
                format!("recordings/2025/10/21/{CALL}-3.ogg"),
            ]
        );
        assert!(results.iter().all(|r| stored(r).uploaded));
        assert_eq!(env.s3.object_bytes(keys[0]).unwrap(), one);
        assert_eq!(env.s3.object_bytes(keys[1]).unwrap(), two);

        let info = env.head(keys[1]).await.unwrap();
        assert_eq!(info.content_type.as_deref(), Some("audio/mp4"));
        let mut metadata = info.metadata.clone();
        metadata.sort();
        assert_eq!(
            metadata,
            [
                ("call-id".to_owned(), CALL.to_owned()),
                ("duration".to_owned(), "3.5".to_owned()),
                ("segment".to_owned(), "2".to_owned()),
            ]
        );

        // The links are presigned for 7 days and serve the bytes.
        let first = stored(&results[0]);
        let now = env.test.platform.clock.now_ms();
        assert_eq!(first.url_expires_at, Some(now + 7 * DAY_MS));
        let body = reqwest::get(&first.url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.to_vec(), one);

        assert_eq!(
            env.rows(),
            [
                (keys[0].to_owned(), "stored".to_owned(), Some(300_000)),
                (keys[1].to_owned(), "stored".to_owned(), Some(200_000)),
                (keys[2].to_owned(), "stored".to_owned(), Some(10)),
            ]
        );
    }

    #[tokio::test]
    async fn voicemails_are_keyed_by_call_and_carry_only_small_metadata() {
        let env = Env::start().await;
        let url = env
            .media
            .add_media("/opstatics/vm.wav", "audio/x-wav", vec![9; 4000]);
        let result = env
            .copier()
            .copy_voicemail(
                CALL,
                created_at(),
                &source(url, Some("audio/x-wav"), Some(17.0)),
            )
            .await;
        let object = stored(&result);
        assert_eq!(object.key, format!("voicemails/2025/10/21/{CALL}.wav"));
        assert_eq!(object.content_type, "audio/x-wav");
        let info = env.head(&object.key).await.unwrap();
        let mut names: Vec<&str> = info.metadata.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["call-id", "duration", "segment"]);
    }

    #[tokio::test]
    async fn a_redelivered_call_uploads_nothing() {
        let env = Env::start().await;
        let sources: Vec<MediaSource> = (1..=2)
            .map(|i| {
                let url = env.media.add_media(
                    &format!("/opstatics/{i}.mp3"),
                    "audio/mpeg",
                    media_pattern(i, 50_000),
                );
                source(url, Some("audio/mpeg"), None)
            })
            .collect();
        let copier = env.copier();
        let first = copier.copy_recordings(CALL, created_at(), &sources).await;
        let new_requests = env.test.http.take_actions();
        assert_eq!(
            new_requests,
            [
                "GET /opstatics/1.mp3",
                "HeadObject",
                "PutObject",
                "GET /opstatics/2.mp3",
                "HeadObject",
                "PutObject"
            ]
        );

        // Recorded copies cost nothing, and the links stay the same.
        let again = copier.copy_recordings(CALL, created_at(), &sources).await;
        assert!(env.test.http.take_actions().is_empty());
        for (a, b) in first.iter().zip(&again) {
            assert_eq!(stored(a).url, stored(b).url);
            assert!(!stored(b).uploaded);
        }

        // Without the record, the store is asked, and an object of the same size is not uploaded again.
        env.test
            .platform
            .sql
            .execute("DELETE FROM media_objects", &[])
            .unwrap();
        let third = copier.copy_recordings(CALL, created_at(), &sources).await;
        assert_eq!(
            env.test.http.take_actions(),
            [
                "GET /opstatics/1.mp3",
                "HeadObject",
                "GET /opstatics/2.mp3",
                "HeadObject"
            ]
        );
        assert!(third.iter().all(|r| !stored(r).uploaded));
        assert_eq!(env.rows().len(), 2);
    }

    #[tokio::test]
    async fn an_object_of_another_size_is_replaced() {
        let env = Env::start().await;
        let bytes = media_pattern(0, 5000);
        let url = env
            .media
            .add_media("/opstatics/x.mp3", "audio/mpeg", bytes.clone());
        let key = format!("recordings/2025/10/21/{CALL}-1.mp3");
        let store = ObjectStore::from_config(&storage_config(&env.s3)).unwrap();
        let attributes = ObjectAttributes {
            content_type: "audio/mpeg".into(),
            metadata: Vec::new(),
        };
        S3Client::new(&env.test.platform, &store)
            .put(&key, &attributes, vec![0; 10])
            .await
            .unwrap();
        let result = env
            .copier()
            .copy_recording(
                CALL,
                created_at(),
                1,
                &source(url, Some("audio/mpeg"), None),
            )
            .await;
        assert!(stored(&result).uploaded);
        assert_eq!(env.s3.object_bytes(&key).unwrap(), bytes);
    }

    #[tokio::test]
    async fn large_recordings_stream_through_in_parts() {
        let env = Env::start().await;
        let len = 20 * 1024 * 1024 + 5;
        let url = env
            .media
            .add_generated_media("/opstatics/long.mp3", "audio/mpeg", len);
        let result = env
            .copier()
            .copy_recording(
                CALL,
                created_at(),
                1,
                &source(url, Some("audio/mpeg"), None),
            )
            .await;
        let object = stored(&result);
        assert_eq!(object.size, len);
        assert_eq!(
            env.test.http.take_actions(),
            [
                "GET /opstatics/long.mp3",
                "HeadObject",
                "CreateMultipartUpload",
                "UploadPart",
                "UploadPart",
                "UploadPart",
                "CompleteMultipartUpload"
            ]
        );
        assert!(env.s3.object_bytes(&object.key).unwrap() == media_pattern(0, len as usize));
    }

    #[tokio::test]
    async fn a_file_the_media_host_no_longer_has_is_gone() {
        let env = Env::start().await;
        let url = env.media.media_url("/opstatics/deleted.mp3");
        let result = env
            .copier()
            .copy_recording(
                CALL,
                created_at(),
                1,
                &source(url, Some("audio/mpeg"), None),
            )
            .await
            .unwrap();
        let key = format!("recordings/2025/10/21/{CALL}-1.mp3");
        assert_eq!(result, StoredMedia::Gone { key: key.clone() });
        assert_eq!(result.url(), None);
        assert_eq!(env.rows(), [(key, "gone".to_owned(), None)]);
        assert_eq!(
            env.test.http.take_actions(),
            ["GET /opstatics/deleted.mp3"],
            "nothing is asked of the store"
        );
    }

    #[tokio::test]
    async fn a_gone_segment_does_not_keep_the_others_from_being_copied() {
        let env = Env::start().await;
        let present = env
            .media
            .add_media("/opstatics/2.mp3", "audio/mpeg", vec![1; 1234]);
        let results = env
            .copier()
            .copy_recordings(
                CALL,
                created_at(),
                &[
                    source(env.media.media_url("/opstatics/1.mp3"), None, None),
                    source(present, Some("audio/mpeg"), None),
                ],
            )
            .await;
        assert!(
            matches!(results[0], Ok(StoredMedia::Gone { .. })),
            "{results:?}"
        );
        assert_eq!(
            stored(&results[1]).key,
            format!("recordings/2025/10/21/{CALL}-2.mp3")
        );
        assert_eq!(
            env.rows(),
            [
                (
                    format!("recordings/2025/10/21/{CALL}-1.bin"),
                    "gone".to_owned(),
                    None
                ),
                (
                    format!("recordings/2025/10/21/{CALL}-2.mp3"),
                    "stored".to_owned(),
                    Some(1234)
                ),
            ]
        );
    }

    #[tokio::test]
    async fn a_media_host_failure_is_transient_and_records_nothing() {
        let env = Env::start().await;
        let base = raw_media_host(|stream| {
            let _ = stream.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        });
        let copier = MediaCopier::new(&env.test.platform, &storage_config(&env.s3), &base).unwrap();
        let url = format!("{base}/opstatics/a.mp3?token=secret");
        let err = copier
            .copy_recording(
                CALL,
                created_at(),
                1,
                &source(url, Some("audio/mpeg"), None),
            )
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(matches!(err, MediaError::Download { .. }), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(env.rows().is_empty());
        assert!(env.s3.objects().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_download_cut_short_aborts_the_upload_and_is_transient() {
        let env = Env::start().await;
        // Announces 12 MiB, sends 9 MiB (more than a part), then hangs up.
        let base = raw_media_host(|stream| {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\ncontent-length: 12582912\r\n\r\n",
            );
            let _ = stream.write_all(&media_pattern(0, 9 * 1024 * 1024));
        });
        let copier = MediaCopier::new(&env.test.platform, &storage_config(&env.s3), &base).unwrap();
        let err = copier
            .copy_recording(
                CALL,
                created_at(),
                1,
                &source(format!("{base}/cut.mp3"), None, None),
            )
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        let actions = env.test.http.take_actions();
        assert_eq!(count(&actions, "UploadPart"), 1, "{actions:?}");
        assert_eq!(count(&actions, "AbortMultipartUpload"), 1, "{actions:?}");
        assert_eq!(count(&actions, "CompleteMultipartUpload"), 0, "{actions:?}");
        assert!(env.s3.objects().unwrap().is_empty());
        assert!(env.rows().is_empty());
    }

    #[tokio::test]
    async fn store_failures_say_whether_a_retry_can_help() {
        let env = Env::start().await;
        let url = env
            .media
            .add_media("/opstatics/a.mp3", "audio/mpeg", vec![1; 100]);
        let src = source(url, Some("audio/mpeg"), None);

        let mut wrong_secret = storage_config(&env.s3);
        wrong_secret.secret_access_key = crate::configuration::Secret::new("wrong");
        let copier = MediaCopier::new(
            &env.test.platform,
            &wrong_secret,
            &env.media.media_base_url(),
        )
        .unwrap();
        let err = copier
            .copy_recording(CALL, created_at(), 1, &src)
            .await
            .unwrap_err();
        assert!(
            matches!(err, MediaError::Store { .. }) && !err.is_transient(),
            "{err}"
        );

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut unreachable = storage_config(&env.s3);
        unreachable.endpoint = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let copier = MediaCopier::new(
            &env.test.platform,
            &unreachable,
            &env.media.media_base_url(),
        )
        .unwrap();
        let err = copier
            .copy_recording(CALL, created_at(), 1, &src)
            .await
            .unwrap_err();
        assert!(
            matches!(err, MediaError::Store { .. }) && err.is_transient(),
            "{err}"
        );
        assert!(env.rows().is_empty());
    }

    #[tokio::test]
    async fn urls_off_the_media_host_are_refused_without_a_request() {
        let env = Env::start().await;
        for url in [
            "https://evil.example.com/opstatics/a.mp3".to_owned(),
            env.s3.endpoint().to_owned() + "/recordings/x.mp3",
            "not a url".to_owned(),
        ] {
            let err = env
                .copier()
                .copy_recording(CALL, created_at(), 1, &source(url.clone(), None, None))
                .await
                .unwrap_err();
            assert!(
                matches!(err, MediaError::NotOnMediaHost { .. }),
                "{url}: {err}"
            );
            assert!(!err.is_transient());
        }
        assert!(env.test.http.take_actions().is_empty());
    }

    #[tokio::test]
    async fn a_public_base_url_gives_plain_links_that_do_not_expire() {
        let env = Env::start().await;
        let url = env
            .media
            .add_media("/opstatics/a.mp3", "audio/mpeg", vec![1; 100]);
        let mut config = storage_config(&env.s3);
        config.public_base_url = Some("https://recordings.example.com".into());
        let copier =
            MediaCopier::new(&env.test.platform, &config, &env.media.media_base_url()).unwrap();
        let result = copier
            .copy_recording(
                CALL,
                created_at(),
                1,
                &source(url, Some("audio/mpeg"), None),
            )
            .await;
        let object = stored(&result);
        assert_eq!(
            object.url,
            format!("https://recordings.example.com/recordings/2025/10/21/{CALL}-1.mp3")
        );
        assert_eq!(object.url_expires_at, None);
        assert!(copier.refresh_expiring_links(30).unwrap().is_empty());
    }

    #[tokio::test]
    async fn presigned_links_are_renewed_before_they_expire() {
        let env = Env::start().await;
        let recording = env
            .media
            .add_media("/opstatics/r.mp3", "audio/mpeg", vec![1; 100]);
        let voicemail = env
            .media
            .add_media("/opstatics/v.mp3", "audio/mpeg", vec![2; 100]);
        let copier = env.copier();
        let first = copier
            .copy_recording(CALL, created_at(), 1, &source(recording, None, None))
            .await;
        let vm = copier
            .copy_voicemail("ACother", created_at(), &source(voicemail, None, None))
            .await;
        let first = stored(&first).clone();
        env.test.http.take_actions();

        assert!(copier.refresh_expiring_links(1).unwrap().is_empty());
        env.test.clock.advance_ms(6 * DAY_MS + DAY_MS / 2);
        let refreshed = copier.refresh_expiring_links(1).unwrap();
        let now = env.test.platform.clock.now_ms();
        // Proposed, not recorded: a run whose page writes fail proposes them again.
        assert_eq!(copier.refresh_expiring_links(1).unwrap(), refreshed);
        for links in &refreshed {
            copier.record_links(links).unwrap();
        }
        assert_eq!(refreshed.len(), 2, "{refreshed:?}");
        assert_eq!(refreshed[0].call_id, CALL);
        assert_eq!(refreshed[0].recordings.len(), 1);
        let (segment, url) = &refreshed[0].recordings[0];
        assert_eq!(*segment, 1);
        assert_ne!(url, &first.url);
        assert_eq!(refreshed[1].call_id, "ACother");
        assert!(refreshed[1].voicemail.is_some());
        assert_ne!(
            refreshed[1].voicemail.as_deref(),
            Some(stored(&vm).url.as_str())
        );
        let expiry = env
            .test
            .platform
            .sql
            .execute(
                "SELECT url, url_expires_at FROM media_objects WHERE call_id = ?1",
                &[CALL.into()],
            )
            .unwrap();
        let row = expiry.first().unwrap();
        assert_eq!(row.i64("url_expires_at").unwrap(), now + 7 * DAY_MS);
        assert_eq!(row.str("url").unwrap(), url);
        assert!(copier.refresh_expiring_links(1).unwrap().is_empty());
        assert!(
            env.test.http.take_actions().is_empty(),
            "presigning is local"
        );

        // A copy asked for again hands out the renewed link.
        let again = copier
            .copy_recording(CALL, created_at(), 1, &source(String::new(), None, None))
            .await;
        assert_eq!(&stored(&again).url, url);

        // Switching to a public base moves every link to it.
        let mut public = storage_config(&env.s3);
        public.public_base_url = Some("https://cdn.example.com".into());
        let copier =
            MediaCopier::new(&env.test.platform, &public, &env.media.media_base_url()).unwrap();
        let moved = copier.refresh_expiring_links(1).unwrap();
        for links in &moved {
            copier.record_links(links).unwrap();
        }
        assert_eq!(moved.len(), 2);
        assert!(moved[0].recordings[0]
            .1
            .starts_with("https://cdn.example.com/recordings/"));
        assert!(copier.refresh_expiring_links(1).unwrap().is_empty());
    }
}
