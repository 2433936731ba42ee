//! The links Notion gets for our copies: public or presigned, renewed before they stop working.

use anyhow::Context;

use super::keys::Target;
use super::records::MediaRow;
use super::{MediaCopier, StoredObject, DAY_MS, REUSE_MARGIN_MS};
use crate::platform::Value;

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
pub(in crate::storage) fn group_renewed(
    changed: &mut Vec<(String, Vec<RenewedLink>)>,
    owner: &str,
    renewed: RenewedLink,
) {
    match changed.last_mut() {
        Some((id, links)) if id == owner => links.push(renewed),
        _ => changed.push((owner.to_owned(), vec![renewed])),
    }
}

impl MediaCopier<'_> {
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
    pub(in crate::storage) fn relink(
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

    /// The link of a new copy under `key`: public, or presigned from now.
    pub(in crate::storage) fn new_link(&self, key: &str) -> (String, Option<i64>) {
        let now = self.platform.clock.now_ms();
        self.relink(key, None, None, now)
            .expect("a key without a link always gets one")
    }

    /// A copy recorded earlier, its link renewed if it is about to stop working.
    pub(super) fn reuse(&self, target: &Target<'_>, row: MediaRow) -> anyhow::Result<StoredObject> {
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
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::testing::{created_at, source, stored, Env, CALL};
    use super::super::*;
    use crate::storage::testing::storage_config;

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
