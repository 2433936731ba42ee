//! The parts of Spin's runtime config file (`spin up --runtime-config-file`) the host uses: where each
//! SQLite database (`[sqlite_database.<label>]`) and key-value store (`[key_value_store.<label>]`) lives.
//! Only `type = "spin"` (a local SQLite file) is supported; other top-level tables are ignored.
//!
//! Paths follow Spin 4 (`crates/runtime-config/src/lib.rs`, `crates/sqlite/src/lib.rs`,
//! `crates/key-value-spin/src/lib.rs`): a relative key-value `path` is relative to the runtime config
//! file's directory, but a relative SQLite `path` is relative to the current directory of the process;
//! without `path` the data is in memory; `default` labels the file does not define stay in the state
//! directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The label Spin always defines, for SQLite databases and key-value stores alike.
const DEFAULT_LABEL: &str = "default";

/// Where a database lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// An SQLite file, by absolute path.
    File(PathBuf),
    /// `type = "spin"` without `path`: Spin keeps the data in memory (for SQLite, a new empty database
    /// on every `open`; for key-value, one per store for the app's lifetime).
    Memory,
}

/// Every SQLite database and key-value store label the app may use, `default` included.
#[derive(Debug)]
pub(crate) struct Storage {
    pub(crate) sqlite_databases: HashMap<String, Location>,
    pub(crate) key_value_stores: HashMap<String, Location>,
}

/// One `[<table>.<label>]` entry; what else it holds depends on its `type`.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    type_: String,
    #[serde(flatten)]
    rest: toml::Table,
}

/// A `type = "spin"` SQLite database; Spin refuses keys it does not know here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinDatabase {
    path: Option<PathBuf>,
}

/// A `type = "spin"` key-value store; Spin ignores other keys here.
#[derive(Deserialize)]
struct SpinStore {
    path: Option<PathBuf>,
}

impl Storage {
    /// Reads `runtime_config` (if any) and adds Spin's `default` database and store in `state_dir` where
    /// the file does not define them. Creates the directories the files will be in, as Spin does at
    /// startup.
    pub(crate) fn resolve(runtime_config: Option<&Path>, state_dir: &Path) -> Result<Self> {
        let table = match runtime_config {
            Some(path) => read(path)?,
            None => toml::Table::new(),
        };
        // Spin resolves relative SQLite paths against the directory it was started in, not the file's.
        let current_dir = std::env::current_dir().context("reading the current directory")?;
        let config_dir = runtime_config
            .and_then(Path::parent)
            .map(|dir| absolute(&current_dir, dir))
            .unwrap_or_else(|| current_dir.clone());

        let mut sqlite_databases = HashMap::new();
        for (label, entry) in entries(&table, "sqlite_database")? {
            let location = sqlite_location(entry, &current_dir)
                .with_context(|| format!("[sqlite_database.{label}] in the runtime config"))?;
            sqlite_databases.insert(label, location);
        }
        sqlite_databases
            .entry(DEFAULT_LABEL.to_owned())
            .or_insert_with(|| {
                Location::File(absolute(&current_dir, &state_dir.join("sqlite_db.db")))
            });

        let mut key_value_stores = HashMap::new();
        for (label, entry) in entries(&table, "key_value_store")? {
            let location = key_value_location(entry, &config_dir)
                .with_context(|| format!("[key_value_store.{label}] in the runtime config"))?;
            key_value_stores.insert(label, location);
        }
        key_value_stores
            .entry(DEFAULT_LABEL.to_owned())
            .or_insert_with(|| {
                Location::File(absolute(
                    &current_dir,
                    &state_dir.join("sqlite_key_value.db"),
                ))
            });

        for location in sqlite_databases.values().chain(key_value_stores.values()) {
            if let Location::File(path) = location {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating directory {}", dir.display()))?;
                }
            }
        }
        Ok(Self {
            sqlite_databases,
            key_value_stores,
        })
    }
}

fn read(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading runtime config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing runtime config file {}", path.display()))
}

/// The labelled entries of the top-level table `name`.
fn entries(table: &toml::Table, name: &str) -> Result<HashMap<String, Entry>> {
    match table.get(name) {
        Some(value) => value
            .clone()
            .try_into()
            .with_context(|| format!("[{name}] in the runtime config")),
        None => Ok(HashMap::new()),
    }
}

