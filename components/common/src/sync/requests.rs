//! Counting a run's API requests, by API: the HTTP client of the run's platform is wrapped in a
//! [`CountingHttp`] that tells the APIs apart by their configured base URLs. Service-chaining calls
//! (`*.spin.internal`) are not API requests and are not counted; a chained number's sync counts its own and
//! reports them.

use std::cell::RefCell;
use std::rc::Rc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::configuration::{NotionConfig, OpenPhoneConfig};
use crate::platform::{
    HttpClient, HttpError, HttpRequest, HttpResponse, Platform, StreamingResponse,
};

/// Requests sent to each API.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Requests {
    /// OpenPhone API.
    pub openphone: u64,
    /// Notion API.
    pub notion: u64,
    /// Object storage (S3/R2).
    pub s3: u64,
    /// The host serving recording files.
    pub media: u64,
}

impl Requests {
    /// Every API together.
    pub fn total(&self) -> u64 {
        self.openphone + self.notion + self.s3 + self.media
    }

    /// Adds `other` to these.
    pub fn add(&mut self, other: &Requests) {
        self.openphone += other.openphone;
        self.notion += other.notion;
        self.s3 += other.s3;
        self.media += other.media;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    OpenPhone,
    Notion,
    S3,
    Media,
}

/// The base URL of each API, to tell requests apart.
#[derive(Debug, Clone, Default)]
pub struct Services {
    bases: Vec<(String, Api)>,
}

impl Services {
    /// The APIs of this configuration, and the object store's endpoint when one is configured.
    pub fn new(
        openphone: &OpenPhoneConfig,
        notion: &NotionConfig,
        s3_endpoint: Option<&str>,
    ) -> Self {
        let mut bases = vec![
            (openphone.api_base.clone(), Api::OpenPhone),
            (openphone.media_base.clone(), Api::Media),
            (notion.api_base.clone(), Api::Notion),
        ];
        if let Some(endpoint) = s3_endpoint {
            bases.push((endpoint.to_owned(), Api::S3));
        }
        bases.retain(|(base, _)| !base.is_empty());
        Self { bases }
    }

    fn classify(&self, url: &str) -> Option<Api> {
        // The longest matching base wins, in case one base is a prefix of another.
        self.bases
            .iter()
            .filter(|(base, _)| {
                url.strip_prefix(base.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            })
            .max_by_key(|(base, _)| base.len())
            .map(|(_, api)| *api)
    }
}

/// An HTTP client that counts what it sends, by API.
pub struct CountingHttp {
    inner: Rc<dyn HttpClient>,
    services: Services,
    counts: RefCell<Requests>,
}

impl CountingHttp {
    /// The requests sent so far.
    pub fn requests(&self) -> Requests {
        *self.counts.borrow()
    }

    fn count(&self, url: &str) {
        let mut counts = self.counts.borrow_mut();
        match self.services.classify(url) {
            Some(Api::OpenPhone) => counts.openphone += 1,
            Some(Api::Notion) => counts.notion += 1,
            Some(Api::S3) => counts.s3 += 1,
            Some(Api::Media) => counts.media += 1,
            None => {}
        }
    }
}

#[async_trait(?Send)]
impl HttpClient for CountingHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.count(&request.url);
        self.inner.send(request).await
    }

    async fn send_streaming(&self, request: HttpRequest) -> Result<StreamingResponse, HttpError> {
        self.count(&request.url);
        self.inner.send_streaming(request).await
    }
}

/// `platform` with its HTTP client counted, and the counter.
pub fn counted(platform: &Platform, services: Services) -> (Platform, Rc<CountingHttp>) {
    let counter = Rc::new(CountingHttp {
        inner: platform.http.clone(),
        services,
        counts: RefCell::new(Requests::default()),
    });
    (super::with_http(platform, counter.clone()), counter)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::configuration::Secret;

    fn services() -> Services {
        let openphone = OpenPhoneConfig {
            api_key: Secret::new("k"),
            api_base: "http://127.0.0.1:9001".into(),
            media_base: "http://127.0.0.1:9002".into(),
        };
        let notion = NotionConfig {
            api_key: Secret::new("n"),
            api_base: "http://127.0.0.1:9003".into(),
            calls_database_id: "c".into(),
            messages_database_id: "m".into(),
            canvas_database_id: None,
        };
        Services::new(&openphone, &notion, Some("http://127.0.0.1:9004"))
    }

    #[test]
    fn requests_are_told_apart_by_base_url_and_chaining_is_not_counted() {
        let services = services();
        assert_eq!(
            services.classify("http://127.0.0.1:9001/v1/calls?x=1"),
            Some(Api::OpenPhone)
        );
        assert_eq!(
            services.classify("http://127.0.0.1:9002/rec/1.mp3"),
            Some(Api::Media)
        );
        assert_eq!(
            services.classify("http://127.0.0.1:9003/v1/pages"),
            Some(Api::Notion)
        );
        assert_eq!(
            services.classify("http://127.0.0.1:9004/recordings/x.mp3?X-Amz-Signature=1"),
            Some(Api::S3)
        );
        // A port that merely starts like another base's is not that API.
        assert_eq!(services.classify("http://127.0.0.1:90011/v1/calls"), None);
        assert_eq!(
            services.classify("http://phone-sync.spin.internal/sync/PN1"),
            None
        );
    }

    #[test]
    fn totals_add_up() {
        let mut a = Requests {
            openphone: 1,
            notion: 2,
            s3: 3,
            media: 4,
        };
        a.add(&Requests {
            openphone: 1,
            ..Requests::default()
        });
        assert_eq!(a.total(), 11);
        assert_eq!(a.openphone, 2);
    }
}
