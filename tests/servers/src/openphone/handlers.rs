//! Routes of the OpenPhone API and the gate every request passes (auth, rate limit, faults).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::model::{epoch, Webhook};
use super::params::{check_id, is_e164, paginate, OpError, Params};
use super::{ApiState, Shared};
use crate::faults::Fault;

type ApiRef = State<Arc<Shared>>;
type Answer = Result<Response, OpError>;

const CALLS: &str = "01";
const MESSAGES: &str = "02";
const WEBHOOKS: &str = "03";
const CONTACTS: &str = "08";
const OTHER: &str = "00";

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/phone-numbers", get(list_phone_numbers))
        .route("/v1/phone-numbers/{id}", get(get_phone_number))
        .route("/v1/users", get(list_users))
        .route("/v1/users/{id}", get(get_user))
        .route("/v1/conversations", get(list_conversations))
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{id}", get(get_call))
        .route("/v1/call-recordings/{id}", get(get_recordings))
        .route("/v1/call-summaries/{id}", get(get_summary))
        .route("/v1/call-transcripts/{id}", get(get_transcript))
        .route("/v1/call-voicemails/{id}", get(get_voicemail))
        .route("/v1/messages", get(list_messages))
        .route("/v1/messages/{id}", get(get_message))
        .route("/v1/contacts", get(list_contacts))
        .route("/v1/contacts/{id}", get(get_contact))
        .route("/v1/webhooks", get(list_webhooks))
        .route("/v1/webhooks/calls", post(create_calls_webhook))
        .route("/v1/webhooks/messages", post(create_messages_webhook))
        .route(
            "/v1/webhooks/call-summaries",
            post(create_summaries_webhook),
        )
        .route(
            "/v1/webhooks/call-transcripts",
            post(create_transcripts_webhook),
        )
        .route("/v1/webhooks/{id}", get(get_webhook).delete(delete_webhook))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// The resource family of a path, for the error codes (`01` calls, `02` messages, …).
fn family(path: &str) -> &'static str {
    let resource = path
        .trim_start_matches("/v1/")
        .split('/')
        .next()
        .unwrap_or("");
    match resource {
        "calls" | "call-recordings" | "call-summaries" | "call-transcripts" | "call-voicemails" => {
            CALLS
        }
        "messages" => MESSAGES,
        "webhooks" => WEBHOOKS,
        "contacts" => CONTACTS,
        _ => OTHER,
    }
}

/// Auth, budget and faults, in the order of the real gateway: key-auth before rate-limiting, so
/// requests with a bad key are refused without spending the key's budget.
async fn gate(
    State(shared): ApiRef,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = matched.as_ref().map_or("<unmatched>", MatchedPath::as_str);
    let endpoint = format!("{method} {route}");
    let family = family(request.uri().path());
    let fault = {
        let mut state = shared.lock();
        state.stats.count(&endpoint);
        let key = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if key != Some(state.api_key.as_str()) {
            return OpError::new(
                StatusCode::UNAUTHORIZED,
                family,
                "00",
                "Unauthorized",
                "Invalid API key: send the raw key in Authorization, without Bearer",
            )
            .into_response();
        }
        state.stats.arrive();
        if !state.limiter.admit() {
            state.rate_limited += 1;
            return OpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                family,
                "00",
                "Too Many Requests",
                "API rate limit exceeded",
            )
            .with_retry_after(1)
            .into_response();
        }
        state
            .faults
            .before(&endpoint, request.uri().to_string().as_bytes())
    };
    match fault {
        Some(Fault::Delay(wait)) => tokio::time::sleep(wait).await,
        Some(fault) => return fault_response(&fault, family),
        None => {}
    }
    let target = request.uri().to_string();
    let response = next.run(request).await;
    if method == Method::GET || !response.status().is_success() {
        return response;
    }
    let after = shared
        .lock()
        .faults
        .after_write(&endpoint, target.as_bytes());
    match after {
        Some(Fault::AppliedThenDelay(wait)) => {
            tokio::time::sleep(wait).await;
            response
        }
        Some(_) => fault_response(&Fault::Status(500), family),
        None => response,
    }
}

