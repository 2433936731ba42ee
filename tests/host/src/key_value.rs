//! `wasi:keyvalue/store` and `wasi:keyvalue/atomics` on Spin's SQLite stores: the default store's file
//! `<state_dir>/sqlite_key_value.db` and the labels of the runtime config file, table
//! `spin_key_value(store, key, value)` with the label as `store`, with Spin's semantics (counters are
//! 8-byte little-endian integers; compare-and-swap without a prior read, or of an absent key, is an
//! upsert).

use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context, Result};
use rusqlite::{OptionalExtension, TransactionBehavior};
use wasmtime::component::Resource;

use crate::app::App;
use crate::bindings::platform::wasi::keyvalue::{atomics, store};
use crate::runtime_config::Location;
use crate::sqlite::{blocking, BUSY_TIMEOUT};
use crate::state::InstanceState;

/// The database of one store label, shared by the host's instances. One connection per label, as in
/// Spin; other connections to the same file (another label, another host) are kept out of an
/// `increment` by its immediate transaction.
pub(crate) struct KeyValueStore {
    conn: Arc<Mutex<rusqlite::Connection>>,
}

/// A `bucket` resource: an opened store.
pub struct Bucket {
    store: String,
}

/// A `cas` resource: a key and, once `current` was called, the value it read.
pub struct Cas {
    store: String,
    key: String,
    read: Option<Vec<u8>>,
}

