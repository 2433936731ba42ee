//! The default key-value store: Spin's SQLite file and table, atomic `increment` across instances and
//! across connections, the 8-byte counter format, plain operations, and grants.

use std::collections::BTreeSet;

use crate::support::{get, join_all, start_error, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "kv"

[[trigger.http]]
route = "/kv/..."
component = "kv"
[[trigger.http]]
route = "/none/..."
component = "none"

[component.kv]
source = "{probe}"
key_value_stores = ["default"]
[component.none]
source = "{probe}"
"#;

async fn increments(
    base: &str,
    key: &str,
    count: usize,
) -> Vec<tokio::task::JoinHandle<(u16, String)>> {
    (0..count)
        .map(|_| {
            let url = format!("{base}/kv/?op=incr&key={key}");
            tokio::spawn(async move { get(&url).await })
        })
        .collect()
}

fn as_counts(results: Vec<(u16, String)>) -> BTreeSet<i64> {
    results
        .into_iter()
        .map(|(status, body)| {
            assert_eq!(status, 200, "{body}");
            body.parse().expect("a number")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_increments_give_exactly_one_to_fifty() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let results = join_all(increments(&host.base_url(), "counter", 50).await).await;
    assert_eq!(as_counts(results), (1..=50).collect());

    // Stored as Spin's default store stores counters: an 8-byte little-endian integer.
    let (_, stored) = get(&format!(
        "{}/kv/?op=kv&action=get-i64&key=counter",
        host.base_url()
    ))
    .await;
    assert_eq!(stored, "50");
    host.shutdown().await;

    let db =
        rusqlite::Connection::open(app.dir.path().join(".spin/sqlite_key_value.db")).expect("open");
    let value: Vec<u8> = db
        .query_row(
            "SELECT value FROM spin_key_value WHERE store = 'default' AND key = 'counter'",
            [],
            |row| row.get(0),
        )
        .expect("the counter row");
    assert_eq!(value, 50i64.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn increments_are_atomic_across_hosts_sharing_the_file() {
    let app = TestApp::new(APP);
    // Two hosts, two connections to one file: only SQLite's locking keeps the counter right, as between
    // two processes.
    let first = app.start().await;
    let second = app.start().await;
    let mut tasks = increments(&first.base_url(), "shared", 25).await;
    tasks.extend(increments(&second.base_url(), "shared", 25).await);
    assert_eq!(as_counts(join_all(tasks).await), (1..=50).collect());
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incrementing_a_value_that_is_not_a_counter_fails_and_the_store_keeps_working() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();
    assert_eq!(
        get(&format!("{base}/kv/?op=kv&action=set&key=text&value=hello"))
            .await
            .0,
        200
    );
    let (status, body) = get(&format!("{base}/kv/?op=incr&key=text")).await;
    assert_eq!(status, 500);
    assert!(body.contains("not an 8-byte counter"), "{body}");
    assert_eq!(
        get(&format!("{base}/kv/?op=kv&action=get&key=text")).await,
        (200, "some:hello".into())
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_set_delete_exists_and_list_keys() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let kv = |action: &str, key: &str, value: &str| {
        let url = format!(
            "{}/kv/?op=kv&action={action}&key={key}&value={value}",
            host.base_url()
        );
        async move { get(&url).await.1 }
    };
    assert_eq!(kv("get", "a", "").await, "none");
    assert_eq!(kv("exists", "a", "").await, "false");
    assert_eq!(kv("set", "a", "1").await, "ok");
    assert_eq!(kv("set", "b", "2").await, "ok");
    assert_eq!(kv("set", "a", "3").await, "ok");
    assert_eq!(kv("get", "a", "").await, "some:3");
    assert_eq!(kv("exists", "a", "").await, "true");
    assert_eq!(kv("keys", "", "").await, "a,b|cursor=None");
    assert_eq!(kv("delete", "a", "").await, "ok");
    assert_eq!(kv("delete", "a", "").await, "ok");
    assert_eq!(kv("keys", "", "").await, "b|cursor=None");
    host.shutdown().await;

    // The data is in the state directory, so a restarted host sees it.
    let host = app.start().await;
    assert_eq!(
        get(&format!("{}/kv/?op=kv&action=get&key=b", host.base_url()))
            .await
            .1,
        "some:2"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stores_need_a_grant() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();
    assert_eq!(
        get(&format!("{base}/none/?op=kv-open&store=default")).await,
        (403, "Error::AccessDenied".into())
    );
    assert_eq!(
        get(&format!("{base}/kv/?op=kv-open&store=other")).await,
        (403, "Error::AccessDenied".into())
    );
    assert_eq!(
        get(&format!("{base}/kv/?op=kv-open&store=default")).await,
        (200, "opened".into())
    );
    host.shutdown().await;

    let app = TestApp::new(&APP.replace(r#"["default"]"#, r#"["default", "leases"]"#));
    let error = start_error(&app).await;
    assert!(error.contains("`leases`"), "{error}");
}
