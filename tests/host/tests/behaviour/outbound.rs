//! `allowed_outbound_hosts`: a granted loopback server is reachable, anything else is refused with
//! `HttpRequestDenied` before a connection is made; grants may be templates, and empty ones are skipped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::support::{get, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "outbound"

[variables]
upstream = { required = true }
optional_endpoint = { default = "" }

[[trigger.http]]
route = "/..."
component = "o"

[component.o]
source = "{probe}"
allowed_outbound_hosts = ["{{ upstream }}", "{{ optional_endpoint }}", "https://{{ optional_endpoint }}"]
"#;

/// A loopback HTTP server that answers every request with `hello from upstream` and counts them.
async fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let address = listener.local_addr().expect("address");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"hello from upstream"),
                        )))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, hits)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_granted_hosts_are_reachable() {
    let (granted, granted_hits) = upstream().await;
    let (other, other_hits) = upstream().await;
    let app = TestApp::new(APP);
    let host = app
        .start_with(&[("upstream", &format!("http://{granted}"))])
        .await
        .expect("starting");
    let fetch = |url: String| {
        let base = host.base_url();
        async move { get(&format!("{base}/?op=fetch&url={url}")).await }
    };

    assert_eq!(
        fetch(format!("http://{granted}/x")).await,
        (200, "status=200\nhello from upstream".into())
    );
    for denied in [
        format!("http://{other}/x"),
        format!("https://{granted}/x"),
        format!("http://localhost:{}/x", granted.port()),
        "http://example.com/".to_owned(),
    ] {
        assert_eq!(
            fetch(denied.clone()).await,
            (502, "error=ErrorCode::HttpRequestDenied".into()),
            "{denied}"
        );
    }
    assert_eq!(granted_hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        other_hits.load(Ordering::SeqCst),
        0,
        "a denied request must not connect"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_resolved_grant_refuses_start() {
    let app = TestApp::new(APP);
    let error = app
        .start_with(&[("upstream", "127.0.0.1:8080/no-scheme")])
        .await
        .err()
        .expect("start must fail");
    assert!(
        format!("{error:#}").contains("allowed_outbound_hosts"),
        "{error:#}"
    );
}
