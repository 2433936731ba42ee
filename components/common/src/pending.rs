//! Calls that still lack something OpenPhone produces after the call: its recording, transcript, summary
//! or voicemail, or its final state (a call synced while it was still ringing). Kept in `pending_work`
//! as a bit set per call, so that:
//!
//! - the periodic sync re-checks only those calls, and only for what they lack (a call with nothing
//!   pending costs no request at all);
//! - whatever delivers the thing — a webhook through the page writer, or the sync's re-check — clears its
//!   bit with one statement ([`satisfied`]);
//! - after 7 days the sync gives up ([`give_up_old`]); the row keeps what never came, for `/stats`.
//!
//! What a call *should* have is decided from the call itself ([`Needs::expected`]): a conversation that
//! took place may have a recording, transcript and summary; an unanswered incoming call may have a
//! voicemail. OpenPhone produces them after the call, so within the sync's `pending_grace_ms` of the
//! call "not there" means "not yet"; after it, "never" (the plan has no transcripts, recording is off).
//!
//! This module only keeps the record: the page writer and the sync's re-check (`sync::recheck`), above
//! it, decide what was delivered.

use serde::{Deserialize, Serialize};

use crate::domain::{CallStatus, Direction};
use crate::openphone::types::Call;
use crate::platform::{Platform, Value};

/// A set of things a call lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs(u8);

impl Needs {
    /// Nothing.
    pub const NONE: Needs = Needs(0);
    /// Every recording segment.
    pub const RECORDING: Needs = Needs(1);
    /// The transcript.
    pub const TRANSCRIPT: Needs = Needs(2);
    /// The summary and next steps.
    pub const SUMMARY: Needs = Needs(4);
    /// The voicemail.
    pub const VOICEMAIL: Needs = Needs(8);
    /// The call's final state (it was synced while still in progress).
    pub const CALL: Needs = Needs(16);

    const NAMES: [(Needs, &'static str); 5] = [
        (Needs::CALL, "call"),
        (Needs::RECORDING, "recording"),
        (Needs::TRANSCRIPT, "transcript"),
        (Needs::SUMMARY, "summary"),
        (Needs::VOICEMAIL, "voicemail"),
    ];

    /// The set stored in `pending_work.needs`.
    pub fn from_bits(bits: i64) -> Needs {
        Needs(u8::try_from(bits & 31).unwrap_or(0))
    }

    /// The bits of `pending_work.needs`.
    pub fn bits(self) -> i64 {
        i64::from(self.0)
    }

    /// Whether nothing is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every member of `other` is in the set.
    pub fn contains(self, other: Needs) -> bool {
        self.0 & other.0 == other.0 && !other.is_empty()
    }

    /// Members of either set.
    pub fn with(self, other: Needs) -> Needs {
        Needs(self.0 | other.0)
    }

    /// Members of this set that are not in `other`.
    pub fn without(self, other: Needs) -> Needs {
        Needs(self.0 & !other.0)
    }

    /// The members' names, e.g. `["transcript", "summary"]`.
    pub fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(need, _)| self.contains(*need))
            .map(|(_, name)| *name)
            .collect()
    }

    /// What OpenPhone may still produce for `call`: a recording, transcript and summary for a
    /// conversation that took place, a voicemail for an unanswered incoming call, and the final state of a
    /// call still in progress.
    pub fn expected(call: &Call) -> Needs {
        if !is_final(call) {
            return Needs::CALL;
        }
        // A legacy payload has no duration: answered is enough to say the conversation took place.
        let talked = call.answered_at.is_some() && call.duration.is_none_or(|d| d > 0.0);
        let unanswered_incoming =
            call.answered_at.is_none() && call.direction == Some(Direction::Incoming);
        match (talked, unanswered_incoming) {
            (true, _) => Needs::RECORDING
                .with(Needs::TRANSCRIPT)
                .with(Needs::SUMMARY),
            (false, true) => Needs::VOICEMAIL,
            (false, false) => Needs::NONE,
        }
    }
}

/// Whether a call has ended, so its metadata will not change any more.
pub fn is_final(call: &Call) -> bool {
    call.completed_at.is_some() || call.status.as_ref().is_some_and(CallStatus::is_final)
}

