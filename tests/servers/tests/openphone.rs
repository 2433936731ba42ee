//! The rules `OpenPhoneServer` enforces, checked over HTTP.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use test_servers::openphone::{
    media_pattern, Call, Contact, Conversation, Message, PhoneNumber, Recording, Summary, Voicemail,
};
use test_servers::{Fault, FaultRule, OpenPhoneServer};

const KEY: &str = "op-test-key";
const PN: &str = "PNline1";
const OUR: &str = "+13365550100";
const ALICE: &str = "+15555550123";
const BOB: &str = "+15555550199";

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-10-20T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid time")
        + TimeDelta::minutes(minutes)
}

/// A server at the real rate limit.
fn limited_server() -> OpenPhoneServer {
    let server = OpenPhoneServer::start(KEY).expect("server starts");
    server.add_phone_number(PhoneNumber::new(PN, OUR));
    server
}

/// A server without the rate limit, for tests of the other rules (which send requests back to back).
fn server() -> OpenPhoneServer {
    let server = limited_server();
    server.set_rate_limit(None);
    server
}

/// GET `path_and_query` with the API key; returns status, `Retry-After`, body.
async fn get(server: &OpenPhoneServer, path_and_query: &str) -> (u16, Option<String>, Value) {
    get_with(server, path_and_query, Some(KEY)).await
}

async fn get_with(
    server: &OpenPhoneServer,
    path_and_query: &str,
    key: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new().get(format!("{}{path_and_query}", server.base_url()));
    if let Some(key) = key {
        request = request.header("Authorization", key);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

fn assert_error_shape(body: &Value, status: u16) {
    for key in ["message", "code", "status", "docs", "title", "description"] {
        assert!(body.get(key).is_some(), "error body lacks {key}: {body}");
    }
    assert_eq!(body["status"], status);
    let code = body["code"].as_str().expect("code is a string");
    assert_eq!(code.len(), 7, "{code}");
    assert!(code.ends_with(&status.to_string()), "{code}");
}

#[tokio::test]
async fn auth_takes_the_raw_key_only() {
    let server = server();
    let (status, _, body) = get_with(&server, "/v1/phone-numbers", None).await;
    assert_eq!(status, 401);
    assert_error_shape(&body, 401);
    let bearer = format!("Bearer {KEY}");
    let (status, _, _) = get_with(&server, "/v1/phone-numbers", Some(&bearer)).await;
    assert_eq!(status, 401, "a Bearer prefix is refused");
    let (status, _, _) = get_with(&server, "/v1/phone-numbers", Some("other")).await;
    assert_eq!(status, 401);
    let (status, _, body) = get(&server, "/v1/phone-numbers").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["number"], OUR);
    assert_eq!(body["data"][0]["users"][0]["role"], "owner");
    assert!(
        body.get("nextPageToken").is_none(),
        "phone numbers are not paginated"
    );
}

#[tokio::test]
async fn calls_require_their_parameters() {
    let server = server();
    server.add_call(Call::new("ACone", PN, ALICE, at(0)));
    let alice = "%2B15555550123";
    let bob = "%2B15555550199";
    let cases = [
        (format!("/v1/calls?participants={alice}&maxResults=10"), 400, "no phoneNumberId"),
        (format!("/v1/calls?phoneNumberId=XX1&participants={alice}&maxResults=10"), 400, "bad PN id"),
        (format!("/v1/calls?phoneNumberId={PN}&maxResults=10"), 400, "no participants"),
        (format!("/v1/calls?phoneNumberId={PN}&participants=&maxResults=10"), 400, "empty participant"),
        (format!("/v1/calls?phoneNumberId={PN}&participants={alice}"), 400, "no maxResults"),
        (format!("/v1/calls?phoneNumberId={PN}&participants={alice}&maxResults=0"), 400, "maxResults 0"),
        (format!("/v1/calls?phoneNumberId={PN}&participants={alice}&maxResults=101"), 400, "maxResults 101"),
        (format!("/v1/calls?phoneNumberId={PN}&participants={alice}&maxResults=ten"), 400, "maxResults text"),
        (format!("/v1/calls?phoneNumberId={PN}&participants=+15555550123&maxResults=10"), 400, "unencoded +"),
        (format!("/v1/calls?phoneNumberId={PN}&participants=5555550123&maxResults=10"), 400, "not E.164"),
        (format!("/v1/calls?phoneNumberId={PN}&participants={alice}&maxResults=10&createdAfter=yesterday"), 400, "bad date"),
        (format!("/v1/calls?phoneNumberId={PN}&participant={alice}&maxResults=10"), 400, "misspelt parameter"),
        (format!("/v1/calls?phoneNumberId=PNunknown&participants={alice}&maxResults=10"), 404, "unknown number"),
        (format!("/v1/calls?phoneNumberId={PN}&participants={alice}&maxResults=100"), 200, "all present"),
        (format!("/v1/calls?phoneNumberId={PN}&participants%5B%5D={alice}&maxResults=1"), 200, "participants[] alias"),
    ];
    for (path, expected, why) in cases {
        let (status, _, body) = get(&server, &path).await;
        assert_eq!(status, expected, "{why}: {path} → {body}");
        if expected != 200 {
            assert_error_shape(&body, expected);
        }
    }
    for path in [
        format!("/v1/calls?phoneNumberId={PN}&participants={alice}&participants={bob}&maxResults=10"),
        format!("/v1/calls?phoneNumberId={PN}&participants%5B%5D={alice}&participants%5B%5D={bob}&maxResults=10"),
    ] {
        let (status, _, body) = get(&server, &path).await;
        assert_eq!(status, 400, "{path}");
        assert_eq!(body["code"], "0101400");
        assert_eq!(body["title"], "Too Many Participants");
    }
    let (_, _, body) = get(
        &server,
        &format!("/v1/calls?phoneNumberId={PN}&participants={alice}&maxResults=10"),
    )
    .await;
    assert_eq!(body["data"][0]["id"], "ACone");
    assert_eq!(body["data"][0]["participants"], json!([ALICE]));
}

/// Follows `nextPageToken` from `first`, returning every id in order and how many pages it took.
async fn all_pages(server: &OpenPhoneServer, first: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(token) => format!("{first}&pageToken={token}"),
            None => first.to_owned(),
        };
        let (status, _, body) = get(server, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        pages += 1;
        for item in body["data"].as_array().expect("data is a list") {
            ids.push(item["id"].as_str().expect("id").to_owned());
        }
        match body["nextPageToken"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => return (ids, pages),
        }
    }
}

