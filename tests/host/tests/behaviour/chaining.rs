//! Private routes and service chaining: a private component is reachable only through
//! `http://<id>.spin.internal`, only with the caller's grant, with path and query intact.

use crate::support::{echoed, get, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "chaining"

[[trigger.http]]
route = "/front/..."
component = "front"
[[trigger.http]]
route = { private = true }
component = "back"
[[trigger.http]]
route = "/nogrant"
component = "nogrant"
[[trigger.http]]
route = "/wild"
component = "wild"

[component.front]
source = "{probe}"
allowed_outbound_hosts = ["http://back.spin.internal"]
variables = { who = "front" }
[component.back]
source = "{probe}"
variables = { who = "back" }
[component.nogrant]
source = "{probe}"
allowed_outbound_hosts = ["http://front.spin.internal"]
[component.wild]
source = "{probe}"
allowed_outbound_hosts = ["http://*.spin.internal"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_private_component_has_no_public_route() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    for path in ["/", "/back", "/back/x", "/drain"] {
        assert_eq!(
            get(&format!("{}{path}", host.base_url())).await.0,
            404,
            "{path}"
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_granted_component_reaches_it_with_path_and_query_intact() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let (status, body) = get(&format!(
        "{}/front/x?op=fetch&url=http://back.spin.internal/sync/PN123?since=5",
        host.base_url()
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("status=200\n"), "{body}");
    assert_eq!(echoed(&body, "who"), "back");
    assert_eq!(echoed(&body, "path"), "/sync/PN123?since=5");
    assert_eq!(echoed(&body, "authority"), "back.spin.internal");
    assert_eq!(echoed(&body, "path-info"), "/sync/PN123");
    assert_eq!(echoed(&body, "matched-route"), "/...");

    let (status, body) = get(&format!(
        "{}/wild?op=fetch&url=http://back.spin.internal/",
        host.base_url()
    ))
    .await;
    assert_eq!((status, echoed(&body, "who")), (200, "back"), "{body}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chained_request_carries_its_body() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let (status, body) = get(&format!(
        "{}/front/?op=fetch&post=payload-1&url=http://back.spin.internal/drain?op=body",
        host.base_url()
    ))
    .await;
    assert_eq!(
        (status, body.as_str()),
        (200, "status=200\n9 bytes: payload-1")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chaining_without_the_grant_is_denied() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let (status, body) = get(&format!(
        "{}/nogrant?op=fetch&url=http://back.spin.internal/",
        host.base_url()
    ))
    .await;
    assert_eq!(
        (status, body.as_str()),
        (502, "error=ErrorCode::HttpRequestDenied")
    );
    assert!(
        host.logs()
            .contains("component `nogrant` was denied a request to http://back.spin.internal:80"),
        "{}",
        host.logs()
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chaining_to_an_unknown_component_finds_no_destination() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let (status, body) = get(&format!(
        "{}/wild?op=fetch&url=http://missing.spin.internal/",
        host.base_url()
    ))
    .await;
    assert_eq!(
        (status, body.as_str()),
        (502, "error=ErrorCode::DestinationNotFound")
    );
    host.shutdown().await;
}
