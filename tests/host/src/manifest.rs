//! `spin.toml` (manifest version 2): the parts Spin uses to run an app with HTTP and cron triggers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

/// An application as its manifest describes it, with paths made absolute.
#[derive(Debug)]
pub(crate) struct Manifest {
    pub(crate) variables: BTreeMap<String, VariableDecl>,
    pub(crate) http_triggers: Vec<HttpTrigger>,
    pub(crate) cron_triggers: Vec<CronTrigger>,
    pub(crate) components: BTreeMap<String, ComponentDecl>,
}

/// An application variable: `{ default = "..." }` or `{ required = true }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VariableDecl {
    pub(crate) default: Option<String>,
    #[serde(default)]
    pub(crate) required: bool,
    // Spin carries `secret` to hosts but does not act on it either.
    #[serde(default, rename = "secret")]
    _secret: bool,
}

/// One `[[trigger.http]]`.
#[derive(Debug)]
pub(crate) struct HttpTrigger {
    /// `None` for `route = { private = true }`: reachable only through `<id>.spin.internal`.
    pub(crate) route: Option<String>,
    pub(crate) component: String,
}

/// One `[[trigger.cron]]`.
#[derive(Debug)]
pub(crate) struct CronTrigger {
    pub(crate) component: String,
}

/// One `[component.<id>]`.
#[derive(Debug, Deserialize)]
pub(crate) struct ComponentDecl {
    pub(crate) source: PathBuf,
    #[serde(default)]
    pub(crate) allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub(crate) key_value_stores: Vec<String>,
    #[serde(default)]
    pub(crate) sqlite_databases: Vec<String>,
    #[serde(default)]
    pub(crate) variables: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) environment: BTreeMap<String, String>,
    /// Rejected when present: this host mounts no files, and silently running without them would differ
    /// from Spin.
    files: Option<toml::Value>,
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: u32,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    component: BTreeMap<String, ComponentDecl>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: RawRoute,
    component: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private { private: bool },
}

#[derive(Deserialize)]
struct RawCronTrigger {
    component: String,
    #[serde(rename = "cron_expression")]
    _cron_expression: String,
}

impl Manifest {
    /// Reads and checks the manifest at `path`; relative component sources are relative to its directory.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading manifest {}", path.display()))?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, &dir).with_context(|| format!("in manifest {}", path.display()))
    }

    fn parse(text: &str, dir: &Path) -> Result<Self> {
        let raw: RawManifest = toml::from_str(text).context("parsing TOML")?;
        ensure!(
            raw.spin_manifest_version == 2,
            "spin_manifest_version {} is not supported (only 2)",
            raw.spin_manifest_version
        );
        for (name, decl) in &raw.variables {
            ensure!(
                crate::variables::is_valid_name(name),
                "invalid application variable name `{name}`"
            );
            ensure!(
                !(decl.required && decl.default.is_some()),
                "variable `{name}` cannot be both required and have a default"
            );
        }

        let mut components = raw.component;
        for (id, component) in &mut components {
            ensure!(
                component.files.is_none(),
                "component `{id}`: `files` is not supported by spin-test-host"
            );
            component.source = dir.join(&component.source);
        }

        let mut http_triggers = Vec::new();
        let mut cron_triggers = Vec::new();
        for (kind, entries) in raw.trigger {
            for entry in entries {
                match kind.as_str() {
                    "http" => {
                        let t: RawHttpTrigger = entry.try_into().context("a [[trigger.http]]")?;
                        let route = match t.route {
                            RawRoute::Path(route) => Some(route),
                            RawRoute::Private { private: true } => None,
                            RawRoute::Private { private: false } => bail!(
                                "route must be a string pattern or '{{ private = true }}': `{}` has {{ private = false }}",
                                t.component
                            ),
                        };
                        http_triggers.push(HttpTrigger {
                            route,
                            component: t.component,
                        });
                    }
                    "cron" => {
                        let t: RawCronTrigger = entry.try_into().context("a [[trigger.cron]]")?;
                        cron_triggers.push(CronTrigger {
                            component: t.component,
                        });
                    }
                    other => bail!("trigger type `{other}` is not supported by spin-test-host"),
                }
            }
        }
        for component in http_triggers
            .iter()
            .map(|t| &t.component)
            .chain(cron_triggers.iter().map(|t| &t.component))
        {
            ensure!(
                components.contains_key(component),
                "a trigger refers to component `{component}`, which is not defined"
            );
        }

        Ok(Self {
            variables: raw.variables,
            http_triggers,
            cron_triggers,
            components,
        })
    }

    /// Keeps only `selected` components and their triggers, like `spin up -c`: a selected component may
    /// not chain to one that is not selected, nor use `*.spin.internal`.
    pub(crate) fn select(&mut self, selected: &[String]) -> Result<()> {
        for id in selected {
            ensure!(
                self.components.contains_key(id),
                "selected component `{id}` is not in the manifest"
            );
        }
        self.components.retain(|id, _| selected.contains(id));
        self.http_triggers
            .retain(|t| selected.contains(&t.component));
        self.cron_triggers
            .retain(|t| selected.contains(&t.component));
        for (id, component) in &self.components {
            for host in &component.allowed_outbound_hosts {
                let Some(target) = chaining_target(host) else {
                    continue;
                };
                ensure!(
                    target != "*",
                    "selected component `{id}` cannot use wildcard service chaining ({host}) when only some components are selected"
                );
                ensure!(
                    selected.iter().any(|s| s == target),
                    "selected component `{id}` cannot use service chaining to unselected component `{target}` ({host})"
                );
            }
        }
        Ok(())
    }
}