fn fault_response(fault: &Fault, family: &str) -> Response {
    match fault {
        Fault::RateLimited { retry_after_secs } => OpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            family,
            "00",
            "Too Many Requests",
            "API rate limit exceeded",
        )
        .with_retry_after(*retry_after_secs)
        .into_response(),
        Fault::Overloaded { retry_after_secs } => OpError::new(
            status(529),
            family,
            "01",
            "Overloaded",
            "Service overloaded",
        )
        .with_retry_after(*retry_after_secs)
        .into_response(),
        Fault::Status(code) => {
            OpError::new(status(*code), family, "01", "Unknown", "Injected failure").into_response()
        }
        Fault::Delay(_) | Fault::AppliedButFailed | Fault::AppliedThenDelay(_) => OpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            family,
            "01",
            "Unknown",
            "Injected failure",
        )
        .into_response(),
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn not_found(request: Request) -> Response {
    OpError::not_found(family(request.uri().path()), "Route").into_response()
}

fn single(value: impl Serialize) -> Answer {
    Ok(Json(json!({ "data": value })).into_response())
}

fn to_value(value: impl Serialize) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

async fn list_phone_numbers(State(shared): ApiRef, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), OTHER, &["userId"])?;
    let user = params.optional_id("userId", "US")?;
    let state = shared.lock();
    let numbers: Vec<_> = state
        .phone_numbers
        .values()
        .filter(|n| user.is_none_or(|user| n.users.iter().any(|u| u.id == user)))
        .collect();
    Ok(Json(json!({ "data": numbers })).into_response())
}

async fn get_phone_number(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(OTHER, "phoneNumberId", &id, "PN")?;
    let state = shared.lock();
    single(
        state
            .phone_numbers
            .get(&id)
            .ok_or_else(|| OpError::not_found(OTHER, "Phone number"))?,
    )
}

async fn list_users(State(shared): ApiRef, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), OTHER, &["maxResults", "pageToken"])?;
    let max = params.max_results(50)?;
    let items = shared
        .lock()
        .users
        .values()
        .map(|u| (u.created_at, u.id.clone(), to_value(u)))
        .collect();
    Ok(Json(paginate(&params, items, max)?).into_response())
}

async fn get_user(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(OTHER, "userId", &id, "US")?;
    let state = shared.lock();
    single(
        state
            .users
            .get(&id)
            .ok_or_else(|| OpError::not_found(OTHER, "User"))?,
    )
}

async fn list_conversations(State(shared): ApiRef, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(
        query.as_deref(),
        OTHER,
        &[
            "phoneNumbers[]",
            "phoneNumbers",
            "phoneNumber",
            "userId",
            "createdAfter",
            "createdBefore",
            "updatedAfter",
            "updatedBefore",
            "excludeInactive",
            "maxResults",
            "pageToken",
        ],
    )?;
    let max = params.max_results(100)?;
    let wanted = params.all(&["phoneNumbers[]", "phoneNumbers", "phoneNumber"]);
    if wanted.len() > 100 {
        return Err(OpError::bad_request(
            OTHER,
            "querystring/phoneNumbers must have at most 100 items",
        ));
    }
    if let Some(bad) = wanted
        .iter()
        .find(|n| !is_e164(n) && check_id(OTHER, "phoneNumbers", n, "PN").is_err())
    {
        return Err(OpError::bad_request(
            OTHER,
            format!("querystring/phoneNumbers items must be PN ids or E.164 numbers, got {bad:?}"),
        ));
    }
    let user = params.optional_id("userId", "US")?;
    let (created_after, created_before) =
        (params.time("createdAfter")?, params.time("createdBefore")?);
    let (updated_after, updated_before) =
        (params.time("updatedAfter")?, params.time("updatedBefore")?);
    let exclude_inactive = params.boolean("excludeInactive")?.unwrap_or(false);
    let state = shared.lock();
    let number_ids: BTreeSet<&str> = wanted
        .iter()
        .filter_map(|n| {
            if n.starts_with("PN") {
                Some(*n)
            } else {
                state
                    .phone_numbers
                    .values()
                    .find(|p| p.number == *n)
                    .map(|p| p.id.as_str())
            }
        })
        .collect();
    let items = state
        .conversations
        .values()
        .filter(|c| wanted.is_empty() || number_ids.contains(c.phone_number_id.as_str()))
        .filter(|c| {
            user.is_none_or(|user| {
                state
                    .phone_numbers
                    .get(&c.phone_number_id)
                    .is_some_and(|n| n.users.iter().any(|u| u.id == user))
            })
        })
        .filter(|c| in_range(c.created_at, created_after, created_before))
        .filter(|c| in_range(c.updated_at, updated_after, updated_before))
        .filter(|c| !exclude_inactive || c.deleted_at.is_none())
        .map(|c| {
            let activity = c
                .last_activity_at
                .or(c.updated_at)
                .or(c.created_at)
                .unwrap_or_else(epoch);
            (activity, c.id.clone(), to_value(c))
        })
        .collect();
    Ok(Json(paginate(&params, items, max)?).into_response())
}

