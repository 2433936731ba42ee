//! The links Notion gets for our copies: `recordings_public_base_url/<key>` when that is set, else a
//! presigned `GET` URL valid for 7 days, renewed before it stops working. A renewal is proposed per owner
//! (a call's [`CallLinks`], a message's [`MessageLinks`]) and recorded only once the page has it.

use anyhow::Context;

use super::keys::Target;
use super::records::{Ledger, MediaRow, CALL_MEDIA, MESSAGE_MEDIA};
use super::{MediaCopier, StoredObject, DAY_MS, REUSE_MARGIN_MS};

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

/// A link that a renewal changed, not yet recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewedLink {
    /// `recording`, `voicemail` or `media`.
    pub kind: String,
    /// Segment number, or a medium's position (1 for a voicemail).
    pub segment: i64,
    /// The new link.
    pub url: String,
    /// When a presigned link stops working.
    pub expires_at: Option<i64>,
}

/// An owner whose links a renewal changes.
struct Renewal {
    /// The call or message id.
    owner: String,
    /// Every stored copy of the owner with its link as it will be, ordered by kind and number.
    current: Vec<CurrentLink>,
    /// The links that change.
    renewed: Vec<RenewedLink>,
}

/// A stored copy and its link.
struct CurrentLink {
    kind: String,
    segment: i64,
    key: String,
    url: String,
}

