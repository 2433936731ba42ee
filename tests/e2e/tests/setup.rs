//! Issue 10 end to end, through the built components: `POST /admin/setup` (Notion databases completed,
//! OpenPhone webhooks created once, their keys accepted by the intake until a webhook is deleted and setup
//! runs again — not when setup runs with another URL), and Canvas records created for unknown callers —
//! once, however many events arrive at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::app::{TestApp, TestAppOptions};
use serde_json::{json, Value};
use test_servers::notion::property_text;
use test_servers::openphone::model::{Contact, Webhook};
use test_servers::webhooks::{MessageFixture, SignedDelivery};

fn text(page: &Value, property: &str) -> String {
    property_text(&page["properties"][property]).unwrap_or_default()
}

/// `public_url` as the app's own base URL, so the webhooks point at the app under test.
async fn setup(app: &TestApp) -> (u16, Value, String) {
    setup_at(app, &app.base_url).await
}

async fn setup_at(app: &TestApp, public_url: &str) -> (u16, Value, String) {
    let response = app
        .admin_post("/admin/setup", &json!({ "public_url": public_url }))
        .await;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        body,
    )
}

fn message(event_id: &str, message_id: &str, phone_number_id: &str, from: &str) -> Value {
    let now = chrono::Utc::now();
    MessageFixture {
        event_id: event_id.into(),
        message_id: message_id.into(),
        phone_number_id: phone_number_id.into(),
        from: from.into(),
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    }
    .message_received()
}

async fn deliver_signed_with(app: &TestApp, key: &str, payload: &Value) -> u16 {
    let now = chrono::Utc::now().timestamp_millis();
    let delivery = SignedDelivery::legacy(key, now, payload).unwrap();
    app.send_delivery(&delivery).await.status().as_u16()
}

