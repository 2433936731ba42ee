//! `POST /webhooks/openphone`: verify, store once, answer. No API work happens here: the answer goes out
//! first and the component then kicks the drain. A signature verifies with a key `POST /admin/setup`
//! stored ([`keys`]) or with the key(s) of `openphone_webhook_secret`.
//!
//! | Status | When |
//! |---|---|
//! | `202` | a new event was stored (`"status": "accepted"`, or `"skipped"` for a type the sync ignores) |
//! | `200` | the event was already stored (a redelivery) |
//! | `400` | the body is not a JSON object, or has no event id or type |
//! | `401` | the signature is missing, malformed, stale (±5 minutes) or does not match |
//! | `405` | not a `POST` (answered by the edge, [`crate::http`]) |
//! | `413` | the body is over [`MAX_BODY_BYTES`] (answered by the edge, which reads at most that much) |
//! | `503` | no signing key (neither `openphone_webhook_secret` nor a key stored by `/admin/setup`), a secret that does not decode, or a database unavailable (the sender retries) |

use serde_json::json;

use crate::api::{self, Request, Response};
use crate::configuration::{Settings, WebhookConfig};
use crate::platform::Platform;
use crate::queue::{Enqueued, NewEvent, Queue};
use crate::webhook::envelope::{self, Disposition};
use crate::webhook::keys;
use crate::webhook::signature::{self, SignatureHeaders, Verified};

/// The largest webhook body accepted; OpenPhone's payloads are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The answer to a webhook delivery, and whether it kicks the drain.
#[derive(Debug, Clone, PartialEq)]
pub struct Intake {
    /// What to send back.
    pub response: Response,
    /// The start of the drain-kick window this delivery opened (epoch ms): it stored the window's first
    /// event the drain processes, so it kicks the drain after answering ([`crate::webhook::kick`]).
    pub kick_window: Option<i64>,
}

impl Intake {
    fn answer(response: Response) -> Self {
        Self {
            response,
            kick_window: None,
        }
    }
}

/// Handles one webhook delivery (a `POST` of at most [`MAX_BODY_BYTES`]: the edge refuses other methods
/// and larger bodies). The read of the stored keys brings the intake database's schema up to date.
pub async fn handle(platform: &Platform, settings: &Settings, request: &Request) -> Intake {
    let now = platform.clock.now_ms();
    let headers = SignatureHeaders::of(request);
    let verified = match verify(platform, settings, &headers, request, now).await {
        Ok(verified) => verified,
        Err(refusal) => return Intake::answer(refusal),
    };
    let webhook_id = match &verified {
        Verified::Standard { webhook_id } => Some(webhook_id.as_str()),
        Verified::Legacy => None,
    };
    let envelope = match envelope::parse(&request.body, webhook_id) {
        Ok(envelope) => envelope,
        Err(e) => return Intake::answer(Response::error(400, e.to_string())),
    };
    // Parsed JSON is valid UTF-8.
    let Ok(payload) = std::str::from_utf8(&request.body) else {
        return Intake::answer(Response::error(400, "the body is not UTF-8"));
    };
    let (event_type, skip_reason) = match &envelope.disposition {
        Disposition::Process(event_type) => (event_type.as_str(), None),
        Disposition::Skip(reason) => (envelope.raw_type.as_str(), Some(*reason)),
    };
    let event = NewEvent {
        id: envelope.id.as_str(),
        event_type,
        phone_number_id: envelope.phone_number_id.as_ref().map(|n| n.as_str()),
        resource_id: envelope.resource_id.as_deref(),
        created_at: envelope.created_at_ms.unwrap_or(now),
        payload,
        skip_reason,
    };
    let span = tracing::info_span!("webhook.store", id = event.id, r#type = event_type);
    let _entered = span.enter();
    match Queue::of(platform).enqueue(&event, now) {
        Ok(Enqueued::New { opened_kick_window }) => {
            tracing::info!(skipped = skip_reason.is_some(), "webhook event stored");
            let mut body = json!({
                "status": if skip_reason.is_some() { "skipped" } else { "accepted" },
                "id": event.id,
                "type": event_type,
            });
            if let Some(reason) = skip_reason {
                body["reason"] = reason.into();
            }
            Intake {
                response: Response::json(202, &body),
                kick_window: opened_kick_window,
            }
        }
        Ok(Enqueued::Duplicate) => {
            tracing::info!("webhook event already stored");
            Intake::answer(Response::json(
                200,
                &json!({ "status": "duplicate", "id": event.id }),
            ))
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "storing a webhook event failed");
            Intake::answer(api::unavailable())
        }
    }
}

