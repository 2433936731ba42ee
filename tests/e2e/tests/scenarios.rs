//! User stories, end to end: signed webhooks in, Notion pages out, through the built components and only
//! over HTTP (in the test host, or on a real `spin up` with `SPIN_BIN`).

use std::time::Duration;

use e2e::app::{TestApp, TestAppOptions};
use serde_json::{json, Value};
use test_servers::notion::property_text;
use test_servers::openphone::model::{PhoneNumber, Recording};
use test_servers::webhooks::{
    CallFixture, MediaFixture, MessageFixture, SignedDelivery, SummaryFixture, TranscriptFixture,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn text(page: &Value, property: &str) -> String {
    property_text(&page["properties"][property]).unwrap_or_default()
}

fn fresh_message() -> MessageFixture {
    let now = chrono::Utc::now();
    MessageFixture {
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_with_the_configuration_complete_and_no_secret() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["configuration"]["complete"], true, "{body}");
    assert_eq!(json["database"], "ok");
    for secret in [
        e2e::app::ADMIN_TOKEN,
        app.webhook_key.as_str(),
        "op-e2e-key",
        "secret_e2e",
    ] {
        assert!(!body.contains(secret), "/health shows a secret: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_message_becomes_exactly_one_messages_page() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let canvas = app.notion.insert_page(
        &app.canvas_ds,
        json!({ "Name": { "title": [{ "text": { "content": "Acme" } }] }, "Phone": { "phone_number": "555-555-0123" } }),
    );
    let canvas = canvas.unwrap();
    let message = fresh_message();
    let payload = message.message_received();

    let first = app.deliver(&payload).await;
    assert_eq!(first.status(), 202, "{:?}", first.text().await);
    // The webhook kicks the drain itself after answering: no admin call needed.
    let created = app
        .eventually(PATIENCE, |app| {
            app.notion.pages(&app.messages_ds).len() == 1
        })
        .await;
    assert!(created, "no Messages page appeared; logs:\n{}", app.logs());

    let again = app.deliver(&payload).await;
    assert_eq!(again.status(), 200, "a redelivery is a duplicate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pages = app.notion.pages(&app.messages_ds);
    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    assert_eq!(text(page, "Message ID"), message.message_id);
    assert_eq!(text(page, "From"), "+15555550123");
    assert_eq!(text(page, "To"), "+13365550100");
    assert_eq!(text(page, "Content"), message.body);
    assert_eq!(page["properties"]["Canvas"]["relation"][0]["id"], canvas);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_with_its_recording_transcript_and_summary_becomes_one_complete_calls_page() {
    let app = TestApp::start(TestAppOptions {
        with_s3: true,
        ..Default::default()
    })
    .await
    .unwrap();
    app.openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    let now = chrono::Utc::now();
    let mut call = CallFixture::example().with_ids("ACe2ecall1", "EVe2ecall1");
    call.created_at = now;
    call.answered_at = Some(now);
    call.voicemail = None;
    let audio: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let url = app
        .openphone
        .add_media("/opstatics/ACe2ecall1-1.mp3", "audio/mpeg", audio.clone());
    app.openphone.set_recordings(
        &call.call_id,
        vec![Recording::completed("CR1", &url, "audio/mpeg", 42)],
    );
    let transcript = TranscriptFixture {
        call_id: call.call_id.clone(),
        event_id: "EVe2etr".into(),
        ..TranscriptFixture::example()
    };
    let summary = SummaryFixture {
        call_id: call.call_id.clone(),
        event_id: "EVe2esum".into(),
        ..SummaryFixture::example()
    };

    let mut recording_event = call.call_recording_completed();
    recording_event["id"] = "EVe2erec".into();
    for payload in [
        call.call_completed_v2(),
        recording_event,
        transcript.to_event(),
        summary.to_event(),
    ] {
        let response = app.deliver(&payload).await;
        assert_eq!(response.status(), 202, "{}", payload["type"]);
    }
    let complete = app
        .eventually(PATIENCE, |app| {
            let pages = app.notion.pages(&app.calls_ds);
            app.has_one_complete_call_page()
                && text(&pages[0], "Status") == "completed"
                && app
                    .notion
                    .block_texts(pages[0]["id"].as_str().unwrap_or_default())
                    .len()
                    >= 11
        })
        .await;
    let pages = app.notion.pages(&app.calls_ds);
    assert!(complete, "pages: {pages:#?}\nlogs:\n{}", app.logs());
    assert_eq!(pages.len(), 1);
    let page = &pages[0];
    assert_eq!(text(page, "Phone Number Used"), "+13365550100");
    let body = app.notion.block_texts(page["id"].as_str().unwrap());
    for heading in ["Recordings", "Transcript", "Summary", "Next steps"] {
        assert_eq!(
            body.iter().filter(|b| *b == heading).count(),
            1,
            "{heading}: {body:?}"
        );
    }
    // The recording was copied to the S3 store under the call's date, and the link in Notion (presigned:
    // no public base URL is set) downloads it from there, not from OpenPhone.
    let s3 = app.s3.as_ref().unwrap();
    let key = format!("recordings/{}/ACe2ecall1-1.mp3", now.format("%Y/%m/%d"));
    let objects = s3.objects().unwrap();
    assert_eq!(
        objects.iter().filter(|o| o.key == key).count(),
        1,
        "{objects:?}"
    );
    let link = text(page, "Recording URL");
    assert!(
        link.starts_with(s3.endpoint()),
        "Notion links OpenPhone, not our copy: {link}"
    );
    let downloaded = reqwest::get(&link).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        downloaded.as_ref(),
        audio.as_slice(),
        "the Recording URL {link} does not serve the recording"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_mms_picture_and_pdf_are_shown_from_our_copies_once_however_often_replayed() {
    let app = TestApp::start(TestAppOptions {
        with_s3: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let picture: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let pdf: Vec<u8> = b"%PDF-1.4\n"
        .iter()
        .copied()
        .chain((0..30_000u32).map(|i| (i % 241) as u8))
        .collect();
    // The media host serves the picture as a generic type: the payload's `type` names it.
    let picture_path = "/opstatics/e2emms-picture";
    let pdf_path = "/opstatics/e2emms-statement";
    let picture_url =
        app.openphone
            .add_media(picture_path, "application/octet-stream", picture.clone());
    let pdf_url = app
        .openphone
        .add_media(pdf_path, "application/pdf", pdf.clone());
    let message = MessageFixture {
        message_id: "ACe2emms1".into(),
        event_id: "EVe2emms1".into(),
        media: vec![
            MediaFixture {
                url: picture_url,
                content_type: "image/jpeg".into(),
                duration: None,
            },
            MediaFixture {
                url: pdf_url,
                content_type: "application/pdf".into(),
                duration: None,
            },
        ],
        ..fresh_message()
    };
    let payload = message.message_received();
    assert_eq!(app.deliver(&payload).await.status(), 202);
    let shown = app
        .eventually(PATIENCE, |app| {
            let pages = app.notion.pages(&app.messages_ds);
            pages.len() == 1
                && app
                    .notion
                    .blocks(pages[0]["id"].as_str().unwrap_or_default())
                    .iter()
                    .any(|b| b["type"] == "file")
        })
        .await;
    assert!(shown, "no page with its media; logs:\n{}", app.logs());

    // OpenPhone sends the event again (same id), and the same message again under a new event id.
    assert_eq!(app.deliver(&payload).await.status(), 200);
    let mut resent = payload.clone();
    resent["id"] = "EVe2emms2".into();
    assert_eq!(app.deliver(&resent).await.status(), 202);
    let stats = app
        .stats_when(PATIENCE, |s| s["queue"]["done"].as_i64() == Some(2))
        .await;
    app.wait_idle().await;

    let pages = app.notion.pages(&app.messages_ds);
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let page = &pages[0];
    let blocks = app.notion.blocks(page["id"].as_str().unwrap());
    let of_type =
        |kind: &str| -> Vec<&Value> { blocks.iter().filter(|b| b["type"] == kind).collect() };
    let (images, files) = (of_type("image"), of_type("file"));
    assert_eq!((images.len(), files.len()), (1, 1), "{blocks:#?}");
    let texts = app.notion.block_texts(page["id"].as_str().unwrap());
    assert_eq!(
        texts.iter().filter(|t| *t == "Media").count(),
        1,
        "{texts:?}"
    );

    // Both blocks link our copies, which serve the bytes OpenPhone sent.
    let s3 = app.s3.as_ref().unwrap();
    let image_link = images[0]["image"]["external"]["url"].as_str().unwrap();
    let file_link = files[0]["file"]["external"]["url"].as_str().unwrap();
    for (link, bytes) in [(image_link, &picture), (file_link, &pdf)] {
        assert!(link.starts_with(s3.endpoint()), "not our copy: {link}");
        let downloaded = reqwest::get(link).await.unwrap().bytes().await.unwrap();
        assert_eq!(downloaded.as_ref(), bytes.as_slice(), "{link}");
    }
    assert_eq!(page["properties"]["Has Media"]["checkbox"], true);
    assert_eq!(
        text(page, "Media URLs"),
        format!("{image_link}\n{file_link}")
    );

    // One object per medium, under the message's date, with the right extension; each downloaded once.
    let day = message.created_at.format("%Y/%m/%d");
    let mut keys: Vec<String> = s3
        .objects()
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.starts_with("media/"))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("media/{day}/ACe2emms1-1.jpg"),
            format!("media/{day}/ACe2emms1-2.pdf"),
        ]
    );
    assert_eq!(app.openphone.media_downloads(picture_path), 1);
    assert_eq!(app.openphone.media_downloads(pdf_path), 1);
    assert_eq!(stats["media"]["stored"], 2, "{stats:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_route_refuses_a_missing_or_wrong_token() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let client = reqwest::Client::new();
    let routes = [
        ("GET", "/stats"),
        ("GET", "/status"),
        ("POST", "/admin/drain"),
        ("GET", "/admin/dlq"),
        ("POST", "/admin/dlq/replay"),
        ("POST", "/admin/notion/check"),
        ("POST", "/admin/canvas/lookup"),
        ("GET", "/admin/status-link"),
        ("POST", "/admin/tick"),
        ("POST", "/admin/sync"),
        ("POST", "/admin/setup"),
    ];
    for (method, path) in routes {
        for token in [None, Some("wrong-token")] {
            let mut request = client
                .request(method.parse().unwrap(), format!("{}{path}", app.base_url))
                .json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{method} {path} with {token:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body,
                json!({ "error": "unauthorized" }),
                "{method} {path}: no detail"
            );
        }
    }
    // The private drain route is not public.
    let response = client
        .post(format!("{}/drain", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_and_the_status_page_report_the_same_numbers() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let mut skipped = fresh_message().message_received();
    skipped["type"] = "call.ringing".into();
    skipped["id"] = "EVringing".into();
    assert_eq!(app.deliver(&skipped).await.status(), 202);
    app.deliver(&fresh_message().message_received()).await;
    app.eventually(PATIENCE, |app| {
        app.notion.pages(&app.messages_ds).len() == 1
    })
    .await;

    // The page appears before its event is marked done: the drain still appends the body's blocks.
    let stats = app.stats_when(PATIENCE, |s| s["queue"]["done"] == 1).await;
    assert_eq!(stats["queue"]["skipped"], 1, "{stats}");
    assert_eq!(stats["queue"]["done"], 1, "{stats}");
    assert!(
        stats["api"]["notion"]["requests_today"].as_i64().unwrap() >= 1,
        "{stats}"
    );

    let link: Value = app
        .admin_get("/admin/status-link")
        .await
        .json()
        .await
        .unwrap();
    let page = app.get(link["path"].as_str().unwrap()).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let notion_row = format!(
        "<td>notion</td><td>{}</td>",
        stats["api"]["notion"]["requests_today"]
    );
    assert!(
        html.contains(&notion_row),
        "status page lacks {notion_row}: {html}"
    );
    assert!(
        html.contains("<td>1</td><td>0</td><td>1</td><td>1</td><td>0</td>")
            || html.contains("skipped"),
        "{html}"
    );
    let forged = app.get("/status?expires=99999999999999&sig=00").await;
    assert_eq!(forged.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_notion_check_finds_missing_properties_and_fix_adds_them() {
    // A Messages database made by hand, with a title and the content only.
    let hand_made = test_servers::Schema::new()
        .title("Message ID")
        .rich_text("Content")
        .number("Status");
    let options = TestAppOptions {
        messages_schema: Some(hand_made),
        ..Default::default()
    };
    let app = TestApp::start(options).await.unwrap();

    let check: Value = app
        .admin_post("/admin/notion/check", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(check["ok"], false, "{check}");
    let messages = check["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["role"] == "messages")
        .unwrap()
        .clone();
    let missing: Vec<&str> = messages["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        missing.contains(&"From") && missing.contains(&"Canvas"),
        "{messages}"
    );
    assert_eq!(
        messages["wrong_type"][0],
        "Status: expected select, found number"
    );
    for role in ["calls", "canvas"] {
        let db = check["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["role"] == role)
            .unwrap();
        assert_eq!(db["missing"], json!([]), "{role}: {db}");
    }

    let fixed: Value = app
        .admin_post("/admin/notion/check?fix=true", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let messages = fixed["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["role"] == "messages")
        .unwrap()
        .clone();
    assert_eq!(messages["missing"], json!([]), "{fixed}");
    assert!(messages["added"].as_array().unwrap().len() >= missing.len());
    let schema = app.notion.data_source(&app.messages_ds).unwrap();
    assert_eq!(schema["properties"]["From"]["type"], "phone_number");
    assert_eq!(schema["properties"]["Canvas"]["type"], "relation");
    // Never retyped: the wrong type is still reported, and still a number.
    assert_eq!(schema["properties"]["Status"]["type"], "number");
    let again: Value = app
        .admin_post("/admin/notion/check", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["ok"], false, "Status is still the wrong type");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unshared_database_is_reported_with_the_fix() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let calls_db = app.notion.data_source(&app.calls_ds).unwrap()["parent"]["database_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.notion.unshare(&calls_db);
    let check: Value = app
        .admin_post("/admin/notion/check", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let calls = check["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["role"] == "calls")
        .unwrap();
    assert_eq!(calls["visible"], false, "{check}");
    assert!(
        calls["fix"].as_str().unwrap().contains("Connections"),
        "{calls}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signatures_are_refused_and_store_nothing() {
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();
    let payload = fresh_message().message_received();
    let now = chrono::Utc::now().timestamp_millis();
    let wrong_key = SignedDelivery::legacy("d3Jvbmcga2V5", now, &payload).unwrap();
    assert_eq!(app.send_delivery(&wrong_key).await.status(), 401);
    let stale = SignedDelivery::legacy(&app.webhook_key, now - 6 * 60 * 1000, &payload).unwrap();
    assert_eq!(app.send_delivery(&stale).await.status(), 401);
    let stats: Value = app.admin_get("/stats").await.json().await.unwrap();
    assert_eq!(stats["queue"]["pending"], 0);
    assert_eq!(stats["queue"]["done"], 0);
}
