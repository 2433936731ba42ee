//! `POST /admin/setup` with `{"public_url": "https://…"}`: everything between "the secrets are set" and
//! "events flow", in one idempotent step.
//!
//! 1. **Notion**: the three databases are checked and missing properties added (the
//!    [`mod@notion_check`] logic with `fix=true`).
//! 2. **OpenPhone webhooks**: `GET /v1/webhooks`; for each family the API creates webhooks by
//!    (`calls`, `messages`, `call-summaries`, `call-transcripts`), the events the sync needs that no webhook
//!    at `<public_url>/webhooks/openphone` delivers yet are subscribed with one `POST /v1/webhooks/<family>`.
//!    Webhooks pointing elsewhere are never touched.
//! 3. **Signing keys**: the keys of the webhooks delivering here (as listed, and as just created) are stored
//!    ([`keys`]), and a stored key is dropped only when OpenPhone no longer lists its webhook at all:
//!    deleting a webhook in OpenPhone and running setup again is how its key stops being accepted. The key
//!    of a webhook that still exists but points at another URL stays — a setup run with a mistyped
//!    `public_url` must not make the deliveries of the webhooks that still reach the app fail — and the
//!    answer lists those webhooks (`keys.kept_elsewhere`). Keys are never returned or logged.
//!
//! The answer says what was found, created and changed; a second run finds everything and changes
//! nothing. One setup runs at a time (a [`JobClaim`]), so two at once cannot both create a webhook.

use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::notion_check::{self, DatabaseCheck};
use crate::api::Response;
use crate::configuration::{NotionConfig, OpenPhoneConfig, Secret};
use crate::http_url::{HttpUrl, UrlError};
use crate::jobs::JobClaim;
use crate::notion::Notion;
use crate::openphone::OpenPhone;
use crate::outbound::{ApiError, Failure};
use crate::platform::Platform;
use crate::webhook::keys::{self, KeyChanges, WebhookKey};

/// The app's webhook route, appended to `public_url`.
pub const WEBHOOK_PATH: &str = "/webhooks/openphone";
/// Label of the webhooks setup creates.
pub const LABEL: &str = "openphone-notion-sync";
/// Each family of `POST /v1/webhooks/<family>` and the events the sync wants from it (`call.ringing` is
/// left out: the sync skips it).
pub const FAMILIES: &[(&str, &[&str])] = &[
    ("calls", &["call.completed", "call.recording.completed"]),
    ("messages", &["message.received", "message.delivered"]),
    ("call-summaries", &["call.summary.completed"]),
    ("call-transcripts", &["call.transcript.completed"]),
];
/// The `job_claims` name of a setup run.
pub const JOB: &str = "setup";
/// A setup claimed longer ago than this belongs to a dead instance.
const STALE_MS: i64 = 5 * 60 * 1000;

/// A webhook as `GET /v1/webhooks` and `POST /v1/webhooks/<family>` return it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    id: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    resource_ids: Vec<String>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    deleted_at: Option<String>,
    #[serde(default, deserialize_with = "secret")]
    key: Option<Secret>,
}

fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?
        .filter(|k| !k.trim().is_empty())
        .map(Secret::new))
}

impl Webhook {
    /// What keeps this webhook (one delivering here) from delivering everything the sync needs.
    fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.status.as_deref() == Some("disabled") {
            warnings.push(format!(
                "webhook {} is disabled in OpenPhone: enable it there, or delete it and run setup again",
                self.id
            ));
        }
        if self.key.is_none() {
            warnings.push(format!(
                "OpenPhone did not give the signing key of webhook {}: its deliveries are refused unless \
                 openphone_webhook_secret holds it; delete it in OpenPhone and run setup again",
                self.id
            ));
        }
        if !self.resource_ids.is_empty() && !self.resource_ids.iter().any(|r| r == "*") {
            warnings.push(format!(
                "webhook {} delivers only for {}: other numbers' events of its kinds do not arrive",
                self.id,
                self.resource_ids.join(", ")
            ));
        }
        warnings
    }

    /// What the answer shows of it: never its key.
    fn summary(&self) -> Value {
        json!({
            "id": self.id, "events": self.events, "status": self.status,
            "resource_ids": self.resource_ids, "label": self.label,
        })
    }
}

