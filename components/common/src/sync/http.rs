//! The HTTP side of the periodic sync, free of Spin types.
//!
//! The `phone-sync` component's routes (their table is [`crate::http::routes::PHONE_SYNC`]):
//!
//! - `POST /admin/sync` ([`admin_sync`]; `?phone_number_id=PN…`, `?since=<ISO-8601>`): records a run
//!   and answers `202 {"run_id": …}` at once; the component then runs it
//!   ([`crate::app::run_accepted`]) after the response, reaching each number through service chaining.
//! - `POST /sync/<phone_number_id>` ([`sync_one`], the private route,
//!   `http://phone-sync.spin.internal/sync/…`; optional `?since=`): one number's sync, answered with its
//!   [`NumberReport`](super::number::NumberReport) when it is done.
//!
//! And `POST /admin/tick` ([`admin_tick`]), served by the `queue-drain` component: answers
//! `202 {"run_id": …}`, then runs the tick ([`crate::app::tick`]) with the periodic sync's numbers
//! reached through `phone-sync`'s private route.

use serde_json::json;

use super::runs::{self, RunKind};
use super::{number, RunRequest, SyncSettings};
use crate::api::{Request, Response};
use crate::configuration::Settings;
use crate::domain::PhoneNumberId;
use crate::platform::Platform;

/// How a request was handled.
#[derive(Debug)]
pub enum Handled {
    /// The whole answer.
    Done(Response),
    /// A run was accepted: send `response` (`202`), then run it ([`crate::app::run_accepted`]).
    Accepted(Response, Accepted),
}

/// Work accepted with a `202`, to run after the response is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// A periodic sync (`POST /admin/sync`).
    Sync {
        /// Its `sync_runs` id.
        run_id: String,
        /// What it covers.
        request: RunRequest,
    },
    /// A tick (`POST /admin/tick`).
    Tick {
        /// Its `sync_runs` id.
        run_id: String,
    },
}

/// What accepted work did.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// A periodic sync's report.
    Sync(super::RunReport),
    /// A tick's report.
    Tick(super::TickReport),
}

impl Accepted {
    /// The run's id, as answered.
    pub fn run_id(&self) -> &str {
        match self {
            Accepted::Sync { run_id, .. } | Accepted::Tick { run_id } => run_id,
        }
    }
}

/// `POST /admin/tick` (admin token, checked by the edge): records a tick and accepts it.
pub fn admin_tick(platform: &Platform) -> Handled {
    match runs::start(platform, RunKind::Tick, None) {
        Ok(run_id) => Handled::Accepted(
            Response::json(202, &json!({ "run_id": run_id })),
            Accepted::Tick { run_id },
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "recording the tick failed");
            Handled::Done(crate::api::unavailable())
        }
    }
}

/// `POST /admin/sync` (admin token, checked by the edge): records a run and accepts it.
pub fn admin_sync(platform: &Platform, settings: &Settings, request: &Request) -> Handled {
    // Refused now rather than accepted and failed in the background.
    if let Err(e) = SyncSettings::load(settings) {
        return Handled::Done(Response::error(503, e.to_string()));
    }
    let phone_number_id = match request
        .query_param("phone_number_id")
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(raw) => match PhoneNumberId::parse(&raw) {
            Ok(id) => Some(id.as_str().to_owned()),
            Err(e) => return Handled::Done(Response::error(400, format!("phone_number_id: {e}"))),
        },
    };
    let since = match parse_since(request) {
        Ok(since) => since,
        Err(refusal) => return Handled::Done(refusal),
    };
    match runs::start(platform, RunKind::Sync, phone_number_id.as_deref()) {
        Ok(run_id) => Handled::Accepted(
            Response::json(202, &json!({ "run_id": run_id })),
            Accepted::Sync {
                run_id,
                request: RunRequest {
                    phone_number_id,
                    since,
                },
            },
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "recording the run failed");
            Handled::Done(crate::api::unavailable())
        }
    }
}

/// `POST /sync/<phone_number_id>`, the private route: one number's sync, answered with its report.
pub async fn sync_one(platform: &Platform, settings: &Settings, request: &Request) -> Response {
    let raw = request.path.trim_start_matches("/sync/");
    let id = match PhoneNumberId::parse(raw) {
        Ok(id) => id,
        Err(e) => return Response::error(400, format!("phone number id: {e}")),
    };
    let since = match parse_since(request) {
        Ok(since) => since,
        Err(refusal) => return refusal,
    };
    let settings = match SyncSettings::load(settings) {
        Ok(settings) => settings,
        Err(e) => return Response::error(503, e.to_string()),
    };
    let report = number::sync_number(platform, &settings, id.as_str(), since).await;
    match serde_json::to_value(&report) {
        Ok(body) => Response::json(200, &body),
        Err(e) => Response::error(500, format!("encoding the report: {e}")),
    }
}

/// The optional `since` query parameter, ISO-8601.
fn parse_since(request: &Request) -> Result<Option<i64>, Response> {
    match request.query_param("since").filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(raw) => crate::domain::parse_iso(&raw).map(Some).ok_or_else(|| {
            Response::error(
                400,
                "since: not an ISO-8601 date-time such as 2025-10-20T00:00:00Z",
            )
        }),
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A database failure once the edge let the request in is the edge's one `503`: its cause (here a
    /// missing table) goes to the log, never to the client.
    #[tokio::test]
    async fn a_database_failure_is_the_edges_503_without_its_cause() {
        let (_dir, platform, _clock) = crate::testing::migrated_platform().await;
        platform.sql.execute("DROP TABLE sync_runs", &[]).unwrap();
        let Handled::Done(response) = admin_tick(&platform) else {
            panic!("a tick was accepted without its run");
        };
        assert_eq!(response, crate::api::unavailable());
    }
}