/// `queue-drain` for `http://queue-drain.spin.internal`, `*` for `http://*.spin.internal`.
fn chaining_target(allowed_host: &str) -> Option<&str> {
    let (_, rest) = allowed_host.split_once("://")?;
    let host = rest.split([':', '/']).next()?;
    host.strip_suffix(crate::SERVICE_CHAINING_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "t"
        [variables]
        base = { default = "http://localhost:1" }
        key = { required = true, secret = true }
        [[trigger.http]]
        route = "/a/..."
        component = "a"
        [[trigger.http]]
        route = { private = true }
        component = "b"
        [[trigger.cron]]
        component = "c"
        cron_expression = "0 * * * * *"
        [component.a]
        source = "a.wasm"
        allowed_outbound_hosts = ["http://b.spin.internal"]
        [component.a.variables]
        key = "{{ key }}"
        [component.b]
        source = "/abs/b.wasm"
        [component.c]
        source = "c.wasm"
    "#;

    #[test]
    fn parses_triggers_components_and_variables() -> Result<()> {
        let m = Manifest::parse(APP, Path::new("/app"))?;
        assert_eq!(m.http_triggers.len(), 2);
        assert_eq!(m.http_triggers[0].route.as_deref(), Some("/a/..."));
        assert_eq!(m.http_triggers[1].route, None);
        assert_eq!(m.cron_triggers[0].component, "c");
        assert_eq!(m.components["a"].source, Path::new("/app/a.wasm"));
        assert_eq!(m.components["b"].source, Path::new("/abs/b.wasm"));
        assert!(m.variables["key"].required);
        assert_eq!(
            m.variables["base"].default.as_deref(),
            Some("http://localhost:1")
        );
        Ok(())
    }

    #[test]
    fn selection_drops_other_triggers_and_checks_chaining() -> Result<()> {
        let mut m = Manifest::parse(APP, Path::new("/app"))?;
        m.select(&["b".into(), "a".into()])?;
        assert!(m.cron_triggers.is_empty());
        assert_eq!(m.components.len(), 2);

        let mut m = Manifest::parse(APP, Path::new("/app"))?;
        let err = m.select(&["a".into()]).unwrap_err();
        assert!(
            format!("{err:#}").contains("unselected component `b`"),
            "{err:#}"
        );

        let mut m = Manifest::parse(APP, Path::new("/app"))?;
        assert!(m.select(&["nope".into()]).is_err());
        Ok(())
    }

    #[test]
    fn rejects_what_spin_rejects() {
        let bad = [
            APP.replace(
                "key = { required = true, secret = true }",
                "key = { required = true, default = \"x\" }",
            ),
            APP.replace("route = { private = true }", "route = { private = false }"),
            APP.replace("component = \"c\"", "component = \"missing\""),
            APP.replace("spin_manifest_version = 2", "spin_manifest_version = 1"),
            APP.replace("[[trigger.cron]]", "[[trigger.redis]]"),
        ];
        for text in bad {
            assert!(Manifest::parse(&text, Path::new("/app")).is_err(), "{text}");
        }
    }
}
