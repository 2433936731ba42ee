//! `spin:sqlite/sqlite@3.0.0` on Spin's default database `<state_dir>/sqlite_db.db` and the labels of the
//! runtime config file (`runtime_config::Storage`). Every `open` is its own connection to that label's
//! database with a 5 s busy timeout, and `execute` runs one prepared statement (like Spin, anything after
//! the first statement of the string is ignored).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};
use wasmtime::component::Resource;

use crate::bindings::platform::spin::sqlite::sqlite::{self as wit, QueryResult, RowResult, Value};
use crate::runtime_config::Location;
use crate::state::InstanceState;

/// How long a connection waits for a lock held by another connection (rusqlite's and Spin's default).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A new connection to a label's database, set up the same way whatever the label.
fn open_database(location: &Location) -> Result<rusqlite::Connection> {
    let conn = match location {
        Location::File(path) => rusqlite::Connection::open(path)
            .with_context(|| format!("opening SQLite database {}", path.display()))?,
        Location::Memory => rusqlite::Connection::open_in_memory()
            .context("opening an in-memory SQLite database")?,
    };
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
        if !self.component.sqlite_databases.contains(&database) {
            return Ok(Err(wit::Error::AccessDenied));
        }
        let location = self
            .app
            .sqlite_databases
            .get(&database)
            .with_context(|| {
                format!(
                    "SQLite database `{database}` has no location, though startup checks grants"
                )
            })?
            .clone();
        let opened = tokio::task::spawn_blocking(move || open_database(&location))
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
