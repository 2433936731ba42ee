//! Webhook signing helpers against independent vectors, and the payload fixtures' shapes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use test_servers::webhooks::{
    legacy_signature, standard_signature, CallFixture, MessageFixture, SignedDelivery,
    SummaryFixture, TranscriptFixture,
};
use test_servers::OpenPhoneServer;

/// Computed with Python's `hmac`/`hashlib` (an implementation independent of this crate's):
/// key = base64("openphone-test-signing-key-32byt"), ts = 1639710054089, body below.
const LEGACY_KEY: &str = "b3BlbnBob25lLXRlc3Qtc2lnbmluZy1rZXktMzJieXQ=";
const LEGACY_BODY: &[u8] =
    br#"{"id":"EVd39d3c8d6f244d21a9131de4fc9350d0","object":"event","type":"call.completed"}"#;
const LEGACY_DIGEST: &str = "MlSvYN/pQB0KbHvnNfFP+S5yjMJOoAyyXK8amQcns2I=";

#[test]
fn legacy_signature_matches_an_independent_hmac_and_the_documented_shape() {
    let header = legacy_signature(LEGACY_KEY, 1_639_710_054_089, LEGACY_BODY).expect("signs");
    assert_eq!(header, format!("hmac;1;1639710054089;{LEGACY_DIGEST}"));
    // Same shape as openphone-api.md §7's example `hmac;1;1639710054089;mw1K…Qo=`.
    let example = "hmac;1;1639710054089;mw1K4fvh5m9XzsGon4C5N3KvL0bkmPZSAyb/9Vms2Qo=";
    let fields = |h: &str| -> Vec<usize> { h.split(';').map(str::len).collect() };
    assert_eq!(fields(&header), fields(example));
    let digest = header.rsplit(';').next().expect("digest");
    assert_eq!(STANDARD.decode(digest).expect("standard base64").len(), 32);
    let other_body = legacy_signature(LEGACY_KEY, 1_639_710_054_089, b"{}").expect("signs");
    assert_ne!(header, other_body);
    assert!(legacy_signature("not base64!", 1, b"{}").is_err());
}

#[test]
fn standard_signature_matches_the_standard_webhooks_test_vector() {
    // The published example of the Standard Webhooks specification.
    let signature = standard_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    )
    .expect("signs");
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    let without_prefix = standard_signature(
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1_614_265_330,
        br#"{"test": 2432232314}"#,
    )
    .expect("signs");
    assert_eq!(signature, without_prefix);
}

