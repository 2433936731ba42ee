//! First contact with a real workspace: what a new user starts from, and what real accounts do that the
//! sync's own databases never would. A fresh workspace (databases with nothing but "Name", no Canvas
//! database) works after `/admin/setup`; a Canvas problem costs a page its relation for a while, never the
//! page; a page a person trashed is left alone; a delivery signed by the official Standard Webhooks library
//! is accepted; pages name the contact and the user who handled them, with an icon by kind, at no OpenPhone
//! request per event once the contacts are indexed; a Canvas record added after calls and texts links them,
//! found by its phone or by its email.

use std::time::Duration;

use common::notion::schema as common_schema;
use e2e::app::{TestApp, TestAppOptions};
use e2e::workload::{CallScript, Line};
use serde_json::{json, Value};
use test_servers::notion::property_text;
use test_servers::openphone::model::{Contact, PhoneNumber};
use test_servers::webhooks::{CallFixture, MessageFixture, SignedDelivery};
use test_servers::Schema;

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

/// An incoming call from `other` to the workspace line `PNtoDbDhuz`, answered by its owner (`USowner`,
/// "Olive Owner"), as an API-created (v4) webhook sends it.
fn answered_call(id: &str, other: &str) -> CallFixture {
    let now = chrono::Utc::now();
    CallFixture {
        other_number: other.into(),
        status: "completed".into(),
        user_id: "USowner".into(),
        created_at: now - chrono::Duration::seconds(90),
        answered_at: Some(now - chrono::Duration::seconds(80)),
        completed_at: Some(now),
        event_created_at: now,
        voicemail: None,
        ..CallFixture::example().with_ids(&format!("AC{id}"), &format!("EV{id}"))
    }
}

fn icon(page: &Value) -> &str {
    page["icon"]["emoji"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_name_the_contact_and_the_user_with_an_icon_by_kind() {
    // A Messages database made before these properties existed (setup not re-run): it still gets pages.
    let old_messages: Vec<(&str, &str)> = common_schema::MESSAGES
        .iter()
        .copied()
        .filter(|(name, _)| !matches!(*name, "Contact" | "Handled By" | "Canvas"))
        .collect();
    let app = TestApp::start(TestAppOptions {
        messages_schema: Some(Schema::from_types(&old_messages, None)),
        ..Default::default()
    })
    .await
    .unwrap();
    app.openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    let mut contact = Contact::new("CTpat", "Pat", "Prospect", &["(555) 555-0123"], &[]);
    contact.default_fields["company"] = json!("Acme Funding");
    app.openphone.add_contact(contact);

    let answered = answered_call("namesanswered", "+15555550123");
    assert_eq!(
        app.deliver(&answered.call_completed_v4()).await.status(),
        202
    );
    // A missed call from a number no contact has, that left a voicemail (a legacy webhook).
    let voicemail = CallFixture {
        other_number: "+15555550199".into(),
        user_id: "USowner".into(),
        created_at: chrono::Utc::now(),
        event_created_at: chrono::Utc::now(),
        ..CallFixture::example().with_ids("ACnamesvoicemail", "EVnamesvoicemail")
    };
    assert_eq!(
        app.deliver(&voicemail.call_completed_v2()).await.status(),
        202
    );
    let mut sms = message("namestext");
    sms.user_id = "USowner".into();
    assert_eq!(app.deliver(&sms.message_received()).await.status(), 202);
    let written = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.calls_ds).len() == 2
                && app.notion.pages(&app.messages_ds).len() == 1
        })
        .await;
    assert!(
        written,
        "stats: {}\nlogs:\n{}",
        app.stats().await,
        app.logs()
    );
    app.wait_idle().await;

    let calls = app.notion.pages(&app.calls_ds);
    let call = |id: &str| {
        calls
            .iter()
            .find(|p| text(p, "Call ID") == id)
            .unwrap_or_else(|| panic!("no page of {id}: {calls:#?}"))
    };
    let answered_page = call(&answered.call_id);
    assert_eq!(
        text(answered_page, "Contact"),
        "Pat Prospect (Acme Funding)"
    );
    assert_eq!(text(answered_page, "Handled By"), "Olive Owner");
    assert_eq!(icon(answered_page), "📲");
    let voicemail_page = call("ACnamesvoicemail");
    assert_eq!(text(voicemail_page, "Contact"), "(555) 555-0199");
    assert_eq!(text(voicemail_page, "Handled By"), "", "nobody took it");
    assert_eq!(icon(voicemail_page), "📼");

    let messages = app.notion.pages(&app.messages_ds);
    assert_eq!(text(&messages[0], "Content"), sms.body);
    assert_eq!(icon(&messages[0]), "💬");
    assert!(messages[0]["properties"].get("Contact").is_none());

    // Names cost one contact listing (the first unknown number), then no OpenPhone request per event: the
    // number nobody knows did not list the contacts again, and users come from the numbers' list.
    assert_eq!(app.openphone.request_count("GET /v1/contacts"), 1);
    assert_eq!(app.openphone.request_count("GET /v1/users"), 0);
    let before = app.openphone.total_requests();
    let mut again = message("namestext2");
    again.from = "+15555550123".into();
    assert_eq!(app.deliver(&again.message_received()).await.status(), 202);
    let second = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.messages_ds).len() == 2
        })
        .await;
    assert!(second, "logs:\n{}", app.logs());
    assert_eq!(
        app.openphone.total_requests(),
        before,
        "{:?}",
        app.openphone.request_counts()
    );
}

