//! Finding the Canvas record (customer) of a phone number or email: normalized, one Notion query for
//! every format a person may have typed, cached in SQLite (hits and misses) with a TTL, the workspace's own
//! numbers never matched.

use serde_json::{json, Value};

use crate::domain::E164;
use crate::metrics;
use crate::notion::Notion;
use crate::outbound::ApiError;
use crate::platform::{Platform, Value as SqlValue};

/// How long a found record is trusted.
const HIT_TTL_MS: i64 = 24 * 3600 * 1000;
/// How long "no record" is trusted (a record may be added any time).
const MISS_TTL_MS: i64 = 3600 * 1000;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The SQLite cache.
    Cache,
    /// A Notion query.
    Query,
    /// Not looked up: a workspace number, no Canvas database, or not a phone number.
    Skipped,
}

impl Source {
    /// Name used in `/admin/canvas/lookup`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Query => "query",
            Source::Skipped => "skipped",
        }
    }
}

/// The answer of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The Canvas page, if one matches.
    pub page_id: Option<String>,
    /// How it was found.
    pub source: Source,
    /// The normalized key (E.164 or lower-case email), if the input could be normalized.
    pub normalized: Option<String>,
}

/// Canvas lookups for one request.
pub struct Canvas<'a> {
    platform: &'a Platform,
    notion: &'a Notion<'a>,
    database_id: Option<&'a str>,
    own_numbers: Vec<E164>,
}

impl<'a> Canvas<'a> {
    /// Lookups in `database_id` (`None`: Canvas linking is off); `self_numbers` are never matched, nor are
    /// the workspace's OpenPhone numbers known to the database.
    pub fn new(
        platform: &'a Platform,
        notion: &'a Notion<'a>,
        database_id: Option<&'a str>,
        self_numbers: &[E164],
    ) -> Self {
        let mut own_numbers = self_numbers.to_vec();
        if let Ok(rows) = platform.sql.execute("SELECT number FROM phone_numbers", &[]) {
            own_numbers.extend(rows.iter().filter_map(|r| r.str("number").ok().and_then(|n| E164::parse(n).ok())));
        }
        Self {
            platform,
            notion,
            database_id,
            own_numbers,
        }
    }

    /// Whether `number` is one of the workspace's own.
    pub fn is_own_number(&self, number: &E164) -> bool {
        self.own_numbers.contains(number)
    }

    /// The Canvas record of a phone number.
    pub async fn by_phone(&self, raw: &str) -> Result<Lookup, ApiError> {
        let Ok(number) = E164::parse(raw) else {
            return Ok(Lookup { page_id: None, source: Source::Skipped, normalized: None });
        };
        let normalized = Some(number.as_str().to_owned());
        if self.database_id.is_none() || self.is_own_number(&number) {
            return Ok(Lookup { page_id: None, source: Source::Skipped, normalized });
        }
        let formats = phone_formats(&number);
        self.lookup("phone", number.as_str(), "Phone", "phone_number", &formats).await
    }

    /// The Canvas record of an email address.
    pub async fn by_email(&self, raw: &str) -> Result<Lookup, ApiError> {
        let email = raw.trim().to_lowercase();
        if !email.contains('@') || email.len() > 200 {
            return Ok(Lookup { page_id: None, source: Source::Skipped, normalized: None });
        }
        if self.database_id.is_none() {
            return Ok(Lookup { page_id: None, source: Source::Skipped, normalized: Some(email) });
        }
        self.lookup("email", &email, "Email", "email", std::slice::from_ref(&email)).await
    }

