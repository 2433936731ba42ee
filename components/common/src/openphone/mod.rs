//! OpenPhone (Quo) API v1 client: raw key in `Authorization`, configurable base URL, the shared 10 req/s
//! budget, retries only for `429`/`5xx`/network. A `404` is the only answer read as "absent": a transient
//! failure is an error, never an empty value.

pub mod types;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::configuration::OpenPhoneConfig;
use crate::outbound::{encode_query, percent_encode, ApiError, Outbound, Retry, Service};
use crate::platform::{HttpRequest, Method, Platform};
use types::{Call, Message, PhoneNumber, Recording, Summary, Transcript, Voicemail};

/// One page of a list endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    /// Token of the next page; `None` on the last one. (`totalItems` is inaccurate and ignored.)
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Single<T> {
    data: T,
}

/// The OpenPhone API with one key.
pub struct OpenPhone<'a> {
    base: &'a str,
    key: &'a str,
    outbound: Outbound<'a>,
}

impl<'a> OpenPhone<'a> {
    /// A client for `config`.
    pub fn new(platform: &'a Platform, config: &'a OpenPhoneConfig) -> Self {
        Self {
            base: &config.api_base,
            key: config.api_key.expose(),
            outbound: Outbound::new(platform, Service::OpenPhone, config.api_key.expose()),
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let mut url = format!("{}{path}", self.base);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&encode_query(query));
        }
        let request = HttpRequest::new(Method::Get, url).header("authorization", self.key);
        let response = self.outbound.send(request, Retry::Idempotent).await?;
        serde_json::from_slice(&response.body).map_err(|e| ApiError::Unavailable {
            service: Service::OpenPhone,
            status: Some(response.status),
            detail: format!("unexpected response body for {path}: {e}"),
        })
    }

    /// `GET` a single resource; `None` when OpenPhone answers `404`.
    async fn get_optional<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ApiError> {
        match self.get::<Single<T>>(path, &[]).await {
            Ok(single) => Ok(Some(single.data)),
            Err(ApiError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A call.
    pub async fn call(&self, id: &str) -> Result<Option<Call>, ApiError> {
        self.get_optional(&format!("/v1/calls/{}", path_segment(id)))
            .await
    }

    /// Every recording segment of a call, oldest first (empty when it has none).
    pub async fn call_recordings(&self, call_id: &str) -> Result<Vec<Recording>, ApiError> {
        Ok(self
            .get_optional::<Vec<Recording>>(&format!(
                "/v1/call-recordings/{}",
                path_segment(call_id)
            ))
            .await?
            .unwrap_or_default())
    }

    /// A call's summary (`None`: not generated, or not on the plan).
    pub async fn call_summary(&self, call_id: &str) -> Result<Option<Summary>, ApiError> {
        self.get_optional(&format!("/v1/call-summaries/{}", path_segment(call_id)))
            .await
    }

    /// A call's transcript.
    pub async fn call_transcript(&self, call_id: &str) -> Result<Option<Transcript>, ApiError> {
        self.get_optional(&format!("/v1/call-transcripts/{}", path_segment(call_id)))
            .await
    }

    /// A call's voicemail.
    pub async fn call_voicemail(&self, call_id: &str) -> Result<Option<Voicemail>, ApiError> {
        self.get_optional(&format!("/v1/call-voicemails/{}", path_segment(call_id)))
            .await
    }

    /// A message.
    pub async fn message(&self, id: &str) -> Result<Option<Message>, ApiError> {
        self.get_optional(&format!("/v1/messages/{}", path_segment(id)))
            .await
    }

    /// The workspace's phone numbers (not paginated).
    pub async fn phone_numbers(&self) -> Result<Vec<PhoneNumber>, ApiError> {
        Ok(self
            .get::<Page<PhoneNumber>>("/v1/phone-numbers", &[])
            .await?
            .data)
    }

    /// Creates a resource (`POST path` with a JSON body; `201 {"data": …}`) and returns it. Retried only
    /// on a rate limit: after a `5xx` the create may have landed, and the caller decides what to do.
    pub async fn create<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        let request = HttpRequest::new(Method::Post, format!("{}{path}", self.base))
            .header("authorization", self.key)
            .json(body);
        let response = self.outbound.send(request, Retry::RateLimitOnly).await?;
        serde_json::from_slice::<Single<T>>(&response.body)
            .map(|single| single.data)
            .map_err(|e| ApiError::Unavailable {
                service: Service::OpenPhone,
                status: Some(response.status),
                detail: format!("unexpected response body for {path}: {e}"),
            })
    }

    /// One page of a list endpoint (`/v1/conversations`, `/v1/calls`, `/v1/messages`, `/v1/contacts`).
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Page<T>, ApiError> {
        self.get(path, query).await
    }
}

/// An id used as a path segment: percent-encoded so a hostile id cannot change the path.
fn path_segment(id: &str) -> String {
    percent_encode(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_change_the_path() {
        assert_eq!(path_segment("AC1/../x"), "AC1%2F..%2Fx");
    }
}
