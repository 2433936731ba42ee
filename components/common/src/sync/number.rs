//! One OpenPhone number's sync, under the number's lease (the one the drain takes, so a number's webhook
//! events and its sync never write at the same time).
//!
//! OpenPhone v1 lists calls and messages only per participant, so a *pass* goes: the number's
//! conversations updated since its cursor (`GET /v1/conversations?phoneNumbers[]=…&updatedAfter=…`,
//! newest first, pages of 100) → for each conversation, its calls (1:1 conversations only: calls take
//! exactly one participant) and its messages (every participant) created since that conversation was last
//! synced, all pages → each item Notion lacks is written through the [`Writer`]; an item already in the
//! page map costs no Notion request, unless it is a text listed with a later status than the one written
//! (one update). Calls of every status are synced, missed calls and voicemails included; what a call
//! still lacks is recorded as [`pending`] work, an outgoing text not yet delivered as
//! [`messages`] to ask for again.
//!
//! Items that predate the app are looked up in Notion in bulk ([`Writer::look_up_existing`]: the pages
//! created in the pass's window, read once, about one query per 100 pages) instead of one query each;
//! and before each write the sync lets the number's waiting webhook events in
//! ([`interleave`](super::interleave)).
//!
//! `GET /v1/calls` lists one user's calls: `userId`'s, or the workspace owner's without it
//! (openphone-api.md §4.2). So a conversation's calls are listed once per user of the number (its
//! `users` in `GET /v1/phone-numbers`, as stored by [`crate::phone_numbers`]) and de-duplicated by call
//! id; a number with one user costs one listing as before, naming that user (who need not be the owner),
//! and one whose users are unknown is listed without `userId`.
//!
//! Cursor and checkpoint rules (columns of `phone_numbers`):
//!
//! - A pass covers conversations updated in `(pass_from, pass_until]`: `pass_from` is the cursor minus
//!   [`SyncOptions::overlap_ms`] (or `since`, or 24 h back on the first pass), `pass_until` the time the
//!   pass started. Both are stored when it starts, so an interrupted pass resumes with the same query.
//! - `page_token` (the next conversations page) is stored only after every conversation of a page was
//!   synced without a transient failure; a pass cut off mid-page resumes at that page, and what it had
//!   already written is found in the page map (no duplicate, no Notion request).
//! - When the last page is done, one statement sets `cursor_at = pass_until` and clears the pass.
//! - Each conversation records up to when its items are synced (`sync_conversations`), only when all of
//!   its items succeeded; its next listing starts there. A conversation that got new activity during a
//!   pass drops out of that pass's listing, and is caught up from its own mark by the next one.
//! - An item that fails for good (bad data, a refused request) is reported and does not hold the cursor
//!   back; a transient failure does, and the next run tries again.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::interleave::Interleave;
use super::messages;
use super::recheck::{self, RecheckReport};
use super::requests::{self, Requests};
use super::{iso, record_history, LeasedNumber, SyncOptions, SyncSettings};
use crate::domain::parse_iso;
use crate::domain::{MessageStatus, E164};
use crate::lease::{Lease, LeaseLost};
use crate::notion::Notion;
use crate::openphone::types::{Call, Message, PhoneNumberUser};
use crate::openphone::{OpenPhone, Page};
use crate::outbound::{ApiError, Failure};
use crate::pages::map::{Kind, PageMap};
use crate::pages::messages::status_rank;
use crate::pages::{WriteError, Writer};
use crate::pending::{self, Needs};
use crate::platform::{Platform, Value};

/// How a number's sync ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberOutcome {
    /// The pass reached its end: the cursor moved to the pass's start.
    #[default]
    Complete,
    /// Stopped early (time budget, lease lost); the next run resumes from the checkpoint.
    Partial,
    /// The lease was held elsewhere (the drain) the whole time it waited; nothing was done.
    Busy,
    /// Stopped by an error; the next run resumes from the checkpoint.
    Failed,
}

