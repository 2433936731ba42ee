//! Notion API client pinned to `Notion-Version: 2025-09-03` (databases hold data sources): data-source ids
//! resolved once and cached in SQLite, queries, page create/update, block children, and the shared ~3 req/s
//! budget. Reads and updates are retried on `429`/`529`/`5xx`; a create or an append is retried inline only
//! on a rate limit, because after a `5xx` it may have landed (the caller checks before trying again).

pub mod properties;
pub mod schema;

use serde_json::{json, Value};
use tracing::Instrument;

use crate::configuration::NotionConfig;
use crate::outbound::{percent_encode, ApiError, Outbound, Retry, Service};
use crate::platform::{HttpRequest, Method, Platform};
pub use schema::DataSourceSchema;

/// The API version this client speaks.
pub const NOTION_VERSION: &str = "2025-09-03";
/// Most conditions in one compound filter: Notion takes at most 100 elements in any array of a request.
pub const MAX_OR_FILTERS: usize = 100;
/// How long a cached data-source schema is trusted: a property a person adds or renames in Notion is
/// seen within the hour (at once after `/admin/setup` or `/admin/notion/check`).
const SCHEMA_MAX_AGE_MS: i64 = 3_600_000;

/// One page of query or list results.
#[derive(Debug, Clone, Default)]
pub struct ResultsPage {
    /// Pages or blocks.
    pub results: Vec<Value>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
    /// Notion stopped reading (a query returns at most 10 000 results): there are more than were returned.
    pub incomplete: bool,
}

/// The Notion API with one integration token.
pub struct Notion<'a> {
    platform: &'a Platform,
    base: &'a str,
    auth: String,
    outbound: Outbound<'a>,
}