#[tokio::test]
async fn calls_paginate_newest_first_with_opaque_tokens() {
    let server = server();
    for i in 0..25 {
        server.add_call(Call::new(&format!("ACa{i:02}"), PN, ALICE, at(i)));
    }
    server.add_call(Call::new("ACbob", PN, BOB, at(3)));
    let first = format!("/v1/calls?phoneNumberId={PN}&participants=%2B15555550123&maxResults=10");
    let (_, _, body) = get(&server, &first).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(10));
    assert_ne!(
        body["totalItems"], 25,
        "totalItems is deliberately inaccurate"
    );
    let (ids, pages) = all_pages(&server, &first).await;
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).rev().map(|i| format!("ACa{i:02}")).collect();
    assert_eq!(
        ids, expected,
        "every call once, newest first, Bob's excluded"
    );

    let token = body["nextPageToken"].as_str().expect("a next page");
    let other_query = format!(
        "/v1/calls?phoneNumberId={PN}&participants=%2B15555550199&maxResults=10&pageToken={token}"
    );
    let (status, _, _) = get(&server, &other_query).await;
    assert_eq!(status, 400, "a token belongs to its query");
    let (status, _, _) = get(&server, &format!("{first}&pageToken=garbage")).await;
    assert_eq!(status, 400);

    let window = format!(
        "{first}&createdAfter={}&createdBefore={}",
        "2025-10-20T12:04:00Z", "2025-10-20T12:08:00Z"
    );
    let (ids, _) = all_pages(&server, &window).await;
    assert_eq!(ids, ["ACa07", "ACa06", "ACa05"], "bounds are exclusive");
}

#[tokio::test]
async fn a_call_added_between_pages_is_neither_repeated_nor_skipped() {
    let server = server();
    for i in 0..4 {
        server.add_call(Call::new(&format!("ACa{i}"), PN, ALICE, at(i)));
    }
    let first = format!("/v1/calls?phoneNumberId={PN}&participants=%2B15555550123&maxResults=2");
    let (_, _, page1) = get(&server, &first).await;
    server.add_call(Call::new("ACnew", PN, ALICE, at(10)));
    let token = page1["nextPageToken"].as_str().expect("more pages");
    let (_, _, page2) = get(&server, &format!("{first}&pageToken={token}")).await;
    let ids: Vec<&str> = page1["data"]
        .as_array()
        .into_iter()
        .chain(page2["data"].as_array())
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["ACa3", "ACa2", "ACa1", "ACa0"]);
}

