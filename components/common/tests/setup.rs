//! `POST /admin/setup` against local OpenPhone and Notion servers: the webhooks it creates (and does not
//! create twice, or touch when they point elsewhere), and the signing keys the intake then accepts — until
//! the webhook is deleted in OpenPhone and setup runs again (a setup run with another URL keeps them).

use common::admin::setup;
use common::api::{Request, Response};
use common::configuration::Settings;
use common::platform::{Clock, HttpRequest, Method};
use common::testing::World;
use common::webhook::intake;
use serde_json::{json, Value};
use test_servers::openphone::model::Webhook;
use test_servers::webhooks::{MessageFixture, SignedDelivery};

const PUBLIC_URL: &str = "https://sync.example.com";
const WEBHOOK_URL: &str = "https://sync.example.com/webhooks/openphone";

async fn run_setup(world: &World) -> (u16, Value) {
    run_setup_at(world, PUBLIC_URL).await
}

async fn run_setup_at(world: &World, public_url: &str) -> (u16, Value) {
    let body = json!({ "public_url": public_url }).to_string();
    let response: Response = setup::run(
        &world.platform,
        &world.notion_config,
        &world.openphone_config,
        body.as_bytes(),
    )
    .await;
    let text = String::from_utf8(response.body.clone()).unwrap();
    for webhook in world.openphone.webhooks() {
        assert!(
            !text.contains(&webhook.key),
            "setup answered with a signing key: {text}"
        );
    }
    (response.status, response.json_body())
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A list of ids (`["WH…", …]`), sorted.
fn sorted(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A `message.received` delivery signed with `key_base64`, as the intake sees it.
fn delivery(world: &World, event_id: &str, key_base64: &str) -> Request {
    let now = chrono::Utc::now();
    let message = MessageFixture {
        event_id: event_id.into(),
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    };
    let signed = SignedDelivery::legacy(
        key_base64,
        world.clock.now_ms(),
        &message.message_received(),
    )
    .unwrap();
    Request {
        method: "POST".into(),
        path: "/webhooks/openphone".into(),
        headers: signed.headers,
        body: signed.body,
        ..Default::default()
    }
}

/// Creates a webhook in OpenPhone the way a user would (not through setup).
async fn create_webhook(world: &World, family: &str, url: &str, events: &[&str]) -> Webhook {
    create_webhook_with(world, family, json!({ "url": url, "events": events })).await
}

async fn create_webhook_with(world: &World, family: &str, body: Value) -> Webhook {
    let request = HttpRequest::new(
        Method::Post,
        format!("{}/v1/webhooks/{family}", world.openphone.base_url()),
    )
    .header("authorization", world.openphone.api_key())
    .json(&body);
    let response = world.platform.http.send(request).await.unwrap();
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let id = serde_json::from_slice::<Value>(&response.body).unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    world
        .openphone
        .webhooks()
        .into_iter()
        .find(|w| w.id == id)
        .unwrap()
}

async fn delete_webhook(world: &World, id: &str) {
    let request = HttpRequest::new(
        Method::Delete,
        format!("{}/v1/webhooks/{id}", world.openphone.base_url()),
    )
    .header("authorization", world.openphone.api_key());
    assert_eq!(world.platform.http.send(request).await.unwrap().status, 204);
}

#[tokio::test]
async fn setup_on_an_empty_openphone_creates_four_webhooks_and_a_second_run_none() {
    let world = World::new().await;
    let (status, first) = run_setup(&world).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(first["changed"], true);
    assert_eq!(first["webhook_url"], WEBHOOK_URL);
    assert_eq!(
        first["webhooks"]["created"].as_array().unwrap().len(),
        4,
        "{first}"
    );

    let hooks = world.openphone.webhooks();
    assert_eq!(hooks.len(), 4);
    let mut events: Vec<&str> = hooks
        .iter()
        .flat_map(|w| w.events.iter().map(String::as_str))
        .collect();
    events.sort_unstable();
    assert_eq!(
        events,
        [
            "call.completed",
            "call.recording.completed",
            "call.summary.completed",
            "call.transcript.completed",
            "message.delivered",
            "message.received",
        ]
    );
    assert!(hooks
        .iter()
        .all(|w| w.url == WEBHOOK_URL && w.resource_ids == ["*"] && w.status == "enabled"));
    let created_ids: Vec<String> = {
        let mut ids: Vec<String> = hooks.iter().map(|w| w.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(first["webhooks"]["keys"]["stored"], json!(created_ids));

    let (status, second) = run_setup(&world).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["ok"], true);
    assert_eq!(second["changed"], false, "{second}");
    assert_eq!(second["webhooks"]["created"], json!([]));
    assert_eq!(ids(&second["webhooks"]["found"]), created_ids);
    assert_eq!(
        second["webhooks"]["keys"]["changes"],
        json!({ "added": [], "updated": [], "removed": [] })
    );
    assert_eq!(
        world.openphone.webhooks().len(),
        4,
        "the second run created webhooks"
    );
    for family in ["calls", "messages", "call-summaries", "call-transcripts"] {
        assert_eq!(
            world
                .openphone
                .request_count(&format!("POST /v1/webhooks/{family}")),
            1,
            "{family}"
        );
    }
}

#[tokio::test]
async fn webhooks_elsewhere_are_left_alone_and_a_partial_one_is_completed() {
    let world = World::new().await;
    let elsewhere = create_webhook(
        &world,
        "messages",
        "https://other.example.com/hook",
        &["message.received"],
    )
    .await;
    let partial = create_webhook(&world, "calls", WEBHOOK_URL, &["call.completed"]).await;

    let (status, report) = run_setup(&world).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["webhooks"]["pointing_elsewhere"], 1);
    assert_eq!(ids(&report["webhooks"]["found"]), vec![partial.id.clone()]);
    let created = report["webhooks"]["created"].as_array().unwrap();
    let calls = created.iter().find(|c| c["family"] == "calls").unwrap();
    assert_eq!(
        calls["events"],
        json!(["call.recording.completed"]),
        "only what the found webhook lacks"
    );
    assert_eq!(created.len(), 4);

    let hooks = world.openphone.webhooks();
    assert_eq!(hooks.len(), 6);
    assert_eq!(
        hooks.iter().find(|w| w.id == elsewhere.id),
        Some(&elsewhere),
        "the other webhook changed"
    );
    assert_eq!(hooks.iter().filter(|w| w.url == WEBHOOK_URL).count(), 5);

    // The found webhook's key is adopted; the other one's is not.
    assert_eq!(
        intake::handle(
            &world.platform,
            &Settings::new(world.platform.vars.clone()),
            &delivery(&world, "EV1", &partial.key)
        )
        .await
        .response
        .status,
        202
    );
    assert_eq!(
        intake::handle(
            &world.platform,
            &Settings::new(world.platform.vars.clone()),
            &delivery(&world, "EV2", &elsewhere.key)
        )
        .await
        .response
        .status,
        401
    );
}

#[tokio::test]
async fn a_stored_key_verifies_until_its_webhook_is_deleted_and_setup_runs_again() {
    let world = World::new().await;
    // Without a key there is nothing to verify with (openphone_webhook_secret is not set here).
    let before = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EV0", "c2VjcmV0"),
    )
    .await;
    assert_eq!(before.response.status, 503);

    run_setup(&world).await;
    let old = world
        .openphone
        .webhooks()
        .into_iter()
        .find(|w| w.events.contains(&"message.received".to_owned()))
        .unwrap();
    let accepted = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EV1", &old.key),
    )
    .await;
    assert_eq!(
        accepted.response.status,
        202,
        "{:?}",
        accepted.response.json_body()
    );
    let forged = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EV2", "Zm9yZ2Vk"),
    )
    .await;
    assert_eq!(forged.response.status, 401);

    delete_webhook(&world, &old.id).await;
    let (status, report) = run_setup(&world).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["webhooks"]["keys"]["changes"]["removed"],
        json!([old.id])
    );
    let recreated = world
        .openphone
        .webhooks()
        .into_iter()
        .find(|w| w.events.contains(&"message.received".to_owned()))
        .unwrap();
    assert_ne!(recreated.id, old.id);

    let refused = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EV3", &old.key),
    )
    .await;
    assert_eq!(
        refused.response.status, 401,
        "the deleted webhook's key still works"
    );
    let fresh = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EV4", &recreated.key),
    )
    .await;
    assert_eq!(fresh.response.status, 202);
}