impl<'a> Notion<'a> {
    /// A client for `config`.
    pub fn new(platform: &'a Platform, config: &'a NotionConfig) -> Self {
        Self {
            platform,
            base: &config.api_base,
            auth: format!("Bearer {}", config.api_key.expose()),
            outbound: Outbound::new(platform, Service::Notion, config.api_key.expose()),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Value, ApiError> {
        let mut request = HttpRequest::new(method, format!("{}{path}", self.base))
            .header("authorization", &self.auth)
            .header("notion-version", NOTION_VERSION);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = self.outbound.send(request, retry).await?;
        serde_json::from_slice(&response.body).map_err(|e| ApiError::Unavailable {
            service: Service::Notion,
            status: Some(response.status),
            detail: format!("unexpected response body: {e}"),
        })
    }

    /// The data source of database `database_id`, from the SQLite cache or resolved once with
    /// `GET /v1/databases/{id}` (the first data source: the sync's databases have one).
    pub async fn data_source_id(&self, database_id: &str) -> Result<String, ApiError> {
        let database_id = normalize_id(database_id);
        let cached = self.platform.sql.execute(
            "SELECT data_source_id FROM notion_data_sources WHERE database_id = ?1",
            &[database_id.as_str().into()],
        );
        if let Ok(rows) = &cached {
            if let Some(Ok(id)) = rows
                .first()
                .map(|r| r.str("data_source_id").map(String::from))
            {
                return Ok(id);
            }
        }
        let database = self
            .call(
                Method::Get,
                &format!("/v1/databases/{database_id}"),
                None,
                Retry::Idempotent,
            )
            .await?;
        let data_source_id = database["data_sources"][0]["id"]
            .as_str()
            .map(normalize_id)
            .ok_or_else(|| ApiError::Refused {
                service: Service::Notion,
                status: 404,
                detail: format!(
                    "database {database_id} has no data source the integration can see"
                ),
            })?;
        let stored = self.platform.sql.execute(
            "INSERT INTO notion_data_sources (database_id, data_source_id, resolved_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (database_id) DO UPDATE SET data_source_id = excluded.data_source_id,
                                                     resolved_at = excluded.resolved_at",
            &[
                database_id.as_str().into(),
                data_source_id.as_str().into(),
                self.platform.clock.now_ms().into(),
            ],
        );
        if let Err(e) = stored {
            tracing::warn!(error = %format!("{e:#}"), "could not cache the data source id");
        }
        Ok(data_source_id)
    }

    /// The schema of a data source (`GET /v1/data_sources/{id}`).
    pub async fn data_source(&self, data_source_id: &str) -> Result<Value, ApiError> {
        self.call(
            Method::Get,
            &format!("/v1/data_sources/{data_source_id}"),
            None,
            Retry::Idempotent,
        )
        .await
    }

    /// The properties of a data source: from the SQLite cache when it is under an hour old, else read
    /// with `GET /v1/data_sources/{id}` and cached.
    pub async fn schema(&self, data_source_id: &str) -> Result<DataSourceSchema, ApiError> {
        let now = self.platform.clock.now_ms();
        let cached = self.platform.sql.execute(
            "SELECT properties FROM notion_schemas WHERE data_source_id = ?1 AND resolved_at > ?2",
            &[data_source_id.into(), (now - SCHEMA_MAX_AGE_MS).into()],
        );
        if let Some(properties) = cached
            .ok()
            .and_then(|rows| {
                rows.first()
                    .and_then(|r| r.str("properties").ok().map(String::from))
            })
            .and_then(|json| serde_json::from_str(&json).ok())
        {
            return Ok(DataSourceSchema { properties });
        }
        let source = self.data_source(data_source_id).await?;
        Ok(self.remember_schema(data_source_id, &source))
    }

    /// Caches the schema in `data_source` (a `GET /v1/data_sources/{id}` answer) and returns it.
    pub fn remember_schema(&self, data_source_id: &str, data_source: &Value) -> DataSourceSchema {
        let schema = DataSourceSchema::from_data_source(data_source);
        let stored = self.platform.sql.execute(
            "INSERT INTO notion_schemas (data_source_id, properties, resolved_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (data_source_id) DO UPDATE SET properties = excluded.properties,
                                                        resolved_at = excluded.resolved_at",
            &[
                data_source_id.into(),
                serde_json::to_string(&schema.properties)
                    .expect("strings serialize")
                    .into(),
                self.platform.clock.now_ms().into(),
            ],
        );
        if let Err(e) = stored {
            tracing::warn!(error = %format!("{e:#}"), "could not cache the data source schema");
        }
        schema
    }

    /// Drops the cached schema of a data source: it changed, or Notion refused a write fitted to it.
    pub fn forget_schema(&self, data_source_id: &str) {
        if let Err(e) = self.platform.sql.execute(
            "DELETE FROM notion_schemas WHERE data_source_id = ?1",
            &[data_source_id.into()],
        ) {
            tracing::warn!(error = %format!("{e:#}"), "could not drop the cached schema");
        }
    }

    /// Adds properties to a data source's schema (`PATCH /v1/data_sources/{id}`).
    pub async fn add_properties(
        &self,
        data_source_id: &str,
        properties: &Value,
    ) -> Result<Value, ApiError> {
        let body = json!({ "properties": properties });
        self.call(
            Method::Patch,
            &format!("/v1/data_sources/{data_source_id}"),
            Some(&body),
            Retry::Idempotent,
        )
        .await
    }

    /// One page of `POST /v1/data_sources/{id}/query` with `filter`.
    pub async fn query(
        &self,
        data_source_id: &str,
        filter: &Value,
        page_size: u32,
        start_cursor: Option<&str>,
    ) -> Result<ResultsPage, ApiError> {
        self.query_sorted(data_source_id, Some(filter), &[], page_size, start_cursor)
            .await
    }

    /// One page of `POST /v1/data_sources/{id}/query` with `filter` (every page without one), in the
    /// order of `sorts`.
    pub async fn query_sorted(
        &self,
        data_source_id: &str,
        filter: Option<&Value>,
        sorts: &[Value],
        page_size: u32,
        start_cursor: Option<&str>,
    ) -> Result<ResultsPage, ApiError> {
        let mut body = json!({ "page_size": page_size.clamp(1, 100) });
        if let Some(filter) = filter {
            body["filter"] = filter.clone();
        }
        if !sorts.is_empty() {
            body["sorts"] = Value::Array(sorts.to_vec());
        }
        if let Some(cursor) = start_cursor {
            body["start_cursor"] = json!(cursor);
        }
        // A query changes nothing, so it is retried like a read.
        let value = self
            .call(
                Method::Post,
                &format!("/v1/data_sources/{data_source_id}/query"),
                Some(&body),
                Retry::Idempotent,
            )
            .await?;
        Ok(results_page(value))
    }

    /// The pages of a data source whose title (property `title_property`) equals one of `titles`, as
    /// (title, page id), in as few queries as Notion allows: one `or` filter of up to [`MAX_OR_FILTERS`]
    /// `equals` conditions per query (one level of nesting), every result page read.
    pub async fn find_by_title(
        &self,
        data_source_id: &str,
        title_property: &str,
        titles: &[&str],
    ) -> Result<Vec<(String, String)>, ApiError> {
        let span = tracing::info_span!(
            "notion.find_by_title",
            otel.kind = "client",
            data_source_id,
            titles = titles.len()
        );
        async {
            let mut found = Vec::new();
            for chunk in titles.chunks(MAX_OR_FILTERS) {
                let conditions: Vec<Value> = chunk
                    .iter()
                    .map(|t| json!({ "property": title_property, "title": { "equals": t } }))
                    .collect();
                let filter = json!({ "or": conditions });
                // At most `MAX_OR_FILTERS` titles match: never near Notion's result limit.
                self.query_titled(data_source_id, &filter, title_property, &mut found)
                    .await?;
            }
            Ok(found)
        }
        .instrument(span)
        .await
    }

    /// The pages of a data source that Notion created at or after `from` (epoch ms), as (title, page id):
    /// every result page of one query, `None` when Notion stopped at its 10 000-result limit (the
    /// window is too wide to read whole).
    pub async fn created_since(
        &self,
        data_source_id: &str,
        title_property: &str,
        from: i64,
    ) -> Result<Option<Vec<(String, String)>>, ApiError> {
        let span =
            tracing::info_span!("notion.created_since", otel.kind = "client", data_source_id);
        async {
            let since = chrono::DateTime::from_timestamp_millis(from)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let filter =
                json!({ "timestamp": "created_time", "created_time": { "on_or_after": since } });
            let mut found = Vec::new();
            let complete = self
                .query_titled(data_source_id, &filter, title_property, &mut found)
                .await?;
            Ok(complete.then_some(found))
        }
        .instrument(span)
        .await
    }

    /// Adds to `found` (title, page id) of every page of a data source that `filter` matches, reading
    /// every result page; `false` when Notion stopped at its 10 000-result limit.
    async fn query_titled(
        &self,
        data_source_id: &str,
        filter: &Value,
        title_property: &str,
        found: &mut Vec<(String, String)>,
    ) -> Result<bool, ApiError> {
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .query(data_source_id, filter, 100, cursor.as_deref())
                .await?;
            found.extend(titled(&page.results, title_property));
            if page.incomplete {
                return Ok(false);
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(true),
            }
        }
    }

    /// Creates a page in a data source; returns its id. Not retried after an unknown outcome.
    pub async fn create_page(
        &self,
        data_source_id: &str,
        properties: &Value,
        icon: Option<&Value>,
        children: &[Value],
    ) -> Result<String, ApiError> {
        let mut body = json!({
            "parent": { "type": "data_source_id", "data_source_id": data_source_id },
            "properties": properties,
        });
        if let Some(icon) = icon {
            body["icon"] = icon.clone();
        }
        if !children.is_empty() {
            body["children"] = Value::Array(children.to_vec());
        }
        let page = self
            .call(Method::Post, "/v1/pages", Some(&body), Retry::RateLimitOnly)
            .await?;
        page["id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| ApiError::Unavailable {
                service: Service::Notion,
                status: Some(200),
                detail: "created page has no id".into(),
            })
    }

