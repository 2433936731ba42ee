//! First contact with a real workspace: what a new user starts from, and what real accounts do that the
//! sync's own databases never would. A fresh workspace (databases with nothing but "Name", no Canvas
//! database) works after `/admin/setup`; a Canvas problem costs a page its relation for a while, never the
//! page; a page a person trashed is left alone; a delivery signed by the official Standard Webhooks library
//! is accepted.

use std::time::Duration;

use e2e::app::{TestApp, TestAppOptions};
use e2e::workload::{CallScript, Line};
use serde_json::{json, Value};
use test_servers::notion::property_text;
use test_servers::webhooks::{MessageFixture, SignedDelivery};

const PATIENCE: Duration = Duration::from_secs(30);

fn text(page: &Value, property: &str) -> String {
    property_text(&page["properties"][property]).unwrap_or_default()
}

fn message(id: &str) -> MessageFixture {
    let now = chrono::Utc::now();
    MessageFixture {
        event_id: format!("EV{id}"),
        message_id: format!("AC{id}"),
        media: Vec::new(),
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_workspace_works_after_setup_without_a_canvas_database() {
    let app = TestApp::start(TestAppOptions {
        fresh_workspace: true,
        with_s3: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let response = app
        .admin_post("/admin/setup", &json!({ "public_url": app.base_url }))
        .await;
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{report:#}");
    let databases = report["notion"]["databases"]
        .as_array()
        .or_else(|| report["databases"].as_array())
        .cloned()
        .unwrap_or_default();
    for role in ["calls", "messages"] {
        let check = databases
            .iter()
            .find(|d| d["role"] == role)
            .unwrap_or_else(|| panic!("no {role} check in {report:#}"));
        assert!(
            check["renamed"].to_string().contains("Name →"),
            "{role}: the title is renamed: {check:#}"
        );
        assert_eq!(check["missing"], json!([]), "{role}: {check:#}");
    }

    // A text, then a whole call.
    let text_message = message("freshtext1");
    assert_eq!(
        app.deliver(&text_message.message_received()).await.status(),
        202
    );
    let line = Line::register(&app.openphone, 0);
    let call = CallScript::answered(
        &app.openphone,
        &line,
        "+15555550123",
        "ACfreshcall",
        chrono::Utc::now(),
    );
    for payload in call.events() {
        assert_eq!(app.deliver(&payload).await.status(), 202);
    }
    let complete = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.messages_ds).len() == 1 && app.has_one_complete_call_page()
        })
        .await;
    assert!(
        complete,
        "calls: {:#?}\nstats: {}\nlogs:\n{}",
        app.notion.pages(&app.calls_ds),
        app.stats().await,
        app.logs()
    );
    let messages = app.notion.pages(&app.messages_ds);
    assert_eq!(text(&messages[0], "Message ID"), text_message.message_id);
    assert_eq!(text(&messages[0], "Content"), text_message.body);
    let calls = app.notion.pages(&app.calls_ds);
    assert_eq!(text(&calls[0], "Call ID"), call.call.call_id);
    assert_eq!(text(&calls[0], "Status"), "completed");
    assert_eq!(app.stats().await["queue"]["dead"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canvas_problem_costs_the_relation_for_a_while_never_the_page() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let canvas = app
        .notion
        .insert_page(
            &app.canvas_ds,
            json!({ "Name": { "title": [{ "text": { "content": "Acme" } }] },
                    "Phone": { "phone_number": "+15555550123" } }),
        )
        .unwrap();
    let canvas_db = app.notion.data_source(&app.canvas_ds).unwrap()["parent"]["database_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Someone removed the integration from the Canvas database.
    app.notion.unshare(&canvas_db);
    let text_message = message("canvasdown1");
    assert_eq!(
        app.deliver(&text_message.message_received()).await.status(),
        202
    );
    let written = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.messages_ds).len() == 1
        })
        .await;
    assert!(written, "the page is written anyway; logs:\n{}", app.logs());
    let page = &app.notion.pages(&app.messages_ds)[0];
    assert_eq!(page["properties"]["Canvas"]["relation"], json!([]));
    app.wait_idle().await;
    let now = app.stats().await;
    assert_eq!(now["queue"]["done"], 1, "{now}");
    assert_eq!(now["canvas_relinks_waiting"], 1, "{now}");

    // Shared again: the next tick after the retry's delay links the page.
    app.notion.share(&canvas_db);
    app.let_time_pass(Duration::from_secs(600)).await.unwrap();
    let tick = app.admin_post("/admin/tick", &json!({})).await;
    assert!(tick.status().is_success(), "tick: {}", tick.status());
    let linked = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.messages_ds)[0]["properties"]["Canvas"]["relation"][0]["id"]
                == canvas.as_str()
        })
        .await;
    assert!(linked, "logs:\n{}", app.logs());
    assert_eq!(app.stats().await["canvas_relinks_waiting"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_trashed_in_notion_is_left_alone_and_nothing_dies() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let sent = MessageFixture {
        event_id: "EVtrashsent".into(),
        message_id: "ACtrash0001".into(),
        created_at: chrono::Utc::now(),
        event_created_at: chrono::Utc::now(),
        media: Vec::new(),
        ..MessageFixture::outgoing("+13365550100", &["+15555550123"])
    };
    let mut queued = sent.message_delivered();
    queued["data"]["object"]["status"] = "sent".into();
    assert_eq!(app.deliver(&queued).await.status(), 202);
    assert!(
        app.eventually(PATIENCE, |app| app.notion.pages(&app.messages_ds).len()
            == 1)
            .await
    );
    let page_id = app.notion.pages(&app.messages_ds)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A person moves the page to the trash.
    let trashed = reqwest::Client::new()
        .patch(format!("{}/v1/pages/{page_id}", app.notion.base_url()))
        .bearer_auth(app.notion.token())
        .header("Notion-Version", "2025-09-03")
        .json(&json!({ "in_trash": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(trashed.status(), 200, "{:?}", trashed.text().await);
    app.wait_idle().await;

    // Then the text is delivered: the event is done, and nothing is written or re-created.
    let mut delivered = sent.message_delivered();
    delivered["id"] = "EVtrashdelivered".into();
    assert_eq!(app.deliver(&delivered).await.status(), 202);
    let last = app
        .stats_when(Duration::from_secs(20), |s| s["queue"]["done"] == 2)
        .await;
    assert_eq!(last["queue"]["done"], 2, "{last}\nlogs:\n{}", app.logs());
    assert_eq!(last["queue"]["dead"], 0, "{last}");
    assert_eq!(last["pages_deleted_in_notion"], 1, "{last}");
    let pages = app.notion.pages(&app.messages_ds);
    assert_eq!(pages.len(), 1, "no page is re-created");
    assert_eq!(
        pages[0]["in_trash"], true,
        "and the trashed one stays there"
    );
}

/// Signs with the official Standard Webhooks library (PyPI `standardwebhooks`, which
/// `scripts/install-test-deps` installs), not with the project's own signer.
fn standard_webhooks_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, body).unwrap();
    let script = "import sys, datetime\n\
                  from standardwebhooks.webhooks import Webhook\n\
                  body = open(sys.argv[4], 'rb').read()\n\
                  at = datetime.datetime.fromtimestamp(int(sys.argv[3]), datetime.timezone.utc)\n\
                  print(Webhook(sys.argv[1]).sign(sys.argv[2], at, body))\n";
    let output = std::process::Command::new("python3")
        .args(["-c", script, secret, id, &timestamp.to_string()])
        .arg(&body_file)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "standardwebhooks (scripts/install-test-deps installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_signed_by_the_official_standard_webhooks_library_is_accepted() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let payload = message("stdwebhook1").message_received();
    let body = serde_json::to_vec(&payload).unwrap();
    let timestamp = chrono::Utc::now().timestamp();
    let secret = format!("whsec_{}", app.webhook_key);
    let signature = standard_webhooks_signature(&secret, "msg_stdwebhook1", timestamp, &body);
    let delivery = SignedDelivery {
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), "msg_stdwebhook1".into()),
            ("webhook-timestamp".into(), timestamp.to_string()),
            ("webhook-signature".into(), signature.clone()),
        ],
        body: body.clone(),
    };
    let answer = app.send_delivery(&delivery).await;
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    // The same library's signature over another body is refused.
    let forged = SignedDelivery {
        body: serde_json::to_vec(&message("stdwebhook2").message_received()).unwrap(),
        ..delivery
    };
    assert_eq!(app.send_delivery(&forged).await.status(), 401);
    let page = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.messages_ds).len() == 1
        })
        .await;
    assert!(page, "logs:\n{}", app.logs());
}