#[tokio::test]
async fn a_failed_create_keeps_the_keys_of_what_was_created_and_a_rerun_completes() {
    use test_servers::{Fault, FaultRule};
    let world = World::new().await;
    world
        .openphone
        .inject(FaultRule::next(1, Fault::Status(500)).on("POST /v1/webhooks/messages"));
    let (status, report) = run_setup(&world).await;
    assert_eq!(status, 502, "{report}");
    assert_eq!(report["ok"], false);
    assert!(
        report["webhooks"]["error"]
            .as_str()
            .unwrap()
            .contains("messages webhook could not be created"),
        "{report}"
    );
    // The calls webhook was created before the failure, and its deliveries are already accepted.
    let calls = world
        .openphone
        .webhooks()
        .into_iter()
        .find(|w| w.events.contains(&"call.completed".to_owned()))
        .unwrap();
    assert_eq!(report["webhooks"]["keys"]["stored"], json!([calls.id]));

    let (status, report) = run_setup(&world).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true);
    assert_eq!(world.openphone.webhooks().len(), 4);
    assert_eq!(
        report["webhooks"]["keys"]["stored"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn a_bad_public_url_is_refused_before_anything_is_asked() {
    let world = World::new().await;
    for body in [
        json!({}),
        json!({ "public_url": "sync.example.com" }),
        json!({ "public_url": 7 }),
    ] {
        let response = setup::run(
            &world.platform,
            &world.notion_config,
            &world.openphone_config,
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(response.status, 400, "{body}");
        assert!(
            response.json_body()["error"]
                .as_str()
                .unwrap()
                .contains("public_url"),
            "{body}"
        );
    }
    assert_eq!(
        world.openphone.total_requests() + world.notion.total_requests(),
        0
    );
}

#[tokio::test]
async fn two_setups_never_run_at_once() {
    let world = World::new().await;
    let running = common::jobs::JobClaim::try_claim(&world.platform, setup::JOB, 0, 60_000)
        .unwrap()
        .unwrap();
    let (status, report) = run_setup(&world).await;
    assert_eq!(status, 409, "{report}");
    assert!(world.openphone.webhooks().is_empty());
    drop(running);
    assert_eq!(run_setup(&world).await.0, 200);
}

#[tokio::test]
async fn a_disabled_or_partial_webhook_here_is_reported_not_duplicated() {
    let world = World::new().await;
    let body = json!({
        "url": WEBHOOK_URL, "events": ["call.summary.completed"], "status": "disabled", "resourceIds": ["PNtoDbDhuz"],
    });
    let disabled = create_webhook_with(&world, "call-summaries", body).await;
    let (status, report) = run_setup(&world).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["ok"], false,
        "the user has something to fix: {report}"
    );
    let warnings = report["webhooks"]["warnings"].to_string();
    assert!(
        warnings.contains(&format!("webhook {} is disabled", disabled.id)),
        "{warnings}"
    );
    assert!(
        warnings.contains("delivers only for PNtoDbDhuz"),
        "{warnings}"
    );
    let created = report["webhooks"]["created"].as_array().unwrap();
    assert!(
        created.iter().all(|c| c["family"] != "call-summaries"),
        "{report}"
    );
    assert_eq!(world.openphone.webhooks().len(), 4);
}

#[tokio::test]
async fn setup_with_another_url_keeps_the_keys_of_webhooks_that_still_exist() {
    const TYPO_URL: &str = "https://sync.exmaple.com";
    let world = World::new().await;
    assert_eq!(run_setup(&world).await.0, 200);
    let mut first: Vec<Webhook> = world.openphone.webhooks();
    first.sort_by(|a, b| a.id.cmp(&b.id));
    let first_ids: Vec<String> = first.iter().map(|w| w.id.clone()).collect();
    let messages_key = |hooks: &[Webhook]| {
        hooks
            .iter()
            .find(|w| w.events.contains(&"message.received".to_owned()))
            .unwrap()
            .key
            .clone()
    };
    let first_key = messages_key(&first);

    // A mistyped public_url: new webhooks there, and the first ones' keys stay (OpenPhone still lists
    // them, and they still deliver here).
    let (status, report) = run_setup_at(&world, TYPO_URL).await;
    assert_eq!(status, 200, "{report}");
    let accepted = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EVkept1", &first_key),
    )
    .await;
    assert_eq!(
        accepted.response.status,
        202,
        "{:?}",
        accepted.response.json_body()
    );
    assert_eq!(report["webhooks"]["created"].as_array().unwrap().len(), 4);
    assert_eq!(report["webhooks"]["pointing_elsewhere"], 4);
    let keys = &report["webhooks"]["keys"];
    assert_eq!(keys["changes"]["removed"], json!([]), "{report}");
    assert_eq!(ids(&keys["kept_elsewhere"]), first_ids, "{report}");
    assert!(keys["kept_elsewhere"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["url"] == WEBHOOK_URL));
    assert_eq!(keys["stored"].as_array().unwrap().len(), 8);
    assert!(
        report["webhooks"]["notes"].to_string().contains("kept"),
        "{report}"
    );

    // The first webhooks deleted in OpenPhone, then setup again: only now are their keys dropped.
    for id in &first_ids {
        delete_webhook(&world, id).await;
    }
    let (status, report) = run_setup_at(&world, TYPO_URL).await;
    assert_eq!(status, 200, "{report}");
    let keys = &report["webhooks"]["keys"];
    assert_eq!(sorted(&keys["changes"]["removed"]), first_ids, "{report}");
    assert_eq!(keys["kept_elsewhere"], json!([]));
    assert_eq!(report["webhooks"]["notes"], json!([]));
    let refused = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EVkept2", &first_key),
    )
    .await;
    assert_eq!(
        refused.response.status, 401,
        "a deleted webhook's key still works"
    );
    let second_key = messages_key(&world.openphone.webhooks());
    let fresh = intake::handle(
        &world.platform,
        &Settings::new(world.platform.vars.clone()),
        &delivery(&world, "EVkept3", &second_key),
    )
    .await;
    assert_eq!(fresh.response.status, 202);
}