/// The webhook URL for `public_url` (`https://host[/prefix]`, or the webhook URL itself).
pub fn webhook_url(public_url: &str) -> Result<String, String> {
    let trimmed = public_url.trim().trim_end_matches('/');
    let parsed = match HttpUrl::parse(trimmed) {
        Ok(parsed) => parsed,
        Err(UrlError::NotHttp) => {
            return Err("public_url must be an https:// (or http://) URL with a host".into())
        }
        Err(e) => return Err(format!("public_url is {e}")),
    };
    if parsed.query().is_some() || parsed.fragment().is_some() || parsed.has_credentials() {
        return Err("public_url must have no query, fragment or credentials".into());
    }
    if trimmed.ends_with(WEBHOOK_PATH) {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}{WEBHOOK_PATH}"))
    }
}

/// For each family, the wanted events that no webhook of `delivering_here` delivers.
fn missing_events(delivering_here: &[&Webhook]) -> Vec<(&'static str, Vec<&'static str>)> {
    FAMILIES
        .iter()
        .filter_map(|(family, wanted)| {
            let missing: Vec<&'static str> = wanted
                .iter()
                .copied()
                .filter(|event| {
                    !delivering_here
                        .iter()
                        .any(|w| w.events.iter().any(|e| e == event))
                })
                .collect();
            (!missing.is_empty()).then_some((*family, missing))
        })
        .collect()
}

/// What the webhook step did.
#[derive(Default)]
struct WebhookReport {
    found: Vec<Value>,
    created: Vec<Value>,
    elsewhere: usize,
    keys: Option<KeyChanges>,
    stored: Vec<String>,
    /// Webhooks pointing elsewhere whose stored keys were kept (still accepted).
    kept_elsewhere: Vec<Value>,
    notes: Vec<String>,
    warnings: Vec<String>,
    error: Option<String>,
}

impl WebhookReport {
    fn to_json(&self) -> Value {
        let mut report = json!({
            "found": self.found,
            "created": self.created,
            "pointing_elsewhere": self.elsewhere,
            "keys": {
                "stored": self.stored,
                "changes": self.keys,
                "kept_elsewhere": self.kept_elsewhere,
            },
            "notes": self.notes,
            "warnings": self.warnings,
        });
        if let Some(error) = &self.error {
            report["error"] = error.as_str().into();
        }
        report
    }
}

/// Runs setup for a request body `{"public_url": "…"}`.
pub async fn run(
    platform: &Platform,
    notion_config: &NotionConfig,
    openphone_config: &OpenPhoneConfig,
    body: &[u8],
) -> Response {
    let public_url = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body["public_url"].as_str().map(String::from));
    let Some(public_url) = public_url else {
        return Response::error(
            400,
            "the body must be JSON {\"public_url\": \"https://<where this app is reachable>\"}",
        );
    };
    let url = match webhook_url(&public_url) {
        Ok(url) => url,
        Err(e) => return Response::error(400, e),
    };
    let claim = match JobClaim::try_claim(platform, JOB, 0, STALE_MS) {
        Ok(Some(claim)) => claim,
        Ok(None) => return Response::error(409, "another setup is running; try again in a minute"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "claiming the setup failed");
            return crate::api::unavailable();
        }
    };

    let notion = Notion::new(platform, notion_config);
    let notion_result = notion_check::check(
        &notion,
        &notion_config.calls_database_id,
        &notion_config.messages_database_id,
        notion_config.canvas_database_id.as_deref(),
        true,
    )
    .await;
    let openphone = OpenPhone::new(platform, openphone_config);
    let webhooks = set_up_webhooks(platform, &openphone, &url).await;

    let (notion_json, notion_ok, notion_changed, notion_failed) = match &notion_result {
        Ok(checks) => {
            let ok = checks.iter().all(DatabaseCheck::ok);
            let added = checks.iter().any(|c| !c.added.is_empty());
            (json!({ "ok": ok, "databases": checks }), ok, added, false)
        }
        Err(e) => (
            json!({ "ok": false, "error": format!("Notion could not be checked: {e}") }),
            false,
            false,
            true,
        ),
    };
    let changed = notion_changed
        || !webhooks.created.is_empty()
        || webhooks.keys.as_ref().is_some_and(|k| !k.is_empty());
    // A warning is something only the user can fix, so the setup is not done.
    let ok = notion_ok && webhooks.error.is_none() && webhooks.warnings.is_empty();
    let status = if notion_failed || webhooks.error.is_some() {
        502
    } else {
        200
    };
    if status == 200 {
        if let Err(e) = claim.finish() {
            tracing::warn!(error = %format!("{e:#}"), "could not record the end of setup");
        }
    }
    tracing::info!(ok, changed, created = webhooks.created.len(), "setup ran");
    Response::json(
        status,
        &json!({
            "ok": ok,
            "changed": changed,
            "webhook_url": url,
            "notion": notion_json,
            "webhooks": webhooks.to_json(),
        }),
    )
}

