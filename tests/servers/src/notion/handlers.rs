//! Routes of the Notion API and the gate every request passes (version, auth, rate limit, faults, size,
//! and the body's shape per Notion's OpenAPI description).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::blocks::parse_children;
use super::error::NotionError;
use super::openapi;
use super::query::{matches, parse_filter, parse_sorts, sort};
use super::values::{object, only_keys, MAX_ARRAY};
use super::{normalize_id, LoggedRequest, Page, Shared, BOT_ID, NOTION_VERSION};
use crate::faults::Fault;

type Ctx = State<Arc<Shared>>;
type Answer = Result<Response, NotionError>;

/// Whole request body (notion-api.md §7: 500 KB), read as 500 000 bytes: a client that stays under this
/// stays under Notion's limit whichever way "KB" is meant.
const MAX_BODY_BYTES: usize = 500_000;

const WRITES: &[&str] = &[
    "POST /v1/pages",
    "PATCH /v1/pages/{id}",
    "PATCH /v1/blocks/{id}/children",
    "PATCH /v1/blocks/{id}",
    "PATCH /v1/data_sources/{id}",
];

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/users/me", get(me))
        .route("/v1/databases/{id}", get(get_database))
        .route(
            "/v1/data_sources/{id}",
            get(get_data_source).patch(update_data_source),
        )
        .route("/v1/data_sources/{id}/query", post(query_data_source))
        .route("/v1/pages", post(create_page))
        .route("/v1/pages/{id}", get(get_page).patch(update_page))
        .route(
            "/v1/blocks/{id}/children",
            get(list_children).patch(append_children),
        )
        .route("/v1/blocks/{id}", patch(update_block))
        .fallback(unknown_route)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

async fn gate(
    State(shared): Ctx,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let endpoint = format!(
        "{method} {}",
        matched.as_ref().map_or("<unmatched>", MatchedPath::as_str)
    );
    let (parts, body) = request.into_parts();
    // The body is read here so the log can hold it and the size limit applies to every endpoint.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(err) => {
            return NotionError::new(
                400,
                "invalid_request",
                format!("could not read the body: {err}"),
            )
            .into_response()
        }
    };
    let index = {
        let mut state = shared.lock();
        state.stats.count(&endpoint);
        state.log.push(LoggedRequest {
            method: method.clone(),
            path,
            endpoint: endpoint.clone(),
            status: 0,
            body: serde_json::from_slice(&bytes).ok(),
        });
        state.log.len() - 1
    };
    let response = gated(&shared, &endpoint, parts, bytes, next).await;
    if let Some(entry) = shared.lock().log.get_mut(index) {
        entry.status = response.status().as_u16();
    }
    response
}

