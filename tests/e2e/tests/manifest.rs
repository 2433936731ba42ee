//! `spin.toml` and the runtime configs agree with the code and with the HTTP contract: a wrong variable,
//! a missing grant or a route wired to the wrong component fails here before any deployment does.

use std::collections::BTreeSet;

use common::configuration::VARIABLES;
use e2e::{workspace_root, COMPONENTS};
use toml::Value;

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    toml::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

fn manifest() -> Value {
    load("spin.toml")
}

fn component<'a>(manifest: &'a Value, id: &str) -> &'a Value {
    &manifest["component"][id]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// `{{ name }}` → `name`.
fn template_variable(s: &str) -> Option<&str> {
    s.trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")
        .map(str::trim)
}

#[test]
fn application_variables_match_the_configuration_code() {
    let manifest = manifest();
    let declared = manifest["variables"].as_table().unwrap();
    let in_code: BTreeSet<&str> = VARIABLES.iter().map(|v| v.name).collect();
    let in_manifest: BTreeSet<&str> = declared.keys().map(String::as_str).collect();
    assert_eq!(
        in_code, in_manifest,
        "spin.toml [variables] and configuration::VARIABLES differ"
    );
    for spec in VARIABLES {
        let entry = &declared[spec.name];
        let required = entry
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let secret = entry
            .get("secret")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let default = entry.get("default").and_then(Value::as_str);
        assert_eq!(required, spec.default.is_none(), "{}: required", spec.name);
        assert_eq!(default, spec.default, "{}: default", spec.name);
        assert_eq!(secret, spec.secret, "{}: secret", spec.name);
    }
}

#[test]
fn components_build_the_files_they_load_and_are_granted_the_stores_they_use() {
    let manifest = manifest();
    let ids: BTreeSet<&str> = manifest["component"]
        .as_table()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(ids, COMPONENTS.iter().map(|(id, _)| *id).collect());
    for (id, file) in COMPONENTS {
        let c = component(&manifest, id);
        assert_eq!(
            c["source"].as_str().unwrap(),
            format!("target/wasm32-wasip2/release/{file}"),
            "{id}: source"
        );
        let command = c["build"]["command"].as_str().unwrap();
        assert!(
            command.contains("--target wasm32-wasip2")
                && command.contains("--release")
                && command.ends_with(&format!("-p {id}")),
            "{id}: build command {command:?}"
        );
        // The webhook never opens the key-value store: it is granted none.
        let stores = c.get("key_value_stores").map(strings).unwrap_or_default();
        let expected: &[&str] = if *id == "webhook" { &[] } else { &["default"] };
        assert_eq!(stores, expected, "{id}");
        assert_eq!(
            strings(&c["sqlite_databases"]),
            vec!["default", "intake"],
            "{id}"
        );
    }
}

#[test]
fn component_variables_are_templates_over_application_variables() {
    let manifest = manifest();
    let declared = manifest["variables"].as_table().unwrap();
    for (id, _) in COMPONENTS {
        let vars = component(&manifest, id)["variables"].as_table().unwrap();
        for (name, value) in vars {
            let referenced = template_variable(value.as_str().unwrap())
                .unwrap_or_else(|| panic!("{id}.{name} is not a template"));
            assert!(
                declared.contains_key(referenced),
                "{id}.{name} refers to unknown {referenced}"
            );
        }
        // Every component reads its log level and the admin token or webhook secret it authenticates with.
        assert!(vars.contains_key("log_level"), "{id} cannot read log_level");
    }
}

#[test]
fn outbound_hosts_come_from_base_url_variables_and_known_components() {
    let manifest = manifest();
    let declared = manifest["variables"].as_table().unwrap();
    let ids: BTreeSet<&str> = COMPONENTS.iter().map(|(id, _)| *id).collect();
    for (id, _) in COMPONENTS {
        for host in strings(&component(&manifest, id)["allowed_outbound_hosts"]) {
            if let Some(var) = template_variable(&host) {
                let default = declared[var].get("default").and_then(Value::as_str);
                let is_base = var.ends_with("_base") || var == "s3_endpoint";
                assert!(is_base, "{id}: {var} is not a base-URL variable");
                if let Some(default) = default {
                    assert!(
                        default.starts_with("https://"),
                        "{id}: {var} default {default:?}"
                    );
                }
            } else {
                let target = host
                    .strip_prefix("http://")
                    .and_then(|h| h.strip_suffix(".spin.internal"))
                    .unwrap_or_else(|| {
                        panic!("{id}: {host:?} is neither a template nor a chained component")
                    });
                assert!(
                    ids.contains(target),
                    "{id} chains to unknown component {target}"
                );
            }
        }
    }
    // The cron component cannot use *.spin.internal (Spin only offers chaining to HTTP components).
    let cron_hosts = strings(&component(&manifest, "cron")["allowed_outbound_hosts"]);
    assert!(
        cron_hosts.iter().all(|h| !h.contains("spin.internal")),
        "{cron_hosts:?}"
    );
}

