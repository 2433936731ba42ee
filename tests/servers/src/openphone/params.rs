//! Query-string validation and pagination for the OpenPhone handlers.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An error in OpenPhone's shape (openphone-api.md §3).
#[derive(Debug)]
pub(crate) struct OpError {
    status: StatusCode,
    code: String,
    title: String,
    message: String,
    retry_after: Option<u64>,
}

impl OpError {
    /// `family` is the two-digit resource family of the code (`01` calls, `02` messages, …) and
    /// `sub` the sub-code; the code ends with the status.
    pub(crate) fn new(
        status: StatusCode,
        family: &str,
        sub: &str,
        title: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: format!("{family}{sub}{}", status.as_u16()),
            title: title.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(family: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            family,
            "00",
            "Bad Request",
            message,
        )
    }

    pub(crate) fn not_found(family: &str, what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            family,
            "00",
            "Not Found",
            format!("{what} not found"),
        )
    }

    pub(crate) fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        let body = json!({
            "message": self.message,
            "code": self.code,
            "status": self.status.as_u16(),
            "docs": "https://openphone.com/docs",
            "title": self.title,
            "trace": format!("test-{}", self.code),
            "description": self.title,
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

/// The decoded query string, with repeated keys kept in order.
///
/// Decoding is form decoding, as the real API's: a `+` that is not percent-encoded arrives as a space,
/// so a client that forgets to encode `+1555…` sends an invalid number and gets a 400.
pub(crate) struct Params {
    family: &'static str,
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `raw` and refuses parameters outside `allowed`: the real API validates the query against
    /// its schema, and a misspelt parameter silently ignored would hide a bug in the app.
    pub(crate) fn parse(
        raw: Option<&str>,
        family: &'static str,
        allowed: &[&str],
    ) -> Result<Self, OpError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((name, _)) = pairs
            .iter()
            .find(|(name, _)| !allowed.contains(&name.as_str()))
        {
            return Err(OpError::bad_request(
                family,
                format!("querystring/{name} is not an allowed parameter"),
            ));
        }
        Ok(Self { family, pairs })
    }

    /// Every value of the parameter under any of `names` (aliases such as `participants` and
    /// `participants[]`).
    pub(crate) fn all(&self, names: &[&str]) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The parameter's single value, if present; repeated → 400.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, OpError> {
        match self.all(&[name]).as_slice() {
            [] => Ok(None),
            [value] => Ok(Some(value)),
            _ => Err(OpError::bad_request(
                self.family,
                format!("querystring/{name} must be a single value"),
            )),
        }
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, OpError> {
        match self.one(name)? {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(OpError::bad_request(
                self.family,
                format!("querystring must have required property '{name}'"),
            )),
        }
    }

    /// A required id with `prefix` (`PN`, `US`, …).
    pub(crate) fn required_id(&self, name: &str, prefix: &str) -> Result<&str, OpError> {
        let value = self.required(name)?;
        check_id(self.family, name, value, prefix)?;
        Ok(value)
    }

    pub(crate) fn optional_id(&self, name: &str, prefix: &str) -> Result<Option<&str>, OpError> {
        let value = self.one(name)?;
        if let Some(value) = value {
            check_id(self.family, name, value, prefix)?;
        }
        Ok(value)
    }

    /// `maxResults`: required, an integer in `1..=max`.
    pub(crate) fn max_results(&self, max: usize) -> Result<usize, OpError> {
        let raw = self.required("maxResults")?;
        match raw.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(OpError::bad_request(
                self.family,
                format!("querystring/maxResults must be an integer from 1 to {max}, got {raw:?}"),
            )),
        }
    }

    pub(crate) fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, OpError> {
        self.one(name)?
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|at| at.with_timezone(&Utc))
                    .map_err(|_| {
                        OpError::bad_request(
                            self.family,
                            format!(
                                "querystring/{name} must be an ISO 8601 date-time, got {raw:?}"
                            ),
                        )
                    })
            })
            .transpose()
    }

    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, OpError> {
        match self.one(name)? {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(raw) => Err(OpError::bad_request(
                self.family,
                format!("querystring/{name} must be a boolean, got {raw:?}"),
            )),
        }
    }

    /// E.164 numbers under `names`, each validated.
    pub(crate) fn numbers(&self, names: &[&str]) -> Result<Vec<&str>, OpError> {
        let values = self.all(names);
        if let Some(bad) = values.iter().find(|value| !is_e164(value)) {
            return Err(OpError::bad_request(
                self.family,
                format!("querystring/{} must be E.164 phone numbers, got {bad:?} (is the + percent-encoded?)", names[0]),
            ));
        }
        Ok(values)
    }

    /// Everything except paging, so a page token is only honoured for the query that issued it.
    pub(crate) fn fingerprint(&self) -> String {
        let mut filters: Vec<&(String, String)> = self
            .pairs
            .iter()
            .filter(|(name, _)| name != "pageToken" && name != "maxResults")
            .collect();
        filters.sort();
        let digest = Sha256::digest(format!("{filters:?}").as_bytes());
        URL_SAFE_NO_PAD.encode(&digest[..9])
    }

    pub(crate) fn family(&self) -> &'static str {
        self.family
    }
}