/// Whether `at` is strictly after `after` and strictly before `before`; a missing time matches only
/// when there is no bound.
fn in_range(
    at: Option<DateTime<Utc>>,
    after: Option<DateTime<Utc>>,
    before: Option<DateTime<Utc>>,
) -> bool {
    if after.is_none() && before.is_none() {
        return true;
    }
    at.is_some_and(|at| {
        after.is_none_or(|after| at > after) && before.is_none_or(|before| at < before)
    })
}

const LIST_BY_PARTICIPANT: &[&str] = &[
    "phoneNumberId",
    "participants",
    "participants[]",
    "userId",
    "createdAfter",
    "createdBefore",
    "since",
    "maxResults",
    "pageToken",
];

/// The common part of `GET /v1/calls` and `GET /v1/messages`: number, participants, time window.
struct ByParticipant {
    phone_number_id: String,
    participants: Vec<String>,
    user: Option<String>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    max: usize,
}

fn by_participant(params: &Params) -> Result<ByParticipant, OpError> {
    let phone_number_id = params.required_id("phoneNumberId", "PN")?.to_owned();
    let participants = params.numbers(&["participants", "participants[]"])?;
    if participants.is_empty() {
        return Err(OpError::bad_request(
            params.family(),
            "querystring must have required property 'participants'",
        ));
    }
    let user = params.optional_id("userId", "US")?.map(str::to_owned);
    // `since` is deprecated and behaves like `createdBefore` (openphone-api.md §4.2).
    let created_before = match (params.time("createdBefore")?, params.time("since")?) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(ByParticipant {
        phone_number_id,
        participants: participants.into_iter().map(str::to_owned).collect(),
        user,
        created_after: params.time("createdAfter")?,
        created_before,
        max: params.max_results(100)?,
    })
}

fn own_number(state: &ApiState, family: &str, phone_number_id: &str) -> Result<String, OpError> {
    state
        .phone_numbers
        .get(phone_number_id)
        .map(|n| n.number.clone())
        .ok_or_else(|| OpError::not_found(family, "Phone number"))
}

async fn list_calls(State(shared): ApiRef, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), CALLS, LIST_BY_PARTICIPANT)?;
    if params.all(&["participants", "participants[]"]).len() > 1 {
        return Err(OpError::new(
            StatusCode::BAD_REQUEST,
            CALLS,
            "01",
            "Too Many Participants",
            "Too Many Participants: calls can be listed for one participant only",
        ));
    }
    let filter = by_participant(&params)?;
    let state = shared.lock();
    own_number(&state, CALLS, &filter.phone_number_id)?;
    // One user's calls only: the named user's, or the workspace owner's (openphone-api.md §4.2). Whether
    // the real API refuses the implicit owner when they are not on the number is not documented, so
    // only a named user is checked against the number's users.
    let user = match &filter.user {
        Some(user) => {
            let on_number = state
                .phone_numbers
                .get(&filter.phone_number_id)
                .is_some_and(|n| n.users.iter().any(|u| &u.id == user));
            if !on_number {
                return Err(OpError::new(
                    StatusCode::FORBIDDEN,
                    CALLS,
                    "01",
                    "Not Phone Number User",
                    format!("User {user} is not a user of this phone number"),
                ));
            }
            user.as_str()
        }
        None => state.owner.as_str(),
    };
    let participant = &filter.participants[0];
    let items = state
        .calls
        .values()
        .filter(|c| {
            c.phone_number_id == filter.phone_number_id && c.participants.contains(participant)
        })
        .filter(|c| c.user_id == user)
        .filter(|c| {
            in_range(
                Some(c.created_at),
                filter.created_after,
                filter.created_before,
            )
        })
        .map(|c| (c.created_at, c.id.clone(), to_value(c)))
        .collect();
    Ok(Json(paginate(&params, items, filter.max)?).into_response())
}

