//! The dead-letter queue: `GET /admin/dlq` lists dead events (ids, type, attempts, last error, times —
//! never the payload), `POST /admin/dlq/replay` moves some or all of them back to the queue.

use serde::Deserialize;
use serde_json::json;

use crate::api::{Request, Response};
use crate::domain::EventType;
use crate::platform::Platform;
use crate::queue::{DeadEvent, Queue, ReplaySelection};

/// Dead events listed when `limit` is not given.
const DEFAULT_LIMIT: u32 = 100;
/// The most dead events listed, and ids replayed, per request.
const MAX_LIMIT: u32 = 1000;

/// `GET /admin/dlq[?type=<event type>][&limit=<1..1000>]`: `{"total": n, "events": [...]}`, most
/// recently dead first.
pub fn list(platform: &Platform, request: &Request) -> Response {
    let limit = match request.query_param("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Response::error(
                    400,
                    format!("limit must be a number from 1 to {MAX_LIMIT}"),
                )
            }
        },
    };
    let event_type = request.query_param("type").map(|t| canonical_type(&t));
    match Queue::of(platform).dead(event_type.as_deref(), limit) {
        Ok((events, total)) => Response::json(
            200,
            &json!({
                "total": total,
                "events": events.iter().map(dead_json).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "listing the DLQ failed");
            crate::api::unavailable()
        }
    }
}

fn dead_json(event: &DeadEvent) -> serde_json::Value {
    json!({
        "id": event.id,
        "type": event.event_type,
        "phone_number_id": event.phone_number_id,
        "resource_id": event.resource_id,
        "attempts": event.attempts,
        "last_error": event.last_error,
        "created_at": iso(event.created_at),
        "received_at": iso(event.received_at),
        "died_at": event.finished_at.map(iso),
    })
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Event types are stored under their canonical name; accept aliases in filters too.
fn canonical_type(raw: &str) -> String {
    EventType::parse(raw).map_or_else(|| raw.to_owned(), |t| t.as_str().to_owned())
}

/// The body of a replay: `{}`, `{"ids": [...]}` or `{"type": "..."}`. Unknown fields are refused so a
/// typo (`{"id": ...}`) cannot turn into "replay everything".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    ids: Option<Vec<String>>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// A replay's answer, and how many events went back to the queue (the caller drains when any did).
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// What to send back.
    pub response: Response,
    /// Events moved back to `pending`.
    pub replayed: usize,
}

