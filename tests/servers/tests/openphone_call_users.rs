//! `GET /v1/calls` lists one user's calls, as the real API does: `userId`'s, or the workspace owner's
//! without it (openphone-api.md §4.2).

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use test_servers::openphone::{Call, PhoneNumber, PhoneNumberUser, DEFAULT_OWNER};
use test_servers::OpenPhoneServer;

const KEY: &str = "op-test-key";
const PN: &str = "PNshared1";
const ALICE: &str = "%2B15555550123";

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-10-20T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid time")
        + TimeDelta::minutes(minutes)
}

/// A number shared by the owner and `USbob`, with one call to Alice taken by each.
fn shared_number() -> OpenPhoneServer {
    let server = OpenPhoneServer::start(KEY).expect("server starts");
    server.set_rate_limit(None);
    let mut number = PhoneNumber::new(PN, "+13365550100");
    number
        .users
        .push(PhoneNumberUser::member("USbob", "bob@example.com"));
    server.add_phone_number(number);
    server.add_call(Call::new("ACowner", PN, "+15555550123", at(1)));
    let mut bobs = Call::new("ACbob", PN, "+15555550123", at(2));
    bobs.user_id = "USbob".into();
    server.add_call(bobs);
    server
}

async fn get(server: &OpenPhoneServer, path_and_query: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}{path_and_query}", server.base_url()))
        .header("Authorization", KEY)
        .send()
        .await
        .expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call_ids(server: &OpenPhoneServer, user: Option<&str>) -> Vec<String> {
    let mut path = format!("/v1/calls?phoneNumberId={PN}&participants={ALICE}&maxResults=10");
    if let Some(user) = user {
        path.push_str(&format!("&userId={user}"));
    }
    let (status, body) = get(server, &path).await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn without_user_id_only_the_owners_calls_are_listed() {
    let server = shared_number();
    assert_eq!(server.owner(), DEFAULT_OWNER);
    assert_eq!(call_ids(&server, None).await, ["ACowner"]);
    assert_eq!(call_ids(&server, Some("USowner")).await, ["ACowner"]);
    assert_eq!(call_ids(&server, Some("USbob")).await, ["ACbob"]);

    // Another owner: the default follows.
    server.set_owner("USbob");
    assert_eq!(call_ids(&server, None).await, ["ACbob"]);
}

#[tokio::test]
async fn a_user_who_is_not_on_the_number_is_refused() {
    let server = shared_number();
    let path =
        format!("/v1/calls?phoneNumberId={PN}&participants={ALICE}&maxResults=10&userId=USeve");
    let (status, body) = get(&server, &path).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "0101403");
    assert_eq!(body["title"], "Not Phone Number User");
    let malformed = path.replace("USeve", "eve");
    let (status, _) = get(&server, &malformed).await;
    assert_eq!(status, 400, "a userId that is not US… is a bad request");
}
