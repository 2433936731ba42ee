//! [`OpenPhoneServer`]: OpenPhone's public API v1 (openphone-api.md) with its rules, and a media host.
//!
//! Rules enforced: the raw-key `Authorization` header (no `Bearer`), required query parameters and their
//! ranges, exactly one participant for calls, E.164 numbers (a `+` that was not percent-encoded arrives
//! as a space and is refused, as on the real API), id patterns, 10 requests per second per key (fixed
//! wall-clock windows, like the real gateway), opaque page tokens bound to their query, and a
//! deliberately inaccurate `totalItems`. Parameters the spec does not list are refused (the stricter
//! reading: a misspelt parameter must not be silently ignored).
//!
//! `GET /v1/calls` lists one user's calls, as the real API does: `userId`'s (`403 Not Phone Number User`
//! when that user is not among the number's `users`), or without it the workspace owner's
//! (openphone-api.md §4.2). The owner is [`DEFAULT_OWNER`] — the user the model's constructors
//! ([`PhoneNumber::new`], [`Call::new`], …) put everywhere — unless a test names another with
//! [`OpenPhoneServer::set_owner`]. So a client that sends no `userId` misses a shared number's calls
//! taken by anyone but the owner.

mod handlers;
mod media;
pub mod model;
mod params;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Result;
use bytes::Bytes;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use media::media_pattern;
pub use model::{
    Call, Contact, Conversation, DialogueSegment, Message, PhoneNumber, PhoneNumberUser, Recording,
    Summary, Transcript, User, Voicemail, Webhook,
};

use crate::faults::{FaultRule, Faults};
use crate::runtime::Running;
use crate::stats::{FixedWindow, RequestStats};

/// OpenPhone's documented limit: 10 requests per second per API key.
pub const RATE_LIMIT_PER_SECOND: u32 = 10;

/// The workspace owner until [`OpenPhoneServer::set_owner`] names another: the user id the model's
/// constructors use (the only user of [`PhoneNumber::new`], the user of [`Call::new`]).
pub const DEFAULT_OWNER: &str = "USowner";

