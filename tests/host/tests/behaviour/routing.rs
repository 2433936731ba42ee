//! Public routes: exact, `:param`, trailing wildcard, precedence, one component behind several routes,
//! 404s, and the `spin-*` headers a component sees.

use crate::support::{echoed, get, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "routing"

[[trigger.http]]
route = "/health"
component = "exact"
[[trigger.http]]
route = "/also/exact"
component = "exact"
[[trigger.http]]
route = "/items/:id"
component = "param"
[[trigger.http]]
route = "/admin/..."
component = "admin"
[[trigger.http]]
route = "/admin/sync"
component = "sync"
[[trigger.http]]
route = "/admin/deep/..."
component = "deep"

[component.exact]
source = "{probe}"
variables = { who = "exact" }
[component.param]
source = "{probe}"
variables = { who = "param" }
[component.admin]
source = "{probe}"
variables = { who = "admin" }
[component.sync]
source = "{probe}"
variables = { who = "sync" }
[component.deep]
source = "{probe}"
variables = { who = "deep" }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn requests_go_to_the_best_matching_route() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();

    for (path, who) in [
        ("/health", "exact"),
        ("/health/", "exact"),
        ("/also/exact", "exact"),
        ("/items/42", "param"),
        ("/admin", "admin"),
        ("/admin/drain", "admin"),
        ("/admin/sync", "sync"),
        ("/admin/sync/more", "admin"),
        ("/admin/deep", "deep"),
        ("/admin/deep/er/still", "deep"),
    ] {
        let (status, body) = get(&format!("{base}{path}?q=1")).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(echoed(&body, "who"), who, "{path}");
        assert_eq!(echoed(&body, "path"), format!("{path}?q=1"), "{path}");
    }

    for path in [
        "/",
        "/nothing",
        "/items",
        "/items/1/2",
        "/health/x",
        "/adminx",
    ] {
        let (status, _) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 404, "{path}");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn components_see_spin_route_headers() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();

    let (_, body) = get(&format!("{base}/items/42")).await;
    assert_eq!(echoed(&body, "param-id"), "42");
    assert_eq!(echoed(&body, "matched-route"), "/items/:id");
    assert_eq!(echoed(&body, "path-info"), "");

    let (_, body) = get(&format!("{base}/admin/deep/a/b/")).await;
    assert_eq!(echoed(&body, "path-info"), "/a/b/");
    assert_eq!(echoed(&body, "component-route"), "/admin/deep");
    assert!(
        echoed(&body, "authority").starts_with("127.0.0.1:"),
        "{body}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spin_well_known_health_answers_for_every_app() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    assert_eq!(
        get(&format!("{}/.well-known/spin/health", host.base_url())).await,
        (200, "OK".into())
    );
    host.shutdown().await;
}
