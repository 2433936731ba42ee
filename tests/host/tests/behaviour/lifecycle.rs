//! Instances and the host around them: a new instance per request, concurrent requests, work after the
//! response (kept, and bounded by the request timeout), guest output, traps, cron, component selection,
//! the compile cache, and the product's real `webhook` component.

use std::time::{Duration, Instant};

use crate::support::{get, join_all, webhook, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "lifecycle"

[variables]
cron_outcome = { default = "ok" }

[[trigger.http]]
route = "/..."
component = "web"
[[trigger.cron]]
component = "tick"
cron_expression = "0 * * * * *"

[component.web]
source = "{probe}"
key_value_stores = ["default"]
environment = { GREETING = "hi" }
[component.tick]
source = "{cron_probe}"
key_value_stores = ["default"]
variables = { cron_outcome = "{{ cron_outcome }}" }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn every_request_gets_a_new_instance() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    for _ in 0..3 {
        assert_eq!(
            get(&format!("{}/?op=requests-seen", host.base_url())).await,
            (200, "1".into())
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_component_environment_reaches_the_guest() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();
    assert_eq!(
        get(&format!("{base}/?op=env&name=GREETING")).await,
        (200, "hi".into())
    );
    // Nothing of the host's own environment leaks in.
    assert_eq!(get(&format!("{base}/?op=env&name=PATH")).await.0, 404);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_served_concurrently() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let started = Instant::now();
    let tasks = (0..6)
        .map(|_| {
            let url = format!("{}/?op=sleep&ms=700", host.base_url());
            tokio::spawn(async move { get(&url).await })
        })
        .collect();
    for (status, _) in join_all(tasks).await {
        assert_eq!(status, 200);
    }
    // One after another they would take 4.2 s.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn work_after_the_response_runs_to_the_end() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();
    let started = Instant::now();
    assert_eq!(
        get(&format!("{base}/?op=after&key=post&delay_ms=2500")).await,
        (202, "accepted".into())
    );
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "the client waited for the work"
    );
    assert_eq!(
        get(&format!("{base}/?op=kv&action=get&key=post")).await.1,
        "none"
    );
    host.wait_idle().await;
    assert_eq!(
        get(&format!("{base}/?op=kv&action=get&key=post")).await.1,
        "some:done"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_request_timeout_bounds_work_after_the_response() {
    let app = TestApp::new(APP);
    let mut options = app.options();
    options.request_timeout = Duration::from_millis(800);
    let host = spin_test_host::SpinHost::start(options)
        .await
        .expect("starting");
    let base = host.base_url();
    assert_eq!(
        get(&format!("{base}/?op=after&key=late&delay_ms=3000"))
            .await
            .0,
        202
    );
    let waited = Instant::now();
    host.wait_idle().await;
    assert!(
        waited.elapsed() < Duration::from_millis(2000),
        "{:?}",
        waited.elapsed()
    );
    assert_eq!(
        get(&format!("{base}/?op=kv&action=get&key=late")).await.1,
        "none"
    );
    assert!(host.logs().contains("request timeout"), "{}", host.logs());

    // A guest that never answers gets a 500 at the timeout, whether it waits or computes.
    for op in ["sleep", "busy"] {
        let started = Instant::now();
        assert_eq!(
            get(&format!("{base}/?op={op}&ms=5000")).await.0,
            500,
            "{op}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(2500),
            "{op}: {:?}",
            started.elapsed()
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_output_and_traps_are_in_the_logs() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();
    assert_eq!(get(&format!("{base}/?op=log&msg=marker-42")).await.0, 200);
    assert_eq!(get(&format!("{base}/?op=trap")).await.0, 500);
    host.wait_idle().await;
    let logs = host.logs();
    assert!(logs.contains("stdout: marker-42\n"), "{logs}");
    assert!(logs.contains("stderr: marker-42\n"), "{logs}");
    assert!(logs.contains("asked to trap"), "{logs}");
    assert!(logs.contains("[spin-test-host] component `web`"), "{logs}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_runs_the_export_with_the_current_time() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert_eq!(host.invoke_cron().await.expect("no trap"), Ok(()));
    let (_, stored) = get(&format!(
        "{}/?op=kv&action=get&key=cron-timestamp",
        host.base_url()
    ))
    .await;
    let timestamp: u64 = stored
        .strip_prefix("some:")
        .expect(&stored)
        .parse()
        .expect("seconds");
    assert!(
        (before..before + 5).contains(&timestamp),
        "{timestamp} vs {before}"
    );
    assert!(host.logs().contains(&format!("cron tick at {timestamp}")));
    host.shutdown().await;

    let host = app
        .start_with(&[("cron_outcome", "fail")])
        .await
        .expect("starting");
    assert_eq!(
        host.invoke_cron().await.expect("no trap"),
        Err("the tick was asked to fail".to_owned())
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn selecting_components_drops_the_others_triggers() {
    let app = TestApp::new(APP);
    let mut options = app.options();
    options.components = Some(vec!["web".into()]);
    let host = spin_test_host::SpinHost::start(options)
        .await
        .expect("starting");
    assert!(
        host.invoke_cron().await.is_err(),
        "the cron trigger was dropped"
    );
    assert_eq!(
        get(&format!("{}/?op=requests-seen", host.base_url()))
            .await
            .0,
        200
    );
    host.shutdown().await;

    let mut options = app.options();
    options.components = Some(vec!["nope".into()]);
    assert!(spin_test_host::SpinHost::start(options).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_serving() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let address = host.base_url().trim_start_matches("http://").to_owned();
    host.shutdown().await;
    assert!(tokio::net::TcpStream::connect(&address).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn compiled_components_are_cached_on_disk() {
    let app = TestApp::new(APP);
    app.start().await.shutdown().await;
    let cache = crate::support::probe()
        .ancestors()
        .find(|d| d.ends_with("target"))
        .expect("the probe is in a target directory")
        .join("spin-test-host-cache");
    let cached = std::fs::read_dir(&cache)
        .expect("the cache directory exists")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        })
        .count();
    assert!(cached >= 2, "{cached} .cwasm files in {}", cache.display());
}

const WEBHOOK_APP: &str = r#"
spin_manifest_version = 2
[application]
name = "webhook-only"

[variables]
admin_token = { required = true, secret = true }

[[trigger.http]]
route = "/health"
component = "webhook"

[component.webhook]
source = "{webhook}"
key_value_stores = ["default"]
sqlite_databases = ["default"]
variables = { admin_token = "{{ admin_token }}" }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_real_webhook_component_answers_health() {
    let app = TestApp::new(&WEBHOOK_APP.replace("{webhook}", &webhook().display().to_string()));
    let host = app
        .start_with(&[("admin_token", "t")])
        .await
        .expect("starting");
    let url = format!("{}/health", host.base_url());
    let (status, body) = get(&url).await;
    assert_eq!(status, 200, "{body}\n{}", host.logs());
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["component"], "webhook");
    assert_eq!(
        health["database"], "ok",
        "SQLite works through the real component"
    );

    // Latency of a warm request to a real component (printed, not asserted: machines differ).
    let runs = 20;
    let started = Instant::now();
    for _ in 0..runs {
        assert_eq!(get(&url).await.0, 200);
    }
    eprintln!(
        "webhook GET /health: {:?} per request",
        started.elapsed() / runs
    );
    host.shutdown().await;
}
