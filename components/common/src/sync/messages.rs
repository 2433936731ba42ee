//! Outgoing texts whose delivery is not settled yet (`unsettled_messages`). OpenPhone sends a webhook when
//! a text is delivered, but none when it ends `undelivered` or `failed`, and the sync lists a conversation's
//! texts again only while they are recent; so a text the sync wrote as `queued`, `sending` or `sent` is
//! asked for again (`GET /v1/messages/{id}`) by its number's sync, after 5 minutes and then at doubling
//! intervals, until its status settles — then its page gets the status (one Notion request) — or a day
//! has passed.

use serde::{Deserialize, Serialize};

use super::LeasedNumber;
use crate::domain::{Direction, MessageStatus};
use crate::openphone::types::Message;
use crate::outbound::Failure;
use crate::pages::WriteError;
use crate::platform::Platform;

/// The first check of an unsettled text: 5 minutes after the sync saw it.
const FIRST_CHECK_MS: i64 = 5 * 60_000;
/// Checks are at most this far apart.
const MAX_CHECK_INTERVAL_MS: i64 = 60 * 60_000;
/// A text still unsettled this long after it was sent is given up on.
const GIVE_UP_MS: i64 = 24 * 60 * 60_000;
/// Texts checked per number and sync.
const BATCH: u32 = 100;

/// Whether a text's status can still change.
pub fn is_unsettled(message: &Message) -> bool {
    message.direction == Some(Direction::Outgoing)
        && matches!(
            message.status,
            Some(MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Sent) | None
        )
}

/// Watches `message` (of number `phone_number_id`) while its status is unsettled, and stops watching it
/// once it is settled.
pub fn track(platform: &Platform, phone_number_id: &str, message: &Message) -> anyhow::Result<()> {
    if !is_unsettled(message) {
        platform.sql.execute(
            "DELETE FROM unsettled_messages WHERE message_id = ?1",
            &[message.id.as_str().into()],
        )?;
        return Ok(());
    }
    let now = platform.clock.now_ms();
    let sent_at = message
        .created_at
        .as_deref()
        .and_then(crate::domain::parse_iso)
        .unwrap_or(now);
    platform.sql.execute(
        "INSERT INTO unsettled_messages (message_id, phone_number_id, conversation_id, sent_at, next_check_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (message_id) DO NOTHING",
        &[
            message.id.as_str().into(),
            phone_number_id.into(),
            crate::platform::Value::from(message.conversation_id.as_deref()),
            sent_at.into(),
            (now + FIRST_CHECK_MS).into(),
        ],
    )?;
    Ok(())
}

/// What a re-check of unsettled texts did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SettleReport {
    /// Texts asked for.
    pub checked: u32,
    /// Pages whose status was written.
    pub updated: u32,
    /// Texts given up on (still unsettled after a day, or gone from OpenPhone).
    pub given_up: u32,
    /// Problems (the text is asked for again next time).
    pub errors: Vec<String>,
}

/// Asks OpenPhone for the due unsettled texts of `number` and writes those whose status settled.
pub async fn recheck(number: &LeasedNumber<'_>) -> anyhow::Result<SettleReport> {
    let LeasedNumber {
        platform,
        openphone,
        writer,
        lease,
        phone_number_id,
    } = *number;
    let now = platform.clock.now_ms();
    let mut report = SettleReport::default();
    let rows = platform.sql.execute(
        "SELECT message_id, conversation_id, sent_at, checks FROM unsettled_messages
         WHERE phone_number_id = ?1 AND next_check_at <= ?2 ORDER BY next_check_at LIMIT ?3",
        &[phone_number_id.into(), now.into(), BATCH.into()],
    )?;
    for row in rows.iter() {
        let id = row.str("message_id")?.to_owned();
        let sent_at = row.i64("sent_at")?;
        let checks = row.i64("checks")?;
        lease.check()?;
        report.checked += 1;
        let fetched = match openphone.message(&id).await {
            Ok(fetched) => fetched,
            Err(e) => {
                report.errors.push(format!("message {id}: {e}"));
                reschedule(platform, &id, checks, now)?;
                continue;
            }
        };
        // Gone from OpenPhone: nothing will settle it.
        let Some(message) = fetched else {
            forget(platform, &id)?;
            report.given_up += 1;
            continue;
        };
        if is_unsettled(&message) {
            if now - sent_at > GIVE_UP_MS {
                forget(platform, &id)?;
                report.given_up += 1;
            } else {
                reschedule(platform, &id, checks, now)?;
            }
            continue;
        }
        let message = Message {
            phone_number_id: message
                .phone_number_id
                .clone()
                .or_else(|| Some(phone_number_id.to_owned())),
            conversation_id: message.conversation_id.clone().or_else(|| {
                row.opt_str("conversation_id")
                    .ok()
                    .flatten()
                    .map(String::from)
            }),
            ..message
        };
        match writer.messages().upsert(&message).await {
            Ok(_) => {
                report.updated += 1;
                forget(platform, &id)?;
            }
            Err(WriteError::LeaseLost(lost)) => return Err(lost.into()),
            Err(e) if e.is_transient() => {
                report.errors.push(format!("message {id}: {e}"));
                reschedule(platform, &id, checks, now)?;
            }
            Err(e) => {
                report.errors.push(format!("message {id}: {e}"));
                forget(platform, &id)?;
                report.given_up += 1;
            }
        }
    }
    Ok(report)
}

fn reschedule(platform: &Platform, id: &str, checks: i64, now: i64) -> anyhow::Result<()> {
    let interval = (FIRST_CHECK_MS << checks.clamp(0, 8)).min(MAX_CHECK_INTERVAL_MS);
    platform.sql.execute(
        "UPDATE unsettled_messages SET checks = checks + 1, next_check_at = ?2 WHERE message_id = ?1",
        &[id.into(), (now + interval).into()],
    )?;
    Ok(())
}

fn forget(platform: &Platform, id: &str) -> anyhow::Result<()> {
    platform.sql.execute(
        "DELETE FROM unsettled_messages WHERE message_id = ?1",
        &[id.into()],
    )?;
    Ok(())
}
