//! The pictures and files of MMS messages (a webhook's `media[]`) copied from OpenPhone's media host into
//! the object store, the way [`super::media`] copies recordings, so a message page keeps showing them after
//! OpenPhone's URLs stop working.
//!
//! - **Keys.** `media/YYYY/MM/DD/<messageId>-<n>.<ext>` for medium `n` (from 1, in the payload's order);
//!   the date is the message's `createdAt` in UTC, the extension follows the content type
//!   ([`message_extension_for`]): the payload's `type`, unless only the download's `Content-Type` names a
//!   type we know.
//! - **Streaming, idempotency, failures.** The same streamed copy as recordings
//!   ([`MediaCopier::transfer`]); every copy is recorded in `message_media`, so a replayed event costs no
//!   request and never makes a second object; a `404` is recorded as gone; a medium that retention
//!   deleted stays deleted ([`StoredMedia::Retired`]).
//! - **Links.** Public base or presigned, as for recordings; [`MediaCopier::refresh_expiring_message_links`]
//!   proposes renewed ones and [`MediaCopier::record_message_links`] records them once the page has them.

use anyhow::Context;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::media::{
    essence, extension_for, group_renewed, MediaCopier, MediaError, MediaSource, RenewedLink,
    StoredMedia, StoredObject, Transfer, DAY_MS, REUSE_MARGIN_MS,
};
use crate::outbound::Failure;
use crate::platform::Value;

/// `kind` of a [`RenewedLink`] of message media.
const KIND: &str = "media";

/// The extension of a message medium's key for `content_type`: the image, document, video and contact
/// types MMS carries, the audio types of recordings, else `bin`.
pub fn message_extension_for(content_type: &str) -> &'static str {
    match essence(content_type).as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heic" => "heic",
        "image/heif" => "heif",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        "image/svg+xml" => "svg",
        "application/pdf" => "pdf",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/3gpp" => "3gp",
        "text/vcard" | "text/x-vcard" => "vcf",
        "text/plain" => "txt",
        other => extension_for(other),
    }
}

/// Whether Notion shows `content_type` in an image block: the image types its API documents for image
/// blocks. Anything else goes in a file block.
pub fn is_notion_image(content_type: &str) -> bool {
    matches!(
        essence(content_type).as_str(),
        "image/jpeg"
            | "image/jpg"
            | "image/pjpeg"
            | "image/png"
            | "image/gif"
            | "image/bmp"
            | "image/heic"
            | "image/tiff"
            | "image/svg+xml"
    )
}

/// The current links of a message's stored media, as [`MediaCopier::refresh_expiring_message_links`]
/// proposes them (renewed ones included, not yet recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLinks {
    /// `AC…` of the message.
    pub message_id: String,
    /// `(key, url)` of every stored medium, in payload order (a gone one is absent).
    pub media: Vec<(String, String)>,
    /// The links that changed, to record with [`MediaCopier::record_message_links`] once the page has
    /// them.
    pub renewed: Vec<RenewedLink>,
}

fn validate(message_id: &str) -> Result<(), MediaError> {
    let ok = !message_id.is_empty()
        && message_id.len() <= 128
        && message_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(MediaError::InvalidTarget(format!(
            "message id {message_id:?} cannot be part of an object key"
        )))
    }
}

fn key(created_at: DateTime<Utc>, message_id: &str, position: u32, extension: &str) -> String {
    format!(
        "media/{}/{message_id}-{position}.{extension}",
        super::media::key_date(created_at)
    )
}