#[test]
fn deliveries_carry_the_headers_and_the_exact_signed_bytes() {
    let payload = CallFixture::example().call_completed_v2();
    let legacy = SignedDelivery::legacy(LEGACY_KEY, 1_700_000_000_000, &payload).expect("signs");
    assert_eq!(
        serde_json::from_slice::<Value>(&legacy.body).expect("json"),
        payload
    );
    assert_eq!(
        legacy.header("openphone-signature"),
        Some(
            legacy_signature(LEGACY_KEY, 1_700_000_000_000, &legacy.body)
                .expect("signs")
                .as_str()
        )
    );
    let standard = SignedDelivery::standard(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_1",
        1_700_000_000,
        &payload,
    )
    .expect("signs");
    assert_eq!(standard.header("webhook-id"), Some("msg_1"));
    assert_eq!(standard.header("webhook-timestamp"), Some("1700000000"));
    assert!(standard
        .header("webhook-signature")
        .is_some_and(|s| s.starts_with("v1,")));
    assert_eq!(standard.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_key_from_webhook_creation_signs_deliveries() {
    let server = OpenPhoneServer::start("k").expect("starts");
    let created: Value = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/messages", server.base_url()))
        .header("Authorization", "k")
        .json(&json!({ "url": "https://app.example/webhooks/openphone", "events": ["message.received"] }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let key = created["data"]["key"].as_str().expect("key");
    let delivery = SignedDelivery::legacy(key, 1, &MessageFixture::example().message_received());
    assert!(delivery.is_ok());
}

#[test]
fn call_fixtures_have_the_v2_and_v4_shapes() {
    let call = CallFixture::example();
    let v2 = call.call_completed_v2();
    assert_eq!(v2["type"], "call.completed");
    assert_eq!(v2["apiVersion"], "v2");
    assert_eq!(v2["id"], "EVd39d3c8d6f244d21a9131de4fc9350d0");
    let object = &v2["data"]["object"];
    assert_eq!(
        object["from"], "+15555550123",
        "incoming: from is the other party"
    );
    assert_eq!(object["to"], "+13365550100");
    assert_eq!(object["voicemail"]["duration"], 17);
    assert_eq!(object["answeredAt"], Value::Null);
    assert_eq!(object["createdAt"], "2025-10-20T19:21:59.545Z");

    let mut outgoing = call.clone().with_ids("ACout", "EVout");
    outgoing.direction = "outgoing".into();
    outgoing.answered_at = Some(call.created_at + chrono::TimeDelta::seconds(7));
    let v4 = outgoing.call_completed_v4();
    assert_eq!(v4["apiVersion"], "v4");
    let object = &v4["data"]["object"];
    assert_eq!(object["id"], "ACout");
    assert_eq!(object["participants"], json!(["+15555550123"]));
    assert_eq!(object["initiatedBy"], "USu5AsEHuQ");
    assert!(object.get("media").is_none() && object.get("from").is_none());
    assert_eq!(object["duration"], 12);

    let mut recorded = call;
    recorded.media = vec![test_servers::webhooks::MediaFixture {
        url: "http://media/rec.mp3".into(),
        content_type: "audio/mpeg".into(),
        duration: Some(112),
    }];
    let event = recorded.call_recording_completed();
    assert_eq!(event["type"], "call.recording.completed");
    assert_eq!(
        event["data"]["object"]["media"][0]["url"],
        "http://media/rec.mp3"
    );
}

#[test]
fn summary_transcript_and_message_fixtures_have_their_shapes() {
    let summary = SummaryFixture::example().to_event();
    assert_eq!(summary["type"], "call.summary.completed");
    assert_eq!(
        summary["data"]["object"]["callId"],
        "ACbaee66e137f0467dbed5ad4bc8d60800"
    );
    assert!(
        summary["data"]["object"].get("id").is_none(),
        "summaries carry callId, not id"
    );
    assert_eq!(
        summary["data"]["object"]["nextSteps"][1],
        "Follow up Thursday."
    );

    let transcript = TranscriptFixture::example().to_event();
    let dialogue = &transcript["data"]["object"]["dialogue"];
    assert_eq!(dialogue[0]["userId"], "USu5AsEHuQ");
    assert_eq!(dialogue[1]["identifier"], "+15555550123");
    assert_eq!(transcript["data"]["object"]["object"], "callTranscript");
    let long = TranscriptFixture::long("ACx", "EVx", 300, 2500).to_event();
    let lines = long["data"]["object"]["dialogue"]
        .as_array()
        .expect("dialogue");
    assert_eq!(lines.len(), 300);
    assert_eq!(lines[299]["content"].as_str().map(str::len), Some(2500));

    let received = MessageFixture::example().message_received();
    assert_eq!(
        received["data"]["object"]["to"], "+13365550100",
        "legacy `to` is a string"
    );
    assert_eq!(
        received["data"]["object"]["body"],
        "Sending the statements now"
    );
    assert_eq!(received["data"]["object"]["media"][0]["type"], "image/jpeg");
    let mut group = MessageFixture::outgoing("+13365550100", &["+15555550123", "+15555550199"]);
    group.text_field = true;
    let delivered = group.message_delivered();
    assert_eq!(delivered["type"], "message.delivered");
    assert_eq!(delivered["data"]["object"]["direction"], "outgoing");
    assert_eq!(
        delivered["data"]["object"]["to"],
        json!(["+15555550123", "+15555550199"])
    );
    assert_eq!(
        delivered["data"]["object"]["text"],
        "Sending the statements now"
    );
    assert!(delivered["data"]["object"].get("body").is_none());
}
