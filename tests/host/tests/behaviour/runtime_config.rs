//! The runtime config file (`spin up --runtime-config-file`): SQLite databases and key-value stores
//! other than `default`, each label in its own file, paths resolved as Spin resolves them, and startup
//! refusals for labels no configuration defines and for types the host does not have.

use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};
use spin_test_host::SpinHost;

use crate::support::{get, refusal, request, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "runtime-config"

[[trigger.http]]
route = "/db/..."
component = "db"
[[trigger.http]]
route = "/kv/..."
component = "kv"

[component.db]
source = "{probe}"
sqlite_databases = ["default", "intake"]
[component.kv]
source = "{probe}"
key_value_stores = ["default"]
"#;

/// `path` as a TOML string.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Runs statements on one connection to `db`; answers one result per statement.
async fn sql(base: &str, db: &str, statements: Value) -> Vec<Value> {
    let (status, body) = request(
        "POST",
        &format!("{base}/db/?op=sql&db={db}"),
        &statements.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON results")
}

/// The names of the tables in the SQLite file at `path`, which must exist.
fn tables(path: &Path) -> Vec<String> {
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let mut statement = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("listing tables");
    statement
        .query_map([], |row| row.get(0))
        .expect("listing tables")
        .collect::<rusqlite::Result<_>>()
        .expect("table names")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_label_of_the_runtime_config_is_its_own_file() {
    let app = TestApp::new(&APP.replace(
        r#"["default", "intake"]"#,
        r#"["default", "intake", "same-file"]"#,
    ));
    let data = app.dir.path().join("data");
    let intake = data.join("intake.db");
    let options = app.options_with_runtime_config(&format!(
        "[sqlite_database.intake]\ntype = \"spin\"\npath = {intake}\n\n\
         [sqlite_database.same-file]\ntype = \"spin\"\npath = {intake}\n\n\
         [sqlite_database.not-granted]\ntype = \"spin\"\npath = {other}\n",
        intake = toml_path(&intake),
        other = toml_path(&data.join("other.db")),
    ));
    let host = SpinHost::start(options).await.expect("starting the host");
    let base = host.base_url();

    let r = sql(
        &base,
        "intake",
        json!([{"sql": "CREATE TABLE deliveries (id INTEGER)"}, {"sql": "INSERT INTO deliveries VALUES (1)"}]),
    )
    .await;
    assert_eq!(r[1]["changes"], 1, "{r:?}");
    let r = sql(
        &base,
        "default",
        json!([{"sql": "CREATE TABLE jobs (id INTEGER)"}]),
    )
    .await;
    assert!(r[0].get("error").is_none(), "{r:?}");
    // Two labels on one path are one database, as on Spin.
    let r = sql(
        &base,
        "same-file",
        json!([{"sql": "SELECT count(*) FROM deliveries"}]),
    )
    .await;
    assert_eq!(r[0]["rows"], json!([[1]]), "{r:?}");
    // Defined, but not granted to this component.
    assert_eq!(
        get(&format!("{base}/db/?op=sql&db=not-granted")).await,
        (403, "Error::AccessDenied".into())
    );
    host.shutdown().await;

    assert_eq!(tables(&intake), ["deliveries"]);
    // `default` stays in the state directory when the file defines only other labels, as on Spin.
    assert_eq!(tables(&app.dir.path().join(".spin/sqlite_db.db")), ["jobs"]);
    assert!(!data.join("other.db").exists(), "nothing opened it");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_label_without_a_definition_is_refused_at_startup() {
    let app = TestApp::new(APP);
    let error = refusal(app.options()).await;
    assert!(
        error.contains("component `db` uses SQLite database `intake`, which is not defined"),
        "{error}"
    );
    assert!(error.contains("[sqlite_database.intake]"), "{error}");

    // A runtime config that defines other labels does not help.
    let error =
        refusal(app.options_with_runtime_config("[sqlite_database.outtake]\ntype = \"spin\"\n"))
            .await;
    assert!(error.contains("`intake`"), "{error}");

    // The same for key-value stores, which a runtime config can define too.
    let app = TestApp::new(&APP.replace(
        r#"key_value_stores = ["default"]"#,
        r#"key_value_stores = ["default", "cache"]"#,
    ));
    let intake = "[sqlite_database.intake]\ntype = \"spin\"\n";
    let error = refusal(app.options_with_runtime_config(intake)).await;
    assert!(error.contains("[key_value_store.cache]"), "{error}");
    let options = app.options_with_runtime_config(&format!(
        "{intake}[key_value_store.cache]\ntype = \"spin\"\n"
    ));
    let host = SpinHost::start(options).await.expect("starting the host");
    assert_eq!(
        get(&format!("{}/kv/?op=kv-open&store=cache", host.base_url())).await,
        (200, "opened".into())
    );
    host.shutdown().await;
}

/// `to` relative to `from`; both absolute and canonical.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let common = from
        .components()
        .zip(to.components())
        .take_while(|(a, b)| a == b)
        .count();
    from.components()
        .skip(common)
        .map(|_| Component::ParentDir.as_os_str())
        .chain(to.components().skip(common).map(|c| c.as_os_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_resolve_as_on_spin() {
    let app = TestApp::new(APP);
    let config_dir = app.dir.path().join("config");
    // Spin resolves a relative SQLite path against its current directory, so this one points from the
    // test's current directory into a temporary directory.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temporary directory");
    let current = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .expect("the current directory");
    let scratch_dir = scratch
        .path()
        .canonicalize()
        .expect("the scratch directory");
    let intake = relative(&current, &scratch_dir).join("intake.db");
    assert!(intake.is_relative(), "{}", intake.display());
    let options = app.options_with_runtime_config(&format!(
        "[sqlite_database.intake]\ntype = \"spin\"\npath = {}\n\n\
         [key_value_store.default]\ntype = \"spin\"\npath = \"kv/store.db\"\n",
        toml_path(&intake)
    ));
    let host = SpinHost::start(options).await.expect("starting the host");
    let base = host.base_url();
    sql(
        &base,
        "intake",
        json!([{"sql": "CREATE TABLE deliveries (id INTEGER)"}]),
    )
    .await;
    assert_eq!(
        get(&format!("{base}/kv/?op=kv&action=set&key=k&value=v")).await,
        (200, "ok".into())
    );
    host.shutdown().await;

    assert_eq!(tables(&scratch_dir.join("intake.db")), ["deliveries"]);
    assert!(
        !config_dir.join(&intake).exists(),
        "the SQLite path is not relative to the runtime config file"
    );
    // A key-value path is relative to the runtime config file's directory.
    let kv = rusqlite::Connection::open(config_dir.join("kv/store.db")).expect("open");
    let value: Vec<u8> = kv
        .query_row(
            "SELECT value FROM spin_key_value WHERE store = 'default' AND key = 'k'",
            [],
            |row| row.get(0),
        )
        .expect("the key in the configured file");
    assert_eq!(value, b"v");
    assert!(!app.dir.path().join(".spin/sqlite_key_value.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_without_path_is_new_on_every_open() {
    let app = TestApp::new(APP);
    let options = app.options_with_runtime_config("[sqlite_database.intake]\ntype = \"spin\"\n");
    let host = SpinHost::start(options).await.expect("starting the host");
    let base = host.base_url();
    let r = sql(
        &base,
        "intake",
        json!([{"sql": "CREATE TABLE t (x INTEGER)"}, {"sql": "SELECT count(*) FROM t"}]),
    )
    .await;
    assert_eq!(r[1]["rows"], json!([[0]]), "{r:?}");
    // Spin's in-memory database lives as long as its connection.
    let r = sql(&base, "intake", json!([{"sql": "SELECT count(*) FROM t"}])).await;
    assert!(
        r[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no such table")),
        "{r:?}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn types_other_than_spin_are_refused_clearly() {
    let app = TestApp::new(APP);
    let error = refusal(app.options_with_runtime_config(
        "[sqlite_database.intake]\ntype = \"libsql\"\nurl = \"https://db.example\"\ntoken = \"t\"\n",
    ))
    .await;
    assert!(error.contains("[sqlite_database.intake]"), "{error}");
    assert!(
        error.contains(r#"type = "libsql" is not supported"#),
        "{error}"
    );
    assert!(
        error.contains(r#"spin-test-host supports only type = "spin""#),
        "{error}"
    );

    let error = refusal(app.options_with_runtime_config(
        "[sqlite_database.intake]\ntype = \"spin\"\n\n\
         [key_value_store.default]\ntype = \"redis\"\nurl = \"redis://localhost:6379\"\n",
    ))
    .await;
    assert!(error.contains("[key_value_store.default]"), "{error}");
    assert!(
        error.contains(r#"type = "redis" is not supported"#),
        "{error}"
    );
}
