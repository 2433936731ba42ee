//! What the tests of the media copier share: a call and a message, their date, sources, and an environment of a
//! store, a media host and a platform.

use chrono::{DateTime, Utc};
use test_servers::{OpenPhoneServer, S3Server};

use super::{MediaCopier, MediaError, MediaSource, StoredMedia, StoredObject};
use crate::storage::s3::{ObjectInfo, ObjectStore, S3Client};
use crate::storage::testing::{media_server, s3_server, storage_config, TestPlatform};

pub(super) const CALL: &str = "ACbaee66e137f0467dbed5ad4bc8d60800";
pub(super) const MESSAGE: &str = "AC24a8b8321c4f4cf2be110f4250793d51";

/// 2025-10-20 19:59:59 in New York is already the 21st in UTC.
pub(super) fn created_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-10-20T19:59:59-05:00")
        .unwrap()
        .with_timezone(&Utc)
}

pub(super) fn source(
    url: String,
    content_type: Option<&str>,
    duration: Option<f64>,
) -> MediaSource {
    MediaSource {
        url,
        content_type: content_type.map(str::to_owned),
        duration,
    }
}

pub(super) struct Env {
    pub(super) s3: S3Server,
    pub(super) media: OpenPhoneServer,
    pub(super) test: TestPlatform,
}

impl Env {
    pub(super) async fn start() -> Self {
        Self {
            s3: s3_server(),
            media: media_server(),
            test: TestPlatform::new().await,
        }
    }

    pub(super) fn copier(&self) -> MediaCopier<'_> {
        MediaCopier::new(
            &self.test.platform,
            &storage_config(&self.s3),
            &self.media.media_base_url(),
        )
        .unwrap()
    }

    pub(super) async fn head(&self, key: &str) -> Option<ObjectInfo> {
        let store = ObjectStore::from_config(&storage_config(&self.s3)).unwrap();
        S3Client::new(&self.test.platform, &store)
            .head(key)
            .await
            .unwrap()
    }

    pub(super) fn rows(&self) -> Vec<(String, String, Option<i64>)> {
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

pub(super) fn stored(result: &Result<StoredMedia, MediaError>) -> &StoredObject {
    match result {
        Ok(StoredMedia::Stored(object)) => object,
        other => panic!("not stored: {other:?}"),
    }
}