/// What one number's sync did (also the JSON answer of `phone-sync`'s private route).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NumberReport {
    /// `PN…`.
    pub phone_number_id: String,
    /// How it ended.
    pub outcome: NumberOutcome,
    /// Conversations listed.
    pub conversations: u32,
    /// Call pages written (created, or found and updated).
    pub calls_written: u32,
    /// Message pages written.
    pub messages_written: u32,
    /// Items listed that already had a page.
    pub already_synced: u32,
    /// Message pages whose status was written because it moved since the page was written (listed
    /// again with a later status, or settled while [`messages`] watched it).
    #[serde(default)]
    pub statuses_updated: u32,
    /// Items written to pages the bulk lookups found in Notion (an earlier tool's), not created again.
    #[serde(default)]
    pub found_in_notion: u32,
    /// The number's webhook events processed between the sync's pages (see [`super::interleave`]).
    #[serde(default)]
    pub events_let_in: u32,
    /// Outgoing texts whose delivery was asked for again.
    #[serde(default)]
    pub unsettled: super::messages::SettleReport,
    /// Items that failed for good, with why (the first few).
    pub failures: Vec<String>,
    /// Pending calls re-checked.
    pub pending: RecheckReport,
    /// API requests made.
    pub requests: Requests,
    /// The number's cursor after the sync (ISO-8601).
    pub cursor: Option<String>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

impl NumberReport {
    /// A report of a sync that could not run.
    pub fn failed(phone_number_id: &str, error: String) -> Self {
        Self {
            phone_number_id: phone_number_id.to_owned(),
            outcome: NumberOutcome::Failed,
            error: Some(error),
            ..Self::default()
        }
    }
}

/// Failures kept in a report; more are counted in the logs only.
const MAX_REPORTED_FAILURES: usize = 20;
/// How often a sync waiting for the lease tries again.
const LEASE_POLL_MS: u64 = 2_000;

/// Syncs number `phone_number_id`: a pass from its cursor (or from `since`, epoch ms, when given and
/// earlier), then its pending calls. Never fails: the report says what happened.
pub async fn sync_number(
    platform: &Platform,
    settings: &SyncSettings,
    phone_number_id: &str,
    since: Option<i64>,
) -> NumberReport {
    let span = tracing::info_span!("sync.number", phone_number_id);
    async {
        let (platform, counter) = requests::counted(platform, settings.services());
        let mut report = NumberReport {
            phone_number_id: phone_number_id.to_owned(),
            ..NumberReport::default()
        };
        if let Err(e) =
            sync_under_lease(&platform, settings, phone_number_id, since, &mut report).await
        {
            report.outcome = NumberOutcome::Failed;
            report.error = Some(format!("{e:#}"));
        }
        report.requests = counter.requests();
        if let Err(e) = record_outcome(&platform, phone_number_id, &mut report) {
            tracing::warn!(error = %format!("{e:#}"), "recording the number's sync failed");
        }
        tracing::info!(
            outcome = ?report.outcome,
            conversations = report.conversations,
            calls = report.calls_written,
            messages = report.messages_written,
            already = report.already_synced,
            requests = report.requests.total(),
            "number synced"
        );
        report
    }
    .instrument(span)
    .await
}