fn sqlite_location(entry: Entry, current_dir: &Path) -> Result<Location> {
    if entry.type_ != "spin" {
        bail!(
            "type = {:?} is not supported: spin-test-host supports only type = \"spin\" (a local SQLite file); run on real Spin (`scripts/test-spin`) for other types",
            entry.type_
        );
    }
    let config: SpinDatabase = toml::Value::Table(entry.rest).try_into()?;
    Ok(config.path.map_or(Location::Memory, |path| {
        Location::File(absolute(current_dir, &path))
    }))
}

fn key_value_location(entry: Entry, config_dir: &Path) -> Result<Location> {
    if entry.type_ != "spin" {
        bail!(
            "type = {:?} is not supported: spin-test-host supports only type = \"spin\" (a local SQLite file); Redis and other stores run only on real Spin (`scripts/test-spin`)",
            entry.type_
        );
    }
    let config: SpinStore = toml::Value::Table(entry.rest).try_into()?;
    Ok(config.path.map_or(Location::Memory, |path| {
        Location::File(absolute(config_dir, &path))
    }))
}

/// `path` if absolute, else `path` under `base`.
fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// The two kinds of store a component is granted by label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Store {
    /// `key_value_stores`, defined by `[key_value_store.<label>]`.
    KeyValue,
    /// `sqlite_databases`, defined by `[sqlite_database.<label>]`.
    Sqlite,
}

/// Checks a component's grants of `store`: like Spin, refuses to start when a granted label is not
/// defined (only `default` is, unless a runtime config file defines more).
pub(crate) fn check_grants(
    component: &str,
    store: Store,
    granted: &[String],
    defined: &HashMap<String, Location>,
) -> Result<()> {
    let (what, table) = match store {
        Store::KeyValue => ("key-value store", "key_value_store"),
        Store::Sqlite => ("SQLite database", "sqlite_database"),
    };
    for label in granted {
        anyhow::ensure!(
            defined.contains_key(label),
            "component `{component}` uses {what} `{label}`, which is not defined: pass a runtime config file that defines it (`[{table}.{label}]`)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(config: &str) -> Result<(tempfile::TempDir, Storage)> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("runtime-config.toml");
        std::fs::write(&file, config)?;
        let storage = Storage::resolve(Some(&file), &dir.path().join("state"))?;
        Ok((dir, storage))
    }

    #[test]
    fn defaults_stay_in_the_state_dir_when_the_file_defines_other_labels() -> Result<()> {
        let (dir, storage) = resolve(
            "[sqlite_database.intake]\ntype = \"spin\"\npath = \"/data/intake.db\"\n\
             [key_value_store.cache]\ntype = \"spin\"\n",
        )?;
        assert_eq!(
            storage.sqlite_databases["default"],
            Location::File(dir.path().join("state/sqlite_db.db"))
        );
        assert_eq!(
            storage.sqlite_databases["intake"],
            Location::File("/data/intake.db".into())
        );
        assert_eq!(
            storage.key_value_stores["default"],
            Location::File(dir.path().join("state/sqlite_key_value.db"))
        );
        assert_eq!(storage.key_value_stores["cache"], Location::Memory);
        assert_eq!(storage.sqlite_databases.len(), 2);
        Ok(())
    }

    #[test]
    fn a_database_without_path_is_in_memory_and_unknown_keys_are_refused() -> Result<()> {
        let (_dir, storage) = resolve("[sqlite_database.default]\ntype = \"spin\"\n")?;
        assert_eq!(storage.sqlite_databases["default"], Location::Memory);

        let error =
            resolve("[sqlite_database.default]\ntype = \"spin\"\nfile = \"x.db\"\n").unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("[sqlite_database.default]"), "{error}");
        assert!(error.contains("unknown field `file`"), "{error}");
        Ok(())
    }

    #[test]
    fn without_a_file_there_are_only_the_defaults() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let storage = Storage::resolve(None, dir.path())?;
        assert_eq!(
            storage.sqlite_databases.keys().collect::<Vec<_>>(),
            ["default"]
        );
        assert_eq!(
            storage.key_value_stores.keys().collect::<Vec<_>>(),
            ["default"]
        );
        Ok(())
    }
}
