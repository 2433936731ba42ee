//! The rules `NotionServer` enforces, checked over HTTP.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_servers::notion::{property_text, RateLimit};
use test_servers::{Fault, FaultRule, NotionServer, Schema};

const TOKEN: &str = "secret_test_token";

struct Fixture {
    server: NotionServer,
    calls_db: String,
    calls: String,
    canvas: String,
    http: reqwest::Client,
}

/// A server without the rate limit holding a Canvas data source and a Calls data source related to it.
fn fixture() -> Fixture {
    let server = NotionServer::start(TOKEN).expect("server starts");
    server.set_rate_limit(None);
    let (_, canvas) = server
        .create_database(
            "Canvas",
            &Schema::new()
                .title("Name")
                .phone_number("Phone")
                .email("Email"),
        )
        .expect("canvas");
    let schema = Schema::new()
        .title("Name")
        .rich_text("Call ID")
        .number("Duration")
        .select("Direction", &["incoming", "outgoing"])
        .multi_select("Tags", &[])
        .status("Stage", &["New", "Done"])
        .date("Created")
        .checkbox("Has voicemail")
        .url("Recording URL")
        .email("Email")
        .phone_number("Participant")
        .relation("Canvas", &canvas)
        .files("Recording");
    let (calls_db, calls) = server.create_database("Calls", &schema).expect("calls");
    Fixture {
        server,
        calls_db,
        calls,
        canvas,
        http: reqwest::Client::new(),
    }
}

impl Fixture {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send_raw(
            method,
            path,
            body.map(|b| b.to_string().into_bytes()),
            Some("2025-09-03"),
            TOKEN,
        )
        .await
    }

    async fn send_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        version: Option<&str>,
        token: &str,
    ) -> (u16, Value) {
        let (status, _, body) = self.send_full(method, path, body, version, token).await;
        (status, body)
    }

    async fn send_full(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        version: Option<&str>,
        token: &str,
    ) -> (u16, Option<String>, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.server.base_url()))
            .header("Authorization", format!("Bearer {token}"));
        if let Some(version) = version {
            request = request.header("Notion-Version", version);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        (
            status,
            retry_after,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn create(&self, properties: Value) -> (u16, Value) {
        self.send(
            "POST",
            "/v1/pages",
            Some(json!({ "parent": { "type": "data_source_id", "data_source_id": self.calls }, "properties": properties })),
        )
        .await
    }

    async fn create_ok(&self, properties: Value) -> String {
        let (status, body) = self.create(properties).await;
        assert_eq!(status, 200, "{body}");
        body["id"].as_str().expect("page id").to_owned()
    }

    async fn query(&self, body: Value) -> (u16, Value) {
        self.send(
            "POST",
            &format!("/v1/data_sources/{}/query", self.calls),
            Some(body),
        )
        .await
    }

    /// The titles of the pages a query returns, in order.
    async fn titles(&self, body: Value) -> Vec<String> {
        let (status, response) = self.query(body).await;
        assert_eq!(status, 200, "{response}");
        response["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|page| property_text(&page["properties"]["Name"]).expect("title"))
            .collect()
    }
}

fn text(content: &str) -> Value {
    json!([{ "type": "text", "text": { "content": content } }])
}

fn assert_error(status: u16, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["object"], "error", "{body}");
    assert_eq!(body["status"], expected_status);
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].is_string());
}

#[tokio::test]
async fn every_request_needs_the_version_and_the_bearer_token() {
    let f = fixture();
    let path = format!("/v1/data_sources/{}", f.calls);
    let (status, body) = f.send_raw("GET", &path, None, None, TOKEN).await;
    assert_error(status, &body, 400, "missing_version");
    let (status, body) = f
        .send_raw("GET", &path, None, Some("2022-06-28"), TOKEN)
        .await;
    assert_error(status, &body, 400, "invalid_request");
    let (status, body) = f
        .send_raw("GET", &path, None, Some("2025-09-03"), "wrong")
        .await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, _) = f.send("GET", &path, None).await;
    assert_eq!(status, 200);
    let (status, body) = f.send("GET", "/v1/nowhere", None).await;
    assert_error(status, &body, 400, "invalid_request_url");
}