/// The webhook step: list, create what is missing, store the keys.
async fn set_up_webhooks(
    platform: &Platform,
    openphone: &OpenPhone<'_>,
    url: &str,
) -> WebhookReport {
    let mut report = WebhookReport::default();
    let listed = match openphone.list::<Webhook>("/v1/webhooks", &[]).await {
        Ok(page) => page.data,
        Err(e) => {
            // Nothing is known, so nothing is created and no stored key is dropped.
            report.error = Some(format!("OpenPhone's webhooks could not be listed: {e}"));
            return report;
        }
    };
    let (mut here, elsewhere): (Vec<Webhook>, Vec<Webhook>) = listed
        .into_iter()
        .filter(|w| w.deleted_at.is_none())
        .partition(|w| w.url.trim_end_matches('/') == url);
    report.elsewhere = elsewhere.len();
    report.found = here.iter().map(Webhook::summary).collect();

    let missing = missing_events(&here.iter().collect::<Vec<_>>());
    for (family, events) in missing {
        let body = json!({ "url": url, "events": events, "resourceIds": ["*"], "label": LABEL });
        match openphone
            .create::<Webhook>(&format!("/v1/webhooks/{family}"), &body)
            .await
        {
            Ok(created) => {
                report
                    .created
                    .push(json!({ "id": created.id, "family": family, "events": created.events }));
                here.push(created);
            }
            Err(e) => {
                report.error = Some(create_error(family, &e));
                break;
            }
        }
    }

    report.warnings = here.iter().flat_map(Webhook::warnings).collect();
    // Created webhooks' keys are stored even when a later create failed: they deliver already.
    let current: Vec<WebhookKey<'_>> = here
        .iter()
        .map(|w| WebhookKey {
            webhook_id: &w.id,
            url: &w.url,
            events: &w.events,
            key: w.key.as_ref(),
        })
        .collect();
    // Every webhook OpenPhone still lists, wherever it points: their stored keys stay.
    let listed: Vec<&str> = here
        .iter()
        .chain(&elsewhere)
        .map(|w| w.id.as_str())
        .collect();
    match keys::sync_listed(platform, &current, &listed)
        .and_then(|changes| Ok((changes, keys::stored_webhook_ids(platform)?)))
    {
        Ok((changes, stored)) => {
            report.kept_elsewhere = elsewhere
                .iter()
                .filter(|w| stored.contains(&w.id))
                .map(|w| json!({ "id": w.id, "url": w.url, "events": w.events }))
                .collect();
            if !report.kept_elsewhere.is_empty() {
                report.notes.push(format!(
                    "the signing keys of {} webhook(s) pointing at another URL than {url} are kept, so their \
                     deliveries are still accepted (see webhooks.keys.kept_elsewhere): if that URL was a \
                     mistake or is no longer used, delete those webhooks in OpenPhone and run setup again",
                    report.kept_elsewhere.len()
                ));
            }
            report.keys = Some(changes);
            report.stored = stored;
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "storing webhook keys failed");
            report.error = Some(format!("the webhook keys could not be stored: {e:#}"));
        }
    }
    report
}