pub(crate) fn check_id(family: &str, name: &str, value: &str, prefix: &str) -> Result<(), OpError> {
    if value.len() > prefix.len()
        && value.starts_with(prefix)
        && value.chars().all(|c| c.is_ascii_alphanumeric())
    {
        Ok(())
    } else {
        Err(OpError::bad_request(
            family,
            format!("{name} must match ^{prefix}(.*)$, got {value:?}"),
        ))
    }
}

pub(crate) fn is_e164(value: &str) -> bool {
    let Some(digits) = value.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// One page of items ordered newest first by `(time, id)`, with an opaque keyset token: a token names
/// the last item returned, so items added between two pages neither repeat nor get skipped.
///
/// `totalItems` is deliberately wrong (the number of items on this page), as the spec warns that it is
/// not accurate: a client that uses it for loop control stops early and a test notices the loss.
pub(crate) fn paginate(
    params: &Params,
    items: Vec<(DateTime<Utc>, String, Value)>,
    max_results: usize,
) -> Result<Value, OpError> {
    // Keys are compared at the token's precision (milliseconds), or a sub-millisecond timestamp would
    // sort on the wrong side of the token that names it.
    let mut items: Vec<(i64, String, Value)> = items
        .into_iter()
        .map(|(at, id, value)| (at.timestamp_millis(), id, value))
        .collect();
    items.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    let fingerprint = params.fingerprint();
    let start = match params.one("pageToken")? {
        None => 0,
        Some(token) => {
            let (at, id) = decode_token(token, &fingerprint).ok_or_else(|| {
                OpError::bad_request(
                    params.family(),
                    "querystring/pageToken is not a valid page token for this query",
                )
            })?;
            items
                .iter()
                .position(|(t, i, _)| (*t, i.as_str()) < (at, id.as_str()))
                .unwrap_or(items.len())
        }
    };
    let page = &items[start..(start + max_results).min(items.len())];
    let next = match page.last() {
        Some((at, id, _)) if start + page.len() < items.len() => {
            Some(encode_token(*at, id, &fingerprint))
        }
        _ => None,
    };
    Ok(json!({
        "data": page.iter().map(|(_, _, value)| value.clone()).collect::<Vec<_>>(),
        "totalItems": page.len(),
        "nextPageToken": next,
    }))
}

fn encode_token(at_millis: i64, id: &str, fingerprint: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({ "t": at_millis, "i": id, "f": fingerprint }).to_string())
}

fn decode_token(token: &str, fingerprint: &str) -> Option<(i64, String)> {
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    let value: Value = serde_json::from_slice(&raw).ok()?;
    if value["f"].as_str()? != fingerprint {
        return None;
    }
    Some((value["t"].as_i64()?, value["i"].as_str()?.to_owned()))
}