    /// Sets the given properties of a page (the others are untouched), and its icon when given.
    pub async fn update_page(
        &self,
        page_id: &str,
        properties: &Value,
        icon: Option<&Value>,
    ) -> Result<(), ApiError> {
        let mut body = json!({ "properties": properties });
        if let Some(icon) = icon {
            body["icon"] = icon.clone();
        }
        self.call(
            Method::Patch,
            &format!("/v1/pages/{page_id}"),
            Some(&body),
            Retry::Idempotent,
        )
        .await
        .map(drop)
    }

    /// Appends up to 100 blocks to a page or block, in order.
    pub async fn append_children(
        &self,
        block_id: &str,
        children: &[Value],
    ) -> Result<(), ApiError> {
        let body = json!({ "children": children });
        self.call(
            Method::Patch,
            &format!("/v1/blocks/{block_id}/children"),
            Some(&body),
            Retry::RateLimitOnly,
        )
        .await
        .map(drop)
    }

    /// Replaces the content of a block (`content` is `{"<its type>": {...}}`).
    pub async fn update_block(&self, block_id: &str, content: &Value) -> Result<(), ApiError> {
        self.call(
            Method::Patch,
            &format!("/v1/blocks/{block_id}"),
            Some(content),
            Retry::Idempotent,
        )
        .await
        .map(drop)
    }

