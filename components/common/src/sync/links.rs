//! Presigned links last 7 days (the longest SigV4 allows): each periodic run renews the recording and
//! message-media links that expire within a day and puts them on the call and message pages, recording them
//! only once the page has them.

use crate::notion::Notion;
use crate::openphone::OpenPhone;
use crate::pages::{PageSettings, Writer};
use crate::platform::Platform;
use crate::storage::media::MediaCopier;

/// Links are renewed when they would stop working within this many days.
const RENEW_WITHIN_DAYS: u32 = 1;

/// Renews expiring links; returns how many calls' and messages' pages were updated, and the problems met.
pub async fn renew(platform: &Platform, settings: &PageSettings) -> (usize, Vec<String>) {
    let Some(storage) = &settings.storage else {
        return (0, Vec::new());
    };
    let copier = match MediaCopier::new(platform, storage, &settings.openphone.media_base) {
        Ok(copier) => copier,
        Err(e) => return (0, vec![format!("link renewal: {e:#}")]),
    };
    let due = copier
        .refresh_expiring_links(RENEW_WITHIN_DAYS)
        .and_then(|calls| {
            Ok((
                calls,
                copier.refresh_expiring_message_links(RENEW_WITHIN_DAYS)?,
            ))
        });
    let (due, messages_due) = match due {
        Ok(due) => due,
        Err(e) => return (0, vec![format!("link renewal: {e:#}")]),
    };
    let notion = Notion::new(platform, &settings.notion);
    let openphone = OpenPhone::new(platform, &settings.openphone);
    let writer = Writer::new(platform, &notion, &openphone, settings);
    let mut renewed = 0;
    let mut errors = Vec::new();
    for links in &due {
        let result = match writer.calls().media().relink(links).await {
            Ok(()) => copier.record_links(links).map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => renewed += 1,
            Err(e) => errors.push(format!("links of {}: {e}", links.call_id)),
        }
    }
    for links in &messages_due {
        let result = match writer.messages().media().relink(links).await {
            Ok(()) => copier
                .record_message_links(links)
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => renewed += 1,
            Err(e) => errors.push(format!("links of {}: {e}", links.message_id)),
        }
    }
    (renewed, errors)
}