async fn gated(
    shared: &Shared,
    endpoint: &str,
    parts: axum::http::request::Parts,
    bytes: Bytes,
    next: Next,
) -> Response {
    let fault = {
        let mut state = shared.lock();
        match parts
            .headers
            .get("notion-version")
            .map(|v| v.to_str().unwrap_or_default())
        {
            None => {
                return NotionError::new(400, "missing_version", "Notion-Version header failed validation: Notion-Version header should be defined, instead was `undefined`.").into_response();
            }
            Some(NOTION_VERSION) => {}
            Some(other) => {
                return NotionError::new(400, "invalid_request", format!("The test server implements Notion-Version {NOTION_VERSION} only, got {other:?}.")).into_response();
            }
        }
        let expected = format!("Bearer {}", state.token);
        if parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            != Some(expected.as_str())
        {
            return NotionError::new(401, "unauthorized", "API token is invalid.").into_response();
        }
        state.stats.arrive();
        if let Err(wait) = state.bucket.take() {
            state.rate_limited += 1;
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            return NotionError::new(
                429,
                "rate_limited",
                "You have been rate limited. Please try again in a few minutes.",
            )
            .with_retry_after(seconds)
            .into_response();
        }
        state.faults.before(endpoint, &bytes)
    };
    match fault {
        Some(Fault::Delay(wait)) => tokio::time::sleep(wait).await,
        Some(fault) => return fault_response(&fault),
        None => {}
    }
    if bytes.len() > MAX_BODY_BYTES {
        return NotionError::validation(format!(
            "The request body is {} bytes; the limit is {MAX_BODY_BYTES} bytes (500 KB).",
            bytes.len()
        ))
        .into_response();
    }
    // Checked against Notion's published OpenAPI description before any handler sees the body, so a
    // request the real API would refuse for its shape is refused here too (openapi.rs).
    if let Err(error) = openapi::check_body(parts.method.as_str(), parts.uri.path(), &bytes) {
        return error.into_response();
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    if !WRITES.contains(&endpoint) || !response.status().is_success() {
        return response;
    }
    let after = shared.lock().faults.after_write(endpoint, &bytes);
    match after {
        Some(Fault::AppliedThenDelay(wait)) => {
            tokio::time::sleep(wait).await;
            response
        }
        Some(_) => fault_response(&Fault::Status(500)),
        None => response,
    }
}

fn fault_response(fault: &Fault) -> Response {
    let error = match fault {
        Fault::RateLimited { retry_after_secs } => NotionError::new(
            429,
            "rate_limited",
            "You have been rate limited. Please try again in a few minutes.",
        )
        .with_retry_after(*retry_after_secs),
        Fault::Overloaded { retry_after_secs } => NotionError::new(
            529,
            "service_overload",
            "Notion is overloaded. Please try again later.",
        )
        .with_retry_after(*retry_after_secs),
        Fault::Status(502) => NotionError::new(502, "bad_gateway", "Bad gateway."),
        Fault::Status(503) => NotionError::new(
            503,
            "service_unavailable",
            "Notion is unavailable, try again later.",
        ),
        Fault::Status(504) => NotionError::new(504, "gateway_timeout", "Notion timed out."),
        Fault::Status(409) => NotionError::new(
            409,
            "conflict_error",
            "Conflict occurred while saving. Please try again.",
        ),
        Fault::Status(status) => NotionError::new(
            *status,
            "internal_server_error",
            "Unexpected error occurred.",
        ),
        Fault::Delay(_) | Fault::AppliedButFailed | Fault::AppliedThenDelay(_) => {
            NotionError::new(500, "internal_server_error", "Unexpected error occurred.")
        }
    };
    error.into_response()
}

async fn unknown_route() -> NotionError {
    NotionError::new(400, "invalid_request_url", "Invalid request URL.")
}

fn json_body(bytes: &[u8], allow_empty: bool) -> Result<Value, NotionError> {
    if allow_empty && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| NotionError::new(400, "invalid_json", "Error parsing JSON body."))?;
    object(&value, "body")?;
    Ok(value)
}

fn path_id(raw: &str, what: &str) -> Result<String, NotionError> {
    normalize_id(raw).ok_or_else(|| {
        NotionError::validation(format!(
            "path failed validation: path.{what} should be a valid uuid, instead was `\"{raw}\"`."
        ))
    })
}

fn ok(value: Value) -> Answer {
    Ok(Json(value).into_response())
}

async fn me() -> Answer {
    ok(
        json!({ "object": "user", "id": BOT_ID, "type": "bot", "name": "openphone-notion-sync test", "bot": {} }),
    )
}

async fn get_database(State(shared): Ctx, Path(id): Path<String>) -> Answer {
    let id = path_id(&id, "database_id")?;
    let state = shared.lock();
    ok(state.render_database(state.database(&id)?))
}

async fn get_data_source(State(shared): Ctx, Path(id): Path<String>) -> Answer {
    let id = path_id(&id, "data_source_id")?;
    let state = shared.lock();
    ok(state.render_data_source(state.data_source(&id)?))
}

