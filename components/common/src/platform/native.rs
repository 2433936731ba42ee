//! Native implementations of the platform traits, with the semantics of Spin's default stores: key-value
//! is one SQLite table (`spin_key_value`) whose counters are 8-byte little-endian integers, SQL is a
//! SQLite file opened with a 5 s busy timeout, each handle its own connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use async_trait::async_trait;
use rusqlite::config::DbConfig;
use rusqlite::{params, types::ValueRef, Connection, OptionalExtension, TransactionBehavior};

use super::{
    Clock, HttpClient, HttpError, HttpRequest, HttpResponse, KeyValue, Method, Platform, Rows, Sql,
    StreamingResponse, Timeouts, Value, Variables,
};

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 512;

fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The app runs a few hundred distinct statements; rusqlite's default cache of 16 re-parsed most of
    // them on every call (a third of a simulated seed's CPU was SQLite's parser).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The bundled SQLite has STAT4, which re-prepares a statement whenever a parameter compared with an
    // index changes, in case the value changes the plan; the planner stability guarantee keeps the plan
    // (results are the same either way).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";

/// Spin's default key-value store: table `spin_key_value(store, key, value)` in one SQLite file.
pub struct SqliteKeyValue {
    conn: Mutex<Connection>,
    store: String,
}

impl SqliteKeyValue {
    /// Opens store `store` (Spin's label, usually `default`) in the SQLite file at `path`.
    pub fn open(path: &Path, store: &str) -> anyhow::Result<Self> {
        let conn = open(path)?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                PRIMARY KEY (store, key))",
            [],
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            store: store.to_owned(),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyValue for SqliteKeyValue {
    fn get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .query_row(params![self.store, key], |row| row.get(0))
            .optional()?)
    }

    fn set(&self, key: &str, value: &[u8]) -> anyhow::Result<()> {
        self.conn()
            .prepare_cached(UPSERT)?
            .execute(params![self.store, key, value])?;
        Ok(())
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .execute(params![self.store, key])?;
        Ok(())
    }

    fn increment(&self, key: &str, delta: i64) -> anyhow::Result<i64> {
        // Spin's store does this read-modify-write in an immediate transaction, which is what makes it
        // atomic across connections and processes.
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<Vec<u8>> = tx
            .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
            .query_row(params![self.store, key], |row| row.get(0))
            .optional()?;
        let current = match current {
            None => 0,
            Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
                Ok(le) => i64::from_le_bytes(le),
                // Spin's default store panics here and leaves the store unusable until restart.
                Err(_) => bail!("key {key:?} holds a value that is not a counter"),
            },
        };
        let next = current + delta;
        tx.prepare_cached(UPSERT)?.execute(params![
            self.store,
            key,
            next.to_le_bytes().to_vec()
        ])?;
        tx.commit()?;
        Ok(next)
    }

    fn keys_with_prefix(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT key FROM spin_key_value WHERE store = ?1 AND substr(key, 1, length(?2)) = ?2",
        )?;
        let keys = stmt
            .query_map(params![self.store, prefix], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(keys)
    }
}

/// A SQLite database file, as Spin's default `sqlite_databases = ["default"]`.
pub struct SqliteDatabase {
    conn: Mutex<Connection>,
}

impl SqliteDatabase {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            conn: Mutex::new(open(path)?),
        })
    }
}

impl Sql for SqliteDatabase {
    fn execute(&self, statement: &str, params: &[Value]) -> anyhow::Result<Rows> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = conn
            .prepare_cached(statement)
            .with_context(|| format!("preparing {statement:?}"))?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let bound = params.iter().map(to_sql).collect::<Vec<_>>();
        let mut rows = stmt.query(rusqlite::params_from_iter(bound))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..columns.len())
                .map(|i| row.get_ref(i).map(from_sql))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(values);
        }
        Ok(Rows { columns, rows: out })
    }
}

fn to_sql(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        Value::Integer(v) => V::Integer(*v),
        Value::Real(v) => V::Real(*v),
        Value::Text(v) => V::Text(v.clone()),
        Value::Blob(v) => V::Blob(v.clone()),
        Value::Null => V::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Integer(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    }
}

/// Outbound HTTP with `reqwest`, with each request's [`Timeouts`] enforced the way `wasi:http` does on
/// Spin: connecting, waiting for the status and headers, and each wait between two body chunks have
/// their own limit, and nothing bounds a body that keeps arriving.
pub struct ReqwestClient {
    client: reqwest::Client,
}

impl ReqwestClient {
    /// A client whose connections time out after [`Timeouts::API`]'s connect limit (reqwest sets it per
    /// client, not per request).
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(Timeouts::API.connect_ms))
            .build()
            .expect("a reqwest client with default TLS settings builds");
        Self { client }
    }
}