#[tokio::test]
async fn messages_take_several_participants_and_separate_group_texts() {
    let server = server();
    server.add_message(Message::incoming("ACm1", PN, ALICE, OUR, "hi", at(1)));
    let mut group = Message::incoming("ACm2", PN, ALICE, OUR, "hi all", at(2));
    group.to = vec![OUR.into(), BOB.into()];
    server.add_message(group);
    let one = format!("/v1/messages?phoneNumberId={PN}&participants=%2B15555550123&maxResults=10");
    let (status, _, body) = get(&server, &one).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["data"][0]["text"], "hi");
    let both = format!("{one}&participants=%2B15555550199");
    let (status, _, body) = get(&server, &both).await;
    assert_eq!(status, 200, "several participants are allowed for messages");
    assert_eq!(body["data"][0]["id"], "ACm2");
    let (status, _, _) = get(
        &server,
        &format!("/v1/messages?phoneNumberId={PN}&maxResults=10"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, body) = get(&server, "/v1/messages/ACm1").await;
    assert_eq!((status, body["data"]["from"].as_str()), (200, Some(ALICE)));
}

#[tokio::test]
async fn conversations_filter_by_number_and_update_time() {
    let server = server();
    server.add_phone_number(PhoneNumber::new("PNline2", "+13365550111"));
    server.add_conversation(Conversation::new("CNold", PN, &[ALICE], at(0)));
    server.add_conversation(Conversation::new("CNnew", PN, &[BOB], at(30)));
    server.add_conversation(Conversation::new("CNother", "PNline2", &[ALICE], at(20)));
    let (status, _, _) = get(&server, "/v1/conversations").await;
    assert_eq!(status, 400, "maxResults is required");
    let (_, _, body) = get(
        &server,
        &format!("/v1/conversations?phoneNumbers%5B%5D={PN}&maxResults=100"),
    )
    .await;
    let ids: Vec<&str> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["CNnew", "CNold"], "newest activity first");
    let (_, _, body) = get(
        &server,
        "/v1/conversations?phoneNumbers=%2B13365550111&maxResults=100",
    )
    .await;
    assert_eq!(
        body["data"][0]["id"], "CNother",
        "E.164 works as well as PN ids"
    );
    let (_, _, body) = get(
        &server,
        "/v1/conversations?maxResults=100&updatedAfter=2025-10-20T12:10:00Z",
    )
    .await;
    let ids: BTreeSet<&str> = body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, BTreeSet::from(["CNnew", "CNother"]));
    let (status, _, _) = get(
        &server,
        "/v1/conversations?maxResults=10&phoneNumbers=bogus",
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn contacts_and_users_cap_max_results_at_50() {
    let server = server();
    for i in 0..3 {
        server.add_contact(Contact::new(&format!("ct{i}"), "Ann", "Lee", &[ALICE], &[]));
    }
    let (status, _, _) = get(&server, "/v1/contacts?maxResults=51").await;
    assert_eq!(status, 400);
    let (status, _, body) = get(&server, "/v1/contacts?maxResults=50").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        body["data"][0]["defaultFields"]["phoneNumbers"][0]["value"],
        ALICE
    );
    let (status, _, _) = get(&server, "/v1/users?maxResults=51").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn call_details_answer_404_when_there_are_none() {
    let server = server();
    server.add_call(Call::new("ACone", PN, ALICE, at(0)));
    let url = server.media_url("/rec/ACone-1.mp3");
    server.set_recordings(
        "ACone",
        vec![Recording::completed("CR1", &url, "audio/mpeg", 60)],
    );
    let second = server.add_generated_recording("ACone", 1000);
    assert!(second
        .url
        .as_deref()
        .is_some_and(|u| u.ends_with("/opstatics/ACone-2.mp3")));
    let (status, _, body) = get(&server, "/v1/call-recordings/ACone").await;
    assert_eq!(status, 200);
    assert_eq!(body["data"][0]["url"], url.as_str());
    assert_eq!(body["data"][0]["type"], "audio/mpeg");
    assert_eq!(body["data"][1]["id"], "CRACone2", "segments oldest first");
    let media = reqwest::get(second.url.as_deref().unwrap_or_default())
        .await
        .expect("sent");
    assert_eq!(
        media.bytes().await.expect("body").as_ref(),
        media_pattern(0, 1000).as_slice()
    );
    for path in [
        "/v1/call-summaries/ACone",
        "/v1/call-transcripts/ACone",
        "/v1/call-voicemails/ACone",
        "/v1/calls/ACmissing",
        "/v1/call-recordings/ACmissing",
    ] {
        let (status, _, body) = get(&server, path).await;
        assert_eq!(status, 404, "{path}");
        assert_error_shape(&body, 404);
    }
    let (status, _, _) = get(&server, "/v1/calls/not-a-call").await;
    assert_eq!(status, 400, "ids must match ^AC");
    server.set_summary(Summary {
        call_id: "ACone".into(),
        status: "completed".into(),
        summary: Some(vec!["Talked.".into()]),
        next_steps: Some(vec![]),
        jobs: None,
    });
    server.set_voicemail(
        "ACone",
        Voicemail {
            id: "VM1".into(),
            status: "completed".into(),
            duration: Some(9),
            transcript: Some("call me".into()),
            recording_url: Some(url.clone()),
        },
    );
    let (_, _, body) = get(&server, "/v1/call-summaries/ACone").await;
    assert_eq!(body["data"]["summary"], json!(["Talked."]));
    let (_, _, body) = get(&server, "/v1/call-voicemails/ACone").await;
    assert_eq!(body["data"]["recordingUrl"], url.as_str());
}

#[tokio::test]
async fn webhooks_are_created_per_family_and_deleted() {
    let server = server();
    let client = reqwest::Client::new();
    let post = |family: &str, body: Value| {
        client
            .post(format!("{}/v1/webhooks/{family}", server.base_url()))
            .header("Authorization", KEY)
            .json(&body)
            .send()
    };
    let response = post(
        "calls",
        json!({ "url": "https://example.com/hook", "events": ["call.completed", "call.recording.completed"] }),
    )
    .await
    .expect("sent");
    assert_eq!(response.status().as_u16(), 201);
    let created: Value = response.json().await.expect("json");
    let id = created["data"]["id"].as_str().expect("id");
    assert!(id.starts_with("WH"));
    let key = STANDARD
        .decode(created["data"]["key"].as_str().expect("key"))
        .expect("the key is base64");
    assert_eq!(key.len(), 32);
    assert_eq!(created["data"]["resourceIds"], json!(["*"]));

    for (family, body) in [
        (
            "calls",
            json!({ "url": "https://example.com/h", "events": ["message.received"] }),
        ),
        (
            "messages",
            json!({ "url": "https://example.com/h", "events": [] }),
        ),
        (
            "call-summaries",
            json!({ "events": ["call.summary.completed"] }),
        ),
        (
            "call-transcripts",
            json!({ "url": "https://example.com/h", "events": ["call.transcript.completed"], "bogus": 1 }),
        ),
    ] {
        let response = post(family, body.clone()).await.expect("sent");
        assert_eq!(response.status().as_u16(), 400, "{family} {body}");
    }
    let (_, _, list) = get(&server, "/v1/webhooks").await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(server.webhooks()[0].events.len(), 2);
    let deleted = client
        .delete(format!("{}/v1/webhooks/{id}", server.base_url()))
        .header("Authorization", KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, _, _) = get(&server, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404);
}

/// Sleeps until just after the next wall-clock second starts, so a burst falls in one window.
async fn align_to_second() {
    let now = Utc::now();
    let into = now.timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1000 - into) + 20)).await;
}

