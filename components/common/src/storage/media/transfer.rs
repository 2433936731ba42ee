//! The streamed copy itself: a download from the media host, checked against it, piped part by part
//! into the object store.

use tracing::Instrument;

use super::keys::{choose_content_type, without_query};
use super::{MediaCopier, MediaError, MediaSource};
use crate::http_url::HttpUrl;
use crate::metrics;
use crate::outbound::{retry_after_ms, ApiError, Service};
use crate::platform::{HttpRequest, Method, StreamingResponse};
use crate::storage::s3::{ObjectAttributes, ObjectWriter, S3Client, DEFAULT_PART_SIZE};

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

impl MediaCopier<'_> {
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

    fn check_on_media_host(&self, url: &str) -> Result<(), MediaError> {
        let base = &self.media_base;
        let on_host = HttpUrl::parse(url).is_ok_and(|u| u.same_origin(base));
        if on_host {
            Ok(())
        } else {
            Err(MediaError::NotOnMediaHost {
                url: without_query(url),
                media_base: base.origin(),
            })
        }
    }

    /// Starts a `GET` of `url` and returns once its headers are in; counted and logged like every
    /// external request (the body is streamed, which [`Outbound`](crate::outbound::Outbound) cannot do).
    async fn download(&self, url: &str) -> Result<Download, MediaError> {
        let shown = without_query(url);
        let path = HttpUrl::parse(url)
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
                    let retry_after = retry_after_ms(
                        response.header("retry-after"),
                        self.platform.clock.now_ms(),
                    );
                    ApiError::from_status(service, status, retry_after, format!("status {status}"))
                }
                Err(e) => ApiError::unanswered(service, e),
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

    use super::super::testing::{created_at, source, stored, Env, CALL};
    use super::super::*;
    use crate::outbound::Failure;
    use crate::storage::testing::{count, raw_media_host, storage_config};

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
}