impl Default for ReqwestClient {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait(?Send)]
impl HttpClient for ReqwestClient {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut response = self.send_streaming(request).await?;
        let mut body = Vec::new();
        while let Some(chunk) = response.next_chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body,
        })
    }

    async fn send_streaming(&self, request: HttpRequest) -> Result<StreamingResponse, HttpError> {
        let between_bytes = Duration::from_millis(request.timeouts.between_bytes_ms);
        let (status, headers, response) = self.start(request).await?;
        // The state is `None` after an error, so a failed body ends instead of being polled again.
        let body = futures::stream::unfold(Some(response), move |state| async move {
            let mut response = state?;
            match tokio::time::timeout(between_bytes, response.chunk()).await {
                Ok(Ok(Some(chunk))) => Some((Ok(chunk.to_vec()), Some(response))),
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some((Err(HttpError::Network(e.to_string())), None)),
                Err(_) => Some((
                    Err(HttpError::Network(format!(
                        "timed out: no body data for {} ms",
                        between_bytes.as_millis()
                    ))),
                    None,
                )),
            }
        });
        Ok(StreamingResponse::new(status, headers, body))
    }
}

impl ReqwestClient {
    /// Sends `request` and returns once the response's status and headers are in.
    async fn start(
        &self,
        request: HttpRequest,
    ) -> Result<(u16, Vec<(String, String)>, reqwest::Response), HttpError> {
        let method = match request.method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let first_byte = Duration::from_millis(request.timeouts.first_byte_ms);
        let mut builder = self.client.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let sent = tokio::time::timeout(first_byte, builder.body(request.body).send()).await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) if e.is_builder() => return Err(HttpError::InvalidRequest(e.to_string())),
            Ok(Err(e)) => return Err(HttpError::Network(e.to_string())),
            Err(_) => {
                return Err(HttpError::Network(format!(
                    "timed out: no response within {} ms",
                    first_byte.as_millis()
                )))
            }
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        Ok((status, headers, response))
    }
}

/// The system clock; sleeps with tokio.
pub struct SystemClock;

#[async_trait(?Send)]
impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        super::system_now_ms()
    }

    async fn sleep_ms(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A clock tests set by hand; `sleep_ms` advances it instead of waiting.
#[derive(Default)]
pub struct ManualClock {
    now_ms: Mutex<i64>,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn at(now_ms: i64) -> Self {
        Self {
            now_ms: Mutex::new(now_ms),
        }
    }

    /// Moves the clock forward.
    pub fn advance_ms(&self, ms: i64) {
        *self.now_ms.lock().unwrap_or_else(|e| e.into_inner()) += ms;
    }
}

#[async_trait(?Send)]
impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        *self.now_ms.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn sleep_ms(&self, ms: u64) {
        self.advance_ms(i64::try_from(ms).unwrap_or(i64::MAX));
    }
}

/// Variables from a map; names absent from the map are undefined.
#[derive(Default, Clone)]
pub struct MapVariables(pub HashMap<String, String>);

impl MapVariables {
    /// Variables from `(name, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl Variables for MapVariables {
    fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self.0.get(name).cloned())
    }
}

/// The intake database's file in a state directory, as `runtime-config.toml` names it.
pub const INTAKE_DATABASE_FILE: &str = "sqlite_intake.db";

/// A native [`Platform`] whose key-value store and databases live in `state_dir`, laid out like Spin's
/// `.spin/` directory with the project's `runtime-config.toml` (`sqlite_key_value.db`, `sqlite_db.db`,
/// [`INTAKE_DATABASE_FILE`]).
pub struct NativePlatformBuilder {
    state_dir: PathBuf,
    vars: MapVariables,
    clock: Option<Rc<dyn Clock>>,
    http: Option<Rc<dyn HttpClient>>,
}