async fn get_call(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(CALLS, "callId", &id, "AC")?;
    let state = shared.lock();
    single(
        state
            .calls
            .get(&id)
            .ok_or_else(|| OpError::not_found(CALLS, "Call"))?,
    )
}

async fn get_recordings(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(CALLS, "callId", &id, "AC")?;
    let state = shared.lock();
    if !state.calls.contains_key(&id) && !state.recordings.contains_key(&id) {
        return Err(OpError::not_found(CALLS, "Call"));
    }
    single(state.recordings.get(&id).cloned().unwrap_or_default())
}

async fn get_summary(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(CALLS, "callId", &id, "AC")?;
    let state = shared.lock();
    single(
        state
            .summaries
            .get(&id)
            .ok_or_else(|| OpError::not_found(CALLS, "Call summary"))?,
    )
}

async fn get_transcript(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(CALLS, "callId", &id, "AC")?;
    let state = shared.lock();
    single(
        state
            .transcripts
            .get(&id)
            .ok_or_else(|| OpError::not_found(CALLS, "Call transcript"))?,
    )
}

async fn get_voicemail(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(CALLS, "callId", &id, "AC")?;
    let state = shared.lock();
    single(
        state
            .voicemails
            .get(&id)
            .ok_or_else(|| OpError::not_found(CALLS, "Call voicemail"))?,
    )
}

async fn list_messages(State(shared): ApiRef, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), MESSAGES, LIST_BY_PARTICIPANT)?;
    let filter = by_participant(&params)?;
    let state = shared.lock();
    let own = own_number(&state, MESSAGES, &filter.phone_number_id)?;
    let wanted: BTreeSet<&str> = filter.participants.iter().map(String::as_str).collect();
    // A message belongs to the conversation whose participants are everyone on it but the workspace
    // number: a 1:1 query does not return the group texts the same person is on.
    let items = state
        .messages
        .values()
        .filter(|m| m.phone_number_id.as_deref() == Some(filter.phone_number_id.as_str()))
        .filter(|m| {
            let others: BTreeSet<&str> =
                m.to.iter()
                    .map(String::as_str)
                    .chain([m.from.as_str()])
                    .filter(|n| *n != own)
                    .collect();
            others == wanted
        })
        .filter(|m| filter.user.as_ref().is_none_or(|user| &m.user_id == user))
        .filter(|m| {
            in_range(
                Some(m.created_at),
                filter.created_after,
                filter.created_before,
            )
        })
        .map(|m| (m.created_at, m.id.clone(), to_value(m)))
        .collect();
    Ok(Json(paginate(&params, items, filter.max)?).into_response())
}

async fn get_message(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(MESSAGES, "messageId", &id, "AC")?;
    let state = shared.lock();
    single(
        state
            .messages
            .get(&id)
            .ok_or_else(|| OpError::not_found(MESSAGES, "Message"))?,
    )
}

async fn list_contacts(State(shared): ApiRef, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(
        query.as_deref(),
        CONTACTS,
        &[
            "externalIds[]",
            "externalIds",
            "sources[]",
            "sources",
            "maxResults",
            "pageToken",
        ],
    )?;
    let max = params.max_results(50)?;
    let external_ids = params.all(&["externalIds[]", "externalIds"]);
    let sources = params.all(&["sources[]", "sources"]);
    let items = shared
        .lock()
        .contacts
        .values()
        .filter(|c| {
            external_ids.is_empty()
                || c.external_id
                    .as_deref()
                    .is_some_and(|e| external_ids.contains(&e))
        })
        .filter(|c| sources.is_empty() || c.source.as_deref().is_some_and(|s| sources.contains(&s)))
        .map(|c| (c.created_at, c.id.clone(), to_value(c)))
        .collect();
    Ok(Json(paginate(&params, items, max)?).into_response())
}

async fn get_contact(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    let state = shared.lock();
    single(
        state
            .contacts
            .get(&id)
            .ok_or_else(|| OpError::not_found(CONTACTS, "Contact"))?,
    )
}

async fn list_webhooks(State(shared): ApiRef, RawQuery(query): RawQuery) -> Answer {
    let params = Params::parse(query.as_deref(), WEBHOOKS, &["userId"])?;
    let user = params.optional_id("userId", "US")?;
    let state = shared.lock();
    let hooks: Vec<&Webhook> = state
        .webhooks
        .values()
        .filter(|w| user.is_none_or(|user| w.user_id == user))
        .collect();
    Ok(Json(json!({ "data": hooks })).into_response())
}