/// The app with its workspace number, before anyone put its customers in the Canvas.
async fn workspace_before_the_canvas() -> TestApp {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    app.openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    app
}

/// A text to the workspace from `from`, its ids made from `id`.
fn text_from(id: &str, from: &str) -> MessageFixture {
    MessageFixture {
        from: from.into(),
        ..message(id)
    }
}

/// Waits for `calls` call pages and `messages` message pages and for the queue to be idle, then checks
/// that none of them is linked to a Canvas record yet.
async fn wait_for_unlinked_pages(app: &TestApp, calls: usize, messages: usize) {
    let written = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.calls_ds).len() == calls
                && app.notion.pages(&app.messages_ds).len() == messages
        })
        .await;
    assert!(
        written,
        "stats: {}\nlogs:\n{}",
        app.stats().await,
        app.logs()
    );
    app.wait_idle().await;
    for page in app
        .notion
        .pages(&app.calls_ds)
        .iter()
        .chain(&app.notion.pages(&app.messages_ds))
    {
        assert_eq!(page["properties"]["Canvas"]["relation"], json!([]));
    }
}

/// Adds a Canvas record named `name` with `properties`, as a salesperson would in Notion.
fn add_canvas_record(app: &TestApp, name: &str, properties: Value) -> String {
    let mut record = json!({ "Name": { "title": [{ "text": { "content": name } }] } });
    record
        .as_object_mut()
        .unwrap()
        .extend(properties.as_object().unwrap().clone());
    app.notion.insert_page(&app.canvas_ds, record).unwrap()
}

/// Ticks, as the cron does: the tick looks at the Canvas records edited since its last look.
async fn tick(app: &TestApp) {
    let tick = app.admin_post("/admin/tick", &json!({})).await;
    assert!(tick.status().is_success(), "tick: {}", tick.status());
}