#[tokio::test]
async fn the_eleventh_request_in_a_second_is_429_with_retry_after() {
    let server = limited_server();
    align_to_second().await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let (status, retry_after, body) = get(&server, "/v1/phone-numbers").await;
        if status == 429 {
            assert_eq!(retry_after.as_deref(), Some("1"));
            assert_error_shape(&body, 429);
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses[10], 429);
    assert_eq!(server.rate_limited_count(), 1);
    assert_eq!(server.max_requests_in_any_second(), 11);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, _, _) = get(&server, "/v1/phone-numbers").await;
    assert_eq!(status, 200, "the next second has a fresh budget");
    assert_eq!(server.request_count("GET /v1/phone-numbers"), 12);
}

#[tokio::test]
async fn bad_keys_do_not_spend_the_budget_and_counters_name_route_templates() {
    let server = limited_server();
    server.add_call(Call::new("ACone", PN, ALICE, at(0)));
    align_to_second().await;
    for _ in 0..5 {
        get_with(&server, "/v1/calls/ACone", Some("wrong")).await;
    }
    for _ in 0..10 {
        let (status, _, _) = get(&server, "/v1/calls/ACone").await;
        assert_eq!(status, 200);
    }
    assert_eq!(server.request_count("GET /v1/calls/{id}"), 15);
    assert_eq!(server.max_requests_in_any_second(), 10);
    assert!(server.max_requests_in_sliding_second() <= 10);
    assert_eq!(server.total_requests(), 15);
    server.reset_counters();
    assert_eq!(server.total_requests(), 0);
}