async fn get_webhook(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(WEBHOOKS, "id", &id, "WH")?;
    let state = shared.lock();
    single(
        state
            .webhooks
            .get(&id)
            .ok_or_else(|| OpError::not_found(WEBHOOKS, "Webhook"))?,
    )
}

async fn delete_webhook(State(shared): ApiRef, Path(id): Path<String>) -> Answer {
    check_id(WEBHOOKS, "id", &id, "WH")?;
    match shared.lock().webhooks.remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(OpError::not_found(WEBHOOKS, "Webhook")),
    }
}

async fn create_calls_webhook(State(shared): ApiRef, body: Bytes) -> Answer {
    create_webhook(
        &shared,
        &body,
        &["call.completed", "call.ringing", "call.recording.completed"],
    )
}

async fn create_messages_webhook(State(shared): ApiRef, body: Bytes) -> Answer {
    create_webhook(&shared, &body, &["message.received", "message.delivered"])
}

async fn create_summaries_webhook(State(shared): ApiRef, body: Bytes) -> Answer {
    create_webhook(&shared, &body, &["call.summary.completed"])
}

async fn create_transcripts_webhook(State(shared): ApiRef, body: Bytes) -> Answer {
    create_webhook(&shared, &body, &["call.transcript.completed"])
}

fn create_webhook(shared: &Shared, body: &[u8], family_events: &[&str]) -> Answer {
    let bad = |message: String| OpError::bad_request(WEBHOOKS, message);
    let body: Value =
        serde_json::from_slice(body).map_err(|err| bad(format!("body is not JSON: {err}")))?;
    let Some(fields) = body.as_object() else {
        return Err(bad("body must be an object".into()));
    };
    const ALLOWED: &[&str] = &["url", "events", "resourceIds", "userId", "label", "status"];
    if let Some(key) = fields.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
        return Err(bad(format!("body/{key} is not an allowed property")));
    }
    let url = body["url"]
        .as_str()
        .ok_or_else(|| bad("body must have required property 'url'".into()))?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(bad(format!("body/url must be a URI, got {url:?}")));
    }
    let events: Vec<String> = match body["events"].as_array() {
        Some(events) if !events.is_empty() => events
            .iter()
            .map(|e| match e.as_str() {
                Some(e) if family_events.contains(&e) => Ok(e.to_owned()),
                _ => Err(bad(format!(
                    "body/events items must be one of {family_events:?}, got {e}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(
                "body must have required property 'events' (a non-empty array)".into(),
            ))
        }
    };
    let resource_ids = match body.get("resourceIds") {
        None | Some(Value::Null) => vec!["*".to_owned()],
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| match id.as_str() {
                Some(id) if id == "*" || check_id(WEBHOOKS, "resourceIds", id, "PN").is_ok() => {
                    Ok(id.to_owned())
                }
                _ => Err(bad(format!(
                    "body/resourceIds items must be PN ids or \"*\", got {id}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(bad(format!(
                "body/resourceIds must be an array, got {other}"
            )))
        }
    };
    let status = match body.get("status").and_then(Value::as_str) {
        None => "enabled",
        Some(status @ ("enabled" | "disabled")) => status,
        Some(other) => {
            return Err(bad(format!(
                "body/status must be enabled or disabled, got {other:?}"
            )))
        }
    };
    let mut state = shared.lock();
    let id = format!("WH{}", hex_id(&mut state.rng, 30));
    let key: [u8; 32] = state.rng.gen();
    let now = Utc::now();
    let webhook = Webhook {
        id: id.clone(),
        user_id: body["userId"].as_str().unwrap_or("USowner").to_owned(),
        org_id: "ORtestorg".into(),
        label: body["label"].as_str().map(str::to_owned),
        status: status.into(),
        url: url.into(),
        key: STANDARD.encode(key),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        events,
        resource_ids,
    };
    state.webhooks.insert(id, webhook.clone());
    Ok((StatusCode::CREATED, Json(json!({ "data": webhook }))).into_response())
}

fn hex_id(rng: &mut impl Rng, len: usize) -> String {
    const CHARS: &[u8] = b"0123456789abcdef";
    (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}