async fn sync_under_lease(
    platform: &Platform,
    settings: &SyncSettings,
    phone_number_id: &str,
    since: Option<i64>,
    report: &mut NumberReport,
) -> anyhow::Result<()> {
    let options = &settings.options;
    let Some(lease) = acquire(platform, phone_number_id, options).await? else {
        report.outcome = NumberOutcome::Busy;
        report.error = Some(
            "the number's lease stayed held elsewhere (its webhook events are being written)"
                .into(),
        );
        return Ok(());
    };
    let openphone = OpenPhone::new(platform, &settings.pages.openphone);
    let notion = Notion::new(platform, &settings.pages.notion);
    let writer = settings
        .pages
        .writer(platform, &notion, &openphone, &lease)?;
    let Some(known) = crate::phone_numbers::resolve(platform, &openphone, phone_number_id).await?
    else {
        anyhow::bail!("{phone_number_id} is not one of the workspace's phone numbers");
    };
    let started = platform.clock.now_ms();
    let pass = begin_pass(platform, phone_number_id, since, started, options)?;
    let interleave = Interleave::new(platform, settings, &lease, phone_number_id);
    report.events_let_in += interleave.let_in().await;
    let sync = NumberSync {
        platform,
        settings,
        openphone: &openphone,
        writer: &writer,
        lease: &lease,
        map: PageMap::new(platform),
        phone_number_id,
        own_numbers: own_numbers(platform, settings)?,
        call_users: call_users(&known.users),
        deadline: started + options.number_budget_ms,
        pass,
        interleave: &interleave,
    };
    let interrupted = sync.run_pass(report).await;
    match &interrupted {
        Ok(()) => report.outcome = NumberOutcome::Complete,
        Err(Interrupted::OutOfTime) => report.outcome = NumberOutcome::Partial,
        Err(Interrupted::LeaseLost(lost)) => {
            report.outcome = NumberOutcome::Partial;
            report.error = Some(lost.to_string());
        }
        Err(Interrupted::Failed(error)) => {
            report.outcome = NumberOutcome::Failed;
            report.error = Some(error.clone());
        }
    }
    // The pending re-check writes pages too, so only while the lease and the time hold.
    if !matches!(
        interrupted,
        Err(Interrupted::LeaseLost(_) | Interrupted::OutOfTime)
    ) {
        let leased = LeasedNumber {
            platform,
            openphone: &openphone,
            writer: &writer,
            lease: &lease,
            phone_number_id,
        };
        match recheck::recheck(&leased, options).await {
            Ok(recheck) => report.pending = recheck,
            Err(e) => report.pending.errors.push(format!("{e:#}")),
        }
        report.events_let_in += interleave.let_in().await;
        match messages::recheck(&leased).await {
            Ok(settled) => {
                report.statuses_updated += settled.updated;
                report.unsettled = settled;
            }
            Err(e) => report.unsettled.errors.push(format!("{e:#}")),
        }
    }
    report.events_let_in += interleave.let_in().await;
    report.found_in_notion = writer.pages_found();
    lease.release();
    Ok(())
}

/// Takes the number's lease, waiting up to [`SyncOptions::lease_wait_ms`] while someone else holds it.
async fn acquire(
    platform: &Platform,
    name: &str,
    options: &SyncOptions,
) -> anyhow::Result<Option<Lease>> {
    let deadline = platform.clock.now_ms() + options.lease_wait_ms;
    loop {
        if let Some(lease) = Lease::acquire(platform, name, options.lease)? {
            return Ok(Some(lease));
        }
        if platform.clock.now_ms() >= deadline {
            return Ok(None);
        }
        platform.clock.sleep_ms(LEASE_POLL_MS).await;
    }
}

/// The conversations listing of one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pass {
    /// `updatedAfter` of the conversations listing.
    from: i64,
    /// The cursor once the pass is complete.
    until: i64,
    /// Nothing created before this is synced (the number's first lower bound).
    origin: i64,
    /// The next page; `None` for the first.
    token: Option<String>,
}

/// Starts a pass, or resumes the one in progress, and stores it.
fn begin_pass(
    platform: &Platform,
    phone_number_id: &str,
    since: Option<i64>,
    now: i64,
    options: &SyncOptions,
) -> anyhow::Result<Pass> {
    let rows = platform.sql.execute(
        "SELECT cursor_at, page_token, pass_from, pass_until, sync_origin_at FROM phone_numbers WHERE id = ?1",
        &[phone_number_id.into()],
    )?;
    let row = rows
        .first()
        .ok_or_else(|| anyhow::anyhow!("{phone_number_id} is not stored"))?;
    let cursor = row.opt_i64("cursor_at")?;
    let in_progress = match (row.opt_i64("pass_from")?, row.opt_i64("pass_until")?) {
        (Some(from), Some(until)) => Some((from, until)),
        _ => None,
    };
    let regular_from = cursor.map_or(now - options.default_lookback_ms, |c| {
        c - options.overlap_ms
    });
    let (from, until, token) = match (since, in_progress) {
        // `since` only ever widens a pass: what the cursor does not cover yet is never skipped.
        (Some(since), _) => {
            let known = [
                in_progress.map(|(from, _)| from),
                cursor.map(|c| c - options.overlap_ms),
            ];
            (known.into_iter().flatten().fold(since, i64::min), now, None)
        }
        (None, Some((from, until))) => (from, until, row.opt_str("page_token")?.map(String::from)),
        (None, None) => (regular_from, now, None),
    };
    let origin = row.opt_i64("sync_origin_at")?.map_or(from, |o| o.min(from));
    let pass = Pass {
        from,
        until,
        origin,
        token,
    };
    platform.sql.execute(
        "UPDATE phone_numbers SET pass_from = ?2, pass_until = ?3, page_token = ?4, sync_origin_at = ?5,
                                  last_sync_started_at = ?6
         WHERE id = ?1",
        &[
            phone_number_id.into(),
            pass.from.into(),
            pass.until.into(),
            Value::from(pass.token.clone()),
            pass.origin.into(),
            now.into(),
        ],
    )?;
    Ok(pass)
}