/// The Canvas records a page is linked to.
fn relation(page: &Value) -> Vec<String> {
    page["properties"]["Canvas"]["relation"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canvas_record_added_later_links_past_calls_and_texts() {
    let app = workspace_before_the_canvas().await;
    // Before anyone put the customer in the Canvas: a text, a call, and a group text with a colleague of
    // theirs.
    let sms = text_from("laterlinktext", "+15555550177");
    assert_eq!(app.deliver(&sms.message_received()).await.status(), 202);
    let call = answered_call("laterlinkcall", "+15555550177");
    assert_eq!(app.deliver(&call.call_completed_v4()).await.status(), 202);
    let group = MessageFixture {
        event_id: "EVlaterlinkgroup".into(),
        message_id: "AClaterlinkgroup".into(),
        created_at: chrono::Utc::now(),
        event_created_at: chrono::Utc::now(),
        ..MessageFixture::outgoing("+13365550100", &["+15555550177", "+15555550178"])
    };
    assert_eq!(app.deliver(&group.message_delivered()).await.status(), 202);
    wait_for_unlinked_pages(&app, 1, 2).await;

    // A salesperson adds both people, one with the number typed their own way.
    let customer = add_canvas_record(
        &app,
        "Carla Customer",
        json!({ "Phone": { "phone_number": "(555) 555-0177" } }),
    );
    let colleague = add_canvas_record(
        &app,
        "Cole Colleague",
        json!({ "Phone": { "phone_number": "+15555550178" } }),
    );
    app.notion.reset_counters();
    tick(&app).await;
    // The group text is updated once per record, so a page with one relation may still get its second:
    // wait for every page's whole relation (on Spin, `wait_idle` cannot see the tick's updates).
    let expected_relation = |page: &Value| {
        if text(page, "Message ID") == group.message_id {
            vec![customer.clone(), colleague.clone()]
        } else {
            vec![customer.clone()]
        }
    };
    let linked = app
        .eventually(PATIENCE, |app| {
            let messages = app.notion.pages(&app.messages_ds);
            let calls = app.notion.pages(&app.calls_ds);
            messages.len() == 2
                && calls
                    .iter()
                    .chain(&messages)
                    .all(|p| relation(p) == expected_relation(p))
        })
        .await;
    assert!(
        linked,
        "calls: {:#?}\nmessages: {:#?}\nlogs:\n{}",
        app.notion.pages(&app.calls_ds),
        app.notion.pages(&app.messages_ds),
        app.logs()
    );
    app.wait_idle().await;
    assert_eq!(
        relation(&app.notion.pages(&app.calls_ds)[0]),
        std::slice::from_ref(&customer)
    );
    for page in app.notion.pages(&app.messages_ds) {
        assert_eq!(relation(&page), expected_relation(&page), "{page:#}");
    }
    // From the page map, not by reading Notion: one query of the Canvas, then only updates.
    let counts = app.notion.request_counts();
    let updates: u64 = counts
        .iter()
        .filter(|(endpoint, _)| endpoint.starts_with("PATCH /v1/pages"))
        .map(|(_, n)| n)
        .sum();
    // One update per page and record: the group text once for each participant's record.
    assert_eq!(updates, 4, "{counts:?}");
    assert_eq!(
        counts
            .get("POST /v1/data_sources/{id}/query")
            .copied()
            .unwrap_or(0),
        1,
        "{counts:?}"
    );
    assert!(
        !counts
            .keys()
            .any(|endpoint| endpoint.starts_with("GET /v1/pages")),
        "{counts:?}"
    );

    // A new text from the customer links at once, without asking Notion for the record.
    let later = text_from("laterlinktext2", "+15555550177");
    assert_eq!(app.deliver(&later.message_received()).await.status(), 202);
    let third = app
        .eventually(PATIENCE, |app| {
            app.notion
                .pages(&app.messages_ds)
                .iter()
                .any(|p| text(p, "Message ID") == later.message_id && !relation(p).is_empty())
        })
        .await;
    assert!(third, "logs:\n{}", app.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_canvas_record_added_later_with_only_an_email_links_that_contacts_past_texts() {
    let app = workspace_before_the_canvas().await;
    app.openphone.add_contact(Contact::new(
        "CTemma",
        "Emma",
        "Emailonly",
        &["(555) 555-0166"],
        &["emma@example.com"],
    ));
    // Before anyone put her in the Canvas: a text from her number.
    let sms = text_from("emaillinktext", "+15555550166");
    assert_eq!(app.deliver(&sms.message_received()).await.status(), 202);
    wait_for_unlinked_pages(&app, 0, 1).await;

    // A salesperson adds her by email alone, typed their own way.
    let customer = add_canvas_record(
        &app,
        "Emma Emailonly",
        json!({ "Email": { "email": "Emma@Example.com" } }),
    );
    app.openphone.reset_counters();
    tick(&app).await;
    let linked = app
        .eventually(PATIENCE, |app| {
            relation(&app.notion.pages(&app.messages_ds)[0]) == std::slice::from_ref(&customer)
        })
        .await;
    assert!(
        linked,
        "messages: {:#?}\nlogs:\n{}",
        app.notion.pages(&app.messages_ds),
        app.logs()
    );
    // Found in the contacts index the text already filled: OpenPhone is not asked again.
    assert_eq!(
        app.openphone.request_count("GET /v1/contacts"),
        0,
        "{:?}",
        app.openphone.request_counts()
    );
}