/// Everything the API serves, and its counters.
#[derive(Debug)]
struct ApiState {
    api_key: String,
    /// The workspace owner: whose calls `GET /v1/calls` lists without `userId`.
    owner: String,
    phone_numbers: BTreeMap<String, PhoneNumber>,
    users: BTreeMap<String, User>,
    conversations: BTreeMap<String, Conversation>,
    calls: BTreeMap<String, Call>,
    recordings: BTreeMap<String, Vec<Recording>>,
    summaries: BTreeMap<String, Summary>,
    transcripts: BTreeMap<String, Transcript>,
    voicemails: BTreeMap<String, Voicemail>,
    messages: BTreeMap<String, Message>,
    contacts: BTreeMap<String, Contact>,
    webhooks: BTreeMap<String, Webhook>,
    rng: ChaCha8Rng,
    stats: RequestStats,
    limiter: FixedWindow,
    rate_limited: u64,
    faults: Faults,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<ApiState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ApiState> {
        // A panicking handler must not take every later request (and the test's inspection) down with it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A local OpenPhone API v1 (under `/v1`) and a separate media host serving recording and voicemail
/// files. Dropping it stops both.
#[derive(Debug)]
pub struct OpenPhoneServer {
    shared: Arc<Shared>,
    media: Arc<media::MediaStore>,
    api: Running,
    media_host: Running,
}

impl OpenPhoneServer {
    /// Starts the API, accepting `api_key` as the raw `Authorization` header, and the media host.
    pub fn start(api_key: &str) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(ApiState {
                api_key: api_key.to_owned(),
                owner: DEFAULT_OWNER.to_owned(),
                phone_numbers: BTreeMap::new(),
                users: BTreeMap::new(),
                conversations: BTreeMap::new(),
                calls: BTreeMap::new(),
                recordings: BTreeMap::new(),
                summaries: BTreeMap::new(),
                transcripts: BTreeMap::new(),
                voicemails: BTreeMap::new(),
                messages: BTreeMap::new(),
                contacts: BTreeMap::new(),
                webhooks: BTreeMap::new(),
                rng: ChaCha8Rng::seed_from_u64(0x0bee),
                stats: RequestStats::default(),
                limiter: FixedWindow::new(Some(RATE_LIMIT_PER_SECOND)),
                rate_limited: 0,
                faults: Faults::new(0),
            }),
        });
        let media = Arc::new(media::MediaStore::default());
        let api = Running::start("openphone", handlers::router(shared.clone()))?;
        let media_host = Running::start("openphone-media", media::router(media.clone()))?;
        Ok(Self {
            shared,
            media,
            api,
            media_host,
        })
    }

    /// The API's and the media host's routes, to be called in-process (a deterministic simulation drives
    /// them without sockets; the listeners keep running and see the same state).
    pub fn in_process(&self) -> (axum::Router, axum::Router) {
        (
            handlers::router(self.shared.clone()),
            media::router(self.media.clone()),
        )
    }

    /// The API base URL (`http://127.0.0.1:<port>`; paths add `/v1/...`), for `openphone_api_base`.
    pub fn base_url(&self) -> String {
        self.api.base_url()
    }

    /// The media host's base URL, for `openphone_media_base`.
    pub fn media_base_url(&self) -> String {
        self.media_host.base_url()
    }

    /// The URL of a media `path` (e.g. `/opstatics/AC1-1.mp3`) on the media host.
    pub fn media_url(&self, path: &str) -> String {
        format!("{}/{}", self.media_base_url(), path.trim_start_matches('/'))
    }

    /// The key the API accepts.
    pub fn api_key(&self) -> String {
        self.shared.lock().api_key.clone()
    }

    /// Adds or replaces a phone number.
    pub fn add_phone_number(&self, number: PhoneNumber) {
        self.shared
            .lock()
            .phone_numbers
            .insert(number.id.clone(), number);
    }

    /// Makes `user_id` (`US…`) the workspace owner: the user whose calls `GET /v1/calls` lists when the
    /// request names none. [`DEFAULT_OWNER`] until then.
    pub fn set_owner(&self, user_id: &str) {
        self.shared.lock().owner = user_id.to_owned();
    }

    /// The workspace owner (see [`OpenPhoneServer::set_owner`]).
    pub fn owner(&self) -> String {
        self.shared.lock().owner.clone()
    }

    /// Adds or replaces a user.
    pub fn add_user(&self, user: User) {
        self.shared.lock().users.insert(user.id.clone(), user);
    }

    /// Adds or replaces a conversation.
    pub fn add_conversation(&self, conversation: Conversation) {
        self.shared
            .lock()
            .conversations
            .insert(conversation.id.clone(), conversation);
    }

    /// Adds or replaces a call.
    pub fn add_call(&self, call: Call) {
        self.shared.lock().calls.insert(call.id.clone(), call);
    }

    /// Sets the recording segments of `call_id` (oldest first).
    pub fn set_recordings(&self, call_id: &str, segments: Vec<Recording>) {
        self.shared
            .lock()
            .recordings
            .insert(call_id.to_owned(), segments);
    }

    /// Sets the summary of its call.
    pub fn set_summary(&self, summary: Summary) {
        self.shared
            .lock()
            .summaries
            .insert(summary.call_id.clone(), summary);
    }

    /// Sets the transcript of its call.
    pub fn set_transcript(&self, transcript: Transcript) {
        self.shared
            .lock()
            .transcripts
            .insert(transcript.call_id.clone(), transcript);
    }

    /// Sets the voicemail of `call_id`.
    pub fn set_voicemail(&self, call_id: &str, voicemail: Voicemail) {
        self.shared
            .lock()
            .voicemails
            .insert(call_id.to_owned(), voicemail);
    }

    /// Adds or replaces a message.
    pub fn add_message(&self, message: Message) {
        self.shared
            .lock()
            .messages
            .insert(message.id.clone(), message);
    }

    /// Adds or replaces a contact.
    pub fn add_contact(&self, contact: Contact) {
        self.shared
            .lock()
            .contacts
            .insert(contact.id.clone(), contact);
    }

    /// Deletes a contact, as someone deleting it in OpenPhone.
    pub fn remove_contact(&self, id: &str) {
        self.shared.lock().contacts.remove(id);
    }

    /// The webhooks created through the API (and not deleted), by id.
    pub fn webhooks(&self) -> Vec<Webhook> {
        self.shared.lock().webhooks.values().cloned().collect()
    }

    /// Serves `body` at `path` on the media host; returns its URL.
    pub fn add_media(&self, path: &str, content_type: &str, body: impl Into<Bytes>) -> String {
        self.media
            .insert(path, content_type, media::MediaBody::Bytes(body.into()));
        self.media_url(path)
    }

    /// Serves `len` bytes of [`media_pattern`] at `path`, generated while streaming so a 100 MiB file
    /// never sits in memory; returns its URL.
    pub fn add_generated_media(&self, path: &str, content_type: &str, len: u64) -> String {
        self.media
            .insert(path, content_type, media::MediaBody::Generated(len));
        self.media_url(path)
    }

    /// Adds a completed `audio/mpeg` recording segment of `len` generated bytes to `call_id`: the file is
    /// served at `/opstatics/<call_id>-<n>.mp3` (n counting from 1) and the segment, pointing at it, is
    /// appended to what `GET /v1/call-recordings/{call_id}` lists. Returns the segment.
    pub fn add_generated_recording(&self, call_id: &str, len: u64) -> Recording {
        let mut state = self.shared.lock();
        let segments = state.recordings.entry(call_id.to_owned()).or_default();
        let n = segments.len() + 1;
        let path = format!("/opstatics/{call_id}-{n}.mp3");
        self.media
            .insert(&path, "audio/mpeg", media::MediaBody::Generated(len));
        let segment = Recording::completed(
            &format!("CR{call_id}{n}"),
            &self.media_url(&path),
            "audio/mpeg",
            60,
        );
        segments.push(segment.clone());
        segment
    }

    /// How many `GET`s of `path` the media host served (HEADs not included).
    pub fn media_downloads(&self, path: &str) -> u64 {
        self.media.downloads(path)
    }

    /// Changes the per-second limit (`None` turns rate limiting off, for tests that are not about it).
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        self.shared.lock().limiter = FixedWindow::new(per_second);
    }

    /// Requests per endpoint (`"GET /v1/calls"`, `"GET /v1/calls/{id}"`, …), every response included.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.shared.lock().stats.per_endpoint()
    }

    /// Requests to one endpoint (method and route template).
    pub fn request_count(&self, endpoint: &str) -> u64 {
        self.request_counts().get(endpoint).copied().unwrap_or(0)
    }

    /// Requests to every endpoint.
    pub fn total_requests(&self) -> u64 {
        self.request_counts().values().sum()
    }

    /// How many requests were refused with `429` by the rate limit (injected faults not included).
    pub fn rate_limited_count(&self) -> u64 {
        self.shared.lock().rate_limited
    }

    /// The most authenticated requests that arrived within one wall-clock second (the window the real
    /// gateway counts in); a client within budget keeps this at or below 10.
    pub fn max_requests_in_any_second(&self) -> usize {
        self.shared.lock().stats.max_in_wall_clock_second()
    }

    /// The most authenticated requests within any sliding 1-second interval: stricter than the gateway
    /// (a client pacing by wall-clock seconds may reach twice the limit here without a single 429).
    pub fn max_requests_in_sliding_second(&self) -> usize {
        self.shared.lock().stats.max_in_sliding_second()
    }

    /// Forgets all counters (not the state).
    pub fn reset_counters(&self) {
        let mut state = self.shared.lock();
        state.stats.reset();
        state.rate_limited = 0;
    }

    /// Arms a fault (see [`FaultRule`]); rules are tried in the order they were added.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.lock().faults.add(rule);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Reseeds the RNG that decides [`FaultRule::fraction`] faults.
    pub fn set_fault_seed(&self, seed: u64) {
        self.shared.lock().faults.reseed(seed);
    }

    /// How many injected faults fired.
    pub fn faults_triggered(&self) -> u64 {
        self.shared.lock().faults.triggered()
    }
}