/// Records that `call_id` (on number `phone_number_id`, made at `call_created_at`, epoch ms) still needs
/// `needs`, checked again no sooner than `next_check_at`. Needs already recorded are kept.
pub fn record_needs(
    platform: &Platform,
    call_id: &str,
    phone_number_id: &str,
    call_created_at: i64,
    needs: Needs,
    next_check_at: i64,
) -> anyhow::Result<()> {
    if needs.is_empty() {
        return Ok(());
    }
    platform.sql.execute(
        "INSERT INTO pending_work (call_id, phone_number_id, call_created_at, needs, next_check_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (call_id) DO UPDATE SET needs = pending_work.needs | excluded.needs,
             next_check_at = min(pending_work.next_check_at, excluded.next_check_at),
             updated_at = excluded.updated_at",
        &[
            call_id.into(),
            phone_number_id.into(),
            call_created_at.into(),
            needs.bits().into(),
            next_check_at.into(),
            platform.clock.now_ms().into(),
        ],
    )?;
    Ok(())
}

/// Records that `delivered` reached the call's page (by a webhook or a re-check), so nobody checks for it
/// again. Calls with nothing pending are not touched.
pub fn satisfied(platform: &Platform, call_id: &str, delivered: Needs) -> anyhow::Result<()> {
    if delivered.is_empty() {
        return Ok(());
    }
    platform.sql.execute(
        "UPDATE pending_work SET needs = needs & ~?2, updated_at = ?3 WHERE call_id = ?1 AND needs & ?2 != 0",
        &[call_id.into(), delivered.bits().into(), platform.clock.now_ms().into()],
    )?;
    Ok(())
}

/// Gives up on every call made before `cutoff` that still lacks something; returns how many.
pub fn give_up_old(platform: &Platform, cutoff: i64) -> anyhow::Result<u64> {
    let rows = platform.sql.execute(
        "UPDATE pending_work SET gave_up_at = ?2, updated_at = ?2
         WHERE needs != 0 AND gave_up_at IS NULL AND call_created_at < ?1
         RETURNING call_id",
        &[cutoff.into(), platform.clock.now_ms().into()],
    )?;
    Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
}

/// What a call still needs, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCall {
    /// `AC…`.
    pub call_id: String,
    /// When the call was made, epoch ms.
    pub call_created_at: i64,
    /// What it lacks.
    pub needs: Needs,
    /// Checks made so far.
    pub attempts: i64,
}

/// The calls of a number due for a re-check at `now`, oldest check first.
pub fn due(
    platform: &Platform,
    phone_number_id: &str,
    now: i64,
    limit: u32,
) -> anyhow::Result<Vec<PendingCall>> {
    let rows = platform.sql.execute(
        "SELECT call_id, call_created_at, needs, attempts FROM pending_work
         WHERE phone_number_id = ?1 AND needs != 0 AND gave_up_at IS NULL AND next_check_at <= ?2
         ORDER BY next_check_at LIMIT ?3",
        &[phone_number_id.into(), now.into(), limit.into()],
    )?;
    rows.iter()
        .map(|r| {
            Ok(PendingCall {
                call_id: r.str("call_id")?.to_owned(),
                call_created_at: r.i64("call_created_at")?,
                needs: Needs::from_bits(r.i64("needs")?),
                attempts: r.i64("attempts")?,
            })
        })
        .collect()
}

/// Records a re-check: `cleared` (delivered, or known never to come) is done, the rest is checked again
/// at `next_check_at`.
pub fn checked(
    platform: &Platform,
    call_id: &str,
    cleared: Needs,
    next_check_at: i64,
    error: Option<&str>,
) -> anyhow::Result<()> {
    platform.sql.execute(
        "UPDATE pending_work SET needs = needs & ~?2, attempts = attempts + 1, next_check_at = ?3,
                                 last_error = ?4, updated_at = ?5
         WHERE call_id = ?1",
        &[
            call_id.into(),
            cleared.bits().into(),
            next_check_at.into(),
            Value::from(error),
            platform.clock.now_ms().into(),
        ],
    )?;
    Ok(())
}

/// When to look first for what a call still `needs`: a voicemail is transcribed within a minute or two
/// of the call, so it is looked for after 3 minutes; the rest (recordings, transcripts, summaries) after
/// the usual 15.
pub fn first_check_at(now: i64, needs: Needs) -> i64 {
    if needs.contains(Needs::VOICEMAIL) {
        now + 3 * 60_000
    } else {
        next_check_after(now, 0)
    }
}

/// When to look again after `attempts` checks: 15 minutes, doubling, at most 6 hours.
pub fn next_check_after(now: i64, attempts: i64) -> i64 {
    let minutes = 15i64 << attempts.clamp(0, 5);
    now + minutes.min(360) * 60_000
}

/// Calls waiting on OpenPhone, as `/stats` reports them.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct PendingCounts {
    /// Calls still being re-checked.
    pub waiting: i64,
    /// Calls given up on after 7 days.
    pub gave_up: i64,
}