/// Verifies a delivery with the keys `POST /admin/setup` stored, then, when none of them does, with
/// those of `openphone_webhook_secret`. The stored keys come with the schema check's read; the variable
/// is read only when they are not enough, since every variable Spin resolves costs it a blocking
/// hand-off (about 0.05 ms of its CPU a read, docs/performance.md). The refusal is the answer: `503`
/// with the database unavailable (or the app's, while an older build's keys wait to be carried over
/// and none verifies), a misconfigured secret or no key at all; `401` when no key verifies.
async fn verify(
    platform: &Platform,
    settings: &Settings,
    headers: &SignatureHeaders<'_>,
    request: &Request,
    now: i64,
) -> Result<Verified, Response> {
    let stored = match keys::signing_keys(platform).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "reading the stored webhook keys failed");
            return Err(api::unavailable());
        }
    };
    // Why the last set of keys tried did not verify: the answer when no set does.
    let mut refusal = None;
    let mut verify_with = |keys: &[Vec<u8>]| {
        if keys.is_empty() {
            return None;
        }
        signature::verify(headers, &request.body, keys, now)
            .map_err(|e| refusal = Some(e))
            .ok()
    };
    if let Some(verified) = verify_with(&stored.keys) {
        return Ok(verified);
    }
    let config = settings.load(WebhookConfig::load).map_err(|e| {
        tracing::error!(error = %e, "webhook signing secret misconfigured");
        Response::error(
            503,
            format!("the webhook signing secret is not usable: {e}"),
        )
    })?;
    if let Some(verified) = verify_with(&config.signing_keys) {
        return Ok(verified);
    }
    if let Some(e) = stored.not_carried_over {
        // The key that verifies this delivery may be one an older build stored: the sender retries.
        tracing::error!(
            error = %format!("{e:#}"),
            "webhook not verified while an older build's keys wait to be carried over"
        );
        return Err(api::unavailable());
    }
    let Some(refusal) = refusal else {
        tracing::error!(
            "no webhook signing key: neither openphone_webhook_secret nor a stored key"
        );
        return Err(Response::error(
            503,
            "no webhook signing key is configured: run POST /admin/setup, or set openphone_webhook_secret",
        ));
    };
    tracing::warn!(error = %refusal, "webhook refused");
    Err(Response::error(401, refusal.to_string()))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::rc::Rc;

    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    use super::*;
    use crate::platform::native::{ManualClock, MapVariables, NativePlatformBuilder};
    use crate::testing::{
        event_body, event_count, migrated_platform, platform_in, signed_webhook,
        signed_webhook_with, state_of, SIGNING_KEY, SIGNING_SECRET, T0,
    };

    /// The intake with the settings the edge would make for `request`, on a migrated platform (where
    /// nothing it awaits waits).
    fn handle(platform: &Platform, request: &Request) -> Intake {
        futures::executor::block_on(super::handle(
            platform,
            &Settings::new(platform.vars.clone()),
            request,
        ))
    }

    const CREATED: &str = "2025-10-20T19:22:20.000Z";

    /// Event `id` as the queue holds it once admitted.
    fn stored(platform: &Platform, id: &str) -> serde_json::Value {
        Queue::of(platform).admit().unwrap();
        let rows = platform
            .sql
            .execute(
                "SELECT type, phone_number_id, resource_id, created_at, payload, state, skip_reason
                 FROM events WHERE id = ?1",
                &[id.into()],
            )
            .unwrap();
        let row = rows.first().unwrap();
        json!({
            "type": row.str("type").unwrap(),
            "phone_number_id": row.opt_str("phone_number_id").unwrap(),
            "resource_id": row.opt_str("resource_id").unwrap(),
            "created_at": row.i64("created_at").unwrap(),
            "payload": row.str("payload").unwrap(),
            "state": row.str("state").unwrap(),
            "skip_reason": row.opt_str("skip_reason").unwrap(),
        })
    }

    #[tokio::test]
    async fn a_new_event_is_stored_raw_and_answered_202_and_a_redelivery_200() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let body = event_body("EV1", "call.completed", "PNtoDbDhuz", "AC1", CREATED);
        let first = handle(&platform, &signed_webhook(&body, T0));
        assert_eq!(
            first.response.status,
            202,
            "{:?}",
            first.response.json_body()
        );
        assert_eq!(first.response.json_body()["status"], "accepted");
        assert_eq!(
            first.kick_window,
            Some(T0 - T0.rem_euclid(crate::queue::KICK_WINDOW_MS)),
            "the first event of its window kicks the drain"
        );
        assert_eq!(
            stored(&platform, "EV1"),
            json!({
                "type": "call.completed", "phone_number_id": "PNtoDbDhuz", "resource_id": "AC1",
                "created_at": T0 - 5_427, "payload": body, "state": "pending", "skip_reason": null,
            })
        );
        // OpenPhone retries with a fresh signature.
        let again = handle(&platform, &signed_webhook(&body, T0 + 1_000));
        assert_eq!(again.response.status, 200);
        assert_eq!(again.response.json_body()["status"], "duplicate");
        assert_eq!(again.kick_window, None);
        assert_eq!(event_count(&platform), 1);
    }

    #[tokio::test]
    async fn a_delivery_is_stored_with_the_intake_database_alone() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let without_the_app_database = Platform {
            sql: Rc::new(crate::testing::UnavailableSql),
            ..platform.clone()
        };
        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);
        let first = handle(&without_the_app_database, &signed_webhook(&body, T0));
        assert_eq!(
            first.response.status,
            202,
            "{:?}",
            first.response.json_body()
        );
        let again = handle(&without_the_app_database, &signed_webhook(&body, T0 + 1));
        assert_eq!(again.response.status, 200);
        // Until an older build's keys are carried over from the app's database, a delivery no key
        // verifies may be signed with one of them: it is retried later, not refused.
        let other_key = signed_webhook_with(b"an older build's key", &body, T0);
        let unsure = handle(&without_the_app_database, &other_key);
        assert_eq!(unsure.response.status, 503, "the sender retries");
        assert_eq!(handle(&platform, &other_key).response.status, 401);
        assert_eq!(stored(&platform, "EV1")["state"], "pending");

        let without_the_intake_database = Platform {
            intake: Rc::new(crate::testing::UnavailableSql),
            ..platform.clone()
        };
        let body = event_body("EV2", "call.completed", "PN1", "AC2", CREATED);
        let refused = handle(&without_the_intake_database, &signed_webhook(&body, T0));
        assert_eq!(refused.response.status, 503, "the sender retries");
        assert_eq!(event_count(&platform), 1);
    }

    #[tokio::test]
    async fn ignored_types_are_stored_as_skipped_and_do_not_kick_the_drain() {
        let (_dir, platform, _clock) = migrated_platform().await;
        for (id, event_type) in [
            ("EV1", "call.ringing"),
            ("EV2", "contact.updated"),
            ("EV3", "brand.new"),
        ] {
            let intake = handle(
                &platform,
                &signed_webhook(&event_body(id, event_type, "PN1", "AC1", CREATED), T0),
            );
            assert_eq!(intake.response.status, 202);
            assert_eq!(intake.response.json_body()["status"], "skipped");
            assert_eq!(intake.kick_window, None);
            let row = stored(&platform, id);
            assert_eq!(row["state"], "skipped");
            assert_eq!(row["type"], event_type);
            assert!(row["skip_reason"].as_str().unwrap().len() > 5);
        }
    }

    #[tokio::test]
    async fn the_summary_alias_is_stored_under_its_canonical_type() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let body =
            r#"{"id":"EV9","type":"callSummary","data":{"object":{"callId":"AC7","summary":[]}}}"#;
        assert_eq!(
            handle(&platform, &signed_webhook(body, T0)).response.status,
            202
        );
        let row = stored(&platform, "EV9");
        assert_eq!(row["type"], "call.summary.completed");
        assert_eq!(row["resource_id"], "AC7");
        // No createdAt: the time it was received.
        assert_eq!(row["created_at"], T0);
    }

    fn standard_request(body: &str, webhook_id: &str, at_s: i64) -> Request {
        Request {
            method: "POST".into(),
            headers: vec![
                ("webhook-id".into(), webhook_id.into()),
                ("webhook-timestamp".into(), at_s.to_string()),
                (
                    "webhook-signature".into(),
                    signature::standard_header(SIGNING_KEY, webhook_id, at_s, body.as_bytes()),
                ),
            ],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn standard_webhooks_without_a_body_id_dedupe_on_the_webhook_id() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let body =
            r#"{"type":"message.received","data":{"resource":{"id":"AC3","phoneNumberId":"PN4"}}}"#;
        let first = handle(&platform, &standard_request(body, "msg_abc", T0 / 1000));
        assert_eq!(first.response.status, 202);
        assert_eq!(first.response.json_body()["id"], "msg_abc");
        assert_eq!(stored(&platform, "msg_abc")["phone_number_id"], "PN4");
        let again = handle(
            &platform,
            &standard_request(body, "msg_abc", T0 / 1000 + 60),
        );
        assert_eq!(again.response.status, 200);
    }

    fn assert_refused(platform: &Platform, request: &Request, status: u16, says: &str) {
        let intake = handle(platform, request);
        let error = intake.response.json_body()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(intake.response.status, status, "{error}");
        assert!(
            error.contains(says),
            "{status}: {error:?} does not say {says:?}"
        );
        assert_eq!(intake.kick_window, None);
        assert_eq!(event_count(platform), 0);
    }

    #[tokio::test]
    async fn every_refusal_has_its_status_and_says_why() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);

        let mut unsigned = signed_webhook(&body, T0);
        unsigned.headers.clear();
        assert_refused(&platform, &unsigned, 401, "missing signature");

        let wrong_key = signed_webhook_with(b"not the key", &body, T0);
        assert_refused(&platform, &wrong_key, 401, "invalid signature");

        let mut tampered = signed_webhook(&body, T0);
        tampered.body = body.replace("PN1", "PN2").into_bytes();
        assert_refused(&platform, &tampered, 401, "invalid signature");

        // A delivery captured and replayed six minutes later.
        let replayed = signed_webhook(&body, T0 - 6 * 60 * 1000);
        assert_refused(&platform, &replayed, 401, "stale");

        assert_refused(&platform, &signed_webhook("not json", T0), 400, "not JSON");
        assert_refused(
            &platform,
            &signed_webhook("[]", T0),
            400,
            "not a JSON object",
        );
        assert_refused(
            &platform,
            &signed_webhook(r#"{"type":"call.completed"}"#, T0),
            400,
            "no id",
        );
        assert_refused(
            &platform,
            &signed_webhook(r#"{"id":"EV1"}"#, T0),
            400,
            "no \"type\"",
        );
    }

    async fn platform_without_a_secret(dir: &std::path::Path) -> Platform {
        let platform = NativePlatformBuilder::new(dir)
            .vars(MapVariables::default())
            .clock(Rc::new(ManualClock::at(T0)))
            .build()
            .unwrap();
        crate::migrations::ensure_checked(&platform).await.unwrap();
        platform
    }

    #[tokio::test]
    async fn without_any_signing_key_nothing_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let platform = platform_without_a_secret(dir.path()).await;
        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);
        let request = signed_webhook(&body, T0);
        assert_refused(&platform, &request, 503, "run POST /admin/setup");
        assert_refused(&platform, &request, 503, "openphone_webhook_secret");
    }

    #[tokio::test]
    async fn keys_stored_by_setup_verify_until_their_webhook_is_gone() {
        use crate::configuration::Secret;
        use crate::webhook::keys::{sync, WebhookKey};

        let dir = tempfile::tempdir().unwrap();
        let platform = platform_without_a_secret(dir.path()).await;
        let events = vec!["call.completed".to_owned()];
        let url = "https://sync.example.com/webhooks/openphone";
        let (stored, other) = (Secret::new(SIGNING_SECRET), Secret::new("b3RoZXI="));
        let hook = |id, key| WebhookKey {
            webhook_id: id,
            url,
            events: &events,
            key: Some(key),
        };
        sync(&platform, &[hook("WH1", &stored), hook("WH2", &other)]).unwrap();

        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);
        let first = handle(&platform, &signed_webhook(&body, T0));
        assert_eq!(
            first.response.status,
            202,
            "{:?}",
            first.response.json_body()
        );

        // WH1 was deleted in OpenPhone and setup ran again: its key no longer verifies.
        sync(&platform, &[hook("WH2", &other)]).unwrap();
        let body = event_body("EV2", "call.completed", "PN1", "AC2", CREATED);
        let refused = handle(&platform, &signed_webhook(&body, T0));
        assert_eq!(refused.response.status, 401);
        assert_eq!(event_count(&platform), 1);
    }

    /// Variables that count their reads, and fail every read of `openphone_webhook_secret`.
    #[derive(Default)]
    struct UnreadableSecret {
        reads: std::cell::Cell<usize>,
    }

    impl crate::platform::Variables for UnreadableSecret {
        fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
            self.reads.set(self.reads.get() + 1);
            anyhow::ensure!(
                name != "openphone_webhook_secret",
                "the host cannot read {name}"
            );
            Ok(None)
        }
    }

    /// Stores `secret` as the key of webhook `WH1`, as `POST /admin/setup` does.
    fn store_setup_key(platform: &Platform, secret: &str) {
        use crate::configuration::Secret;
        use crate::webhook::keys::{sync, WebhookKey};

        let events = vec!["call.completed".to_owned()];
        let key = Secret::new(secret);
        let hook = WebhookKey {
            webhook_id: "WH1",
            url: "https://sync.example.com/webhooks/openphone",
            events: &events,
            key: Some(&key),
        };
        sync(platform, &[hook]).unwrap();
    }

    #[tokio::test]
    async fn a_delivery_a_stored_key_verifies_reads_no_variable() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let vars = Rc::new(UnreadableSecret::default());
        let platform = Platform {
            vars: vars.clone(),
            ..platform
        };
        store_setup_key(&platform, SIGNING_SECRET);

        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);
        let accepted = handle(&platform, &signed_webhook(&body, T0));
        assert_eq!(
            accepted.response.status,
            202,
            "{:?}",
            accepted.response.json_body()
        );
        assert_eq!(vars.reads.get(), 0, "no variable was needed");

        // One no stored key verifies might be the configured secret's: that is read.
        let body = event_body("EV2", "call.completed", "PN1", "AC2", CREATED);
        let other_key = signed_webhook_with(b"another key", &body, T0);
        let refused = handle(&platform, &other_key);
        assert_eq!(refused.response.status, 503);
        assert!(
            refused.response.json_body()["error"]
                .as_str()
                .unwrap()
                .contains("not usable"),
            "{:?}",
            refused.response.json_body()
        );
        assert_eq!(event_count(&platform), 1);
    }

    /// The intake database, counting the statements it runs.
    struct CountedSql {
        inner: Rc<dyn crate::platform::Sql>,
        statements: std::cell::Cell<usize>,
    }

    impl crate::platform::Sql for CountedSql {
        fn execute(
            &self,
            statement: &str,
            params: &[crate::platform::Value],
        ) -> anyhow::Result<crate::platform::Rows> {
            self.statements.set(self.statements.get() + 1);
            self.inner.execute(statement, params)
        }
    }

    #[tokio::test]
    async fn a_delivery_costs_the_intake_database_two_statements_and_no_other() {
        let (_dir, platform, _clock) = migrated_platform().await;
        let intake = Rc::new(CountedSql {
            inner: platform.intake.clone(),
            statements: std::cell::Cell::new(0),
        });
        let counted = Platform {
            intake: intake.clone(),
            sql: Rc::new(crate::testing::UnavailableSql),
            ..platform.clone()
        };
        // The status and the statements of one delivery of `body`.
        let deliver = |body: &str| {
            intake.statements.set(0);
            let status = handle(&counted, &signed_webhook(body, T0)).response.status;
            (status, intake.statements.get())
        };
        // Once, the first delivery carries an older build's keys over (there are none here).
        crate::webhook::keys::carry_over(&platform).unwrap();

        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);
        assert_eq!(
            deliver(&body),
            (202, 2),
            "verified by the configured secret"
        );
        assert_eq!(deliver(&body), (200, 2), "a redelivery");

        store_setup_key(&platform, SIGNING_SECRET);
        let body = event_body("EV2", "call.completed", "PN1", "AC2", CREATED);
        assert_eq!(deliver(&body), (202, 2), "verified by a stored key");
        assert_eq!(event_count(&platform), 2);
    }

    #[tokio::test]
    async fn the_first_delivery_brings_a_new_intake_database_up_to_date() {
        let dir = tempfile::tempdir().unwrap();
        let platform = platform_in(dir.path(), Rc::new(ManualClock::at(T0)));
        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);
        let settings = Settings::new(platform.vars.clone());
        let first = super::handle(&platform, &settings, &signed_webhook(&body, T0)).await;
        assert_eq!(
            first.response.status,
            202,
            "{:?}",
            first.response.json_body()
        );
        let versions = platform
            .intake
            .execute(
                "SELECT count(*) AS applied FROM intake_migrations WHERE applied_at IS NOT NULL",
                &[],
            )
            .unwrap();
        assert_eq!(
            versions.first().unwrap().i64("applied").unwrap(),
            crate::migrations::INTAKE_MIGRATIONS.len() as i64
        );
        assert_eq!(state_of(&platform, "EV1"), "pending");
    }

    #[test]
    fn the_same_event_delivered_twenty_times_at_once_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let platform = platform_in(dir.path(), Rc::new(ManualClock::at(T0)));
            futures::executor::block_on(crate::migrations::ensure_checked(&platform)).unwrap();
        }
        let body = event_body("EV1", "call.completed", "PN1", "AC1", CREATED);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..20)
                .map(|i| {
                    let dir = dir.path().to_path_buf();
                    let body = body.clone();
                    s.spawn(move || {
                        let platform = platform_in(&dir, Rc::new(ManualClock::at(T0 + i)));
                        handle(&platform, &signed_webhook(&body, T0 + i))
                            .response
                            .status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 202).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            19,
            "{statuses:?}"
        );
        let platform = platform_in(dir.path(), Rc::new(ManualClock::at(T0)));
        assert_eq!(event_count(&platform), 1);
        assert_eq!(state_of(&platform, "EV1"), "pending");
    }

    fn arbitrary_headers() -> impl Strategy<Value = Vec<(String, String)>> {
        let name = prop_oneof![
            Just("openphone-signature".to_owned()),
            Just("webhook-id".to_owned()),
            Just("webhook-timestamp".to_owned()),
            Just("webhook-signature".to_owned()),
            "[a-z-]{1,20}",
        ];
        let value = prop_oneof![
            any::<String>(),
            "hmac;1;[0-9]{10,13};[A-Za-z0-9+/=]{0,44}",
            "v1,[A-Za-z0-9+/=]{0,44}",
            "[0-9]{9,13}",
        ];
        proptest::collection::vec((name, value), 0..6)
    }

    #[test]
    fn arbitrary_unsigned_deliveries_never_panic_and_never_enqueue() {
        let (_dir, platform, _clock) = futures::executor::block_on(migrated_platform());
        let mut runner = TestRunner::new(Config::with_cases(256));
        let strategy = (
            proptest::collection::vec(any::<u8>(), 0..1024),
            arbitrary_headers(),
        );
        runner
            .run(&strategy, |(body, headers)| {
                let request = Request {
                    method: "POST".into(),
                    headers,
                    body,
                    ..Default::default()
                };
                let intake = handle(&platform, &request);
                prop_assert_eq!(intake.response.status, 401);
                prop_assert_eq!(intake.kick_window, None);
                prop_assert_eq!(event_count(&platform), 0);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn arbitrary_signed_bodies_are_stored_or_refused_as_bad_requests() {
        let (_dir, platform, _clock) = futures::executor::block_on(migrated_platform());
        let mut runner = TestRunner::new(Config::with_cases(256));
        let json_like = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            ("[A-Za-z0-9]{1,20}", "[a-z.]{1,30}")
                .prop_map(|(id, t)| format!(r#"{{"id":"EV{id}","type":"{t}"}}"#).into_bytes()),
        ];
        runner
            .run(&json_like, |body| {
                let before = event_count(&platform);
                let header = signature::legacy_header(SIGNING_KEY, T0, &body);
                let request = Request {
                    method: "POST".into(),
                    headers: vec![("openphone-signature".into(), header)],
                    body,
                    ..Default::default()
                };
                let status = handle(&platform, &request).response.status;
                prop_assert!([200, 202, 400].contains(&status), "status {}", status);
                let after = event_count(&platform);
                prop_assert_eq!(after - before, i64::from(status == 202));
                Ok(())
            })
            .unwrap();
    }
}