    /// Every child block of a page or block, in order.
    pub async fn children(&self, block_id: &str) -> Result<Vec<Value>, ApiError> {
        let mut blocks = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/blocks/{block_id}/children?page_size=100");
            if let Some(c) = &cursor {
                path.push_str(&format!("&start_cursor={}", percent_encode(c)));
            }
            let page = results_page(
                self.call(Method::Get, &path, None, Retry::Idempotent)
                    .await?,
            );
            blocks.extend(page.results);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(blocks),
            }
        }
    }
}

/// (title, id) of each page in `results`, the title read from property `title_property`.
fn titled<'v>(
    results: &'v [Value],
    title_property: &'v str,
) -> impl Iterator<Item = (String, String)> + 'v {
    results.iter().filter_map(move |result| {
        let title = result["properties"][title_property]["title"]
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p["plain_text"].as_str().or(p["text"]["content"].as_str()))
                    .collect::<String>()
            })
            .unwrap_or_default();
        result["id"].as_str().map(|id| (title, id.to_owned()))
    })
}

fn results_page(value: Value) -> ResultsPage {
    let has_more = value["has_more"].as_bool().unwrap_or(false);
    ResultsPage {
        incomplete: value["request_status"]["type"] == "incomplete",
        results: value["results"].as_array().cloned().unwrap_or_default(),
        next_cursor: value["next_cursor"]
            .as_str()
            .filter(|_| has_more)
            .map(String::from),
    }
}

/// Notion ids with or without dashes name the same object; keep one form (lower-case, dashed) so cache
/// keys match.
pub fn normalize_id(id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    } else {
        id.trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_normalized_to_dashed_lower_case() {
        assert_eq!(
            normalize_id("FC0E485B6570460E995B94431B08F0A7"),
            "fc0e485b-6570-460e-995b-94431b08f0a7"
        );
        assert_eq!(
            normalize_id("fc0e485b-6570-460e-995b-94431b08f0a7"),
            "fc0e485b-6570-460e-995b-94431b08f0a7"
        );
        assert_eq!(normalize_id("calls-db"), "calls-db");
    }

    #[test]
    fn results_pages_stop_when_has_more_is_false() {
        let page =
            results_page(json!({ "results": [1, 2], "next_cursor": "abc", "has_more": false }));
        assert_eq!(page.results.len(), 2);
        assert_eq!(page.next_cursor, None);
        let page = results_page(json!({ "results": [], "next_cursor": "abc", "has_more": true }));
        assert_eq!(page.next_cursor.as_deref(), Some("abc"));
    }
}