/// How many calls are still re-checked and how many were given up on.
pub fn counts(platform: &Platform) -> anyhow::Result<PendingCounts> {
    platform
        .sql
        .execute(
            "SELECT SUM(needs != 0 AND gave_up_at IS NULL) AS waiting, SUM(gave_up_at IS NOT NULL) AS gave_up
             FROM pending_work",
            &[],
        )?
        .first()
        .map(|r| -> anyhow::Result<PendingCounts> {
            Ok(PendingCounts {
                waiting: r.opt_i64("waiting")?.unwrap_or(0),
                gave_up: r.opt_i64("gave_up")?.unwrap_or(0),
            })
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::Clock;
    use crate::testing::migrated_platform;

    fn call(status: &str, direction: &str, answered: bool, duration: f64) -> Call {
        Call {
            id: "AC1".into(),
            status: Some(status.into()),
            direction: Some(direction.into()),
            answered_at: answered.then(|| "2025-10-20T19:00:00Z".into()),
            duration: Some(duration),
            ..Call::default()
        }
    }

    #[test]
    fn what_a_call_should_have_depends_on_how_it_went() {
        let talk = Needs::RECORDING
            .with(Needs::TRANSCRIPT)
            .with(Needs::SUMMARY);
        assert_eq!(
            Needs::expected(&call("completed", "incoming", true, 120.0)),
            talk
        );
        assert_eq!(
            Needs::expected(&call("completed", "outgoing", true, 5.0)),
            talk
        );
        assert_eq!(
            Needs::expected(&call("missed", "incoming", false, 0.0)),
            Needs::VOICEMAIL
        );
        let legacy = Call {
            duration: None,
            ..call("completed", "incoming", true, 0.0)
        };
        assert_eq!(Needs::expected(&legacy), talk, "answered, no duration said");
        assert_eq!(
            Needs::expected(&call("no-answer", "outgoing", false, 0.0)),
            Needs::NONE
        );
        assert_eq!(
            Needs::expected(&call("ringing", "incoming", false, 0.0)),
            Needs::CALL
        );
        assert_eq!(talk.names(), vec!["recording", "transcript", "summary"]);
        assert_eq!(Needs::from_bits(talk.bits()), talk);
    }

    #[tokio::test]
    async fn needs_accumulate_clear_one_by_one_and_old_ones_are_given_up() {
        let (_dir, platform, clock) = migrated_platform().await;
        let now = clock.now_ms();
        record_needs(&platform, "AC1", "PN1", now - 1_000, Needs::TRANSCRIPT, now).unwrap();
        record_needs(
            &platform,
            "AC1",
            "PN1",
            now - 1_000,
            Needs::SUMMARY,
            now + 5,
        )
        .unwrap();
        record_needs(
            &platform,
            "AC2",
            "PN1",
            now - 8 * 86_400_000,
            Needs::VOICEMAIL,
            now,
        )
        .unwrap();
        record_needs(&platform, "AC3", "PN2", now, Needs::NONE, now).unwrap();
        let due_now = due(&platform, "PN1", now, 10).unwrap();
        assert_eq!(due_now.len(), 2);
        let ac1 = due_now.iter().find(|c| c.call_id == "AC1").unwrap();
        assert_eq!(ac1.needs, Needs::TRANSCRIPT.with(Needs::SUMMARY));

        satisfied(&platform, "AC1", Needs::TRANSCRIPT).unwrap();
        satisfied(&platform, "AC-unknown", Needs::TRANSCRIPT).unwrap();
        assert_eq!(
            due(&platform, "PN1", now, 10)
                .unwrap()
                .iter()
                .find(|c| c.call_id == "AC1")
                .unwrap()
                .needs,
            Needs::SUMMARY
        );
        satisfied(&platform, "AC1", Needs::SUMMARY).unwrap();
        assert!(due(&platform, "PN1", now, 10)
            .unwrap()
            .iter()
            .all(|c| c.call_id != "AC1"));

        assert_eq!(give_up_old(&platform, now - 7 * 86_400_000).unwrap(), 1);
        assert!(due(&platform, "PN1", now, 10).unwrap().is_empty());
        assert_eq!(
            give_up_old(&platform, now - 7 * 86_400_000).unwrap(),
            0,
            "given up once"
        );
        assert!(
            due(&platform, "PN2", now, 10).unwrap().is_empty(),
            "nothing recorded for no needs"
        );
    }

    #[test]
    fn checks_back_off_up_to_six_hours() {
        assert_eq!(next_check_after(0, 0), 15 * 60_000);
        assert_eq!(next_check_after(0, 1), 30 * 60_000);
        assert_eq!(next_check_after(0, 9), 360 * 60_000);
    }
}