impl MediaCopier<'_> {
    /// Copies every medium of message `message_id`, created at `created_at`, `sources` in the payload's
    /// order; one result per medium, in the same order. Copied one after another, so memory holds one part
    /// at a time.
    pub async fn copy_message_media(
        &self,
        message_id: &str,
        created_at: DateTime<Utc>,
        sources: &[MediaSource],
    ) -> Vec<Result<StoredMedia, MediaError>> {
        let mut results = Vec::with_capacity(sources.len());
        for (position, source) in (1..).zip(sources) {
            let span = tracing::info_span!("media_copy", message_id, kind = KIND, position);
            let result = self
                .copy_message_medium(message_id, created_at, position, source)
                .instrument(span.clone())
                .await;
            span.in_scope(|| match &result {
                Ok(StoredMedia::Stored(object)) => {
                    tracing::info!(key = %object.key, size = object.size, uploaded = object.uploaded, "media stored");
                }
                Ok(StoredMedia::Gone { key }) => {
                    tracing::warn!(key = %key, "media gone from the media host");
                }
                Ok(StoredMedia::Retired { key }) => {
                    tracing::info!(key = %key, "media retired by retention: not copied again");
                }
                Err(e) => {
                    tracing::warn!(error = %e, transient = e.is_transient(), "media copy failed");
                }
            });
            results.push(result);
        }
        results
    }

    async fn copy_message_medium(
        &self,
        message_id: &str,
        created_at: DateTime<Utc>,
        position: u32,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        validate(message_id)?;
        if let Some(key) = self.retired(message_id, KIND, position)? {
            return Ok(StoredMedia::Retired { key });
        }
        if let Some(stored) = self.reuse_message_medium(message_id, position)? {
            return Ok(StoredMedia::Stored(stored));
        }
        let metadata = vec![
            ("message-id".to_owned(), message_id.to_owned()),
            ("position".to_owned(), position.to_string()),
        ];
        let transfer = self
            .transfer(
                source,
                message_extension_for,
                |extension| key(created_at, message_id, position, extension),
                metadata,
            )
            .await?;
        let now = self.platform.clock.now_ms();
        let (row, result) = match transfer {
            Transfer::Gone { key, content_type } => (
                [
                    key.as_str().into(),
                    "gone".into(),
                    Value::Null,
                    content_type.as_str().into(),
                    Value::Null,
                    Value::Null,
                ],
                StoredMedia::Gone { key },
            ),
            Transfer::Retired { key } => return Ok(StoredMedia::Retired { key }),
            Transfer::Stored {
                key,
                content_type,
                size,
                uploaded,
            } => {
                let (url, url_expires_at) = self.new_link(&key);
                (
                    [
                        key.as_str().into(),
                        "stored".into(),
                        i64::try_from(size).context("object size")?.into(),
                        content_type.as_str().into(),
                        url.as_str().into(),
                        Value::from(url_expires_at),
                    ],
                    StoredMedia::Stored(StoredObject {
                        key,
                        url,
                        url_expires_at,
                        size,
                        content_type,
                        uploaded,
                    }),
                )
            }
        };
        let mut params = vec![message_id.into(), position.into()];
        params.extend(row);
        params.push(now.into());
        // Not recorded if retention retired the key meanwhile: the row would link to nothing.
        let recorded = self.platform.sql.execute(
            "INSERT INTO message_media (message_id, position, key, state, size, content_type, url,
                                        url_expires_at, created_at, updated_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9
             WHERE NOT EXISTS (SELECT 1 FROM retired_media WHERE key = ?3)
             ON CONFLICT (message_id, position) DO UPDATE SET
                 key = excluded.key, state = excluded.state, size = excluded.size,
                 content_type = excluded.content_type, url = excluded.url,
                 url_expires_at = excluded.url_expires_at, updated_at = excluded.updated_at
             RETURNING message_id",
            &params,
        )?;
        if recorded.is_empty() {
            let key = match result {
                StoredMedia::Stored(object) => object.key,
                StoredMedia::Gone { key } | StoredMedia::Retired { key } => key,
            };
            return Ok(StoredMedia::Retired { key });
        }
        Ok(result)
    }

    /// The copy recorded for medium `position` of a message, its link renewed if it is about to stop
    /// working; `None` when it has not been stored.
    fn reuse_message_medium(
        &self,
        message_id: &str,
        position: u32,
    ) -> anyhow::Result<Option<StoredObject>> {
        let rows = self.platform.sql.execute(
            "SELECT key, size, content_type, url, url_expires_at FROM message_media
             WHERE message_id = ?1 AND position = ?2 AND state = 'stored'",
            &[message_id.into(), position.into()],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let key = row.str("key")?.to_owned();
        let now = self.platform.clock.now_ms();
        let (url, url_expires_at) = match self.relink(
            &key,
            row.opt_str("url")?,
            row.opt_i64("url_expires_at")?,
            now + REUSE_MARGIN_MS,
        ) {
            Some((url, expires_at)) => {
                self.platform.sql.execute(
                    "UPDATE message_media SET url = ?3, url_expires_at = ?4, updated_at = ?5
                     WHERE message_id = ?1 AND position = ?2",
                    &[
                        message_id.into(),
                        position.into(),
                        url.as_str().into(),
                        Value::from(expires_at),
                        now.into(),
                    ],
                )?;
                (url, expires_at)
            }
            None => (
                row.opt_str("url")?.context("a stored link")?.to_owned(),
                row.opt_i64("url_expires_at")?,
            ),
        };
        Ok(Some(StoredObject {
            key,
            url,
            url_expires_at,
            size: u64::try_from(row.opt_i64("size")?.unwrap_or(0)).unwrap_or(0),
            content_type: row.opt_str("content_type")?.unwrap_or_default().to_owned(),
            uploaded: false,
        }))
    }

    /// Proposes new links for message media whose links stop working within `within_days` days (or no
    /// longer follow `recordings_public_base_url`); per message whose links change, all of its current
    /// links, for the caller to put on the page and then [`MediaCopier::record_message_links`]. Nothing
    /// is recorded here, and no request is sent (presigning is local).
    pub fn refresh_expiring_message_links(
        &self,
        within_days: u32,
    ) -> anyhow::Result<Vec<MessageLinks>> {
        let valid_until = self.platform.clock.now_ms() + i64::from(within_days) * DAY_MS;
        // Only rows that may need a new link are read (the expiry index serves the presigned case).
        let rows = match &self.public_base_url {
            Some(base) => self.platform.sql.execute(
                "SELECT message_id, position, key, url, url_expires_at FROM message_media
                 WHERE state = 'stored'
                   AND (url_expires_at IS NOT NULL OR url IS NULL OR substr(url, 1, length(?1)) != ?1)
                 ORDER BY message_id, position",
                &[format!("{base}/").into()],
            )?,
            None => self.platform.sql.execute(
                "SELECT message_id, position, key, url, url_expires_at FROM message_media
                 WHERE state = 'stored' AND (url_expires_at IS NULL OR url_expires_at < ?1)
                 ORDER BY message_id, position",
                &[valid_until.into()],
            )?,
        };
        let mut changed: Vec<(String, Vec<RenewedLink>)> = Vec::new();
        for row in rows.iter() {
            let message_id = row.str("message_id")?;
            let Some((url, expires_at)) = self.relink(
                row.str("key")?,
                row.opt_str("url")?,
                row.opt_i64("url_expires_at")?,
                valid_until,
            ) else {
                continue;
            };
            let renewed = RenewedLink {
                kind: KIND.to_owned(),
                segment: row.i64("position")?,
                url,
                expires_at,
            };
            group_renewed(&mut changed, message_id, renewed);
        }
        changed
            .into_iter()
            .map(|(message_id, renewed)| {
                let rows = self.platform.sql.execute(
                    "SELECT position, key, url FROM message_media
                     WHERE message_id = ?1 AND state = 'stored' ORDER BY position",
                    &[message_id.as_str().into()],
                )?;
                let mut media = Vec::new();
                for row in rows.iter() {
                    let position = row.i64("position")?;
                    let url = match renewed.iter().find(|r| r.segment == position) {
                        Some(r) => r.url.clone(),
                        None => row.opt_str("url")?.unwrap_or_default().to_owned(),
                    };
                    media.push((row.str("key")?.to_owned(), url));
                }
                Ok(MessageLinks {
                    message_id,
                    media,
                    renewed,
                })
            })
            .collect()
    }

    /// Records the renewed links of `links` once they are on the message's page, so a page write that
    /// failed leaves them due for the next run.
    pub fn record_message_links(&self, links: &MessageLinks) -> anyhow::Result<()> {
        let now = self.platform.clock.now_ms();
        for r in &links.renewed {
            self.platform.sql.execute(
                "UPDATE message_media SET url = ?3, url_expires_at = ?4, updated_at = ?5
                 WHERE message_id = ?1 AND position = ?2",
                &[
                    links.message_id.as_str().into(),
                    r.segment.into(),
                    r.url.as_str().into(),
                    Value::from(r.expires_at),
                    now.into(),
                ],
            )?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use test_servers::openphone::media_pattern;

    use super::*;
    use crate::storage::testing::{count, media_server, s3_server, storage_config, TestPlatform};

    const MESSAGE: &str = "AC24a8b8321c4f4cf2be110f4250793d51";

    /// 2025-10-20 19:59:59 in New York is already the 21st in UTC.
    fn created_at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-10-20T19:59:59-05:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn source(url: String, content_type: Option<&str>) -> MediaSource {
        MediaSource {
            url,
            content_type: content_type.map(str::to_owned),
            duration: None,
        }
    }

    fn stored(result: &Result<StoredMedia, MediaError>) -> &StoredObject {
        match result {
            Ok(StoredMedia::Stored(object)) => object,
            other => panic!("not stored: {other:?}"),
        }
    }

    #[test]
    fn extensions_follow_the_content_type_and_images_are_those_notion_shows() {
        for (content_type, extension) in [
            ("image/jpeg", "jpg"),
            ("IMAGE/JPEG; q=1", "jpg"),
            ("image/png", "png"),
            ("image/gif", "gif"),
            ("image/heic", "heic"),
            ("application/pdf", "pdf"),
            ("video/mp4", "mp4"),
            ("text/vcard", "vcf"),
            ("audio/mpeg", "mp3"),
            ("application/octet-stream", "bin"),
        ] {
            assert_eq!(
                message_extension_for(content_type),
                extension,
                "{content_type}"
            );
        }
        assert!(is_notion_image("image/png") && is_notion_image("image/jpeg; x=y"));
        assert!(!is_notion_image("application/pdf") && !is_notion_image("image/webp"));
        assert!(validate("AC1/../x").is_err() && validate("").is_err());
    }

    #[tokio::test]
    async fn media_land_under_media_with_their_type_and_a_replay_copies_nothing() {
        let s3 = s3_server();
        let media = media_server();
        let test = TestPlatform::new().await;
        let picture = media_pattern(0, 120_000);
        let document = media_pattern(3, 40_000);
        let sources = [
            // The payload's type wins over a host's generic one.
            source(
                media.add_media(
                    "/opstatics/5c90",
                    "application/octet-stream",
                    picture.clone(),
                ),
                Some("image/jpeg"),
            ),
            // No type in the payload: the download's decides.
            source(
                media.add_media("/opstatics/9d1e", "application/pdf", document.clone()),
                None,
            ),
        ];
        let copier = MediaCopier::new(
            &test.platform,
            &storage_config(&s3),
            &media.media_base_url(),
        )
        .unwrap();
        let results = copier
            .copy_message_media(MESSAGE, created_at(), &sources)
            .await;
        let keys: Vec<&str> = results.iter().map(|r| stored(r).key.as_str()).collect();
        assert_eq!(
            keys,
            [
                format!("media/2025/10/21/{MESSAGE}-1.jpg"),
                format!("media/2025/10/21/{MESSAGE}-2.pdf"),
            ]
        );
        assert_eq!(stored(&results[0]).content_type, "image/jpeg");
        assert_eq!(stored(&results[1]).content_type, "application/pdf");
        assert_eq!(s3.object_bytes(keys[0]).unwrap(), picture);
        assert_eq!(s3.object_bytes(keys[1]).unwrap(), document);
        let body = reqwest::get(&stored(&results[1]).url)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.to_vec(), document, "the link serves the copy");
        assert_eq!(count(&test.http.take_actions(), "PutObject"), 2);

        let again = copier
            .copy_message_media(MESSAGE, created_at(), &sources)
            .await;
        assert_eq!(
            test.http.take_actions(),
            Vec::<String>::new(),
            "a replay sends no request"
        );
        assert_eq!(stored(&again[0]).url, stored(&results[0]).url);
        assert!(!stored(&again[0]).uploaded);
        assert_eq!(s3.objects().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_gone_medium_is_recorded_and_the_others_copied() {
        let s3 = s3_server();
        let media = media_server();
        let test = TestPlatform::new().await;
        let sources = [
            source(media.media_url("/opstatics/expired"), Some("image/png")),
            source(
                media.add_media("/opstatics/ok", "image/gif", vec![7; 500]),
                None,
            ),
        ];
        let copier = MediaCopier::new(
            &test.platform,
            &storage_config(&s3),
            &media.media_base_url(),
        )
        .unwrap();
        let results = copier
            .copy_message_media(MESSAGE, created_at(), &sources)
            .await;
        assert!(
            matches!(&results[0], Ok(StoredMedia::Gone { key }) if key.ends_with("-1.png")),
            "{results:?}"
        );
        assert!(stored(&results[1]).key.ends_with("-2.gif"));
        let rows = test
            .platform
            .sql
            .execute("SELECT state FROM message_media ORDER BY position", &[])
            .unwrap();
        let states: Vec<String> = rows
            .iter()
            .map(|r| r.str("state").unwrap().to_owned())
            .collect();
        assert_eq!(states, ["gone", "stored"]);
    }

    #[tokio::test]
    async fn presigned_message_links_are_renewed_and_recorded_once_on_the_page() {
        let s3 = s3_server();
        let media = media_server();
        let test = TestPlatform::new().await;
        let url = media.add_media("/opstatics/p", "image/png", vec![1; 100]);
        let copier = MediaCopier::new(
            &test.platform,
            &storage_config(&s3),
            &media.media_base_url(),
        )
        .unwrap();
        let first = copier
            .copy_message_media(MESSAGE, created_at(), &[source(url, None)])
            .await;
        let first = stored(&first[0]).clone();
        assert!(copier.refresh_expiring_message_links(1).unwrap().is_empty());

        test.clock.advance_ms(6 * DAY_MS + DAY_MS / 2);
        let due = copier.refresh_expiring_message_links(1).unwrap();
        assert_eq!(due.len(), 1, "{due:?}");
        assert_eq!(due[0].message_id, MESSAGE);
        let (key, renewed) = &due[0].media[0];
        assert_eq!(key, &first.key);
        assert_ne!(renewed, &first.url);
        // Not recorded until the page has it: still due.
        assert_eq!(copier.refresh_expiring_message_links(1).unwrap(), due);
        copier.record_message_links(&due[0]).unwrap();
        assert!(copier.refresh_expiring_message_links(1).unwrap().is_empty());
    }
}
