//! `spin:sqlite/sqlite@3.0.0` on Spin's default database, `<state_dir>/sqlite_db.db`: every `open` is its
//! own connection with a 5 s busy timeout, and `execute` runs one prepared statement (like Spin, anything
//! after the first statement of the string is ignored).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};
use wasmtime::component::Resource;

use crate::bindings::platform::spin::sqlite::sqlite::{self as wit, QueryResult, RowResult, Value};
use crate::state::InstanceState;

/// How long a connection waits for a lock held by another connection (rusqlite's and Spin's default).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The one database this host offers: `default`.
const DEFAULT_DATABASE: &str = "default";

/// A `connection` resource.
pub struct Connection {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

/// Runs `f` with the connection locked, on a blocking thread: SQLite may wait up to the busy timeout.
pub(crate) async fn blocking<R, F>(
    conn: &Arc<Mutex<rusqlite::Connection>>,
    f: F,
) -> Result<Result<R>>
where
    R: Send + 'static,
    F: FnOnce(&mut rusqlite::Connection) -> Result<R> + Send + 'static,
{
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    })
    .await
    .context("a SQLite worker thread failed")
}

fn open_database(path: PathBuf) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(&path)
        .with_context(|| format!("opening SQLite database {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn execute(conn: &mut rusqlite::Connection, sql: &str, params: Vec<Value>) -> Result<QueryResult> {
    let mut statement = conn.prepare_cached(sql)?;
    let columns: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let params = params.iter().map(|v| match v {
        Value::Integer(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
        Value::Real(r) => ToSqlOutput::Borrowed(ValueRef::Real(*r)),
        Value::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
    });
    let mut rows = statement.query(rusqlite::params_from_iter(params))?;
    let mut results = Vec::new();
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| {
                Ok(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Integer(i),
                    ValueRef::Real(r) => Value::Real(r),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                })
            })
            .collect::<rusqlite::Result<_>>()?;
        results.push(RowResult { values });
    }
    Ok(QueryResult {
        columns,
        rows: results,
    })
}

fn io_error(e: anyhow::Error) -> wit::Error {
    wit::Error::Io(format!("{e:#}"))
}

impl InstanceState {
    fn connection(
        &self,
        connection: &Resource<Connection>,
    ) -> wasmtime::Result<Arc<Mutex<rusqlite::Connection>>> {
        Ok(self.table.get(connection)?.conn.clone())
    }
}

impl wit::Host for InstanceState {}

impl wit::HostConnection for InstanceState {
    async fn open(
        &mut self,
        database: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, wit::Error>> {
        // Startup checked that every granted database is `default`.
        if !self.component.sqlite_databases.contains(&database) {
            return Ok(Err(wit::Error::AccessDenied));
        }
        let path = self.app.sqlite_path.clone();
        let opened = tokio::task::spawn_blocking(move || open_database(path))
            .await
            .context("a SQLite worker thread failed")?;
        match opened {
            Ok(conn) => Ok(Ok(self.table.push(Connection {
                conn: Arc::new(Mutex::new(conn)),
            })?)),
            Err(e) => Ok(Err(io_error(e))),
        }
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, wit::Error>> {
        let conn = self.connection(&connection)?;
        Ok(blocking(&conn, move |c| execute(c, &statement, parameters))
            .await?
            .map_err(io_error))
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<Connection>,
    ) -> wasmtime::Result<i64> {
        let conn = self.connection(&connection)?;
        blocking(&conn, |c| Ok(c.last_insert_rowid())).await?
    }

    async fn changes(&mut self, connection: Resource<Connection>) -> wasmtime::Result<u64> {
        let conn = self.connection(&connection)?;
        blocking(&conn, |c| Ok(c.changes())).await?
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

/// Checks a component's `sqlite_databases` grants: Spin refuses to start when a label has no database.
pub(crate) fn check_grants(component: &str, databases: &[String]) -> Result<()> {
    for label in databases {
        anyhow::ensure!(
            label == DEFAULT_DATABASE,
            "component `{component}` uses SQLite database `{label}`, but spin-test-host only has `default` (Spin needs a runtime config for other labels)"
        );
    }
    Ok(())
}

/// The path of the default database in `state_dir`.
pub(crate) fn default_database_path(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("sqlite_db.db")
}
