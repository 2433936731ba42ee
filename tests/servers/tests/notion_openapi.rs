//! Request bodies are checked against Notion's published OpenAPI description (`notion-openapi.json`,
//! `src/notion/openapi.rs`) and refused as Notion refuses them: `400 validation_error` naming the field.

use serde_json::{json, Value};
use test_servers::{NotionServer, Schema};

const TOKEN: &str = "secret_test_token";

struct Fixture {
    server: NotionServer,
    data_source: String,
    http: reqwest::Client,
}

fn fixture() -> Fixture {
    let server = NotionServer::start(TOKEN).expect("server starts");
    server.set_rate_limit(None);
    let schema = Schema::new().title("Name").rich_text("Call ID");
    let (_, data_source) = server.create_database("Calls", &schema).expect("calls");
    Fixture {
        server,
        data_source,
        http: reqwest::Client::new(),
    }
}

impl Fixture {
    async fn send(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .http
            .request(method, format!("{}{path}", self.server.base_url()))
            .header("Authorization", format!("Bearer {TOKEN}"))
            .header("Notion-Version", "2025-09-03")
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn parent(&self) -> Value {
        json!({ "type": "data_source_id", "data_source_id": self.data_source })
    }

    /// The request must be answered `400 validation_error` with `message`, and write no page.
    async fn refused(&self, method: &str, path: &str, body: Value, message: &str) {
        let pages = self.server.pages(&self.data_source).len();
        let (status, response) = self.send(method, path, body).await;
        assert_eq!(status, 400, "{response}");
        assert_eq!(response["object"], "error", "{response}");
        assert_eq!(response["status"], 400, "{response}");
        assert_eq!(response["code"], "validation_error", "{response}");
        assert_eq!(response["message"], message, "{response}");
        assert_eq!(self.server.pages(&self.data_source).len(), pages);
    }
}

fn text(content: &str) -> Value {
    json!([{ "type": "text", "text": { "content": content } }])
}

/// A page create shaped as the app sends it (`components/common/src/notion`): a `data_source_id`
/// parent, property values, and `"object": "block"` children of three types, one with a link.
fn app_page(parent: Value) -> Value {
    json!({
        "parent": parent,
        "properties": {
            "Name": { "title": text("Call with +1 555 0100") },
            "Call ID": { "rich_text": text("AC123") },
        },
        "children": [
            { "object": "block", "type": "heading_2", "heading_2": { "rich_text": text("Summary") } },
            { "object": "block", "type": "paragraph", "paragraph": { "rich_text": [
                { "type": "text", "text": { "content": "Recording", "link": { "url": "https://example.com/r.mp3" } } }
            ] } },
            { "object": "block", "type": "bulleted_list_item", "bulleted_list_item": { "rich_text": text("Next step") } },
            { "object": "block", "type": "paragraph", "paragraph": { "rich_text": [] } },
        ],
    })
}

#[tokio::test]
async fn a_page_create_as_the_app_sends_it_passes() {
    let f = fixture();
    let (status, body) = f.send("POST", "/v1/pages", app_page(f.parent())).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().expect("page id");
    assert_eq!(
        f.server.block_texts(id),
        ["Summary", "Recording", "Next step", ""]
    );
    let query = format!("/v1/data_sources/{}/query", f.data_source);
    let (status, body) = f
        .send(
            "POST",
            &query,
            json!({ "filter": { "property": "Call ID", "rich_text": { "equals": "AC123" } }, "page_size": 1 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn an_unknown_top_level_key_is_400() {
    let f = fixture();
    let mut body = app_page(f.parent());
    body["Notion-Version"] = json!("2025-09-03");
    // The spec leaves request bodies open at their top level; Notion refuses unknown keys all the same
    // (the handlers' key lists say so, in Notion's words).
    f.refused(
        "POST",
        "/v1/pages",
        body,
        "body failed validation: body.Notion-Version should be not present, instead was `\"2025-09-03\"`.",
    )
    .await;
}

#[tokio::test]
async fn a_wrong_type_is_400_naming_the_field() {
    let f = fixture();
    let mut body = app_page(f.parent());
    body["properties"] = json!([]);
    f.refused(
        "POST",
        "/v1/pages",
        body,
        "body failed validation: body.properties should be an object, instead was `[]`.",
    )
    .await;
    let mut body = app_page(f.parent());
    body["children"][1]["paragraph"]["rich_text"][0]["text"]["link"] = json!("https://example.com");
    f.refused(
        "POST",
        "/v1/pages",
        body,
        "body failed validation: body.children[1].paragraph.rich_text[0].text.link should be an object or `null`, instead was `\"https://example.com\"`.",
    )
    .await;
    let query = format!("/v1/data_sources/{}/query", f.data_source);
    f.refused(
        "POST",
        &query,
        json!({ "page_size": "10" }),
        "body failed validation: body.page_size should be an integer, instead was `\"10\"`.",
    )
    .await;
}

#[tokio::test]
async fn over_long_rich_text_is_400() {
    let f = fixture();
    // More than 100 rich-text items in a block: the spec's `maxItems`.
    let mut body = app_page(f.parent());
    body["children"][2]["bulleted_list_item"]["rich_text"] =
        Value::Array(vec![text("x")[0].clone(); 101]);
    f.refused(
        "POST",
        "/v1/pages",
        body,
        "body failed validation: body.children[2].bulleted_list_item.rich_text.length should be ≤ `100`, instead was `101`.",
    )
    .await;
    // More than 2000 characters in one item: Notion's limit, which the spec does not state (the
    // handlers check it).
    let mut body = app_page(f.parent());
    body["properties"]["Name"]["title"] = text(&"x".repeat(2001));
    f.refused(
        "POST",
        "/v1/pages",
        body,
        "body failed validation: body.properties.Name.title[0].text.content.length should be ≤ `2000`, instead was `2001`.",
    )
    .await;
}

#[tokio::test]
async fn a_missing_required_field_is_400() {
    let f = fixture();
    let mut body = app_page(f.parent());
    body.as_object_mut().expect("object").remove("properties");
    f.refused(
        "POST",
        "/v1/pages",
        body,
        "body failed validation: body.properties should be defined, instead was `undefined`.",
    )
    .await;
    let mut body = app_page(f.parent());
    body["children"][3]["paragraph"] = json!({});
    f.refused(
        "POST",
        "/v1/pages",
        body,
        "body failed validation: body.children[3].paragraph.rich_text should be defined, instead was `undefined`.",
    )
    .await;
    let page = f
        .server
        .insert_page(&f.data_source, json!({ "Name": { "title": text("p") } }))
        .expect("page");
    f.refused(
        "PATCH",
        &format!("/v1/blocks/{page}/children"),
        json!({ "after": page }),
        "body failed validation: body.children should be defined, instead was `undefined`.",
    )
    .await;
}

/// Bodies the handlers alone would take (they default a missing `properties` to `{}` and read a `null`
/// cursor as none) but that the spec, and so Notion, refuses: this test fails if the OpenAPI check is
/// switched off or moved behind the handlers.
#[tokio::test]
async fn the_openapi_check_runs_before_the_handlers() {
    let f = fixture();
    f.refused(
        "POST",
        "/v1/pages",
        json!({ "parent": f.parent() }),
        "body failed validation: body.properties should be defined, instead was `undefined`.",
    )
    .await;
    f.refused(
        "POST",
        &format!("/v1/data_sources/{}/query", f.data_source),
        json!({ "start_cursor": null }),
        "body failed validation: body.start_cursor should be a string, instead was `null`.",
    )
    .await;
    let log = f.server.request_log();
    assert_eq!(log.iter().map(|r| r.status).collect::<Vec<_>>(), [400, 400]);
}

/// A union whose every branch fails is worded as Notion words it: `Fix one:` and one line per branch.
#[tokio::test]
async fn a_bad_parent_lists_the_shapes_to_fix() {
    let f = fixture();
    let (status, response) = f
        .send(
            "POST",
            "/v1/pages",
            app_page(json!({ "data_source_id": "not-a-uuid" })),
        )
        .await;
    assert_eq!(status, 400, "{response}");
    assert_eq!(response["code"], "validation_error");
    let message = response["message"].as_str().expect("message");
    assert!(
        message.starts_with("body failed validation. Fix one:\n"),
        "{message}"
    );
    for line in [
        "body.parent.page_id should be defined, instead was `undefined`.",
        "body.parent.data_source_id should be a valid uuid, instead was `\"not-a-uuid\"`.",
    ] {
        assert!(message.lines().any(|l| l == line), "{line} in {message}");
    }
}