/// The workspace's own numbers: never a conversation's participant to list by.
fn own_numbers(platform: &Platform, settings: &SyncSettings) -> anyhow::Result<HashSet<String>> {
    let rows = platform
        .sql
        .execute("SELECT number FROM phone_numbers", &[])?;
    let mut own: HashSet<String> = settings
        .pages
        .sync
        .self_phone_numbers
        .iter()
        .map(|n| n.to_string())
        .collect();
    for row in rows.iter() {
        own.insert(normalized(row.str("number")?));
    }
    Ok(own)
}

/// Whose calls to list, one `GET /v1/calls` listing each: every user of the number (ids once each, in
/// OpenPhone's order), or `[None]` (no `userId`: the owner's calls) when its users are unknown.
fn call_users(users: &[PhoneNumberUser]) -> Vec<Option<String>> {
    let mut ids: Vec<Option<String>> = Vec::with_capacity(users.len().max(1));
    for user in users {
        let id = user.id.trim();
        if !id.is_empty() && !ids.iter().flatten().any(|known| known == id) {
            ids.push(Some(id.to_owned()));
        }
    }
    if ids.is_empty() {
        ids.push(None);
    }
    ids
}

fn normalized(number: &str) -> String {
    E164::parse(number).map_or_else(|_| number.trim().to_owned(), |n| n.to_string())
}

/// A conversation as `GET /v1/conversations` lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Conversation {
    id: String,
    #[serde(default)]
    participants: Vec<String>,
}

/// Why a pass stopped before its end.
#[derive(Debug)]
enum Interrupted {
    /// The number's time budget is spent.
    OutOfTime,
    /// The lease ran out; someone else may be writing now.
    LeaseLost(LeaseLost),
    /// A failure that may pass (the API, the database); nothing past it was checkpointed.
    Failed(String),
}

/// Why an item or a conversation did not complete.
enum Halt {
    /// It did not complete, but the pass may go on with others (nothing past it is checkpointed).
    Incomplete(String),
    /// The pass must stop now.
    Stop(Interrupted),
}

impl From<LeaseLost> for Halt {
    fn from(lost: LeaseLost) -> Self {
        Halt::Stop(Interrupted::LeaseLost(lost))
    }
}

impl From<anyhow::Error> for Halt {
    fn from(e: anyhow::Error) -> Self {
        Halt::Incomplete(format!("storage: {e:#}"))
    }
}

/// How far a listing of a conversation's calls or texts, page after page, has got.
struct Listing<'q> {
    path: &'static str,
    /// What it lists by (the number and the paging are added to each request).
    query: &'q [(&'q str, &'q str)],
    /// The next page's token (`None` for the first page).
    token: Option<String>,
    /// The last page was listed.
    finished: bool,
}

impl<'q> Listing<'q> {
    fn new(path: &'static str, query: &'q [(&'q str, &'q str)]) -> Self {
        Self {
            path,
            query,
            token: None,
            finished: false,
        }
    }
}

/// A call or a text as a listing returns it.
trait Listed: serde::de::DeserializeOwned {
    /// What its page is.
    const KIND: Kind;

    /// Its id and when it was created (ISO-8601), for the bulk lookup of existing pages.
    fn listed(&self) -> (&str, Option<&str>);
}

impl Listed for Call {
    const KIND: Kind = Kind::Call;

    fn listed(&self) -> (&str, Option<&str>) {
        (&self.id, self.created_at.as_deref())
    }
}

impl Listed for Message {
    const KIND: Kind = Kind::Message;

    fn listed(&self) -> (&str, Option<&str>) {
        (&self.id, self.created_at.as_deref())
    }
}

struct NumberSync<'a> {
    platform: &'a Platform,
    settings: &'a SyncSettings,
    openphone: &'a OpenPhone<'a>,
    writer: &'a Writer<'a>,
    lease: &'a Lease,
    map: PageMap<'a>,
    phone_number_id: &'a str,
    own_numbers: HashSet<String>,
    /// The `userId` of each calls listing of a conversation (see [`call_users`]).
    call_users: Vec<Option<String>>,
    deadline: i64,
    pass: Pass,
    interleave: &'a Interleave<'a>,
}

