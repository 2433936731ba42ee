//! The re-check of calls still waiting for something OpenPhone produces after the call (the record is
//! [`crate::pending`]): asks OpenPhone for only what each due call lacks, and writes what arrived to the
//! call's page. Runs on every tick ([`recheck_due`]) and in the periodic sync of a number ([`recheck`]).

use serde::{Deserialize, Serialize};

use super::{LeasedNumber, SyncOptions};
use crate::domain::ProcessingStatus;
use crate::lease::Lease;
use crate::openphone::types::{Recording, Summary, Transcript, Voicemail};
use crate::openphone::OpenPhone;
use crate::outbound::{ApiError, Failure};
use crate::pages::calls::{CallFacts, RecordingLink, VoicemailLink};
use crate::pages::WriteError;
use crate::pending::{checked, due, is_final, next_check_after, record_needs, Needs};
use crate::platform::Platform;

/// Numbers re-checked per tick, at most.
const NUMBERS_PER_TICK: u32 = 3;

/// What the tick's re-check did, when anything was due.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueRecheck {
    /// Numbers whose due calls were re-checked.
    pub numbers: u32,
    /// Numbers skipped because their lease was held (the drain or the sync is writing them).
    pub busy: u32,
    /// Calls checked, and calls whose page got something.
    pub checked: u32,
    /// Calls whose page got what had arrived.
    pub filled: u32,
}

/// Re-checks the calls that are due on every tick, not only during the periodic sync (every
/// `sync_interval_minutes`, six hours by default): a voicemail still processing when its call completed
/// is on the page within minutes. Each number is re-checked under its lease, taken without waiting (a
/// number whose lease is held is left for a later tick).
pub async fn recheck_due(
    platform: &Platform,
    settings: &crate::configuration::Settings,
) -> anyhow::Result<Option<DueRecheck>> {
    let now = platform.clock.now_ms();
    let numbers = platform.sql.execute(
        "SELECT DISTINCT phone_number_id FROM pending_work
         WHERE needs != 0 AND gave_up_at IS NULL AND next_check_at <= ?1 AND phone_number_id != ''
         LIMIT ?2",
        &[now.into(), NUMBERS_PER_TICK.into()],
    )?;
    if numbers.is_empty() {
        return Ok(None);
    }
    let settings = super::SyncSettings::load(settings)?;
    let numbers: Vec<String> = numbers
        .iter()
        .map(|r| r.str("phone_number_id").map(String::from))
        .collect::<anyhow::Result<_>>()?;
    recheck_numbers(platform, &settings, &numbers)
        .await
        .map(Some)
}

/// Re-checks the due calls of each of `numbers` under its lease (see [`recheck_due`]).
pub async fn recheck_numbers(
    platform: &Platform,
    settings: &super::SyncSettings,
    numbers: &[String],
) -> anyhow::Result<DueRecheck> {
    let openphone = OpenPhone::new(platform, &settings.pages.openphone);
    let notion = crate::notion::Notion::new(platform, &settings.pages.notion);
    let mut report = DueRecheck::default();
    for number in numbers {
        let Some(lease) = Lease::acquire(platform, number, settings.options.lease)? else {
            report.busy += 1;
            continue;
        };
        let writer = settings
            .pages
            .writer(platform, &notion, &openphone, &lease)?;
        let leased = LeasedNumber {
            platform,
            openphone: &openphone,
            writer: &writer,
            lease: &lease,
            phone_number_id: number,
        };
        let done = recheck(&leased, &settings.options).await;
        drop(writer);
        lease.release();
        let done = done?;
        report.numbers += 1;
        report.checked += done.checked;
        report.filled += done.filled;
    }
    Ok(report)
}

/// What asking OpenPhone for a call's missing things found.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// What to write to the page (only what arrived).
    pub facts: CallFacts,
    /// What arrived.
    pub delivered: Needs,
    /// What will never come (absent after the grace period, failed, refused).
    pub settled: Needs,
    /// What may still come.
    pub waiting: Needs,
    /// Failures worth showing (transient ones leave the need waiting).
    pub errors: Vec<String>,
}

/// How OpenPhone answered for one need.
enum Answer {
    Delivered,
    InProgress,
    Absent,
    Never,
}

fn status_answer(status: Option<&ProcessingStatus>) -> Answer {
    use ProcessingStatus::*;
    match status {
        Some(Completed) | None => Answer::Delivered,
        Some(InProgress | Processing | Queued) => Answer::InProgress,
        Some(Failed) => Answer::Never,
        Some(Absent | Paused | Stopping | Other(_)) => Answer::Absent,
    }
}