impl NativePlatformBuilder {
    /// Starts a platform stored under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            vars: MapVariables::default(),
            clock: None,
            http: None,
        }
    }

    /// Sets the variables.
    pub fn vars(mut self, vars: MapVariables) -> Self {
        self.vars = vars;
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: Rc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Uses `http` instead of a `reqwest` client.
    pub fn http(mut self, http: Rc<dyn HttpClient>) -> Self {
        self.http = Some(http);
        self
    }

    /// Opens the stores and builds the platform.
    pub fn build(self) -> anyhow::Result<Platform> {
        std::fs::create_dir_all(&self.state_dir)?;
        Ok(Platform {
            kv: Rc::new(SqliteKeyValue::open(
                &self.state_dir.join("sqlite_key_value.db"),
                "default",
            )?),
            sql: Rc::new(SqliteDatabase::open(&self.state_dir.join("sqlite_db.db"))?),
            intake: Rc::new(SqliteDatabase::open(
                &self.state_dir.join(INTAKE_DATABASE_FILE),
            )?),
            http: self.http.unwrap_or_else(|| Rc::new(ReqwestClient::new())),
            clock: self.clock.unwrap_or_else(|| Rc::new(SystemClock)),
            vars: Rc::new(self.vars),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_get_set_delete_and_prefix_listing() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKeyValue::open(&dir.path().join("kv.db"), "default").unwrap();
        assert_eq!(kv.get("a").unwrap(), None);
        kv.set("lease:a", b"1").unwrap();
        kv.set("lease:b", b"2").unwrap();
        kv.set("other", b"3").unwrap();
        assert_eq!(kv.get("lease:a").unwrap().as_deref(), Some(&b"1"[..]));
        let mut keys = kv.keys_with_prefix("lease:").unwrap();
        keys.sort();
        assert_eq!(keys, vec!["lease:a", "lease:b"]);
        kv.delete("lease:a").unwrap();
        kv.delete("never-there").unwrap();
        assert_eq!(kv.get("lease:a").unwrap(), None);
    }

    #[test]
    fn kv_stores_are_separated_by_label() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let a = SqliteKeyValue::open(&path, "default").unwrap();
        let b = SqliteKeyValue::open(&path, "other").unwrap();
        a.set("k", b"a").unwrap();
        assert_eq!(b.get("k").unwrap(), None);
    }

    #[test]
    fn increment_counts_as_spin_does_and_refuses_non_counters() {
        let dir = tempfile::tempdir().unwrap();
        let kv = SqliteKeyValue::open(&dir.path().join("kv.db"), "default").unwrap();
        assert_eq!(kv.increment("c", 1).unwrap(), 1);
        assert_eq!(kv.increment("c", 5).unwrap(), 6);
        assert_eq!(kv.get("c").unwrap(), Some(6i64.to_le_bytes().to_vec()));
        kv.set("text", b"hello").unwrap();
        assert!(kv.increment("text", 1).is_err());
    }

    #[test]
    fn increment_is_atomic_across_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        SqliteKeyValue::open(&path, "default").unwrap();
        let results: Vec<i64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..50)
                .map(|_| {
                    let path = path.clone();
                    s.spawn(move || {
                        SqliteKeyValue::open(&path, "default")
                            .unwrap()
                            .increment("n", 1)
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = results;
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn sql_round_trips_every_value_type() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDatabase::open(&dir.path().join("db.db")).unwrap();
        db.execute(
            "CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)",
            &[],
        )
        .unwrap();
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5)",
            &[
                Value::Integer(1),
                Value::Real(1.5),
                "x".into(),
                Value::Blob(vec![0, 1]),
                Value::Null,
            ],
        )
        .unwrap();
        let rows = db.execute("SELECT * FROM t", &[]).unwrap();
        assert_eq!(rows.columns, vec!["i", "r", "s", "b", "n"]);
        assert_eq!(
            rows.rows[0],
            vec![
                Value::Integer(1),
                Value::Real(1.5),
                Value::Text("x".into()),
                Value::Blob(vec![0, 1]),
                Value::Null
            ]
        );
        let returned = db
            .execute("UPDATE t SET i = i + 1 RETURNING i", &[])
            .unwrap();
        assert_eq!(returned.first().unwrap().i64("i").unwrap(), 2);
    }

    /// A one-connection server: sends `head` and `first`, waits until the test says so (or 10 s), then
    /// sends `rest` and closes.
    fn stepped_server(
        head: &'static str,
        first: &'static [u8],
        rest: &'static [u8],
    ) -> (String, std::sync::mpsc::Sender<()>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/media.mp3", listener.local_addr().unwrap());
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(first).unwrap();
            stream.flush().unwrap();
            if released.recv_timeout(Duration::from_secs(10)).is_ok() {
                let _ = stream.write_all(rest);
            }
        });
        (url, release)
    }

    #[tokio::test]
    async fn streamed_bodies_arrive_while_the_server_is_still_sending() {
        let (url, release) = stepped_server(
            "HTTP/1.1 200 OK\r\ncontent-type: audio/mpeg\r\ncontent-length: 8\r\n\r\n",
            b"first",
            b"end",
        );
        let mut response = ReqwestClient::new()
            .send_streaming(HttpRequest::new(Method::Get, url))
            .await
            .unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.header("Content-Type"), Some("audio/mpeg"));
        // The server sends the rest only after this chunk was read: a client that waited for the whole
        // body would see nothing for 10 s and then a cut-off body.
        assert_eq!(response.next_chunk().await.unwrap().unwrap(), b"first");
        release.send(()).unwrap();
        let mut rest = Vec::new();
        while let Some(chunk) = response.next_chunk().await.unwrap() {
            rest.extend(chunk);
        }
        assert_eq!(rest, b"end");
    }

    #[tokio::test]
    async fn a_streamed_body_cut_short_ends_in_an_error() {
        let (url, release) = stepped_server(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            b"abc",
            b"",
        );
        let mut response = ReqwestClient::new()
            .send_streaming(HttpRequest::new(Method::Get, url))
            .await
            .unwrap();
        assert_eq!(response.next_chunk().await.unwrap().unwrap(), b"abc");
        release.send(()).unwrap();
        assert!(matches!(
            response.next_chunk().await,
            Err(HttpError::Network(_))
        ));
    }

    #[test]
    fn sql_errors_name_the_statement() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDatabase::open(&dir.path().join("db.db")).unwrap();
        let err = db.execute("SELECT * FROM missing", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }
}
