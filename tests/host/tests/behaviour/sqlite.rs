//! The default SQLite database: Spin's file, parameters and value types, `changes`,
//! `last-insert-rowid`, `RETURNING`, one statement per `execute`, a connection per `open`, and grants.

use serde_json::{json, Value};

use crate::support::{get, request, start_error, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "sqlite"

[[trigger.http]]
route = "/db/..."
component = "db"
[[trigger.http]]
route = "/none/..."
component = "none"

[component.db]
source = "{probe}"
sqlite_databases = ["default"]
[component.none]
source = "{probe}"
"#;

/// Runs statements on one connection; answers one result per statement.
async fn sql(base: &str, statements: Value) -> Vec<Value> {
    let (status, body) = request(
        "POST",
        &format!("{base}/db/?op=sql"),
        &statements.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON results")
}

#[tokio::test(flavor = "multi_thread")]
async fn statements_parameters_changes_and_rowids() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let r = sql(
        &host.base_url(),
        json!([
            {"sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER, r REAL, b BLOB)"},
            {"sql": "INSERT INTO t (name, n, r, b) VALUES (?, ?, ?, ?)", "params": ["a", 1, 1.5, {"blob": [0, 255]}]},
            {"sql": "INSERT INTO t (name, n, r, b) VALUES (?, ?, ?, ?)", "params": ["b", null, 2.5, null]},
            {"sql": "INSERT INTO t (name) VALUES ('a') ON CONFLICT (name) DO NOTHING"},
            {"sql": "SELECT id, name, n, r, b FROM t ORDER BY id"},
            {"sql": "UPDATE t SET n = n + 10 WHERE name = ? RETURNING id, n", "params": ["a"]},
            {"sql": "SELECT 1 AS first; DROP TABLE t"},
            {"sql": "SELECT count(*) FROM t"},
            {"sql": "SELEKT nonsense"},
        ]),
    )
    .await;

    assert_eq!(r[1]["changes"], 1);
    assert_eq!(r[1]["last_insert_rowid"], 1);
    assert_eq!(r[2]["last_insert_rowid"], 2);
    assert_eq!(r[3]["changes"], 0, "ON CONFLICT DO NOTHING changes nothing");
    assert_eq!(r[4]["columns"], json!(["id", "name", "n", "r", "b"]));
    assert_eq!(
        r[4]["rows"],
        json!([[1, "a", 1, 1.5, {"blob": [0, 255]}], [2, "b", null, 2.5, null]])
    );
    assert_eq!(r[5]["rows"], json!([[1, 11]]));
    assert_eq!(r[5]["changes"], 1);
    // Like Spin, only the first statement of a string runs: the table survives.
    assert_eq!(r[6]["rows"], json!([[1]]));
    assert_eq!(r[7]["rows"], json!([[2]]));
    assert!(
        r[8]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("Error::Io(")),
        "{}",
        r[8]
    );
    host.shutdown().await;

    let db = rusqlite::Connection::open(app.dir.path().join(".spin/sqlite_db.db")).expect("open");
    let count: i64 = db
        .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .expect("the table is in Spin's default database file");
    assert_eq!(count, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_instance_has_its_own_connection() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();
    sql(&base, json!([{"sql": "CREATE TABLE t (x INTEGER)"}])).await;
    // A transaction left open belongs to that request's connection, which ends with its instance.
    let r = sql(
        &base,
        json!([{"sql": "BEGIN"}, {"sql": "INSERT INTO t VALUES (1)"}]),
    )
    .await;
    assert_eq!(r[1]["changes"], 1);
    let r = sql(&base, json!([{"sql": "SELECT count(*) FROM t"}])).await;
    assert_eq!(r[0]["rows"], json!([[0]]));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn databases_need_a_grant() {
    let app = TestApp::new(APP);
    let host = app.start().await;
    let base = host.base_url();
    assert_eq!(
        request("POST", &format!("{base}/none/?op=sql"), "[]").await,
        (403, "Error::AccessDenied".into())
    );
    assert_eq!(
        get(&format!("{base}/db/?op=sql&db=other")).await,
        (403, "Error::AccessDenied".into())
    );
    host.shutdown().await;

    let app = TestApp::new(&APP.replace(r#"["default"]"#, r#"["analytics"]"#));
    let error = start_error(&app).await;
    assert!(error.contains("`analytics`"), "{error}");
}