#[tokio::test]
async fn databases_and_data_sources_are_different_ids() {
    let f = fixture();
    let (status, db) = f
        .send("GET", &format!("/v1/databases/{}", f.calls_db), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(db["object"], "database");
    assert_eq!(
        db["data_sources"],
        json!([{ "id": f.calls, "name": "Calls" }])
    );
    assert!(
        db.get("properties").is_none(),
        "2025-09-03 databases carry no schema"
    );

    let (status, body) = f
        .send("GET", &format!("/v1/data_sources/{}", f.calls_db), None)
        .await;
    assert_error(status, &body, 404, "object_not_found");
    let (status, body) = f
        .send("GET", &format!("/v1/databases/{}", f.calls), None)
        .await;
    assert_error(status, &body, 404, "object_not_found");
    let (status, body) = f
        .send(
            "POST",
            &format!("/v1/data_sources/{}/query", f.calls_db),
            Some(json!({})),
        )
        .await;
    assert_error(status, &body, 404, "object_not_found");
    let (status, body) = f.send("GET", "/v1/databases/not-a-uuid", None).await;
    assert_error(status, &body, 400, "validation_error");

    let dashless = f.calls.replace('-', "");
    let (status, ds) = f
        .send("GET", &format!("/v1/data_sources/{dashless}"), None)
        .await;
    assert_eq!(status, 200, "ids work without dashes");
    assert_eq!(ds["object"], "data_source");
    assert_eq!(ds["parent"]["database_id"], f.calls_db.as_str());
    assert_eq!(ds["properties"]["Participant"]["type"], "phone_number");
    assert_eq!(ds["properties"]["Name"]["id"], "title");
    assert_eq!(
        ds["properties"]["Canvas"]["relation"]["data_source_id"],
        f.canvas.as_str()
    );
    assert_eq!(
        ds["properties"]["Direction"]["select"]["options"][1]["name"],
        "outgoing"
    );

    let second = f
        .server
        .add_data_source(&f.calls_db, "Archive", &Schema::new().title("Name"))
        .expect("adds");
    let (_, db) = f
        .send("GET", &format!("/v1/databases/{}", f.calls_db), None)
        .await;
    assert_eq!(db["data_sources"][1]["id"], second.as_str());

    f.server.unshare(&f.calls_db);
    let (status, body) = f
        .send("GET", &format!("/v1/databases/{}", f.calls_db), None)
        .await;
    assert_error(status, &body, 404, "object_not_found");
    let (status, _) = f
        .send("GET", &format!("/v1/data_sources/{}", f.calls), None)
        .await;
    assert_eq!(status, 404, "an unshared database hides its data sources");
}

#[tokio::test]
async fn data_source_patch_adds_properties_but_never_retypes() {
    let f = fixture();
    let path = format!("/v1/data_sources/{}", f.calls);
    let (status, body) = f
        .send("PATCH", &path, Some(json!({ "properties": { "Summary": { "rich_text": {} }, "Direction": { "select": { "options": [{ "name": "missed" }] } } } })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["properties"]["Summary"]["type"], "rich_text");
    let options: Vec<&str> = body["properties"]["Direction"]["select"]["options"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(options, ["incoming", "outgoing", "missed"]);
    for (properties, why) in [
        (json!({ "Call ID": { "number": {} } }), "retype"),
        (json!({ "Second title": { "title": {} } }), "second title"),
        (json!({ "Call ID": null }), "delete"),
        (json!({ "State": { "status": {} } }), "status via the API"),
        (
            json!({ "Link": { "relation": { "data_source_id": f.calls_db } } }),
            "relation to a database id",
        ),
        (
            json!({ "Weird": { "formula": { "expression": "1" } } }),
            "unmodelled type",
        ),
    ] {
        let (status, body) = f
            .send("PATCH", &path, Some(json!({ "properties": properties })))
            .await;
        assert!(matches!(status, 400 | 404), "{why}: {status} {body}");
    }
    let schema = f.server.data_source(&f.calls).expect("schema");
    assert_eq!(
        schema["properties"]["Call ID"]["type"], "rich_text",
        "nothing was retyped"
    );
    assert!(schema["properties"].get("Link").is_none());
}

#[tokio::test]
async fn pages_are_created_under_a_data_source_with_checked_values() {
    let f = fixture();
    let canvas_page = f
        .server
        .insert_page(&f.canvas, json!({ "Name": { "title": text("Acme") }, "Phone": { "phone_number": "+15555550123" } }))
        .expect("canvas page");
    let (status, page) = f
        .create(json!({
            "Name": { "title": text("Incoming call") },
            "Call ID": { "rich_text": text("ACone") },
            "Duration": { "number": 112 },
            "Direction": { "select": { "name": "incoming" } },
            "Tags": { "multi_select": [{ "name": "Voicemail" }] },
            "Stage": { "status": { "name": "New" } },
            "Created": { "date": { "start": "2025-10-20T19:28:34.675Z" } },
            "Has voicemail": { "checkbox": true },
            "Recording URL": { "url": "https://r2.example/rec.mp3" },
            "Participant": { "phone_number": "+15555550123" },
            "Canvas": { "relation": [{ "id": canvas_page.replace('-', "") }] },
            "Recording": { "files": [{ "name": "rec.mp3", "type": "external", "external": { "url": "https://r2.example/rec.mp3" } }] },
        }))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "page");
    assert_eq!(page["parent"]["data_source_id"], f.calls.as_str());
    let props = &page["properties"];
    assert_eq!(props["Call ID"]["rich_text"][0]["plain_text"], "ACone");
    assert_eq!(
        props["Call ID"]["rich_text"][0]["annotations"]["bold"],
        false
    );
    assert_eq!(props["Direction"]["select"]["name"], "incoming");
    assert_eq!(
        props["Created"]["date"]["start"],
        "2025-10-20T19:28:34.675+00:00"
    );
    assert_eq!(props["Canvas"]["relation"], json!([{ "id": canvas_page }]));
    assert_eq!(props["Canvas"]["has_more"], false);
    assert_eq!(
        props["Email"]["email"],
        Value::Null,
        "unset properties come back empty"
    );
    assert_eq!(
        props["Duration"]["id"]
            .as_str()
            .map(|id| id.starts_with("%3A")),
        Some(true)
    );
    let schema = f.server.data_source(&f.calls).expect("schema");
    assert_eq!(
        schema["properties"]["Tags"]["multi_select"]["options"][0]["name"], "Voicemail",
        "select options are created on write"
    );
    assert_eq!(f.server.pages(&f.calls).len(), 1);

    let parent = json!({ "type": "data_source_id", "data_source_id": f.calls });
    let bad_requests = [
        (
            json!({ "parent": { "type": "database_id", "database_id": f.calls_db }, "properties": {} }),
            "database_id parent",
        ),
        (
            json!({ "parent": parent, "properties": { "Nope": { "rich_text": text("x") } } }),
            "unknown property",
        ),
        (
            json!({ "parent": parent, "properties": { "Name": { "rich_text": text("x") } } }),
            "rich_text on a title",
        ),
        (
            json!({ "parent": parent, "properties": { "Duration": { "number": "12" } } }),
            "number as a string",
        ),
        (
            json!({ "parent": parent, "properties": { "Has voicemail": { "checkbox": null } } }),
            "null checkbox",
        ),
        (
            json!({ "parent": parent, "properties": { "Direction": { "select": { "name": "in,out" } } } }),
            "comma in a select",
        ),
        (
            json!({ "parent": parent, "properties": { "Stage": { "status": { "name": "Invented" } } } }),
            "unknown status",
        ),
        (
            json!({ "parent": parent, "properties": { "Created": { "date": { "start": "yesterday" } } } }),
            "bad date",
        ),
        (
            json!({ "parent": parent, "properties": { "Canvas": { "relation": [{ "id": f.calls }] } } }),
            "relation to a missing page",
        ),
        (
            json!({ "parent": parent, "properties": { "Recording": { "files": [{ "type": "external", "external": { "url": "https://x" } }] } } }),
            "file without a name",
        ),
        (
            json!({ "parent": parent, "properties": {}, "unexpected": true }),
            "unknown body key",
        ),
    ];
    for (body, why) in bad_requests {
        let (status, response) = f.send("POST", "/v1/pages", Some(body)).await;
        assert_error(status, &response, 400, "validation_error");
        if why == "unknown property" {
            assert_eq!(response["message"], "Nope is not a property that exists.");
        }
    }
    let (status, body) = f
        .send_raw(
            "POST",
            "/v1/pages",
            Some(b"{not json".to_vec()),
            Some("2025-09-03"),
            TOKEN,
        )
        .await;
    assert_error(status, &body, 400, "invalid_json");
    assert_eq!(
        f.server.pages(&f.calls).len(),
        1,
        "no failed request wrote anything"
    );
}

#[tokio::test]
async fn size_limits_are_enforced() {
    let f = fixture();
    let canvas_page = f
        .server
        .insert_page(&f.canvas, json!({ "Name": { "title": text("Acme") } }))
        .expect("page");
    let at_limit = "a".repeat(2000);
    f.create_ok(json!({ "Call ID": { "rich_text": text(&at_limit) } }))
        .await;
    let hundred: Vec<Value> = (0..100)
        .map(|i| json!({ "text": { "content": format!("{i}") } }))
        .collect();
    f.create_ok(json!({ "Call ID": { "rich_text": hundred } }))
        .await;
    f.create_ok(json!({ "Recording URL": { "url": format!("https://x/{}", "u".repeat(1990)) } }))
        .await;

    let too_many: Vec<Value> = (0..101)
        .map(|i| json!({ "text": { "content": format!("{i}") } }))
        .collect();
    let relations: Vec<Value> = (0..101).map(|_| json!({ "id": canvas_page })).collect();
    let options: Vec<Value> = (0..101)
        .map(|i| json!({ "name": format!("o{i}") }))
        .collect();
    let cases = [
        json!({ "Call ID": { "rich_text": text(&"a".repeat(2001)) } }),
        // 1001 emoji are 2002 UTF-16 units: Notion counts like JavaScript.
        json!({ "Call ID": { "rich_text": text(&"😀".repeat(1001)) } }),
        json!({ "Name": { "title": too_many } }),
        json!({ "Recording URL": { "url": format!("https://x/{}", "u".repeat(1992)) } }),
        json!({ "Email": { "email": format!("{}@example.com", "e".repeat(189)) } }),
        json!({ "Participant": { "phone_number": "1".repeat(201) } }),
        json!({ "Canvas": { "relation": relations } }),
        json!({ "Tags": { "multi_select": options } }),
        json!({ "Call ID": { "rich_text": [{ "text": { "content": "x", "link": { "url": format!("https://x/{}", "u".repeat(1992)) } } }] } }),
    ];
    for properties in cases {
        let (status, body) = f.create(properties.clone()).await;
        assert_error(status, &body, 400, "validation_error");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("should be ≤")),
            "{body}"
        );
    }
    let paragraph = |content: &str| json!({ "object": "block", "type": "paragraph", "paragraph": { "rich_text": text(content) } });
    let children: Vec<Value> = (0..101).map(|i| paragraph(&i.to_string())).collect();
    let (status, body) = f
        .send("POST", "/v1/pages", Some(json!({ "parent": { "data_source_id": f.calls }, "properties": {}, "children": children })))
        .await;
    assert_error(status, &body, 400, "validation_error");
    let huge = json!({
        "parent": { "data_source_id": f.calls },
        "properties": {},
        "children": (0..100).map(|_| json!({ "paragraph": { "rich_text": (0..3).map(|_| json!({ "text": { "content": "z".repeat(1800) } })).collect::<Vec<_>>() } })).collect::<Vec<_>>(),
    });
    assert!(huge.to_string().len() > 500_000);
    let (status, body) = f.send("POST", "/v1/pages", Some(huge)).await;
    assert_error(status, &body, 400, "validation_error");
    assert_eq!(
        f.server.pages(&f.calls).len(),
        3,
        "only the requests within limits wrote"
    );
}

