//! Recordings, voicemails and the pictures and files of MMS messages (a webhook's `media[]`) copied from
//! OpenPhone's media host into the object store, so the links in Notion keep working after OpenPhone's
//! own URLs stop. Calls' and messages' media take the same path; they differ only in their keys and the
//! table that records them.
//!
//! - **Keys.** `recordings/YYYY/MM/DD/<callId>-<n>.<ext>` for segment `n` (from 1) of a call's recording,
//!   `voicemails/YYYY/MM/DD/<callId>.<ext>` for its voicemail, `media/YYYY/MM/DD/<messageId>-<n>.<ext>`
//!   for medium `n` of a message (in the payload's order); the date is the call's or message's
//!   `createdAt` in UTC, the extension follows the content type ([`extension_for`],
//!   [`message_extension_for`]): the payload's `type`, unless only the download's `Content-Type` names a
//!   type we know. Objects carry their content type and small metadata (owner id, number, a
//!   recording's duration), never a transcript.
//! - **Streaming.** The download is read chunk by chunk into an [`ObjectWriter`](super::s3::ObjectWriter),
//!   which sends a part whenever one is full: memory holds one part (8 MiB; twice while `Outbound`
//!   keeps a copy of the request for its retries), whatever the file's size. Segments are copied one
//!   after another for the same reason.
//! - **Idempotent.** `media_objects` (calls) and `message_media` (messages) record every copy. A copy
//!   recorded as stored costs no request at all. Otherwise the download is started, and once its
//!   headers are in, `HeadObject` tells whether the store already has an object of that size under the
//!   key; only if not are the bytes uploaded.
//! - **Links.** Notion gets `recordings_public_base_url/<key>` when that is set, else a presigned `GET`
//!   URL valid for 7 days (the longest SigV4 allows), whose expiry is recorded with the copy;
//!   [`MediaCopier::refresh_expiring_links`] (and [`MediaCopier::refresh_expiring_message_links`])
//!   propose new links for those about to expire, and [`MediaCopier::record_links`]
//!   ([`MediaCopier::record_message_links`]) record them once the page has them.
//! - **Retention.** An object the housekeeping deleted for its age is remembered in `retired_media`
//!   ([`retirement_of`] names its owner and number from the key); a later copy of the same file copies
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
//!
//! Where things are: `keys` (object keys, extensions, content types), `transfer` (the streamed copy),
//! `records` (the two tables that record copies, and `retired_media`), `links` (public and
//! presigned links, renewal), `copy` (a file copied once, put together from those).

mod copy;
mod keys;
mod links;
mod records;
mod transfer;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod testing;

use anyhow::Context;

pub use keys::{extension_for, is_notion_image, message_extension_for, retirement_of};
pub use links::{CallLinks, MessageLinks, RenewedLink};

use super::s3::{ObjectStore, StoreError};
use crate::configuration::StorageConfig;
use crate::http_url::HttpUrl;
use crate::outbound::{ApiError, Failure, Transience};
use crate::platform::Platform;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// A stored presigned link is handed out again only if it stays valid at least this long.
const REUSE_MARGIN_MS: i64 = DAY_MS;

/// A file on OpenPhone's media host, as a call, recording, voicemail or message payload describes it.
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
    /// The media host no longer has the file (`404`/`410`): there is nothing to copy. Recorded
    /// under the key it would have had.
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
    /// A call or message id, or a number, that cannot name an object.
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
    /// The table that records copies could not be read or written.
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

/// Copies calls' and messages' media to the object store and keeps their links current.
pub struct MediaCopier<'a> {
    platform: &'a Platform,
    store: ObjectStore,
    media_base: HttpUrl,
    public_base_url: Option<String>,
}

impl<'a> MediaCopier<'a> {
    /// A copier into the store of `storage`, downloading only from `media_base`
    /// (`openphone_media_base`).
    pub fn new(
        platform: &'a Platform,
        storage: &StorageConfig,
        media_base: &str,
    ) -> anyhow::Result<Self> {
        let media_base = HttpUrl::parse(media_base)
            .with_context(|| format!("openphone_media_base {media_base:?} is not a URL"))?;
        Ok(Self {
            platform,
            store: ObjectStore::from_config(storage)?,
            media_base,
            public_base_url: storage.public_base_url.clone(),
        })
    }
}