impl KeyValueStore {
    /// Opens (creating if needed) the database and its table.
    pub(crate) fn open(location: &Location) -> Result<Self> {
        let conn = match location {
            Location::File(path) => rusqlite::Connection::open(path)
                .with_context(|| format!("opening key-value database {}", path.display()))?,
            Location::Memory => rusqlite::Connection::open_in_memory()
                .context("opening an in-memory key-value database")?,
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
        )
        .context("creating the spin_key_value table")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` on the connection off the async runtime; a failure becomes the WIT `other` error.
    async fn run<R, F>(&self, f: F) -> wasmtime::Result<Result<R, store::Error>>
    where
        R: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<R> + Send + 'static,
    {
        Ok(blocking(&self.conn, f)
            .await?
            .map_err(|e| store::Error::Other(format!("{e:#}"))))
    }
}

fn upsert(conn: &rusqlite::Connection, store: &str, key: &str, value: &[u8]) -> Result<()> {
    conn.execute(
        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
        rusqlite::params![store, key, value],
    )?;
    Ok(())
}

fn select(conn: &rusqlite::Connection, store: &str, key: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
            rusqlite::params![store, key],
            |row| row.get(0),
        )
        .optional()?)
}

fn increment(conn: &mut rusqlite::Connection, store: &str, key: &str, delta: i64) -> Result<i64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = match select(&tx, store, key)? {
        None => 0,
        Some(bytes) => {
            let le: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                // Spin panics here, and its store then fails every later call until restart.
                anyhow!(
                    "key {key:?} holds {} bytes, not an 8-byte counter: increment a key only if it is never set",
                    bytes.len()
                )
            })?;
            i64::from_le_bytes(le)
        }
    };
    let new = current
        .checked_add(delta)
        .with_context(|| format!("incrementing {key:?} overflows"))?;
    upsert(&tx, store, key, &new.to_le_bytes())?;
    tx.commit()?;
    Ok(new)
}

impl InstanceState {
    fn bucket_store(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.store.clone())
    }
}

impl App {
    /// The database of an opened store's label.
    fn kv(&self, label: &str) -> wasmtime::Result<&KeyValueStore> {
        self.key_value_stores.get(label).with_context(|| {
            format!("key-value store `{label}` has no database, though startup checks grants")
        })
    }
}

impl store::Host for InstanceState {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        if !self.component.key_value_stores.contains(&identifier) {
            return Ok(Err(store::Error::AccessDenied));
        }
        Ok(Ok(self.table.push(Bucket { store: identifier })?))
    }
}

impl store::HostBucket for InstanceState {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let store = self.bucket_store(&bucket)?;
        self.app
            .kv(&store)?
            .run(move |c| select(c, &store, &key))
            .await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.bucket_store(&bucket)?;
        self.app
            .kv(&store)?
            .run(move |c| upsert(c, &store, &key, &value))
            .await
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.bucket_store(&bucket)?;
        self.app
            .kv(&store)?
            .run(move |c| {
                c.execute(
                    "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                    rusqlite::params![store, key],
                )?;
                Ok(())
            })
            .await
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let store = self.bucket_store(&bucket)?;
        self.app
            .kv(&store)?
            .run(move |c| Ok(select(c, &store, &key)?.is_some()))
            .await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        // Spin returns every key in one page and has no cursors.
        if cursor.is_some() {
            return Ok(Err(store::Error::Other(
                "list-keys: cursors are not supported".into(),
            )));
        }
        let store = self.bucket_store(&bucket)?;
        self.app
            .kv(&store)?
            .run(move |c| {
                let mut statement = c.prepare("SELECT key FROM spin_key_value WHERE store = ?1")?;
                let keys = statement
                    .query_map([store], |row| row.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok(store::KeyResponse { keys, cursor: None })
            })
            .await
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for InstanceState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, store::Error>> {
        let store = self.bucket_store(&bucket)?;
        self.app
            .kv(&store)?
            .run(move |c| increment(c, &store, &key, delta))
            .await
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas { store, key, read } = self.table.delete(cas)?;
        let (s, k) = (store.clone(), key.clone());
        let swapped = self
            .app
            .kv(&store)?
            .run(move |c| match read {
                Some(old) => Ok(c.execute(
                    "UPDATE spin_key_value SET value = ?1 WHERE store = ?2 AND key = ?3 AND value = ?4",
                    rusqlite::params![value, s, k, old],
                )? == 1),
                None => upsert(c, &s, &k, &value).map(|()| true),
            })
            .await?;
        match swapped {
            Ok(true) => Ok(Ok(())),
            Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
            // Like Spin: a fresh handle that has already read the latest value, ready for a retry.
            Ok(false) => {
                let (s, k) = (store.clone(), key.clone());
                match self.app.kv(&store)?.run(move |c| select(c, &s, &k)).await? {
                    Ok(read) => {
                        let retry = self.table.push(Cas { store, key, read })?;
                        Ok(Err(atomics::CasError::CasFailed(retry)))
                    }
                    Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
                }
            }
        }
    }
}

impl atomics::HostCas for InstanceState {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, store::Error>> {
        let store = self.bucket_store(&bucket)?;
        Ok(Ok(self.table.push(Cas {
            store,
            key,
            read: None,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let entry = self.table.get(&cas)?;
        let (store, key) = (entry.store.clone(), entry.key.clone());
        let value = self
            .app
            .kv(&store)?
            .run(move |c| select(c, &store, &key))
            .await?;
        if let Ok(read) = &value {
            self.table.get_mut(&cas)?.read = read.clone();
        }
        Ok(value)
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Separate connections to one file, as separate `spin up` processes have: only the immediate
    /// transaction keeps read-modify-write increments from losing updates. The connections wait longer
    /// for the lock than Spin's 5 s: on a machine busy with other tests, 1,200 serialized writes can
    /// queue past 5 s, which says nothing about atomicity.
    #[test]
    fn increments_from_many_connections_are_atomic() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kv.db");
        KeyValueStore::open(&Location::File(path.clone()))?;
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || -> Result<Vec<i64>> {
                    let mut conn = rusqlite::Connection::open(&path)?;
                    conn.busy_timeout(std::time::Duration::from_secs(120))?;
                    (0..200)
                        .map(|_| increment(&mut conn, "default", "n", 1))
                        .collect()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for thread in threads {
            seen.extend(thread.join().expect("thread")?);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=1200).collect::<Vec<i64>>());
        Ok(())
    }

    #[test]
    fn a_value_of_another_length_is_not_a_counter() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let store = KeyValueStore::open(&Location::File(dir.path().join("kv.db")))?;
        let mut conn = store.conn.lock().expect("lock");
        upsert(&conn, "default", "text", b"hello")?;
        let err = increment(&mut conn, "default", "text", 1).unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
        assert_eq!(increment(&mut conn, "default", "n", -3)?, -3);
        assert_eq!(
            select(&conn, "default", "n")?,
            Some((-3i64).to_le_bytes().to_vec())
        );
        Ok(())
    }
}