impl NumberSync<'_> {
    fn options(&self) -> &SyncOptions {
        &self.settings.options
    }

    fn out_of_time(&self) -> bool {
        self.platform.clock.now_ms() >= self.deadline
    }

    async fn run_pass(mut self, report: &mut NumberReport) -> Result<(), Interrupted> {
        let mut restarted = false;
        loop {
            if self.out_of_time() {
                return Err(Interrupted::OutOfTime);
            }
            self.lease.check().map_err(Interrupted::LeaseLost)?;
            let page = match self.list_conversations().await {
                Ok(page) => page,
                // A checkpointed token OpenPhone no longer accepts: the pass starts over from its first
                // page (same bounds, so nothing is skipped; done items cost no Notion request).
                Err(ApiError::Refused { status: 400, .. })
                    if self.pass.token.is_some() && !restarted =>
                {
                    restarted = true;
                    self.pass.token = None;
                    self.checkpoint(None)
                        .map_err(|e| Interrupted::Failed(format!("{e:#}")))?;
                    continue;
                }
                Err(e) => return Err(Interrupted::Failed(format!("listing conversations: {e}"))),
            };
            let mut incomplete = None;
            for conversation in page.data {
                report.conversations += 1;
                if self.out_of_time() {
                    return Err(Interrupted::OutOfTime);
                }
                match self.sync_conversation(&conversation, report).await {
                    Ok(()) => {}
                    Err(Halt::Incomplete(why)) => {
                        tracing::warn!(conversation = %conversation.id, error = %why, "conversation not complete");
                        incomplete.get_or_insert(why);
                    }
                    Err(Halt::Stop(interrupted)) => return Err(interrupted),
                }
            }
            if let Some(why) = incomplete {
                return Err(Interrupted::Failed(why));
            }
            match page.next_page_token {
                Some(token) => {
                    self.checkpoint(Some(&token))
                        .map_err(|e| Interrupted::Failed(format!("{e:#}")))?;
                    self.pass.token = Some(token);
                }
                None => {
                    self.complete()
                        .map_err(|e| Interrupted::Failed(format!("{e:#}")))?;
                    return Ok(());
                }
            }
        }
    }

    async fn list_conversations(&self) -> Result<Page<Conversation>, ApiError> {
        let from = iso(self.pass.from);
        let max = self.options().page_size.to_string();
        let mut query = vec![
            ("phoneNumbers[]", self.phone_number_id),
            ("updatedAfter", from.as_str()),
            ("maxResults", max.as_str()),
        ];
        if let Some(token) = &self.pass.token {
            query.push(("pageToken", token.as_str()));
        }
        self.openphone.list("/v1/conversations", &query).await
    }

    fn checkpoint(&self, token: Option<&str>) -> anyhow::Result<()> {
        self.platform.sql.execute(
            "UPDATE phone_numbers SET page_token = ?2 WHERE id = ?1 AND pass_until = ?3",
            &[
                self.phone_number_id.into(),
                Value::from(token),
                self.pass.until.into(),
            ],
        )?;
        Ok(())
    }

    fn complete(&self) -> anyhow::Result<()> {
        self.platform.sql.execute(
            "UPDATE phone_numbers SET cursor_at = ?3, page_token = NULL, pass_from = NULL, pass_until = NULL,
                                      last_sync_finished_at = ?4, last_sync_error = NULL
             WHERE id = ?1 AND pass_until = ?2",
            &[
                self.phone_number_id.into(),
                self.pass.until.into(),
                self.pass.until.into(),
                self.platform.clock.now_ms().into(),
            ],
        )?;
        Ok(())
    }

    /// The lower bound of a conversation's items: its own mark (minus the overlap) or, for a conversation
    /// never synced, the number's origin; never later than the pass's own bound.
    fn items_after(&self, conversation_id: &str) -> anyhow::Result<i64> {
        let rows = self.platform.sql.execute(
            "SELECT synced_until FROM sync_conversations WHERE id = ?1",
            &[conversation_id.into()],
        )?;
        let mark = rows.first().map(|r| r.i64("synced_until")).transpose()?;
        let after = mark.map_or(self.pass.origin, |m| m - self.options().overlap_ms);
        Ok(after.min(self.pass.from))
    }

    fn mark_conversation(&self, conversation_id: &str, synced_until: i64) -> anyhow::Result<()> {
        self.platform.sql.execute(
            "INSERT INTO sync_conversations (id, phone_number_id, synced_until, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET synced_until = max(sync_conversations.synced_until, excluded.synced_until),
                                            updated_at = excluded.updated_at",
            &[
                conversation_id.into(),
                self.phone_number_id.into(),
                synced_until.into(),
                self.platform.clock.now_ms().into(),
            ],
        )?;
        Ok(())
    }

    async fn sync_conversation(
        &self,
        conversation: &Conversation,
        report: &mut NumberReport,
    ) -> Result<(), Halt> {
        let mut participants: Vec<String> = Vec::new();
        for participant in conversation.participants.iter().map(|p| normalized(p)) {
            if !self.own_numbers.contains(&participant) && !participants.contains(&participant) {
                participants.push(participant);
            }
        }
        let listed_at = self.platform.clock.now_ms();
        if participants.is_empty() {
            self.mark_conversation(&conversation.id, listed_at)?;
            return Ok(());
        }
        let after = iso(self.items_after(&conversation.id)?);
        let mut incomplete = None;
        // Calls can be listed for exactly one participant: a group conversation has texts only.
        if let [participant] = participants.as_slice() {
            self.sync_calls(
                &conversation.id,
                participant,
                &after,
                report,
                &mut incomplete,
            )
            .await?;
        }
        let mut query: Vec<(&str, &str)> = participants
            .iter()
            .map(|p| ("participants", p.as_str()))
            .collect();
        query.push(("createdAfter", after.as_str()));
        let mut listing = Listing::new("/v1/messages", &query);
        while let Some(messages) = self.next_page::<Message>(&mut listing, report).await? {
            for message in messages {
                note(
                    self.sync_message(message, &conversation.id, report).await,
                    &mut incomplete,
                )?;
            }
        }
        match incomplete {
            Some(why) => Err(Halt::Incomplete(why)),
            None => {
                self.mark_conversation(&conversation.id, listed_at)?;
                Ok(())
            }
        }
    }

    /// The calls with `participant` created after `after`, listed for each of [`Self::call_users`] (all
    /// pages) and synced once each: a call both listings return is skipped the second time.
    async fn sync_calls(
        &self,
        conversation_id: &str,
        participant: &str,
        after: &str,
        report: &mut NumberReport,
        incomplete: &mut Option<String>,
    ) -> Result<(), Halt> {
        let mut seen: HashSet<String> = HashSet::new();
        for user in &self.call_users {
            let mut query = vec![("participants", participant), ("createdAfter", after)];
            if let Some(user) = user {
                query.push(("userId", user.as_str()));
            }
            let mut listing = Listing::new("/v1/calls", &query);
            while let Some(calls) = self.next_page::<Call>(&mut listing, report).await? {
                for call in calls {
                    if !seen.insert(call.id.clone()) {
                        continue;
                    }
                    note(
                        self.sync_call(call, conversation_id, report).await,
                        incomplete,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The items of `listing`'s next page for this number, their pages from an earlier tool looked up in
    /// bulk ([`Self::look_up`]): `None` after the last page, or when OpenPhone refuses the listing for good
    /// (reported: asking again would be refused again, e.g. a participant it cannot list by).
    async fn next_page<T: Listed>(
        &self,
        listing: &mut Listing<'_>,
        report: &mut NumberReport,
    ) -> Result<Option<Vec<T>>, Halt> {
        if listing.finished {
            return Ok(None);
        }
        if self.out_of_time() {
            return Err(Halt::Stop(Interrupted::OutOfTime));
        }
        let path = listing.path;
        let max = self.options().page_size.to_string();
        let mut full: Vec<(&str, &str)> = vec![("phoneNumberId", self.phone_number_id)];
        full.extend_from_slice(listing.query);
        full.push(("maxResults", max.as_str()));
        if let Some(token) = &listing.token {
            full.push(("pageToken", token.as_str()));
        }
        let page: Page<T> = match self.openphone.list(path, &full).await {
            Ok(page) => page,
            Err(e) if e.is_transient() => {
                return Err(Halt::Incomplete(format!("listing {path}: {e}")))
            }
            Err(e) => {
                failure(
                    report,
                    format!("listing {path} for {}: {e}", self.phone_number_id),
                );
                return Ok(None);
            }
        };
        listing.token = page.next_page_token;
        listing.finished = listing.token.is_none();
        let items: Vec<(&str, Option<&str>)> = page.data.iter().map(T::listed).collect();
        self.look_up(T::KIND, &items).await;
        Ok(Some(page.data))
    }

    /// Finds in bulk the pages an earlier tool made for a listing page's items (see
    /// [`Writer::look_up_existing`]). A failed lookup costs only the saving: each item then queries for
    /// itself as before.
    async fn look_up(&self, kind: Kind, items: &[(&str, Option<&str>)]) {
        // Every item a pass lists was created after its conversation's lower bound, none of which is
        // earlier than the number's origin less the overlap.
        let items_from = self.pass.origin - self.options().overlap_ms;
        if let Err(e) = self.writer.look_up_existing(kind, items, items_from).await {
            tracing::warn!(error = %e, kind = kind.as_str(), "looking up existing pages failed; each item looks for itself");
        }
    }

    /// Before a write of its own, the sync lets in the number's webhook events that are waiting.
    async fn let_events_in(&self, report: &mut NumberReport) {
        report.events_let_in += self.interleave.let_in().await;
    }

    /// Adds the backfill's `sync_history` row for item `id` (see [`record_history`]).
    fn record_history(&self, kind: Kind, id: &str, result: Result<&str, &str>) {
        record_history(
            self.platform,
            self.phone_number_id,
            kind.as_str(),
            id,
            "backfill",
            result,
        );
    }

    fn has_page(&self, kind: Kind, id: &str) -> anyhow::Result<bool> {
        Ok(self
            .map
            .get(kind, id)?
            .is_some_and(|row| row.page_id.is_some()))
    }

    async fn sync_call(
        &self,
        call: Call,
        conversation_id: &str,
        report: &mut NumberReport,
    ) -> Result<(), Halt> {
        if self.has_page(Kind::Call, &call.id)? {
            report.already_synced += 1;
            return Ok(());
        }
        self.let_events_in(report).await;
        let now = self.platform.clock.now_ms();
        let created_at = call
            .created_at
            .as_deref()
            .and_then(parse_iso)
            .unwrap_or(now);
        let expected = Needs::expected(&call);
        // The listed call is its current state: no `GET /v1/calls/{id}`.
        let fetched = recheck::fetch(
            self.openphone,
            &call.id,
            self.phone_number_id,
            created_at,
            expected.without(Needs::CALL),
            now,
            self.options(),
        )
        .await;
        let waiting = if expected.contains(Needs::CALL) {
            fetched.waiting.with(Needs::CALL)
        } else {
            fetched.waiting
        };
        let mut facts = fetched.facts;
        let call_id = call.id.clone();
        facts.call = Some(Call {
            conversation_id: or_listed_under(call.conversation_id, conversation_id),
            phone_number_id: or_listed_under(call.phone_number_id, self.phone_number_id),
            ..call
        });
        self.lease.check()?;
        let result = self.writer.calls().apply(&facts).await;
        let next = pending::next_check_after(now, 0);
        match result {
            Ok(page_id) => {
                report.calls_written += 1;
                self.record_history(Kind::Call, &call_id, Ok(&page_id));
                pending::record_needs(
                    self.platform,
                    &call_id,
                    self.phone_number_id,
                    created_at,
                    waiting,
                    next,
                )?;
                pending::satisfied(self.platform, &call_id, fetched.delivered)?;
                Ok(())
            }
            Err(WriteError::LeaseLost(lost)) => Err(lost.into()),
            Err(e) => {
                let message = format!("call {call_id}: {e}");
                self.record_history(Kind::Call, &call_id, Err(&message));
                if is_permanent(&e) {
                    failure(report, message);
                    return Ok(());
                }
                // The page may exist by now without all of it (a section append failed): the re-check
                // writes what it lacks, since the next pass will find the page and skip the call.
                let retry = waiting.with(fetched.delivered);
                pending::record_needs(
                    self.platform,
                    &call_id,
                    self.phone_number_id,
                    created_at,
                    retry,
                    now,
                )?;
                Err(Halt::Incomplete(message))
            }
        }
    }

    async fn sync_message(
        &self,
        message: Message,
        conversation_id: &str,
        report: &mut NumberReport,
    ) -> Result<(), Halt> {
        let existing = self
            .map
            .get(Kind::Message, &message.id)?
            .filter(|row| row.page_id.is_some());
        let status_moved = match &existing {
            None => false,
            // A page people deleted stays deleted; one whose status is as far along is left alone.
            Some(row) => {
                !self.map.is_gone(Kind::Message, &message.id)?
                    && row
                        .status_rank
                        .is_none_or(|written| status_rank(message.status.as_ref()) > written)
            }
        };
        if let Some(row) = existing.as_ref().filter(|_| !status_moved) {
            report.already_synced += 1;
            // A page already showing a settled status (a webhook's) need not be asked about.
            if row.status_rank < Some(MessageStatus::Delivered.rank()) {
                messages::track(self.platform, self.phone_number_id, &message)?;
            }
            return Ok(());
        }
        self.let_events_in(report).await;
        let message = Message {
            conversation_id: or_listed_under(message.conversation_id, conversation_id),
            phone_number_id: or_listed_under(message.phone_number_id, self.phone_number_id),
            ..message
        };
        self.lease.check()?;
        match self.writer.messages().upsert(&message).await {
            Ok(page_id) => {
                // A page found by the lookup has no status of ours yet: it is written, not updated.
                if existing.is_some_and(|row| row.status_rank.is_some()) {
                    report.statuses_updated += 1;
                } else {
                    report.messages_written += 1;
                }
                messages::track(self.platform, self.phone_number_id, &message)?;
                self.record_history(Kind::Message, &message.id, Ok(&page_id));
                Ok(())
            }
            Err(WriteError::LeaseLost(lost)) => Err(lost.into()),
            Err(e) => {
                let text = format!("message {}: {e}", message.id);
                self.record_history(Kind::Message, &message.id, Err(&text));
                if is_permanent(&e) {
                    failure(report, text);
                    Ok(())
                } else {
                    Err(Halt::Incomplete(text))
                }
            }
        }
    }
}

/// The conversation or number OpenPhone gave for a listed item, else the one it was listed under.
fn or_listed_under(given: Option<String>, listed_under: &str) -> Option<String> {
    given.or_else(|| Some(listed_under.to_owned()))
}

/// Keeps the first "incomplete" and goes on; stops on anything else.
fn note(result: Result<(), Halt>, incomplete: &mut Option<String>) -> Result<(), Halt> {
    match result {
        Ok(()) => Ok(()),
        Err(Halt::Incomplete(why)) => {
            incomplete.get_or_insert(why);
            Ok(())
        }
        Err(stop) => Err(stop),
    }
}

fn is_permanent(error: &WriteError) -> bool {
    !error.is_transient()
}

fn failure(report: &mut NumberReport, message: String) {
    tracing::warn!(error = %message, "item not synced");
    if report.failures.len() < MAX_REPORTED_FAILURES {
        report.failures.push(message);
    }
}

/// Records the end of a sync on the number's row, and reads its cursor into the report.
fn record_outcome(
    platform: &Platform,
    phone_number_id: &str,
    report: &mut NumberReport,
) -> anyhow::Result<()> {
    if report.outcome != NumberOutcome::Complete {
        platform.sql.execute(
            "UPDATE phone_numbers SET last_sync_error = ?2 WHERE id = ?1",
            &[phone_number_id.into(), Value::from(report.error.clone())],
        )?;
    }
    let rows = platform.sql.execute(
        "SELECT cursor_at FROM phone_numbers WHERE id = ?1",
        &[phone_number_id.into()],
    )?;
    report.cursor = rows
        .first()
        .and_then(|r| r.opt_i64("cursor_at").ok().flatten())
        .map(iso);
    Ok(())
}

#[cfg(test)]
mod call_users_tests {
    use super::*;

    fn user(id: &str) -> PhoneNumberUser {
        PhoneNumberUser {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn calls_are_listed_per_user_once_or_for_the_owner_when_none_is_known() {
        assert_eq!(call_users(&[]), vec![None]);
        assert_eq!(call_users(&[user(" ")]), vec![None]);
        assert_eq!(call_users(&[user("US1")]), vec![Some("US1".to_owned())]);
        assert_eq!(
            call_users(&[user("US1"), user("US2"), user("US1")]),
            vec![Some("US1".to_owned()), Some("US2".to_owned())]
        );
    }
}