#[test]
fn routes_follow_the_http_contract() {
    let manifest = manifest();
    let triggers = manifest["trigger"]["http"].as_array().unwrap();
    let public: Vec<(String, String)> = triggers
        .iter()
        .filter_map(|t| {
            Some((
                t["route"].as_str()?.to_owned(),
                t["component"].as_str()?.to_owned(),
            ))
        })
        .collect();
    for (route, component) in [
        ("/webhooks/openphone", "webhook"),
        ("/health", "webhook"),
        ("/stats", "queue-drain"),
        ("/status", "queue-drain"),
        ("/admin/...", "queue-drain"),
        ("/admin/sync", "phone-sync"),
    ] {
        assert!(
            public.contains(&(route.to_owned(), component.to_owned())),
            "{route} is not routed to {component}: {public:?}"
        );
    }
    let private: BTreeSet<&str> = triggers
        .iter()
        .filter(|t| t["route"].get("private").and_then(Value::as_bool) == Some(true))
        .filter_map(|t| t["component"].as_str())
        .collect();
    assert_eq!(private, BTreeSet::from(["queue-drain", "phone-sync"]));
}

#[test]
fn cron_ticks_every_minute_with_a_seconds_field() {
    let manifest = manifest();
    let cron = manifest["trigger"]["cron"].as_array().unwrap();
    assert_eq!(cron.len(), 1);
    assert_eq!(cron[0]["component"].as_str(), Some("cron"));
    let expression = cron[0]["cron_expression"].as_str().unwrap();
    let fields: Vec<&str> = expression.split_whitespace().collect();
    assert_eq!(
        fields.len(),
        6,
        "the cron plugin requires a seconds field: {expression}"
    );
    assert_eq!(
        fields,
        ["0", "*", "*", "*", "*", "*"],
        "once a minute, at second 0"
    );
}

#[test]
fn the_app_runs_without_the_cron_component() {
    // `spin up -c webhook -c queue-drain -c phone-sync` needs every chained component selected too.
    let manifest = manifest();
    let selected = ["webhook", "queue-drain", "phone-sync"];
    for id in selected {
        for host in strings(&component(&manifest, id)["allowed_outbound_hosts"]) {
            if let Some(target) = host
                .strip_prefix("http://")
                .and_then(|h| h.strip_suffix(".spin.internal"))
            {
                assert!(
                    selected.contains(&target),
                    "{id} chains to {target}, which -c would drop"
                );
            }
        }
    }
}

#[test]
fn runtime_configs_choose_the_stores() {
    let local = load("runtime-config.toml");
    assert_eq!(
        local["key_value_store"]["default"]["type"].as_str(),
        Some("spin")
    );
    for label in ["default", "intake"] {
        assert_eq!(
            local["sqlite_database"][label]["type"].as_str(),
            Some("spin"),
            "{label}"
        );
    }
    assert_ne!(
        local["sqlite_database"]["default"]["path"].as_str(),
        local["sqlite_database"]["intake"]["path"].as_str(),
        "locally the intake has a file of its own"
    );
    let kube = load("deploy/runtime-config.spinkube.toml");
    assert_eq!(
        kube["key_value_store"]["default"]["type"].as_str(),
        Some("redis")
    );
    assert!(kube["key_value_store"]["default"]["url"]
        .as_str()
        .unwrap()
        .starts_with("redis://"));
    for label in ["default", "intake"] {
        let database = &kube["sqlite_database"][label];
        assert_eq!(database["type"].as_str(), Some("libsql"), "{label}");
        assert!(
            database["url"].as_str().unwrap().starts_with("https://"),
            "{label}"
        );
        assert!(database.get("token").is_some(), "{label}");
    }
}

/// Spin refuses to start when a component uses a database or store that the runtime config does not
/// define (`default` excepted): every configuration the project ships defines all of them.
#[test]
fn every_runtime_config_defines_every_store_a_component_uses() {
    let manifest = load("spin.toml");
    // The SpinKube Secret's copy is checked equal to its file by `deploy.rs`.
    let configs = [
        ("runtime-config.toml", load("runtime-config.toml")),
        (
            "deploy/runtime-config.spinkube.toml",
            load("deploy/runtime-config.spinkube.toml"),
        ),
    ];
    for (id, _) in COMPONENTS {
        let c = component(&manifest, id);
        for (kind, grants) in [
            ("sqlite_database", c.get("sqlite_databases")),
            ("key_value_store", c.get("key_value_stores")),
        ] {
            for label in grants.map(strings).unwrap_or_default() {
                if label == "default" {
                    continue;
                }
                for (name, config) in &configs {
                    assert!(
                        config.get(kind).and_then(|k| k.get(&label)).is_some(),
                        "{name} lacks [{kind}.{label}], which component {id} uses"
                    );
                }
            }
        }
    }
}
