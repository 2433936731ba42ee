//! The SpinKube deployment in `deploy/spinkube/` parses and matches the app: every variable `spin.toml`
//! declares is provided (secrets from Secrets), the shim-less `cron` component is left out and replaced by
//! a CronJob calling `POST /admin/tick` every minute, and the runtime config chooses shared stores.

use std::collections::BTreeSet;

use e2e::workspace_root;
use serde_yaml::Value;

fn documents(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn spin_variables() -> toml::Table {
    let manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(workspace_root().join("spin.toml")).unwrap())
            .unwrap();
    manifest["variables"].as_table().unwrap().clone()
}

#[test]
fn the_spinapp_provides_every_variable_with_secrets_from_secrets() {
    let app = &documents("deploy/spinkube/spinapp.yaml")[0];
    assert_eq!(app["kind"], "SpinApp");
    let spec = &app["spec"];
    assert!(
        spec["replicas"].as_u64().unwrap() > 1,
        "several replicas share the work"
    );
    let declared = spin_variables();
    let provided: Vec<&Value> = spec["variables"].as_sequence().unwrap().iter().collect();
    let names: BTreeSet<&str> = provided
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = declared.keys().map(String::as_str).collect();
    assert_eq!(names, expected);
    for variable in provided {
        let name = variable["name"].as_str().unwrap();
        let entry = &declared[name];
        let secret = entry
            .get("secret")
            .and_then(|s| s.as_bool())
            .unwrap_or(false);
        let required = entry
            .get("required")
            .and_then(|s| s.as_bool())
            .unwrap_or(false);
        let from_secret = !variable["valueFrom"]["secretKeyRef"].is_null();
        if secret || required {
            assert!(from_secret, "{name} must come from a Secret");
        }
    }
}

#[test]
fn the_spinapp_leaves_out_cron_and_checks_health() {
    let spec = &documents("deploy/spinkube/spinapp.yaml")[0]["spec"];
    let components: Vec<&str> = spec["components"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(components, ["webhook", "queue-drain", "phone-sync"]);
    assert_eq!(spec["checks"]["readiness"]["httpGet"]["path"], "/health");
    assert_eq!(spec["checks"]["liveness"]["httpGet"]["path"], "/health");
}

#[test]
fn the_runtime_config_secret_matches_the_spinapp_and_uses_shared_stores() {
    let spec = &documents("deploy/spinkube/spinapp.yaml")[0]["spec"];
    let secret_name = spec["runtimeConfig"]["loadFromSecret"].as_str().unwrap();
    let secrets = documents("deploy/spinkube/secret.example.yaml");
    let runtime = secrets
        .iter()
        .find(|d| d["metadata"]["name"] == secret_name)
        .unwrap_or_else(|| panic!("no Secret named {secret_name}"));
    let config: toml::Table = toml::from_str(
        runtime["stringData"]["runtime-config.toml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    // The Secret carries deploy/runtime-config.spinkube.toml, whose stores `manifest.rs` checks.
    let file: toml::Table = toml::from_str(
        &std::fs::read_to_string(workspace_root().join("deploy/runtime-config.spinkube.toml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(config, file);
    // Every secret key the SpinApp reads exists in the example Secret.
    let variables = secrets
        .iter()
        .find(|d| d["metadata"]["name"] == "openphone-notion-sync")
        .unwrap();
    for v in spec["variables"].as_sequence().unwrap() {
        if let Some(key) = v["valueFrom"]["secretKeyRef"]["key"].as_str() {
            assert!(
                !variables["stringData"][key].is_null(),
                "secret.example.yaml lacks {key}"
            );
        }
    }
}

#[test]
fn a_cronjob_ticks_every_minute_with_the_admin_token() {
    let job = &documents("deploy/spinkube/tick-cronjob.yaml")[0];
    assert_eq!(job["kind"], "CronJob");
    assert_eq!(job["spec"]["schedule"], "* * * * *");
    assert_eq!(job["spec"]["concurrencyPolicy"], "Forbid");
    let container = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.iter().any(|a| a.ends_with("/admin/tick")), "{args:?}");
    assert!(args.contains(&"POST"));
    assert!(args.contains(&"Authorization: Bearer $(ADMIN_TOKEN)"));
    assert_eq!(
        container["env"][0]["valueFrom"]["secretKeyRef"]["key"],
        "admin_token"
    );
}