impl MediaCopier<'_> {
    /// Proposes new links for those that stop working within `within_days` days (and, when
    /// `recordings_public_base_url` changed, those that no longer follow it); returns, per call whose
    /// links change, all of its current links, for the caller to write to the call's page and then
    /// [`MediaCopier::record_links`]. Nothing is recorded here, so a page write that fails leaves the
    /// links due. No request is sent: presigning is local.
    pub fn refresh_expiring_links(&self, within_days: u32) -> anyhow::Result<Vec<CallLinks>> {
        self.renewals(&CALL_MEDIA, within_days)?
            .into_iter()
            .map(|renewal| {
                let mut links = CallLinks {
                    call_id: renewal.owner,
                    recordings: Vec::new(),
                    voicemail: None,
                    renewed: renewal.renewed,
                };
                for link in renewal.current {
                    match link.kind.as_str() {
                        "recording" => {
                            let segment = u32::try_from(link.segment).context("segment number")?;
                            links.recordings.push((segment, link.url));
                        }
                        _ => links.voicemail = Some(link.url),
                    }
                }
                Ok(links)
            })
            .collect()
    }

    /// Records the renewed links of `links` once they are on the call's page, so a page write that
    /// failed leaves them due for the next run.
    pub fn record_links(&self, links: &CallLinks) -> anyhow::Result<()> {
        self.record_renewed(&CALL_MEDIA, &links.call_id, &links.renewed)
    }

    /// Proposes new links for message media, as [`MediaCopier::refresh_expiring_links`] does for calls:
    /// per message whose links change, all of its current links, for the caller to put on the page and
    /// then [`MediaCopier::record_message_links`].
    pub fn refresh_expiring_message_links(
        &self,
        within_days: u32,
    ) -> anyhow::Result<Vec<MessageLinks>> {
        let renewals = self.renewals(&MESSAGE_MEDIA, within_days)?;
        Ok(renewals
            .into_iter()
            .map(|renewal| MessageLinks {
                message_id: renewal.owner,
                media: renewal
                    .current
                    .into_iter()
                    .map(|link| (link.key, link.url))
                    .collect(),
                renewed: renewal.renewed,
            })
            .collect())
    }

    /// Records the renewed links of `links` once they are on the message's page, so a page write that
    /// failed leaves them due for the next run.
    pub fn record_message_links(&self, links: &MessageLinks) -> anyhow::Result<()> {
        self.record_renewed(&MESSAGE_MEDIA, &links.message_id, &links.renewed)
    }

    /// The owners in `ledger` with a link to renew (see [`MediaCopier::refresh_expiring_links`]), each
    /// with all its current links. Records nothing.
    fn renewals(&self, ledger: &Ledger, within_days: u32) -> anyhow::Result<Vec<Renewal>> {
        let valid_until = self.platform.clock.now_ms() + i64::from(within_days) * DAY_MS;
        let (table, columns) = (ledger.table, ledger.columns());
        // Only rows that may need a new link are read (the expiry index serves the presigned case).
        let rows = match &self.public_base_url {
            Some(base) => self.platform.sql.execute(
                &format!(
                    "SELECT {columns}, key, url, url_expires_at FROM {table}
                     WHERE state = 'stored'
                       AND (url_expires_at IS NOT NULL OR url IS NULL OR substr(url, 1, length(?1)) != ?1)
                     ORDER BY {columns}"
                ),
                &[format!("{base}/").into()],
            )?,
            None => self.platform.sql.execute(
                &format!(
                    "SELECT {columns}, key, url, url_expires_at FROM {table}
                     WHERE state = 'stored' AND (url_expires_at IS NULL OR url_expires_at < ?1)
                     ORDER BY {columns}"
                ),
                &[valid_until.into()],
            )?,
        };
        let mut changed: Vec<(String, Vec<RenewedLink>)> = Vec::new();
        for row in rows.iter() {
            let (owner, kind, segment) = ledger.name(&row)?;
            let Some((url, expires_at)) = self.relink(
                row.str("key")?,
                row.opt_str("url")?,
                row.opt_i64("url_expires_at")?,
                valid_until,
            ) else {
                continue;
            };
            let renewed = RenewedLink {
                kind: kind.to_owned(),
                segment,
                url,
                expires_at,
            };
            // Rows come ordered by owner, so a new owner starts a new group.
            match changed.last_mut() {
                Some((id, links)) if id == owner => links.push(renewed),
                _ => changed.push((owner.to_owned(), vec![renewed])),
            }
        }
        changed
            .into_iter()
            .map(|(owner, renewed)| {
                let current = self.current_links(ledger, &owner, &renewed)?;
                Ok(Renewal {
                    owner,
                    current,
                    renewed,
                })
            })
            .collect()
    }

    /// Every stored copy of `owner` in `ledger` with its link, `renewed` ones replaced.
    fn current_links(
        &self,
        ledger: &Ledger,
        owner: &str,
        renewed: &[RenewedLink],
    ) -> anyhow::Result<Vec<CurrentLink>> {
        let (table, columns) = (ledger.table, ledger.columns());
        let rows = self.platform.sql.execute(
            &format!(
                "SELECT {columns}, key, url FROM {table}
                 WHERE {} = ?1 AND state = 'stored' ORDER BY {columns}",
                ledger.owner()
            ),
            &[owner.into()],
        )?;
        let mut current = Vec::new();
        for row in rows.iter() {
            let (_, kind, segment) = ledger.name(&row)?;
            let url = match renewed
                .iter()
                .find(|r| r.kind == kind && r.segment == segment)
            {
                Some(r) => r.url.clone(),
                None => match row.opt_str("url")? {
                    Some(url) => url.to_owned(),
                    None => continue,
                },
            };
            current.push(CurrentLink {
                kind: kind.to_owned(),
                segment,
                key: row.str("key")?.to_owned(),
                url,
            });
        }
        Ok(current)
    }

    /// Records `renewed`, the new links of `owner`'s copies in `ledger`.
    fn record_renewed(
        &self,
        ledger: &Ledger,
        owner: &str,
        renewed: &[RenewedLink],
    ) -> anyhow::Result<()> {
        for r in renewed {
            self.set_link(ledger, (owner, &r.kind, r.segment), &r.url, r.expires_at)?;
        }
        Ok(())
    }

    /// The link `key` should have now, when it differs from the stored `url` (public base changed,
    /// presigned link expiring before `valid_until`, or none yet).
    fn relink(
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
    pub(super) fn new_link(&self, key: &str) -> (String, Option<i64>) {
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
                let name = (target.owner, target.kind.as_str(), target.segment.into());
                self.set_link(target.ledger(), name, &url, expires_at)?;
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
    use super::super::testing::{created_at, source, stored, Env, CALL, MESSAGE};
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

    #[tokio::test]
    async fn presigned_message_links_are_renewed_and_recorded_once_on_the_page() {
        let env = Env::start().await;
        let (media, test) = (&env.media, &env.test);
        let url = media.add_media("/opstatics/p", "image/png", vec![1; 100]);
        let copier = env.copier();
        let first = copier
            .copy_message_media(MESSAGE, created_at(), &[source(url, None, None)])
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