/// Asks OpenPhone for what `call_id` lacks (`needs`; only those), as a call of number
/// `phone_number_id` made at `call_created_at`. A call whose final state arrives is also asked for what
/// that state says it should have.
pub async fn fetch(
    openphone: &OpenPhone<'_>,
    call_id: &str,
    phone_number_id: &str,
    call_created_at: i64,
    needs: Needs,
    now: i64,
    options: &SyncOptions,
) -> Fetched {
    let young = now - call_created_at < options.pending_grace_ms;
    let mut fetched = Fetched {
        facts: CallFacts {
            call_id: call_id.to_owned(),
            phone_number_id: Some(phone_number_id.to_owned()),
            ..CallFacts::default()
        },
        ..Fetched::default()
    };
    let mut needs = needs;
    if needs.contains(Needs::CALL) {
        let answer = match openphone.call(call_id).await {
            Ok(Some(call)) if is_final(&call) => {
                needs = needs.with(Needs::expected(&call));
                fetched.facts.call = Some(call);
                Ok(Answer::Delivered)
            }
            Ok(Some(_)) => Ok(Answer::InProgress),
            Ok(None) => Ok(Answer::Never),
            Err(e) => Err(e),
        };
        fetched.settle(Needs::CALL, answer, young);
    }
    for product in Product::ALL {
        if needs.contains(product.need()) {
            let answer = product.ask(openphone, call_id, &mut fetched.facts).await;
            fetched.settle(product.need(), answer, young);
        }
    }
    fetched
}

/// What OpenPhone produces after a call, each asked for on its own.
#[derive(Debug, Clone, Copy)]
enum Product {
    Recording,
    Transcript,
    Summary,
    Voicemail,
}

impl Product {
    /// In the order they are asked for.
    const ALL: [Product; 4] = [
        Product::Recording,
        Product::Transcript,
        Product::Summary,
        Product::Voicemail,
    ];

    /// The need it fills.
    fn need(self) -> Needs {
        match self {
            Product::Recording => Needs::RECORDING,
            Product::Transcript => Needs::TRANSCRIPT,
            Product::Summary => Needs::SUMMARY,
            Product::Voicemail => Needs::VOICEMAIL,
        }
    }

    /// Asks OpenPhone for it; one that arrived goes into `facts`, as the page shows it.
    async fn ask(
        self,
        openphone: &OpenPhone<'_>,
        call_id: &str,
        facts: &mut CallFacts,
    ) -> Result<Answer, ApiError> {
        Ok(match self {
            Product::Recording => {
                let segments = openphone.call_recordings(call_id).await?;
                deliver(recordings_answer(&segments), || {
                    facts.recordings = Some(RecordingLink::completed(&segments));
                })
            }
            Product::Transcript => processed(
                openphone.call_transcript(call_id).await?,
                &mut facts.transcript,
            ),
            Product::Summary => {
                processed(openphone.call_summary(call_id).await?, &mut facts.summary)
            }
            Product::Voicemail => match openphone.call_voicemail(call_id).await? {
                None => Answer::Absent,
                Some(v) => deliver(voicemail_answer(&v), || {
                    facts.voicemail = Some(VoicemailLink::from_voicemail(&v));
                }),
            },
        })
    }
}

/// A transcript or a summary: OpenPhone produces it after the call and says how far it is.
trait Processed {
    /// How far it is (`None`: completed).
    fn status_mut(&mut self) -> &mut Option<ProcessingStatus>;
}

impl Processed for Transcript {
    fn status_mut(&mut self) -> &mut Option<ProcessingStatus> {
        &mut self.status
    }
}

impl Processed for Summary {
    fn status_mut(&mut self) -> &mut Option<ProcessingStatus> {
        &mut self.status
    }
}

/// How far a transcript or summary is (`found`: `None` when OpenPhone has none); a delivered one is kept
/// in `slot`, marked `completed` (a missing status means it is).
fn processed<T: Processed>(found: Option<T>, slot: &mut Option<T>) -> Answer {
    let Some(mut found) = found else {
        return Answer::Absent;
    };
    deliver(status_answer(found.status_mut().as_ref()), || {
        *found.status_mut() = Some(ProcessingStatus::Completed);
        *slot = Some(found);
    })
}