#[tokio::test]
async fn the_rate_limit_can_be_turned_off() {
    let server = server();
    for _ in 0..30 {
        let (status, _, _) = get(&server, "/v1/phone-numbers").await;
        assert_eq!(status, 200);
    }
    assert!(server.max_requests_in_sliding_second() > 10);
}

#[tokio::test]
async fn injected_faults_fire_on_their_endpoint_then_stop() {
    let server = server();
    server.add_call(Call::new("ACone", PN, ALICE, at(0)));
    server.inject(FaultRule::next(2, Fault::Status(503)).on("GET /v1/calls/{id}"));
    server.inject(
        FaultRule::next(
            1,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        )
        .on("GET /v1/phone-numbers"),
    );
    let (status, _, _) = get(&server, "/v1/phone-numbers").await;
    assert_eq!(status, 429);
    let (_, retry_after, _) = get(&server, "/v1/calls/ACone").await;
    assert_eq!(retry_after, None);
    let (status, _, body) = get(&server, "/v1/calls/ACone").await;
    assert_eq!(status, 503);
    assert_error_shape(&body, 503);
    let (status, _, _) = get(&server, "/v1/calls/ACone").await;
    assert_eq!(status, 200);
    assert_eq!(server.faults_triggered(), 3);
    assert_eq!(
        server.rate_limited_count(),
        0,
        "injected 429s are not the limiter's"
    );

    server.inject(FaultRule::next(1, Fault::Delay(Duration::from_millis(300))));
    let started = Instant::now();
    let (status, _, _) = get(&server, "/v1/calls/ACone").await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    server.inject(FaultRule::fraction(1.0, Fault::Status(500)));
    let (status, _, _) = get(&server, "/v1/calls/ACone").await;
    assert_eq!(status, 500);
    server.clear_faults();
    let (status, _, _) = get(&server, "/v1/calls/ACone").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_media_host_serves_registered_files_with_head_and_404() {
    let server = server();
    let url = server.add_media("/opstatics/vm.mp3", "audio/mpeg", b"ID3 voicemail".to_vec());
    assert!(url.starts_with(&server.media_base_url()));
    let client = reqwest::Client::new();
    let response = client.get(&url).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "audio/mpeg");
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        b"ID3 voicemail"
    );
    let head = client.head(&url).send().await.expect("sent");
    assert_eq!(head.headers()["content-length"], "13");
    assert_eq!(head.bytes().await.expect("body").len(), 0);
    let missing = client
        .get(server.media_url("/opstatics/none.mp3"))
        .send()
        .await
        .expect("sent");
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(server.media_downloads("/opstatics/vm.mp3"), 1);
    assert_eq!(
        server.total_requests(),
        0,
        "media downloads are not API requests"
    );
}

#[tokio::test]
async fn a_100_mib_generated_file_streams_with_its_length_and_pattern() {
    let server = server();
    let len: u64 = 100 * 1024 * 1024;
    let url = server.add_generated_media("/big.mp3", "audio/mpeg", len);
    let client = reqwest::Client::new();
    let head = client.head(&url).send().await.expect("sent");
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    let mut response = client.get(&url).send().await.expect("sent");
    let mut offset = 0u64;
    while let Some(chunk) = response.chunk().await.expect("chunk") {
        assert_eq!(
            chunk.as_ref(),
            media_pattern(offset, chunk.len()).as_slice(),
            "bytes at {offset}"
        );
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, len);
    assert_ne!(
        media_pattern(0, 64),
        media_pattern(64, 64),
        "the pattern does not repeat early"
    );
}