    async fn lookup(
        &self,
        kind: &str,
        key: &str,
        property: &str,
        default_type: &str,
        values: &[String],
    ) -> Result<Lookup, ApiError> {
        let now = self.platform.clock.now_ms();
        let normalized = Some(key.to_owned());
        let cached = self.platform.sql.execute(
            "UPDATE canvas_cache SET hit_count = hit_count + 1, last_used_at = ?3
             WHERE lookup_type = ?1 AND lookup_key = ?2 AND expires_at > ?3
             RETURNING canvas_id",
            &[kind.into(), key.into(), now.into()],
        );
        if let Ok(rows) = cached {
            if let Some(row) = rows.first() {
                metrics::count(self.platform, "canvas.hit", 1);
                return Ok(Lookup {
                    page_id: row.opt_str("canvas_id").ok().flatten().map(String::from),
                    source: Source::Cache,
                    normalized,
                });
            }
        }
        metrics::count(self.platform, "canvas.miss", 1);
        let database_id = self.database_id.expect("callers check that Canvas linking is on");
        let data_source = self.notion.data_source_id(database_id).await?;
        let filter_type = self.property_type(&data_source, property, default_type);
        let filter = or_filter(property, &filter_type, values);
        let found = match self.notion.query(&data_source, &filter, 1, None).await {
            Ok(page) => page,
            // The property's type differs from what we assumed: learn it once, then ask again.
            Err(ApiError::Refused { status: 400, .. }) => {
                let actual = self.learn_property_type(&data_source, property).await?;
                let filter = or_filter(property, &actual, values);
                self.notion.query(&data_source, &filter, 1, None).await?
            }
            Err(e) => return Err(e),
        };
        let page_id = found.results.first().and_then(|p| p["id"].as_str()).map(String::from);
        let ttl = if page_id.is_some() { HIT_TTL_MS } else { MISS_TTL_MS };
        let stored = self.platform.sql.execute(
            "INSERT INTO canvas_cache (lookup_type, lookup_key, canvas_id, cached_at, expires_at, hit_count, last_used_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?4)
             ON CONFLICT (lookup_type, lookup_key) DO UPDATE SET canvas_id = excluded.canvas_id,
                 cached_at = excluded.cached_at, expires_at = excluded.expires_at, last_used_at = excluded.last_used_at",
            &[kind.into(), key.into(), SqlValue::from(page_id.clone()), now.into(), (now + ttl).into()],
        );
        if let Err(e) = stored {
            tracing::warn!(error = %format!("{e:#}"), "could not cache a Canvas lookup");
        }
        Ok(Lookup { page_id, source: Source::Query, normalized })
    }

    fn type_key(data_source: &str, property: &str) -> String {
        format!("notion:property-type:{data_source}:{property}")
    }

    fn property_type(&self, data_source: &str, property: &str, default: &str) -> String {
        self
            .platform
            .kv
            .get(&Self::type_key(data_source, property))
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .unwrap_or_else(|| default.to_owned())
    }

    async fn learn_property_type(&self, data_source: &str, property: &str) -> Result<String, ApiError> {
        let schema = self.notion.data_source(data_source).await?;
        let kind = schema["properties"][property]["type"]
            .as_str()
            .ok_or_else(|| ApiError::Refused {
                service: crate::outbound::Service::Notion,
                status: 400,
                detail: format!("the Canvas database has no property named {property:?}"),
            })?
            .to_owned();
        if let Err(e) = self.platform.kv.set(&Self::type_key(data_source, property), kind.as_bytes()) {
            tracing::warn!(error = %format!("{e:#}"), "could not remember a property type");
        }
        Ok(kind)
    }
}

/// The ways a person may have typed `number` into the Canvas.
pub fn phone_formats(number: &E164) -> Vec<String> {
    let mut formats = vec![number.as_str().to_owned(), number.digits().to_owned()];
    if let Some(n) = number.nanp_national() {
        let (a, b, c) = (&n[..3], &n[3..6], &n[6..]);
        formats.extend([
            n.to_owned(),
            format!("{a}-{b}-{c}"),
            format!("{a}.{b}.{c}"),
            format!("({a}) {b}-{c}"),
            format!("{a} {b} {c}"),
            format!("+1 {a}-{b}-{c}"),
            format!("+1 ({a}) {b}-{c}"),
            format!("+1 {a} {b} {c}"),
            format!("1-{a}-{b}-{c}"),
        ]);
    }
    formats
}

fn or_filter(property: &str, filter_type: &str, values: &[String]) -> Value {
    let conditions: Vec<Value> = values
        .iter()
        .map(|v| json!({ "property": property, filter_type: { "equals": v } }))
        .collect();
    json!({ "or": conditions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn north_american_numbers_get_every_common_format() {
        let formats = phone_formats(&E164::parse("+13214436893").unwrap());
        for expected in ["+13214436893", "13214436893", "3214436893", "321-443-6893", "321.443.6893", "(321) 443-6893"] {
            assert!(formats.iter().any(|f| f == expected), "{expected} missing from {formats:?}");
        }
        let uk = phone_formats(&E164::parse("+442071838750").unwrap());
        assert_eq!(uk, vec!["+442071838750", "442071838750"]);
    }

    #[test]
    fn one_or_filter_covers_every_format() {
        let filter = or_filter("Phone", "phone_number", &["+1".into(), "1".into()]);
        assert_eq!(filter["or"].as_array().unwrap().len(), 2);
        assert_eq!(filter["or"][0]["phone_number"]["equals"], "+1");
    }
}