/// `POST /admin/dlq/replay`: answers `{"replayed": n}`.
pub fn replay(platform: &Platform, request: &Request) -> Replayed {
    let refused = |response| Replayed {
        response,
        replayed: 0,
    };
    let body: ReplayBody = match serde_json::from_slice(&request.body) {
        Ok(body) => body,
        Err(e) => {
            return refused(Response::error(
                400,
                format!(
                    r#"the body must be {{}}, {{"ids": [...]}} or {{"type": "<event type>"}}: {e}"#
                ),
            ))
        }
    };
    let selection = match (body.ids, body.event_type) {
        (None, None) => ReplaySelection::All,
        (Some(ids), None) if ids.len() <= MAX_LIMIT as usize => ReplaySelection::Ids(ids),
        (Some(_), None) => {
            return refused(Response::error(
                400,
                format!("at most {MAX_LIMIT} ids per replay"),
            ))
        }
        (None, Some(event_type)) => ReplaySelection::Type(canonical_type(&event_type)),
        (Some(_), Some(_)) => return refused(Response::error(400, "give ids or type, not both")),
    };
    match Queue::of(platform).replay(&selection, platform.clock.now_ms()) {
        Ok(ids) => {
            tracing::info!(replayed = ids.len(), ?selection, "DLQ replayed");
            Replayed {
                response: Response::json(200, &json!({ "replayed": ids.len() })),
                replayed: ids.len(),
            }
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "replaying the DLQ failed");
            refused(crate::api::unavailable())
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::queue::NewEvent;
    use crate::testing::{migrated_platform, state_of, ADMIN_TOKEN, T0};

    const PAYLOAD: &str =
        r#"{"data":{"object":{"from":"+15555550123","body":"my bank statements"}}}"#;

    fn bury(platform: &Platform, id: &str, event_type: &str, number: &str) {
        let queue = Queue::of(platform);
        let event = NewEvent {
            id,
            event_type,
            phone_number_id: Some(number),
            resource_id: Some("AC1"),
            created_at: T0,
            payload: PAYLOAD,
            skip_reason: None,
        };
        queue.enqueue(&event, T0).unwrap();
        let leased = queue.lease("test", T0, 1000, 1, &[]).unwrap();
        queue
            .bury(&leased[0], "Notion 404: database not shared", T0 + 5)
            .unwrap();
    }

    fn request(method: &str, path_and_query: &str, body: &str, token: Option<&str>) -> Request {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: token
                .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
                .unwrap_or_default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn the_list_shows_ids_errors_and_times_but_no_personal_data() {
        let (_dir, platform, _clock) = migrated_platform().await;
        bury(&platform, "EV1", "call.completed", "PN1");
        bury(&platform, "EV2", "message.received", "PN2");
        let response = list(
            &platform,
            &request("GET", "/admin/dlq", "", Some(ADMIN_TOKEN)),
        );
        assert_eq!(response.status, 200);
        let body = response.json_body();
        assert_eq!(body["total"], 2);
        let first = &body["events"][0];
        assert_eq!(first["attempts"], 1);
        assert_eq!(first["last_error"], "Notion 404: database not shared");
        assert_eq!(first["phone_number_id"], "PN1");
        assert_eq!(first["resource_id"], "AC1");
        assert_eq!(first["created_at"], "2025-10-20T19:22:25.427Z");
        assert_eq!(first["died_at"], "2025-10-20T19:22:25.432Z");
        let text = String::from_utf8(response.body).unwrap();
        assert!(
            !text.contains("+15555550123") && !text.contains("statements"),
            "{text}"
        );

        let filtered = list(
            &platform,
            &request(
                "GET",
                "/admin/dlq?type=message.received&limit=5",
                "",
                Some(ADMIN_TOKEN),
            ),
        );
        let body = filtered.json_body();
        assert_eq!(body["total"], 1);
        assert_eq!(body["events"][0]["id"], "EV2");
        let bad = list(
            &platform,
            &request("GET", "/admin/dlq?limit=0", "", Some(ADMIN_TOKEN)),
        );
        assert_eq!(bad.status, 400);
    }

    #[tokio::test]
    async fn replay_moves_ids_a_type_or_everything_back() {
        let (_dir, platform, _clock) = migrated_platform().await;
        bury(&platform, "EV1", "call.completed", "PN1");
        bury(&platform, "EV2", "call.summary.completed", "PN2");
        bury(&platform, "EV3", "message.received", "PN3");
        bury(&platform, "EV4", "message.received", "PN4");
        let post = |body: &str| {
            replay(
                &platform,
                &request("POST", "/admin/dlq/replay", body, Some(ADMIN_TOKEN)),
            )
        };

        let by_ids = post(r#"{"ids": ["EV1", "EV404"]}"#);
        assert_eq!(by_ids.response.json_body(), json!({ "replayed": 1 }));
        assert_eq!(by_ids.replayed, 1);
        assert_eq!(state_of(&platform, "EV1"), "pending");
        // The alias names the same type.
        assert_eq!(post(r#"{"type": "callSummary"}"#).replayed, 1);
        assert_eq!(state_of(&platform, "EV2"), "pending");
        assert_eq!(post("{}").replayed, 2);
        assert_eq!(state_of(&platform, "EV4"), "pending");
        assert_eq!(post("{}").response.json_body(), json!({ "replayed": 0 }));
    }

    #[tokio::test]
    async fn replay_refuses_what_it_cannot_read() {
        let (_dir, platform, _clock) = migrated_platform().await;
        bury(&platform, "EV1", "call.completed", "PN1");
        let post = |body: &str, token| {
            replay(
                &platform,
                &request("POST", "/admin/dlq/replay", body, token),
            )
        };
        for body in [
            "",
            "not json",
            r#"{"id": "EV1"}"#,
            r#"{"ids": "EV1"}"#,
            r#"{"ids": [], "type": "x"}"#,
        ] {
            let answer = post(body, Some(ADMIN_TOKEN));
            assert_eq!(answer.response.status, 400, "{body}");
            assert_eq!(answer.replayed, 0);
        }
        let too_many = serde_json::to_string(&json!({ "ids": vec!["EV1"; 1001] })).unwrap();
        assert_eq!(post(&too_many, Some(ADMIN_TOKEN)).response.status, 400);
        assert_eq!(state_of(&platform, "EV1"), "dead");
    }
}
