//! What the storage tests share: a platform whose HTTP client records every request, the servers
//! (`s3s-fs` and its configuration from the shared [`crate::testing`] kit, the OpenPhone media host), and
//! a raw TCP server for media hosts that misbehave.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::rc::Rc;

use async_trait::async_trait;
use test_servers::OpenPhoneServer;

// The object store's fixtures are the shared kit's.
pub(crate) use crate::testing::{s3_server, storage_config};

use crate::platform::native::{ManualClock, NativePlatformBuilder, ReqwestClient};
use crate::platform::{
    HttpClient, HttpError, HttpRequest, HttpResponse, Method, Platform, StreamingResponse,
};

/// Sends with reqwest and remembers the method and URL of every request.
#[derive(Default)]
pub(crate) struct RecordingHttp {
    inner: ReqwestClient,
    sent: RefCell<Vec<(Method, String)>>,
}

impl RecordingHttp {
    /// The requests sent since the last call, each named by [`action`].
    pub(crate) fn take_actions(&self) -> Vec<String> {
        self.sent
            .take()
            .iter()
            .map(|(method, url)| action(*method, url))
            .collect()
    }
}

#[async_trait(?Send)]
impl HttpClient for RecordingHttp {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.sent
            .borrow_mut()
            .push((request.method, request.url.clone()));
        self.inner.send(request).await
    }

    async fn send_streaming(&self, request: HttpRequest) -> Result<StreamingResponse, HttpError> {
        self.sent
            .borrow_mut()
            .push((request.method, request.url.clone()));
        self.inner.send_streaming(request).await
    }
}

/// The S3 action a request is (`PutObject`, `UploadPart`, …), or `GET <path>` for anything that is not
/// signed (a media download).
pub(crate) fn action(method: Method, url: &str) -> String {
    let parsed = url::Url::parse(url).expect("requests have absolute URLs");
    let has = |name: &str| parsed.query_pairs().any(|(k, _)| k == name);
    if !has("X-Amz-Signature") {
        return format!("{} {}", method.as_str(), parsed.path());
    }
    let name = match method {
        Method::Head => "HeadObject",
        Method::Get if has("list-type") => "ListObjectsV2",
        Method::Get => "GetObject",
        Method::Put if has("partNumber") => "UploadPart",
        Method::Put => "PutObject",
        Method::Post if has("uploads") => "CreateMultipartUpload",
        Method::Post => "CompleteMultipartUpload",
        Method::Delete if has("uploadId") => "AbortMultipartUpload",
        Method::Delete => "DeleteObject",
        Method::Patch => "PATCH",
    };
    name.to_owned()
}

/// How many of `actions` are `name`.
pub(crate) fn count(actions: &[String], name: &str) -> usize {
    actions.iter().filter(|a| *a == name).count()
}

/// Unix milliseconds now.
pub(crate) fn real_now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A migrated native platform whose requests are recorded and whose clock starts at the real time (the
/// store checks signature dates) and moves only when a test says so.
pub(crate) struct TestPlatform {
    pub(crate) platform: Platform,
    pub(crate) http: Rc<RecordingHttp>,
    pub(crate) clock: Rc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl TestPlatform {
    pub(crate) async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let http = Rc::new(RecordingHttp::default());
        let clock = Rc::new(ManualClock::at(real_now_ms()));
        let platform = crate::testing::migrated(
            NativePlatformBuilder::new(dir.path())
                .http(http.clone())
                .clock(clock.clone()),
        )
        .await;
        Self {
            platform,
            http,
            clock,
            _dir: dir,
        }
    }
}

/// The OpenPhone stand-in, for its media host.
pub(crate) fn media_server() -> OpenPhoneServer {
    OpenPhoneServer::start("test-key").expect("the OpenPhone test server starts")
}

/// A media host that answers every request by running `respond` on the connection, after reading the
/// request head. Runs until the test process ends.
pub(crate) fn raw_media_host(respond: fn(&mut TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("an address"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            respond(&mut stream);
            let _ = stream.flush();
        }
    });
    base
}