#[tokio::test]
async fn page_updates_touch_only_the_given_properties() {
    let f = fixture();
    let id = f
        .create_ok(json!({ "Name": { "title": text("Call") }, "Call ID": { "rich_text": text("ACone") }, "Duration": { "number": 5 } }))
        .await;
    let (status, page) = f
        .send(
            "PATCH",
            &format!("/v1/pages/{id}"),
            Some(json!({ "properties": { "Duration": { "number": 60 } } })),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["properties"]["Duration"]["number"], 60);
    assert_eq!(
        page["properties"]["Call ID"]["rich_text"][0]["plain_text"],
        "ACone"
    );
    let (status, fetched) = f.send("GET", &format!("/v1/pages/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        property_text(&fetched["properties"]["Name"]).as_deref(),
        Some("Call")
    );
    let (status, body) = f
        .send(
            "PATCH",
            &format!("/v1/pages/{id}"),
            Some(json!({ "properties": { "Missing": { "number": 1 } } })),
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
    let (status, _) = f
        .send(
            "PATCH",
            &format!("/v1/pages/{id}"),
            Some(json!({ "archived": true })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = f
        .send(
            "PATCH",
            &format!("/v1/pages/{id}"),
            Some(json!({ "properties": { "Duration": { "number": 1 } } })),
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
    let (status, body) = f.send("GET", &format!("/v1/pages/{}", f.calls), None).await;
    assert_error(status, &body, 404, "object_not_found");
}

#[tokio::test]
async fn page_icons_are_an_emoji_an_external_image_or_none() {
    let f = fixture();
    let id = f
        .create_ok(json!({ "Name": { "title": text("Call") } }))
        .await;
    // `PATCH /v1/pages` takes an emoji icon as `{"emoji": …}` only (the published spec closes it).
    for (sent, read_back) in [(
        json!({ "emoji": "📞" }),
        json!({ "type": "emoji", "emoji": "📞" }),
    )] {
        let (status, page) = f
            .send(
                "PATCH",
                &format!("/v1/pages/{id}"),
                Some(json!({ "icon": sent })),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["icon"], read_back);
    }
    for bad in [
        json!({ "type": "emoji", "emoji": "phone" }),
        json!({ "type": "emoji" }),
        json!({ "type": "emoji", "emoji": "📞", "color": "red" }),
        json!("📞"),
        json!({ "type": "external", "external": { "url": "not a url" } }),
    ] {
        let (status, body) = f
            .send(
                "PATCH",
                &format!("/v1/pages/{id}"),
                Some(json!({ "icon": bad })),
            )
            .await;
        assert_error(status, &body, 400, "validation_error");
    }
}

async fn seed_for_queries(f: &Fixture) -> String {
    let canvas_page = f
        .server
        .insert_page(&f.canvas, json!({ "Name": { "title": text("Acme") } }))
        .expect("page");
    let rows = [
        (
            "alpha",
            "ACa",
            10,
            "incoming",
            "2025-10-01T10:00:00Z",
            true,
            "+15555550123",
            vec!["Missed"],
        ),
        (
            "beta",
            "ACb",
            20,
            "outgoing",
            "2025-10-02T10:00:00Z",
            false,
            "+15555550199",
            vec!["Voicemail", "Missed"],
        ),
        (
            "gamma",
            "ACc",
            30,
            "incoming",
            "2025-10-03",
            false,
            "",
            vec![],
        ),
        (
            "delta",
            "xACd",
            40,
            "outgoing",
            "2025-10-04T23:30:00Z",
            true,
            "+44 20 7946 0000",
            vec!["Voicemail"],
        ),
    ];
    for (name, call_id, duration, direction, created, voicemail, phone, tags) in rows {
        let tags: Vec<Value> = tags.iter().map(|t| json!({ "name": t })).collect();
        let mut properties = json!({
            "Name": { "title": text(name) },
            "Call ID": { "rich_text": text(call_id) },
            "Duration": { "number": duration },
            "Direction": { "select": { "name": direction } },
            "Created": { "date": { "start": created } },
            "Has voicemail": { "checkbox": voicemail },
            "Tags": { "multi_select": tags },
        });
        if !phone.is_empty() {
            properties["Participant"] = json!({ "phone_number": phone });
        }
        if name == "alpha" {
            properties["Canvas"] = json!({ "relation": [{ "id": canvas_page }] });
        }
        f.create_ok(properties).await;
    }
    canvas_page
}

#[tokio::test]
async fn text_filters_follow_notion_semantics() {
    let f = fixture();
    seed_for_queries(&f).await;
    let filter = |property: &str, kind: &str, op: &str, value: Value| json!({ "filter": { "property": property, kind: { op: value } } });
    let cases = [
        (
            filter("Call ID", "rich_text", "equals", json!("ACa")),
            vec!["alpha"],
        ),
        (
            filter("Call ID", "rich_text", "does_not_equal", json!("ACa")),
            vec!["delta", "gamma", "beta"],
        ),
        (
            filter("Call ID", "rich_text", "contains", json!("ACd")),
            vec!["delta"],
        ),
        (
            filter("Call ID", "rich_text", "does_not_contain", json!("AC")),
            vec![],
        ),
        (
            filter("Call ID", "rich_text", "starts_with", json!("AC")),
            vec!["gamma", "beta", "alpha"],
        ),
        (
            filter("Call ID", "rich_text", "ends_with", json!("b")),
            vec!["beta"],
        ),
        (
            filter("Call ID", "rich_text", "equals", json!("aca")),
            vec![],
        ),
        (
            filter("Name", "title", "equals", json!("gamma")),
            vec!["gamma"],
        ),
        (
            filter(
                "Participant",
                "phone_number",
                "equals",
                json!("+15555550123"),
            ),
            vec!["alpha"],
        ),
        (
            filter("Participant", "phone_number", "contains", json!("5555550")),
            vec!["beta", "alpha"],
        ),
        (
            filter("Participant", "phone_number", "is_empty", json!(true)),
            vec!["gamma"],
        ),
        (
            filter("Participant", "phone_number", "is_not_empty", json!(true)),
            vec!["delta", "beta", "alpha"],
        ),
        (
            filter("Email", "email", "is_empty", json!(true)),
            vec!["delta", "gamma", "beta", "alpha"],
        ),
        (
            filter("Recording URL", "url", "is_not_empty", json!(true)),
            vec![],
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(f.titles(body.clone()).await, expected, "{body}");
    }
}

#[tokio::test]
async fn other_property_filters_follow_notion_semantics() {
    let f = fixture();
    let canvas_page = seed_for_queries(&f).await;
    let filter = |property: &str, kind: &str, op: &str, value: Value| json!({ "filter": { "property": property, kind: { op: value } } });
    let cases = [
        (
            filter("Duration", "number", "greater_than", json!(20)),
            vec!["delta", "gamma"],
        ),
        (
            filter("Duration", "number", "less_than_or_equal_to", json!(20)),
            vec!["beta", "alpha"],
        ),
        (
            filter("Duration", "number", "equals", json!(30)),
            vec!["gamma"],
        ),
        (
            filter("Has voicemail", "checkbox", "equals", json!(true)),
            vec!["delta", "alpha"],
        ),
        (
            filter("Has voicemail", "checkbox", "does_not_equal", json!(true)),
            vec!["gamma", "beta"],
        ),
        (
            filter("Direction", "select", "equals", json!("outgoing")),
            vec!["delta", "beta"],
        ),
        (
            filter("Direction", "select", "does_not_equal", json!("outgoing")),
            vec!["gamma", "alpha"],
        ),
        (
            filter("Tags", "multi_select", "contains", json!("Missed")),
            vec!["beta", "alpha"],
        ),
        (
            filter("Tags", "multi_select", "does_not_contain", json!("Missed")),
            vec!["delta", "gamma"],
        ),
        (
            filter("Tags", "multi_select", "is_empty", json!(true)),
            vec!["gamma"],
        ),
        (
            filter("Created", "date", "equals", json!("2025-10-03")),
            vec!["gamma"],
        ),
        (
            filter("Created", "date", "equals", json!("2025-10-04")),
            vec!["delta"],
        ),
        (
            filter("Created", "date", "before", json!("2025-10-02")),
            vec!["alpha"],
        ),
        (
            filter("Created", "date", "on_or_before", json!("2025-10-02")),
            vec!["beta", "alpha"],
        ),
        (
            filter("Created", "date", "after", json!("2025-10-03T00:00:00Z")),
            vec!["delta"],
        ),
        (
            filter(
                "Created",
                "date",
                "on_or_after",
                json!("2025-10-03T00:00:00Z"),
            ),
            vec!["delta", "gamma"],
        ),
        (
            filter("Canvas", "relation", "contains", json!(canvas_page)),
            vec!["alpha"],
        ),
        (
            filter("Canvas", "relation", "is_empty", json!(true)),
            vec!["delta", "gamma", "beta"],
        ),
        (
            filter("Recording", "files", "is_empty", json!(true)),
            vec!["delta", "gamma", "beta", "alpha"],
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(f.titles(body.clone()).await, expected, "{body}");
    }
}

#[tokio::test]
async fn compound_filters_nest_two_levels_at_most() {
    let f = fixture();
    seed_for_queries(&f).await;
    let phone =
        |number: &str| json!({ "property": "Participant", "phone_number": { "equals": number } });
    let two_levels = json!({ "filter": { "or": [
        phone("+15555550123"),
        { "and": [ { "property": "Direction", "select": { "equals": "outgoing" } }, { "property": "Duration", "number": { "greater_than": 30 } } ] },
    ] } });
    assert_eq!(f.titles(two_levels).await, ["delta", "alpha"]);
    let three_levels =
        json!({ "filter": { "or": [ { "and": [ { "or": [ phone("+15555550123") ] } ] } ] } });
    let (status, body) = f.query(three_levels).await;
    assert_error(status, &body, 400, "validation_error");
    let flat_or = json!({ "filter": { "or": [phone("+15555550123"), phone("+15555550199"), phone("5555550123")] } });
    assert_eq!(f.titles(flat_or).await, ["beta", "alpha"]);
}

#[tokio::test]
async fn malformed_filters_are_400() {
    let f = fixture();
    seed_for_queries(&f).await;
    let cases = [
        // The old app's waste: a rich_text filter on a phone_number property.
        json!({ "filter": { "property": "Participant", "rich_text": { "equals": "+15555550123" } } }),
        json!({ "filter": { "property": "Name", "rich_text": { "equals": "alpha" } } }),
        json!({ "filter": { "property": "Direction", "status": { "equals": "incoming" } } }),
        json!({ "filter": { "property": "Nope", "rich_text": { "equals": "x" } } }),
        json!({ "filter": { "property": "Call ID", "rich_text": { "equals": "x", "contains": "y" } } }),
        json!({ "filter": { "property": "Call ID", "rich_text": { "is_empty": false } } }),
        json!({ "filter": { "property": "Call ID", "rich_text": { "greater_than": 1 } } }),
        json!({ "filter": { "property": "Duration", "number": { "equals": "30" } } }),
        json!({ "filter": { "property": "Created", "date": { "before": "last tuesday" } } }),
        json!({ "filter": { "or": [], "and": [] } }),
        json!({ "sorts": [{ "property": "Duration", "direction": "up" }] }),
        json!({ "sorts": [{ "property": "Nope", "direction": "ascending" }] }),
        json!({ "page_size": 101 }),
        json!({ "page_size": 0 }),
        json!({ "start_cursor": "00000000-0000-4000-8000-000000000000" }),
        json!({ "filters": {} }),
    ];
    for body in cases {
        let (status, response) = f.query(body.clone()).await;
        assert_error(status, &response, 400, "validation_error");
    }
}

#[tokio::test]
async fn sorts_and_cursor_pagination() {
    let f = fixture();
    seed_for_queries(&f).await;
    let by_duration =
        |direction: &str| json!({ "sorts": [{ "property": "Duration", "direction": direction }] });
    assert_eq!(
        f.titles(by_duration("ascending")).await,
        ["alpha", "beta", "gamma", "delta"]
    );
    assert_eq!(
        f.titles(by_duration("descending")).await,
        ["delta", "gamma", "beta", "alpha"]
    );
    let by_phone = json!({ "sorts": [{ "property": "Participant", "direction": "descending" }] });
    assert_eq!(
        f.titles(by_phone).await.last().map(String::as_str),
        Some("gamma"),
        "empty values sort last"
    );
    let created = json!({ "sorts": [{ "timestamp": "created_time", "direction": "ascending" }] });
    assert_eq!(f.titles(created).await, ["alpha", "beta", "gamma", "delta"]);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body =
            json!({ "page_size": 3, "sorts": [{ "property": "Name", "direction": "ascending" }] });
        if let Some(cursor) = &cursor {
            body["start_cursor"] = json!(cursor);
        }
        let (status, response) = f.query(body).await;
        assert_eq!(status, 200, "{response}");
        pages += 1;
        for page in response["results"].as_array().expect("results") {
            seen.push(property_text(&page["properties"]["Name"]).expect("title"));
        }
        assert_eq!(response["has_more"], response["next_cursor"].is_string());
        match response["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, ["alpha", "beta", "delta", "gamma"]);
}

#[tokio::test]
async fn relations_read_back_25_at_most_with_has_more() {
    let f = fixture();
    let targets: Vec<Value> = (0..30)
        .map(|i| {
            let id = f
                .server
                .insert_page(
                    &f.canvas,
                    json!({ "Name": { "title": text(&format!("m{i}")) } }),
                )
                .expect("page");
            json!({ "id": id })
        })
        .collect();
    let id = f
        .create_ok(json!({ "Canvas": { "relation": targets } }))
        .await;
    let (_, page) = f.send("GET", &format!("/v1/pages/{id}"), None).await;
    assert_eq!(
        page["properties"]["Canvas"]["relation"]
            .as_array()
            .map(Vec::len),
        Some(25)
    );
    assert_eq!(page["properties"]["Canvas"]["has_more"], true);
    let stored = f.server.page(&id).expect("page");
    assert_eq!(
        stored["properties"]["Canvas"]["relation"]
            .as_array()
            .map(Vec::len),
        Some(30)
    );
}

#[tokio::test]
async fn block_children_append_in_order_with_limits_and_pagination() {
    let f = fixture();
    let page = f
        .create_ok(json!({ "Name": { "title": text("Call") } }))
        .await;
    let path = format!("/v1/blocks/{page}/children");
    let paragraph = |content: &str| json!({ "object": "block", "type": "paragraph", "paragraph": { "rich_text": text(content) } });
    let first: Vec<Value> = (0..100).map(|i| paragraph(&format!("line {i}"))).collect();
    let (status, body) = f
        .send("PATCH", &path, Some(json!({ "children": first })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(100));
    assert_eq!(
        body["results"][0]["paragraph"]["rich_text"][0]["plain_text"],
        "line 0"
    );
    let (status, body) = f
        .send(
            "PATCH",
            &path,
            Some(json!({ "children": [{ "heading_2": { "rich_text": text("Summary") } }] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let line0 = f.server.blocks(&page)[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = f
        .send(
            "PATCH",
            &path,
            Some(json!({ "children": [paragraph("inserted")], "after": line0 })),
        )
        .await;
    assert_eq!(status, 200);
    let texts = f.server.block_texts(&page);
    assert_eq!(texts.len(), 102);
    assert_eq!(&texts[..3], ["line 0", "inserted", "line 1"]);
    assert_eq!(texts[101], "Summary");

    let too_many: Vec<Value> = (0..101).map(|i| paragraph(&i.to_string())).collect();
    let nested = json!({ "bulleted_list_item": { "rich_text": text("a"), "children": [{ "bulleted_list_item": { "rich_text": text("b"), "children": [paragraph("c")] } }] } });
    let two_levels =
        json!({ "bulleted_list_item": { "rich_text": text("a"), "children": [paragraph("b")] } });
    for body in [
        json!({ "children": too_many }),
        json!({ "children": [paragraph(&"x".repeat(2001))] }),
        json!({ "children": [nested] }),
        json!({ "children": [{ "paragraph": { "rich_text": text("x") }, "heading_1": { "rich_text": text("y") } }] }),
        json!({ "children": [{ "type": "heading_1", "paragraph": { "rich_text": text("x") } }] }),
        json!({ "children": [{ "paragraph": { "text": text("old shape") } }] }),
        json!({ "children": [paragraph("x")], "after": f.calls }),
        json!({ "blocks": [] }),
    ] {
        let (status, response) = f.send("PATCH", &path, Some(body.clone())).await;
        assert_error(status, &response, 400, "validation_error");
    }
    let (status, body) = f
        .send("PATCH", &path, Some(json!({ "children": [two_levels] })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["has_children"], true);
    let nested_id = body["results"][0]["id"].as_str().expect("id").to_owned();
    assert_eq!(f.server.block_texts(&nested_id), ["b"]);

    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("{path}?page_size=40&start_cursor={cursor}"),
            None => format!("{path}?page_size=40"),
        };
        let (status, body) = f.send("GET", &query, None).await;
        assert_eq!(status, 200, "{body}");
        for block in body["results"].as_array().expect("results") {
            let kind = block["type"].as_str().expect("type");
            listed.push(
                block[kind]["rich_text"][0]["plain_text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(listed.len(), 103);
    assert_eq!(listed[..3], ["line 0", "inserted", "line 1"]);
    let (status, _) = f.send("GET", &format!("{path}?page_size=101"), None).await;
    assert_eq!(status, 400);
    let (status, body) = f
        .send("GET", &format!("/v1/blocks/{}/children", f.calls), None)
        .await;
    assert_error(status, &body, 404, "object_not_found");
}

#[tokio::test]
async fn media_blocks_take_external_files_as_notion_documents_them() {
    let f = fixture();
    let page = f
        .create_ok(json!({ "Name": { "title": text("Message") } }))
        .await;
    let path = format!("/v1/blocks/{page}/children");
    let picture = "https://bucket.test/media/2026/12/04/AC1-1.jpg?X-Amz-Signature=a";
    let document = "https://bucket.test/media/2026/12/04/AC1-2.pdf?X-Amz-Signature=b";
    let (status, body) = f
        .send(
            "PATCH",
            &path,
            Some(json!({ "children": [
                { "object": "block", "type": "image", "image": { "type": "external", "external": { "url": picture } } },
                { "object": "block", "type": "file", "file": { "type": "external", "external": { "url": document } } },
                { "file": { "type": "external", "external": { "url": document }, "name": "statement.pdf" } },
            ] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let blocks = f.server.blocks(&page);
    assert_eq!(blocks[0]["type"], "image");
    assert_eq!(blocks[0]["image"]["external"]["url"], picture);
    assert_eq!(blocks[0]["image"]["caption"], json!([]));
    assert_eq!(blocks[1]["file"]["external"]["url"], document);
    assert_eq!(blocks[1]["file"]["name"], "AC1-2.pdf");
    assert_eq!(blocks[2]["file"]["name"], "statement.pdf");

    for refused in [
        // Only file blocks have a name.
        json!({ "image": { "type": "external", "external": { "url": picture }, "name": "x.jpg" } }),
        json!({ "image": { "type": "external" } }),
        json!({ "image": { "type": "external", "external": { "url": "ftp://x/y.jpg" } } }),
        json!({ "image": { "type": "external", "external": { "url": picture }, "url": picture } }),
        json!({ "file": { "type": "external", "external": { "url": document }, "name": 7 } }),
    ] {
        let (status, response) = f
            .send(
                "PATCH",
                &path,
                Some(json!({ "children": [refused.clone()] })),
            )
            .await;
        assert_error(status, &response, 400, "validation_error");
    }

    // A renewed link replaces the block's URL in place.
    let id = blocks[0]["id"].as_str().expect("id");
    let renewed = "https://bucket.test/media/2026/12/04/AC1-1.jpg?X-Amz-Signature=c";
    let (status, body) = f
        .send(
            "PATCH",
            &format!("/v1/blocks/{id}"),
            Some(json!({ "image": { "type": "external", "external": { "url": renewed } } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        f.server.blocks(&page)[0]["image"]["external"]["url"],
        renewed
    );
}

#[tokio::test]
async fn the_token_bucket_allows_a_burst_of_10_then_429s_with_retry_after() {
    let f = fixture();
    f.server.set_rate_limit(Some(RateLimit::NOTION));
    let path = format!("/v1/data_sources/{}", f.calls);
    for i in 0..10 {
        let (status, _) = f.send("GET", &path, None).await;
        assert_eq!(status, 200, "request {i} of the burst");
    }
    let (status, retry_after, body) = f
        .send_full("GET", &path, None, Some("2025-09-03"), TOKEN)
        .await;
    assert_error(status, &body, 429, "rate_limited");
    let seconds: u64 = retry_after
        .expect("Retry-After")
        .parse()
        .expect("integer seconds");
    assert!(seconds >= 1);
    assert_eq!(f.server.rate_limited_count(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _) = f.send("GET", &path, None).await;
    assert_eq!(status, 200, "a token refills in 1/3 s");
    assert_eq!(f.server.request_count("GET /v1/data_sources/{id}"), 12);
    assert!(f.server.max_requests_in_sliding_second() >= 11);
    assert!(f.server.max_requests_in_any_second() >= 1);
}

#[tokio::test]
async fn applied_but_failed_commits_the_write_then_answers_500() {
    let f = fixture();
    f.server
        .inject(FaultRule::next(1, Fault::AppliedButFailed).on("POST /v1/pages"));
    let (status, body) = f
        .create(json!({ "Call ID": { "rich_text": text("ACdup") } }))
        .await;
    assert_error(status, &body, 500, "internal_server_error");
    assert_eq!(f.server.pages(&f.calls).len(), 1, "the write landed");
    let found = f
        .titles(json!({ "filter": { "property": "Call ID", "rich_text": { "equals": "ACdup" } } }))
        .await;
    assert_eq!(found.len(), 1, "a dedupe query finds it");

    let page = f.server.pages(&f.calls)[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    f.server.inject(FaultRule::next(1, Fault::AppliedButFailed));
    let (status, _) = f
        .send(
            "PATCH",
            &format!("/v1/blocks/{page}/children"),
            Some(json!({ "children": [{ "paragraph": { "rich_text": text("once") } }] })),
        )
        .await;
    assert_eq!(status, 500);
    assert_eq!(f.server.block_texts(&page), ["once"]);
    let (status, _) = f.query(json!({})).await;
    assert_eq!(
        status, 200,
        "queries are not writes; the applied fault was spent on the append"
    );
    assert_eq!(f.server.faults_triggered(), 2);
}

#[tokio::test]
async fn applied_faults_skip_failed_writes_and_status_faults_write_nothing() {
    let f = fixture();
    f.server
        .inject(FaultRule::next(1, Fault::AppliedButFailed).on("POST /v1/pages"));
    let (status, _) = f.create(json!({ "Nope": { "number": 1 } })).await;
    assert_eq!(
        status, 400,
        "an invalid write is not applied, so the fault waits"
    );
    let (status, _) = f.create(json!({})).await;
    assert_eq!(status, 500);
    f.server.inject(FaultRule::next(1, Fault::Status(502)));
    let (status, body) = f.create(json!({})).await;
    assert_error(status, &body, 502, "bad_gateway");
    f.server.inject(FaultRule::next(
        1,
        Fault::Overloaded {
            retry_after_secs: 3,
        },
    ));
    let (status, retry_after, body) = f
        .send_full(
            "POST",
            &format!("/v1/data_sources/{}/query", f.calls),
            Some(b"{}".to_vec()),
            Some("2025-09-03"),
            TOKEN,
        )
        .await;
    assert_error(status, &body, 529, "service_overload");
    assert_eq!(retry_after.as_deref(), Some("3"));
    f.server.inject(FaultRule::next(
        1,
        Fault::RateLimited {
            retry_after_secs: 2,
        },
    ));
    let (status, retry_after, body) = f
        .send_full(
            "GET",
            &format!("/v1/data_sources/{}", f.calls),
            None,
            Some("2025-09-03"),
            TOKEN,
        )
        .await;
    assert_error(status, &body, 429, "rate_limited");
    assert_eq!(retry_after.as_deref(), Some("2"));
    assert_eq!(
        f.server.pages(&f.calls).len(),
        1,
        "only the applied-but-failed create landed"
    );
}

#[tokio::test]
async fn applied_then_delay_lands_the_write_behind_a_client_timeout() {
    let f = fixture();
    f.server.inject(
        FaultRule::next(1, Fault::AppliedThenDelay(Duration::from_secs(2))).on("POST /v1/pages"),
    );
    let result = f
        .http
        .post(format!("{}/v1/pages", f.server.base_url()))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Notion-Version", "2025-09-03")
        .json(&json!({ "parent": { "data_source_id": f.calls }, "properties": {} }))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(result.is_err_and(|err| err.is_timeout()));
    assert_eq!(f.server.pages(&f.calls).len(), 1);

    f.server
        .inject(FaultRule::next(1, Fault::Delay(Duration::from_millis(300))));
    let started = Instant::now();
    let (status, _) = f.create(json!({})).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fractional_faults_are_reproducible_from_the_seed() {
    let run = |seed: u64| async move {
        let f = fixture();
        f.server.set_fault_seed(seed);
        f.server
            .inject(FaultRule::fraction(0.5, Fault::Status(503)));
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(f.query(json!({})).await.0);
        }
        statuses
    };
    let first = run(42).await;
    assert_eq!(first, run(42).await);
    assert!(first.contains(&503) && first.contains(&200), "{first:?}");
}

#[tokio::test]
async fn the_request_log_and_counters_record_what_the_app_sent() {
    let f = fixture();
    f.create_ok(json!({ "Call ID": { "rich_text": text("AClog") } }))
        .await;
    f.query(json!({ "page_size": 1 })).await;
    let (status, _) = f.send_raw("GET", "/v1/users/me", None, None, TOKEN).await;
    assert_eq!(status, 400);
    let log = f.server.request_log();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].endpoint, "POST /v1/pages");
    assert_eq!(log[0].status, 200);
    assert_eq!(
        log[0]
            .body
            .as_ref()
            .map(|b| b["properties"]["Call ID"]["rich_text"][0]["text"]["content"].clone()),
        Some(json!("AClog"))
    );
    assert_eq!(log[1].endpoint, "POST /v1/data_sources/{id}/query");
    assert_eq!(log[2].status, 400);
    assert_eq!(f.server.request_count("POST /v1/pages"), 1);
    assert_eq!(f.server.total_requests(), 3);
    f.server.reset_counters();
    assert!(f.server.request_log().is_empty());
}