async fn update_data_source(State(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Answer {
    let id = path_id(&id, "data_source_id")?;
    let body = json_body(&body, false)?;
    let fields = object(&body, "body")?;
    only_keys(fields, &["properties", "title"], "body")?;
    let mut state = shared.lock();
    state.data_source(&id)?;
    let title = match fields.get("title") {
        Some(title) => Some(super::values::plain_text(&super::values::rich_text(
            title,
            "body.title",
        )?)),
        None => None,
    };
    if let Some(properties) = fields.get("properties") {
        state.add_properties(&id, properties, true)?;
    }
    if let (Some(title), Some(ds)) = (title, state.data_sources.get_mut(&id)) {
        ds.name = title;
    }
    ok(state.render_data_source(state.data_source(&id)?))
}

async fn query_data_source(
    State(shared): Ctx,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Answer {
    let id = path_id(&id, "data_source_id")?;
    let body = json_body(&body, true)?;
    let fields = object(&body, "body")?;
    only_keys(
        fields,
        &[
            "filter",
            "sorts",
            "start_cursor",
            "page_size",
            "in_trash",
            "result_type",
        ],
        "body",
    )?;
    let state = shared.lock();
    let ds = state.data_source(&id)?;
    let filter = fields
        .get("filter")
        .map(|f| parse_filter(f, &ds.properties))
        .transpose()?;
    let sorts = fields
        .get("sorts")
        .map(|s| parse_sorts(s, &ds.properties))
        .transpose()?
        .unwrap_or_default();
    let page_size = page_size(fields.get("page_size"), "body.page_size")?;
    let in_trash = match fields.get("in_trash") {
        None => false,
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            return Err(NotionError::validation(format!(
                "body failed validation: body.in_trash should be a boolean, instead was `{other}`."
            )))
        }
    };
    let only: Option<Vec<String>> = query.as_deref().map(|raw| {
        form_urlencoded::parse(raw.as_bytes())
            .filter(|(key, _)| key == "filter_properties" || key == "filter_properties[]")
            .map(|(_, value)| value.into_owned())
            .collect()
    });
    let only = only.filter(|ids| !ids.is_empty());
    let mut pages: Vec<&Page> = state
        .pages
        .values()
        .filter(|page| page.data_source_id == id && page.archived == in_trash)
        .filter(|page| filter.as_ref().is_none_or(|filter| matches(filter, page)))
        .collect();
    sort(&mut pages, &sorts);
    // Notion reads at most 10 000 results of one query; the last page of those says so.
    let capped = pages.len() > MAX_QUERY_RESULTS;
    pages.truncate(MAX_QUERY_RESULTS);
    let cursor = match fields.get("start_cursor") {
        None | Some(Value::Null) => None,
        Some(cursor) => Some(cursor.as_str().ok_or_else(|| {
            NotionError::validation("body failed validation: body.start_cursor should be a string.")
        })?),
    };
    let (results, next_cursor) = paginate(&pages, cursor, page_size, |page| &page.id)?;
    let results: Vec<Value> = results
        .iter()
        .map(|page| state.render_page(page, true, only.as_deref()))
        .collect();
    let mut body = json!({
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor.is_some(),
        "type": "page_or_data_source",
        "page_or_data_source": {},
    });
    if capped && next_cursor.is_none() {
        body["request_status"] =
            json!({ "type": "incomplete", "incomplete_reason": "query_result_limit_reached" });
    }
    ok(body)
}

/// Results one query can read through all its pages (notion-api.md §6.4).
const MAX_QUERY_RESULTS: usize = 10_000;

fn page_size(value: Option<&Value>, path: &str) -> Result<usize, NotionError> {
    match value {
        None | Some(Value::Null) => Ok(MAX_ARRAY),
        Some(value) => match value.as_u64() {
            Some(n @ 1..=100) => Ok(n as usize),
            _ => Err(NotionError::validation(format!("body failed validation: {path} should be an integer from 1 to 100, instead was `{value}`."))),
        },
    }
}

/// Cursor pagination: a cursor is the id of the first item of the next page, as Notion's are.
fn paginate<'a, T>(
    items: &'a [T],
    cursor: Option<&str>,
    page_size: usize,
    id: impl Fn(&T) -> &String,
) -> Result<(&'a [T], Option<String>), NotionError> {
    let start = match cursor {
        None => 0,
        Some(cursor) => {
            let cursor = normalize_id(cursor).unwrap_or_default();
            items
                .iter()
                .position(|item| *id(item) == cursor)
                .ok_or_else(|| {
                    NotionError::validation(format!(
                        "start_cursor {cursor:?} is not valid for this request."
                    ))
                })?
        }
    };
    let end = (start + page_size).min(items.len());
    Ok((
        &items[start..end],
        items.get(end).map(|item| id(item).clone()),
    ))
}

/// A page icon as Notion takes it: null (none), one emoji, an external image, or an uploaded file. `type`
/// may be left out (Notion's own examples send `{"emoji": "🥬"}`); the page reads back with it.
fn check_icon(icon: &Value) -> Result<Value, NotionError> {
    if icon.is_null() {
        return Ok(Value::Null);
    }
    let fields = object(icon, "body.icon")?;
    let invalid = |what: &str| {
        NotionError::validation(format!(
            "body failed validation: body.icon.{what}, instead was `{icon}`."
        ))
    };
    let kind = match fields.get("type") {
        Some(kind) => kind.as_str().unwrap_or_default(),
        None => ["emoji", "external", "file_upload"]
            .into_iter()
            .find(|k| fields.contains_key(*k))
            .unwrap_or_default(),
    };
    only_keys(fields, &["type", kind], "body.icon")?;
    match kind {
        "emoji" => {
            let emoji = fields
                .get("emoji")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // Notion takes one emoji from its list: no letters, digits or text.
            if emoji.is_empty()
                || emoji.chars().count() > 8
                || emoji
                    .chars()
                    .any(|c| c.is_ascii_alphanumeric() || c.is_whitespace())
            {
                return Err(invalid("emoji should be an emoji"));
            }
        }
        "external" => match fields
            .get("external")
            .and_then(|e| e.get("url"))
            .and_then(Value::as_str)
        {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {}
            _ => return Err(invalid("external.url should be a URL")),
        },
        "file_upload" => {
            if fields
                .get("file_upload")
                .and_then(|f| f.get("id"))
                .and_then(Value::as_str)
                .is_none()
            {
                return Err(invalid("file_upload.id should be defined"));
            }
        }
        _ => {
            return Err(invalid(
                "type should be `\"emoji\"`, `\"external\"` or `\"file_upload\"`",
            ))
        }
    }
    let mut normalized = fields.clone();
    normalized.insert("type".into(), json!(kind));
    Ok(Value::Object(normalized))
}

async fn create_page(State(shared): Ctx, body: Bytes) -> Answer {
    let body = json_body(&body, false)?;
    let fields = object(&body, "body")?;
    only_keys(
        fields,
        &["parent", "properties", "children", "icon", "cover"],
        "body",
    )?;
    let parent = object(fields.get("parent").unwrap_or(&Value::Null), "body.parent")?;
    if parent.contains_key("database_id") || parent.get("type").is_some_and(|t| t == "database_id")
    {
        return Err(NotionError::validation(
            "body failed validation: body.parent should use `data_source_id` (Notion-Version 2025-09-03); `database_id` parents fail for multi-source databases.",
        ));
    }
    if parent.contains_key("page_id") || parent.contains_key("workspace") {
        return Err(NotionError::unsupported("a page or workspace parent"));
    }
    only_keys(parent, &["type", "data_source_id"], "body.parent")?;
    if parent.get("type").is_some_and(|t| t != "data_source_id") {
        return Err(NotionError::validation(
            "body failed validation: body.parent.type should be `\"data_source_id\"`.",
        ));
    }
    let raw = parent
        .get("data_source_id")
        .and_then(Value::as_str)
        .ok_or_else(|| NotionError::validation("body failed validation: body.parent.data_source_id should be defined, instead was `undefined`."))?;
    let ds_id = normalize_id(raw).ok_or_else(|| {
        NotionError::validation(format!(
            "body.parent.data_source_id should be a valid uuid, instead was `\"{raw}\"`."
        ))
    })?;
    let children = match fields.get("children") {
        Some(children) => parse_children(children, "body.children")?,
        None => Vec::new(),
    };
    let icon = check_icon(fields.get("icon").unwrap_or(&Value::Null))?;
    let mut state = shared.lock();
    state.data_source(&ds_id)?;
    let id = state.create_page(
        &ds_id,
        fields.get("properties").unwrap_or(&json!({})),
        &children,
    )?;
    if let Some(page) = state.pages.get_mut(&id) {
        page.icon = icon;
        page.cover = fields.get("cover").cloned().unwrap_or(Value::Null);
    }
    ok(state.render_page(state.page(&id)?, true, None))
}

async fn get_page(State(shared): Ctx, Path(id): Path<String>) -> Answer {
    let id = path_id(&id, "page_id")?;
    let state = shared.lock();
    ok(state.render_page(state.page(&id)?, true, None))
}

async fn update_page(State(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Answer {
    let id = path_id(&id, "page_id")?;
    let body = json_body(&body, false)?;
    let fields = object(&body, "body")?;
    only_keys(
        fields,
        &["properties", "archived", "in_trash", "icon", "cover"],
        "body",
    )?;
    let trash = match (fields.get("archived"), fields.get("in_trash")) {
        (None, None) => None,
        (Some(Value::Bool(flag)), None) | (None, Some(Value::Bool(flag))) => Some(*flag),
        (Some(Value::Bool(a)), Some(Value::Bool(b))) if a == b => Some(*a),
        _ => return Err(NotionError::validation("body failed validation: body.archived and body.in_trash should be booleans that agree.")),
    };
    let icon = fields.get("icon").map(check_icon).transpose()?;
    let mut state = shared.lock();
    let page = state.page(&id)?;
    let ds_id = page.data_source_id.clone();
    let archived = trash.unwrap_or(page.archived);
    let properties = fields.get("properties");
    if archived && page.archived && properties.is_some() {
        return Err(NotionError::validation(
            "Can't edit block that is archived. You must unarchive the block before editing.",
        ));
    }
    let written = match properties {
        Some(properties) => state.check_values(&ds_id, properties)?,
        None => Vec::new(),
    };
    state.apply_values(&ds_id, &id, written);
    state.touch(&id);
    if let Some(page) = state.pages.get_mut(&id) {
        page.archived = archived;
        if let Some(icon) = icon {
            page.icon = icon;
        }
        if let Some(cover) = fields.get("cover") {
            page.cover = cover.clone();
        }
    }
    ok(state.render_page(state.page(&id)?, true, None))
}

async fn list_children(
    State(shared): Ctx,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let id = path_id(&id, "block_id")?;
    let mut cursor = None;
    let mut size = None;
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "start_cursor" => cursor = Some(value.into_owned()),
            "page_size" => {
                let parsed = value.parse::<u64>().map_err(|_| {
                    NotionError::validation(format!(
                        "query.page_size should be a number, instead was `\"{value}\"`."
                    ))
                })?;
                size = Some(json!(parsed));
            }
            other => {
                return Err(NotionError::validation(format!(
                    "query.{other} should be not present."
                )))
            }
        }
    }
    let page_size = page_size(size.as_ref(), "query.page_size")?;
    let state = shared.lock();
    let children = visible_children(&state, &id)?;
    let (results, next_cursor) = paginate(children, cursor.as_deref(), page_size, |id| id)?;
    let results: Vec<Value> = results
        .iter()
        .filter_map(|id| state.blocks.get(id))
        .map(|b| state.render_block(b))
        .collect();
    ok(json!({
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor.is_some(),
        "type": "block",
        "block": {},
    }))
}

fn visible_children<'a>(
    state: &'a super::NotionState,
    id: &str,
) -> Result<&'a Vec<String>, NotionError> {
    let page = state
        .owning_page(id)
        .ok_or_else(|| NotionError::not_found("block", id))?;
    state
        .page(&page.id)
        .map_err(|_| NotionError::not_found("block", id))?;
    state
        .children_of(id)
        .ok_or_else(|| NotionError::not_found("block", id))
}