fn create_error(family: &str, e: &ApiError) -> String {
    let landed = if e.is_transient() && !matches!(e, ApiError::RateLimited { .. }) {
        " (it may have been created anyway: run setup again, it adopts a webhook it finds)"
    } else {
        ""
    };
    format!("the {family} webhook could not be created: {e}{landed}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database failure once the edge let the request in is the edge's one `503`: its cause (here a
    /// missing table) goes to the log, never to the client.
    #[tokio::test]
    async fn a_database_failure_is_the_edges_503_without_its_cause() {
        let (_dir, platform, _clock) = crate::testing::migrated_platform().await;
        platform.sql.execute("DROP TABLE job_claims", &[]).unwrap();
        let notion = NotionConfig {
            api_key: Secret::new("secret_notion"),
            api_base: "http://127.0.0.1:9".into(),
            calls_database_id: "calls".into(),
            messages_database_id: "messages".into(),
            canvas_database_id: None,
        };
        let openphone = OpenPhoneConfig {
            api_key: Secret::new("op-key"),
            api_base: "http://127.0.0.1:9".into(),
            media_base: "http://127.0.0.1:9".into(),
        };
        let body = br#"{"public_url": "https://sync.example.com"}"#;
        let response = run(&platform, &notion, &openphone, body).await;
        assert_eq!(response, crate::api::unavailable());
    }

    #[test]
    fn the_webhook_url_is_the_public_url_plus_the_route() {
        assert_eq!(
            webhook_url("https://sync.example.com").unwrap(),
            "https://sync.example.com/webhooks/openphone"
        );
        assert_eq!(
            webhook_url(" https://sync.example.com/app/ ").unwrap(),
            "https://sync.example.com/app/webhooks/openphone"
        );
        assert_eq!(
            webhook_url("https://sync.example.com/webhooks/openphone/").unwrap(),
            "https://sync.example.com/webhooks/openphone"
        );
        for bad in [
            "sync.example.com",
            "ftp://sync.example.com",
            "https://sync.example.com/?x=1",
            "https://u:p@sync.example.com",
            "",
        ] {
            assert!(webhook_url(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn webhook(events: &[&str]) -> Webhook {
        Webhook {
            id: "WH1".into(),
            url: "https://x/webhooks/openphone".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            status: None,
            resource_ids: Vec::new(),
            label: None,
            deleted_at: None,
            key: None,
        }
    }

    #[test]
    fn only_events_no_webhook_delivers_are_missing() {
        assert_eq!(missing_events(&[]).len(), 4);
        let calls_only = webhook(&["call.completed", "call.ringing"]);
        let summaries = webhook(&["call.summary.completed"]);
        assert_eq!(
            missing_events(&[&calls_only, &summaries]),
            vec![
                ("calls", vec!["call.recording.completed"]),
                ("messages", vec!["message.received", "message.delivered"]),
                ("call-transcripts", vec!["call.transcript.completed"]),
            ]
        );
    }

    #[test]
    fn disabled_keyless_or_partial_webhooks_are_warned_about() {
        let mut hook = webhook(&["call.completed"]);
        hook.key = Some(Secret::new("a2V5"));
        assert!(hook.warnings().is_empty());
        hook.status = Some("disabled".into());
        hook.key = None;
        hook.resource_ids = vec!["PN1".into()];
        let warnings = hook.warnings().join("\n");
        for says in [
            "is disabled",
            "did not give the signing key",
            "delivers only for PN1",
        ] {
            assert!(warnings.contains(says), "{warnings}");
        }
    }

    #[test]
    fn a_listed_key_is_read_but_never_shown() {
        let listed: Webhook = serde_json::from_value(json!({
            "id": "WH1", "url": "https://x/webhooks/openphone", "events": ["call.completed"], "key": "c2VjcmV0",
            "status": "enabled", "resourceIds": ["*"],
        }))
        .unwrap();
        assert_eq!(listed.key.as_ref().map(Secret::expose), Some("c2VjcmV0"));
        assert!(!listed.summary().to_string().contains("c2VjcmV0"));
    }
}