/// `answer`, after `keep`ing what arrived when it is delivered.
fn deliver(answer: Answer, keep: impl FnOnce()) -> Answer {
    if matches!(answer, Answer::Delivered) {
        keep();
    }
    answer
}

impl Fetched {
    fn settle(&mut self, need: Needs, answer: Result<Answer, ApiError>, young: bool) {
        let answer = match answer {
            Ok(answer) => answer,
            // 404 is read as absent by the client; another refusal (403: not on the plan, not the
            // number's user) will not change by asking again.
            Err(e) if !e.is_transient() => {
                self.errors.push(format!("{}: {e}", need.names().join(",")));
                Answer::Never
            }
            Err(e) => {
                self.errors.push(format!("{}: {e}", need.names().join(",")));
                Answer::InProgress
            }
        };
        match answer {
            Answer::Delivered => self.delivered = self.delivered.with(need),
            Answer::InProgress => self.waiting = self.waiting.with(need),
            Answer::Absent if young => self.waiting = self.waiting.with(need),
            Answer::Absent | Answer::Never => self.settled = self.settled.with(need),
        }
    }
}

fn recordings_answer(segments: &[Recording]) -> Answer {
    if segments.is_empty() {
        return Answer::Absent;
    }
    let unfinished = segments.iter().any(|s| {
        use ProcessingStatus::*;
        matches!(
            s.status,
            Some(InProgress | Processing | Paused | Stopping | Queued)
        )
    });
    if unfinished {
        Answer::InProgress
    } else if RecordingLink::completed(segments).is_empty() {
        Answer::Never
    } else {
        Answer::Delivered
    }
}

fn voicemail_answer(voicemail: &Voicemail) -> Answer {
    match (&voicemail.status, voicemail.audio_url()) {
        (Some(ProcessingStatus::InProgress), _) => Answer::InProgress,
        (_, Some(_)) => Answer::Delivered,
        (_, None) => Answer::Absent,
    }
}

/// What re-checking a number's pending calls did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecheckReport {
    /// Calls checked.
    pub checked: u32,
    /// Calls whose page got something new.
    pub filled: u32,
    /// Calls still waiting after the check.
    pub still_waiting: u32,
    /// Failures writing a page.
    pub errors: Vec<String>,
}

/// Re-checks the due pending calls of one `number`, writing what arrived to each call's page. Stops
/// when the lease is lost.
pub async fn recheck(
    number: &LeasedNumber<'_>,
    options: &SyncOptions,
) -> anyhow::Result<RecheckReport> {
    let LeasedNumber {
        platform,
        phone_number_id,
        ..
    } = *number;
    let mut report = RecheckReport::default();
    let now = platform.clock.now_ms();
    for call in due(platform, phone_number_id, now, options.pending_batch)? {
        number.lease.check()?;
        report.checked += 1;
        let fetched = fetch(
            number.openphone,
            &call.call_id,
            phone_number_id,
            call.call_created_at,
            call.needs,
            platform.clock.now_ms(),
            options,
        )
        .await;
        let mut cleared = fetched.settled;
        let mut error = fetched.errors.first().cloned();
        let record_history = |result: Result<&str, &str>| {
            super::record_history(
                platform,
                phone_number_id,
                "call",
                &call.call_id,
                "pending",
                result,
            )
        };
        if !fetched.delivered.is_empty() {
            match number.writer.calls().apply(&fetched.facts).await {
                Ok(page_id) => {
                    cleared = cleared.with(fetched.delivered);
                    report.filled += 1;
                    record_history(Ok(&page_id));
                }
                Err(WriteError::LeaseLost(lost)) => return Err(lost.into()),
                Err(e) => {
                    let message = format!("{}: {e}", call.call_id);
                    record_history(Err(&message));
                    report.errors.push(message.clone());
                    error = Some(message);
                    // A page that can never be written will not take what is still missing either.
                    if !e.is_transient() {
                        cleared = call.needs;
                    }
                }
            }
        }
        // A call whose final state arrived may need more than it was waiting for.
        let new_needs = fetched.waiting.without(call.needs);
        let next = next_check_after(platform.clock.now_ms(), call.attempts + 1);
        record_needs(
            platform,
            &call.call_id,
            phone_number_id,
            call.call_created_at,
            new_needs,
            next,
        )?;
        checked(platform, &call.call_id, cleared, next, error.as_deref())?;
        if !call.needs.with(new_needs).without(cleared).is_empty() {
            report.still_waiting += 1;
        }
    }
    Ok(report)
}