/// `PATCH /v1/blocks/{id}`: replaces a block's content (`{"<its type>": {...}}`), with the limits of a
/// new block; the type cannot change.
async fn update_block(State(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Answer {
    let id = path_id(&id, "block_id")?;
    let body = json_body(&body, false)?;
    let fields = object(&body, "body")?;
    let mut state = shared.lock();
    let kind = state
        .blocks
        .get(&id)
        .map(|b| b.kind.clone())
        .ok_or_else(|| NotionError::not_found("block", &id))?;
    visible_children(&state, &id)?;
    only_keys(fields, &[kind.as_str()], "body")?;
    let content = fields.get(&kind).ok_or_else(|| {
        NotionError::validation(format!(
            "body failed validation: body.{kind} should be defined (a block keeps its type)."
        ))
    })?;
    let parsed = parse_children(
        &json!([{ "object": "block", "type": kind, kind.clone(): content }]),
        "body",
    )?;
    let page_id = state.owning_page(&id).map(|page| page.id.clone());
    let block = state.blocks.get_mut(&id).expect("looked up above");
    block.data = parsed[0].data.clone();
    if let Some(page_id) = page_id {
        state.touch(&page_id);
    }
    let block = state.blocks.get(&id).expect("looked up above");
    ok(state.render_block(block))
}

async fn append_children(State(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Answer {
    let id = path_id(&id, "block_id")?;
    let body = json_body(&body, false)?;
    let fields = object(&body, "body")?;
    only_keys(fields, &["children", "after"], "body")?;
    let children = fields.get("children").ok_or_else(|| {
        NotionError::validation(
            "body failed validation: body.children should be defined, instead was `undefined`.",
        )
    })?;
    let children = parse_children(children, "body.children")?;
    let mut state = shared.lock();
    let siblings = visible_children(&state, &id)?;
    let after = match fields.get("after") {
        None => None,
        Some(after) => {
            let after = after.as_str().and_then(normalize_id).ok_or_else(|| {
                NotionError::validation(
                    "body failed validation: body.after should be a valid uuid.",
                )
            })?;
            if !siblings.contains(&after) {
                return Err(NotionError::validation(format!(
                    "body.after {after} is not a child of block {id}."
                )));
            }
            Some(after)
        }
    };
    let page_id = state
        .owning_page(&id)
        .map(|page| (page.id.clone(), page.archived));
    if let Some((_, true)) = page_id {
        return Err(NotionError::validation(
            "Can't edit block that is archived. You must unarchive the block before editing.",
        ));
    }
    let parent_is_page = state.pages.contains_key(&id);
    let ids = state.insert_blocks(&id, parent_is_page, &children, after.as_deref());
    if let Some((page_id, _)) = page_id {
        state.touch(&page_id);
    }
    let results: Vec<Value> = ids
        .iter()
        .filter_map(|id| state.blocks.get(id))
        .map(|b| state.render_block(b))
        .collect();
    ok(json!({
        "object": "list",
        "results": results,
        "next_cursor": null,
        "has_more": false,
        "type": "block",
        "block": {},
    }))
}