fn find_webhook(app: &TestApp, event: &str) -> Webhook {
    app.openphone
        .webhooks()
        .into_iter()
        .find(|w| w.events.iter().any(|e| e == event))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_completes_notion_creates_the_webhooks_once_and_their_keys_verify_until_deleted() {
    // A Messages database made by hand, without most of the sync's properties.
    let hand_made = test_servers::Schema::new()
        .title("Message ID")
        .rich_text("Content");
    let app = TestApp::start(TestAppOptions {
        messages_schema: Some(hand_made),
        ..Default::default()
    })
    .await
    .unwrap();

    // The admin token is required, and a refusal does nothing.
    let url = format!("{}/admin/setup", app.base_url);
    let refused = reqwest::Client::new()
        .post(&url)
        .json(&json!({ "public_url": app.base_url }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert!(app.openphone.webhooks().is_empty());

    let (status, first, _) = setup(&app).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["ok"], true, "{first}");
    let webhook_url = format!("{}/webhooks/openphone", app.base_url);
    assert_eq!(first["webhook_url"], webhook_url);
    let messages_db = first["notion"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["role"] == "messages")
        .unwrap();
    assert!(
        messages_db["added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "From"),
        "{messages_db}"
    );
    let hooks = app.openphone.webhooks();
    assert_eq!(hooks.len(), 4, "{first}");
    assert!(hooks.iter().all(|w| w.url == webhook_url));

    let (status, second, _) = setup(&app).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["changed"], false,
        "a second run changed something: {second}"
    );
    assert_eq!(app.openphone.webhooks().len(), 4);
    assert!(
        second["notion"]["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["added"] == json!([])),
        "{second}"
    );

    // A delivery signed with a created webhook's key (not openphone_webhook_secret) is taken and synced.
    let old = find_webhook(&app, "message.received");
    let payload = message("EVsetup1", "ACsetup1", "PNtoDbDhuz", "+15555550123");
    assert_eq!(deliver_signed_with(&app, &old.key, &payload).await, 202);
    let synced = app
        .eventually(Duration::from_secs(30), |app| {
            app.notion.pages(&app.messages_ds).len() == 1
        })
        .await;
    assert!(synced, "logs:\n{}", app.logs());

    // Deleted in OpenPhone, then setup again: the old key is refused, the new webhook's key works.
    let deleted = reqwest::Client::new()
        .delete(format!(
            "{}/v1/webhooks/{}",
            app.openphone.base_url(),
            old.id
        ))
        .header("authorization", app.openphone.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, third, third_text) = setup(&app).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(
        third["webhooks"]["keys"]["changes"]["removed"],
        json!([old.id]),
        "{third}"
    );
    let payload = message("EVsetup2", "ACsetup2", "PNtoDbDhuz", "+15555550123");
    assert_eq!(
        deliver_signed_with(&app, &old.key, &payload).await,
        401,
        "the deleted webhook's key still works"
    );
    let new = find_webhook(&app, "message.received");
    assert_eq!(deliver_signed_with(&app, &new.key, &payload).await, 202);

    // No key ever left the app, in an answer or a log line.
    let logs = app.logs();
    for key in [&old.key, &new.key] {
        assert!(!logs.contains(key.as_str()), "a signing key was logged");
        assert!(
            !third_text.contains(key.as_str()),
            "setup answered with a signing key"
        );
    }
}

async fn delete_webhook(app: &TestApp, id: &str) {
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/webhooks/{id}", app.openphone.base_url()))
        .header("authorization", app.openphone.api_key())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_with_a_mistyped_url_keeps_accepting_the_webhooks_that_still_exist() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let (status, first, _) = setup(&app).await;
    assert_eq!(status, 200, "{first}");
    let here = app.openphone.webhooks();
    let old = find_webhook(&app, "message.received");

    // Setup again with a typo: four more webhooks, pointing nowhere useful; the first ones still deliver
    // here, and their deliveries are still taken.
    let (status, typo, typo_text) = setup_at(&app, "https://sync.exmaple.com").await;
    assert_eq!(status, 200, "{typo}");
    let payload = message("EVtypo1", "ACtypo1", "PNtoDbDhuz", "+15555550123");
    assert_eq!(
        deliver_signed_with(&app, &old.key, &payload).await,
        202,
        "logs:\n{}",
        app.logs()
    );
    assert_eq!(typo["webhooks"]["keys"]["changes"]["removed"], json!([]));
    let kept = typo["webhooks"]["keys"]["kept_elsewhere"]
        .as_array()
        .unwrap();
    assert_eq!(kept.len(), here.len(), "{typo}");
    assert!(
        !typo_text.contains(old.key.as_str()),
        "setup answered with a signing key"
    );

    // Once the first webhooks are deleted in OpenPhone, setup (still with the typo) drops their keys.
    for hook in &here {
        delete_webhook(&app, &hook.id).await;
    }
    let (status, third, _) = setup_at(&app, "https://sync.exmaple.com").await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(
        third["webhooks"]["keys"]["changes"]["removed"]
            .as_array()
            .unwrap()
            .len(),
        here.len(),
        "{third}"
    );
    let payload = message("EVtypo2", "ACtypo2", "PNtoDbDhuz", "+15555550123");
    assert_eq!(
        deliver_signed_with(&app, &old.key, &payload).await,
        401,
        "a deleted webhook's key still works"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_texts_at_once_from_an_unknown_number_create_one_canvas_record() {
    let variables = HashMap::from([("canvas_create_unknown".to_owned(), "true".to_owned())]);
    let app = TestApp::start(TestAppOptions {
        variables,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut contact = Contact::new("CTnew", "Olive", "Owner", &["(555) 555-0142"], &[]);
    contact.default_fields["company"] = json!("Acme Funding");
    app.openphone.add_contact(contact);

    // Twenty texts from the new number, each to another workspace number, so no per-number lease
    // serializes them: the drains kicked by the deliveries process them side by side.
    let payloads: Vec<Value> = (0..20)
        .map(|i| {
            message(
                &format!("EVburst{i:02}"),
                &format!("ACburst{i:02}"),
                &format!("PNburst{i:02}"),
                "+15555550142",
            )
        })
        .collect();
    let statuses = deliver_all_at_once(&app, payloads).await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");

    // A worker that lost the race waits for the winner; any still turned away retries, and the admin
    // drain picks the retries up once they are due.
    let deadline = Instant::now() + Duration::from_secs(120);
    while app.notion.pages(&app.messages_ds).len() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        app.drain().await;
    }
    let messages = app.notion.pages(&app.messages_ds);
    assert_eq!(messages.len(), 20, "logs:\n{}", app.logs());

    let records = app.notion.pages(&app.canvas_ds);
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(text(record, "Name"), "Olive Owner (Acme Funding)");
    assert_eq!(text(record, "Phone"), "+15555550142");
    for page in &messages {
        assert_eq!(
            page["properties"]["Canvas"]["relation"],
            json!([{ "id": record["id"] }]),
            "{}",
            text(page, "Message ID")
        );
    }
    assert_eq!(
        app.openphone.request_count("GET /v1/contacts"),
        1,
        "{:?}",
        app.openphone.request_counts()
    );
}

/// Delivers every payload at once, each from its own task, signed with the app's configured secret.
async fn deliver_all_at_once(app: &TestApp, payloads: Vec<Value>) -> Vec<u16> {
    let mut tasks = tokio::task::JoinSet::new();
    for payload in payloads {
        let url = format!("{}/webhooks/openphone", app.base_url);
        let delivery = SignedDelivery::legacy(
            &app.webhook_key,
            chrono::Utc::now().timestamp_millis(),
            &payload,
        )
        .unwrap();
        tasks.spawn(async move {
            let mut request = reqwest::Client::new().post(url).body(delivery.body);
            for (name, value) in delivery.headers {
                request = request.header(name, value);
            }
            request.send().await.unwrap().status().as_u16()
        });
    }
    tasks.join_all().await
}
