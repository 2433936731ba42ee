//! Copying a file, once: a call's recording segments and voicemail, a message's media. A copy recorded
//! as stored costs no request; one that retention deleted is not made again.

use anyhow::Context;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use super::keys::{MediaKind, Target};
use super::records::MediaRow;
use super::transfer::Transfer;
use super::{MediaCopier, MediaError, MediaSource, StoredMedia, StoredObject};
use crate::outbound::Failure;

impl MediaCopier<'_> {
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
            owner: call_id,
            created_at: call_created_at,
            kind: MediaKind::Recording,
            segment,
        };
        self.copy(&target, source).await
    }

    /// Copies every segment of a call's recording, `sources` in OpenPhone's order (segment 1 first);
    /// one result per segment, in the same order.
    pub async fn copy_recordings(
        &self,
        call_id: &str,
        call_created_at: DateTime<Utc>,
        sources: &[MediaSource],
    ) -> Vec<Result<StoredMedia, MediaError>> {
        self.copy_all(call_id, call_created_at, MediaKind::Recording, sources)
            .await
    }

    /// Copies the voicemail of call `call_id`, created at `call_created_at`.
    pub async fn copy_voicemail(
        &self,
        call_id: &str,
        call_created_at: DateTime<Utc>,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        let target = Target {
            owner: call_id,
            created_at: call_created_at,
            kind: MediaKind::Voicemail,
            segment: 1,
        };
        self.copy(&target, source).await
    }

    /// Copies every medium of message `message_id`, created at `created_at`, `sources` in the payload's
    /// order; one result per medium, in the same order.
    pub async fn copy_message_media(
        &self,
        message_id: &str,
        created_at: DateTime<Utc>,
        sources: &[MediaSource],
    ) -> Vec<Result<StoredMedia, MediaError>> {
        self.copy_all(message_id, created_at, MediaKind::Message, sources)
            .await
    }

    /// Copies `sources` as the files of `owner`'s `kind` numbered from 1, one after another, so memory
    /// holds one part at a time.
    async fn copy_all(
        &self,
        owner: &str,
        created_at: DateTime<Utc>,
        kind: MediaKind,
        sources: &[MediaSource],
    ) -> Vec<Result<StoredMedia, MediaError>> {
        let mut results = Vec::with_capacity(sources.len());
        for (segment, source) in (1..).zip(sources) {
            let target = Target {
                owner,
                created_at,
                kind,
                segment,
            };
            results.push(self.copy(&target, source).await);
        }
        results
    }

    async fn copy(
        &self,
        target: &Target<'_>,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        target.validate()?;
        let (owner, kind, segment) = (target.owner, target.kind.as_str(), target.segment);
        // The fields logs are searched by: a call's or a message's.
        let span = match target.kind {
            MediaKind::Recording | MediaKind::Voicemail => {
                tracing::info_span!("media_copy", call_id = owner, kind, segment)
            }
            MediaKind::Message => {
                tracing::info_span!("media_copy", message_id = owner, kind, position = segment)
            }
        };
        let result = self
            .copy_in_span(target, source)
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
        result
    }

    async fn copy_in_span(
        &self,
        target: &Target<'_>,
        source: &MediaSource,
    ) -> Result<StoredMedia, MediaError> {
        if let Some(key) = self.retired(target)? {
            return Ok(StoredMedia::Retired { key });
        }
        if let Some(row) = self.find(target)? {
            if row.state == "stored" {
                return Ok(StoredMedia::Stored(self.reuse(target, row)?));
            }
        }
        let metadata = target.metadata(source.duration);
        let transfer = self
            .transfer(
                source,
                target.extension(),
                |extension| target.key(extension),
                metadata,
            )
            .await?;
        let (row, result) = match transfer {
            Transfer::Gone { key, content_type } => (
                MediaRow {
                    key: key.clone(),
                    state: "gone".into(),
                    size: None,
                    content_type: Some(content_type),
                    url: None,
                    url_expires_at: None,
                },
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
                    MediaRow {
                        key: key.clone(),
                        state: "stored".into(),
                        size: Some(i64::try_from(size).context("object size")?),
                        content_type: Some(content_type.clone()),
                        url: Some(url.clone()),
                        url_expires_at,
                    },
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
        // Retention retired the key meanwhile: a row would link to (or count) an object meant to be gone.
        if !self.record(target, &row)? {
            return Ok(StoredMedia::Retired { key: row.key });
        }
        Ok(result)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use test_servers::openphone::media_pattern;

    use super::super::testing::{created_at, source, stored, Env, CALL, MESSAGE};
    use super::super::*;
    use crate::storage::s3::{ObjectAttributes, ObjectStore, S3Client};
    use crate::storage::testing::{count, storage_config};

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
    async fn media_land_under_media_with_their_type_and_a_replay_copies_nothing() {
        let env = Env::start().await;
        let (s3, media, test) = (&env.s3, &env.media, &env.test);
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
                None,
            ),
            // No type in the payload: the download's decides.
            source(
                media.add_media("/opstatics/9d1e", "application/pdf", document.clone()),
                None,
                None,
            ),
        ];
        let copier = env.copier();
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
        let env = Env::start().await;
        let (media, test) = (&env.media, &env.test);
        let sources = [
            source(
                media.media_url("/opstatics/expired"),
                Some("image/png"),
                None,
            ),
            source(
                media.add_media("/opstatics/ok", "image/gif", vec![7; 500]),
                None,
                None,
            ),
        ];
        let copier = env.copier();
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
}
