//! Typed configuration from the application variables of `spin.toml`, loaded once per request.
//!
//! The edge makes one [`Settings`] per request (or cron tick), which reads each variable from the host at
//! most once, and passes it down; a handler loads the sections it needs from it ([`Settings::load`]) with
//! one [`Loader`], whose [`Loader::finish`] fails with a single [`ConfigError`] naming every missing or
//! invalid variable, so a deployment is fixed in one round. This module is the one place that knows the
//! variables' names.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use base64::Engine;

use crate::domain::E164;
use crate::platform::Variables;

/// One application variable of `spin.toml` (the contract of the README's configuration table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariableSpec {
    /// Name, as in `spin.toml` (`SPIN_VARIABLE_<NAME>` in the environment).
    pub name: &'static str,
    /// Default; `None` means required.
    pub default: Option<&'static str>,
    /// Whether the value is a secret (never logged or shown).
    pub secret: bool,
}

const fn required(name: &'static str, secret: bool) -> VariableSpec {
    VariableSpec {
        name,
        default: None,
        secret,
    }
}

const fn optional(name: &'static str, default: &'static str) -> VariableSpec {
    VariableSpec {
        name,
        default: Some(default),
        secret: false,
    }
}

const fn optional_secret(name: &'static str) -> VariableSpec {
    VariableSpec {
        name,
        default: Some(""),
        secret: true,
    }
}

/// Every application variable. `spin.toml` and `deploy/` are checked against this list by the tests.
pub const VARIABLES: &[VariableSpec] = &[
    required("openphone_api_key", true),
    optional("openphone_api_base", "https://api.openphone.com"),
    // Optional since `POST /admin/setup` creates the webhooks and stores their keys itself.
    optional_secret("openphone_webhook_secret"),
    optional("openphone_media_base", "https://storage.googleapis.com"),
    required("notion_api_key", true),
    optional("notion_api_base", "https://api.notion.com"),
    required("notion_calls_database_id", false),
    required("notion_messages_database_id", false),
    optional("notion_canvas_database_id", ""),
    optional("self_phone_numbers", ""),
    optional("canvas_create_unknown", "false"),
    required("s3_endpoint", false),
    required("r2_bucket", false),
    required("r2_access_key_id", true),
    required("r2_secret_access_key", true),
    optional("recordings_public_base_url", ""),
    optional("recordings_retention_days", "0"),
    required("admin_token", true),
    optional("sync_interval_minutes", "360"),
    optional("queue_max_age_hours", "72"),
    optional("drain_concurrency", "4"),
    optional("log_level", "info"),
];

/// A secret value: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that sends or compares it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Configuration that is missing or invalid, all of it at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Required variables with no value.
    pub missing: Vec<&'static str>,
    /// Variables whose value cannot be used, with the reason (never the value of a secret).
    pub invalid: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "missing required variables: {} (set them with `spin up --variable NAME=VALUE` or \
                 SPIN_VARIABLE_<NAME>)",
                self.missing.join(", ")
            ));
        }
        if !self.invalid.is_empty() {
            parts.push(format!("invalid variables: {}", self.invalid.join("; ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Reads variables and collects every problem until [`Loader::finish`].
pub struct Loader<'a> {
    vars: &'a dyn Variables,
    missing: Vec<&'static str>,
    invalid: Vec<String>,
}

impl<'a> Loader<'a> {
    /// A loader over `vars`.
    pub fn new(vars: &'a dyn Variables) -> Self {
        Self {
            vars,
            missing: Vec::new(),
            invalid: Vec::new(),
        }
    }

    fn spec(name: &'static str) -> &'static VariableSpec {
        VARIABLES
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("{name} is not declared in configuration::VARIABLES"))
    }

    /// The trimmed value, or the declared default; empty counts as unset. Records a missing required one.
    pub fn text(&mut self, name: &'static str) -> String {
        let spec = Self::spec(name);
        let value = match self.vars.get(name) {
            Ok(v) => v.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
            Err(e) => {
                self.invalid.push(format!("{name}: {e}"));
                return String::new();
            }
        };
        match (value, spec.default) {
            (Some(v), _) => v,
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                self.missing.push(name);
                String::new()
            }
        }
    }

    /// Like [`Loader::text`], `None` when empty.
    pub fn optional_text(&mut self, name: &'static str) -> Option<String> {
        Some(self.text(name)).filter(|v| !v.is_empty())
    }

    /// A secret.
    pub fn secret(&mut self, name: &'static str) -> Secret {
        Secret(self.text(name))
    }

    /// A base URL: `http(s)://host[:port]`, trailing `/` removed.
    pub fn base_url(&mut self, name: &'static str) -> String {
        let value = self.text(name);
        let value = value.trim_end_matches('/').to_owned();
        let scheme_ok = value.starts_with("https://") || value.starts_with("http://");
        if !value.is_empty() && !scheme_ok {
            self.invalid
                .push(format!("{name}: must start with https:// or http://"));
        }
        value
    }

    /// A number.
    pub fn number<T: std::str::FromStr + Default>(&mut self, name: &'static str) -> T {
        let raw = self.text(name);
        match raw.parse() {
            Ok(v) => v,
            Err(_) => {
                if !raw.is_empty() {
                    self.invalid
                        .push(format!("{name}: {raw:?} is not a number"));
                }
                T::default()
            }
        }
    }

    /// A yes/no switch: `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case).
    pub fn flag(&mut self, name: &'static str) -> bool {
        let raw = self.text(name);
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" | "" => false,
            _ => {
                self.invalid
                    .push(format!("{name}: {raw:?} is not true or false"));
                false
            }
        }
    }

    /// Records a problem found while interpreting a value.
    pub fn invalid(&mut self, problem: String) {
        self.invalid.push(problem);
    }

    /// Every problem recorded, or `Ok`.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.missing.is_empty() && self.invalid.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                missing: self.missing,
                invalid: self.invalid,
            })
        }
    }
}

/// The application variables of one request or cron tick. Each is read from the host at most once
/// (reading a Spin variable is a host call), whichever sections ask for it; the edge makes one per
/// request ([`crate::http::Context::settings`]) and passes it down, so nothing beneath reads variables.
pub struct Settings {
    vars: Rc<dyn Variables>,
    read: RefCell<BTreeMap<String, Result<Option<String>, String>>>,
}

impl Settings {
    /// The settings over the platform's `vars`; nothing is read until a section asks.
    pub fn new(vars: Rc<dyn Variables>) -> Self {
        Self {
            vars,
            read: RefCell::new(BTreeMap::new()),
        }
    }

    /// Loads the sections `load` asks for with one [`Loader`]: every missing or invalid variable of all
    /// of them in one [`ConfigError`].
    pub fn load<T>(&self, load: impl FnOnce(&mut Loader<'_>) -> T) -> Result<T, ConfigError> {
        let mut loader = Loader::new(self);
        let sections = load(&mut loader);
        loader.finish().map(|()| sections)
    }

    /// The admin token (empty when unset: an unset token authorizes nobody).
    pub fn admin(&self) -> AdminConfig {
        AdminConfig::load(&mut Loader::new(self))
    }

    /// `log_level` as set, empty when unset or unreadable (telemetry's default then).
    pub fn log_level(&self) -> String {
        self.get("log_level").ok().flatten().unwrap_or_default()
    }

    /// Names of the required variables that have no value (see [`missing_required`]).
    pub fn missing_required(&self) -> Vec<&'static str> {
        missing_required(self)
    }
}

impl Variables for Settings {
    fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        if let Some(read) = self.read.borrow().get(name) {
            return read.clone().map_err(anyhow::Error::msg);
        }
        // The host's error is kept as its text: it names the variable, never a value.
        let read = self.vars.get(name).map_err(|e| e.to_string());
        self.read.borrow_mut().insert(name.to_owned(), read.clone());
        read.map_err(anyhow::Error::msg)
    }
}

/// What the webhook intake needs.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// HMAC key(s) decoded from `openphone_webhook_secret` (base64, optional `whsec_` prefix); empty when
    /// only the keys stored by `POST /admin/setup` are used.
    pub signing_keys: Vec<Vec<u8>>,
}

impl WebhookConfig {
    /// Loads the section.
    pub fn load(loader: &mut Loader<'_>) -> Self {
        let secret = loader.secret("openphone_webhook_secret");
        let mut signing_keys = Vec::new();
        // Several secrets may be configured, comma-separated, e.g. while rotating a webhook.
        for part in secret
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match decode_signing_key(part) {
                Some(key) => signing_keys.push(key),
                None => loader.invalid(
                    "openphone_webhook_secret: not base64 (copy the signing secret exactly as OpenPhone shows it)"
                        .into(),
                ),
            }
        }
        Self { signing_keys }
    }
}

/// Decodes a webhook signing secret: base64, with or without a `whsec_` prefix.
pub fn decode_signing_key(secret: &str) -> Option<Vec<u8>> {
    let raw = secret.trim();
    let raw = raw.strip_prefix("whsec_").unwrap_or(raw);
    base64::engine::general_purpose::STANDARD
        .decode(raw)
        .ok()
        .filter(|k| !k.is_empty())
}

/// The admin bearer token.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Token for `Authorization: Bearer …`.
    pub token: Secret,
}

impl AdminConfig {
    /// Loads the section.
    pub fn load(loader: &mut Loader<'_>) -> Self {
        Self {
            token: loader.secret("admin_token"),
        }
    }
}

/// OpenPhone API access.
#[derive(Debug, Clone)]
pub struct OpenPhoneConfig {
    /// Raw API key for `Authorization`.
    pub api_key: Secret,
    /// API base, without `/v1`.
    pub api_base: String,
    /// Scheme and host serving recording and voicemail files.
    pub media_base: String,
}

impl OpenPhoneConfig {
    /// Loads the section.
    pub fn load(loader: &mut Loader<'_>) -> Self {
        Self {
            api_key: loader.secret("openphone_api_key"),
            api_base: loader.base_url("openphone_api_base"),
            media_base: loader.base_url("openphone_media_base"),
        }
    }
}

/// Notion API access and the three databases.
#[derive(Debug, Clone)]
pub struct NotionConfig {
    /// Integration token.
    pub api_key: Secret,
    /// API base, without `/v1`.
    pub api_base: String,
    /// Calls database id.
    pub calls_database_id: String,
    /// Messages database id.
    pub messages_database_id: String,
    /// Canvas database id; `None` disables Canvas linking.
    pub canvas_database_id: Option<String>,
}

impl NotionConfig {
    /// Loads the section.
    pub fn load(loader: &mut Loader<'_>) -> Self {
        Self {
            api_key: loader.secret("notion_api_key"),
            api_base: loader.base_url("notion_api_base"),
            calls_database_id: loader.text("notion_calls_database_id"),
            messages_database_id: loader.text("notion_messages_database_id"),
            canvas_database_id: loader.optional_text("notion_canvas_database_id"),
        }
    }
}

/// S3-compatible object storage (Cloudflare R2).
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// S3 API endpoint, `scheme+host[:port]`.
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: Secret,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Public URL prefix for stored objects; `None` means presigned URLs.
    pub public_base_url: Option<String>,
    /// Days to keep recordings; 0 keeps them forever.
    pub retention_days: u32,
}

impl StorageConfig {
    /// Loads the section.
    pub fn load(loader: &mut Loader<'_>) -> Self {
        let public_base_url =
            Some(loader.base_url("recordings_public_base_url")).filter(|u| !u.is_empty());
        Self {
            endpoint: loader.base_url("s3_endpoint"),
            bucket: loader.text("r2_bucket"),
            access_key_id: loader.secret("r2_access_key_id"),
            secret_access_key: loader.secret("r2_secret_access_key"),
            public_base_url,
            retention_days: loader.number("recordings_retention_days"),
        }
    }
}

/// How the queue and the periodic work behave.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Minutes between periodic syncs.
    pub sync_interval_minutes: u32,
    /// How long an event that keeps failing transiently is retried before it goes to the dead-letter
    /// state (webhook senders retry for days; an outage of a day must lose nothing).
    pub queue_max_age_hours: u32,
    /// Phone numbers processed at once by one drain.
    pub drain_concurrency: u32,
    /// The workspace's own numbers, never matched to a Canvas record.
    pub self_phone_numbers: Vec<E164>,
    /// A call or message from a number no Canvas record has creates one (`canvas_create_unknown`).
    pub canvas_create_unknown: bool,
}

impl SyncConfig {
    /// Loads the section.
    pub fn load(loader: &mut Loader<'_>) -> Self {
        let mut self_phone_numbers = Vec::new();
        for raw in loader
            .text("self_phone_numbers")
            .split([',', ';', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match E164::parse(raw) {
                Ok(n) => self_phone_numbers.push(n),
                Err(e) => loader.invalid(format!("self_phone_numbers: {e}")),
            }
        }
        let config = Self {
            sync_interval_minutes: loader.number("sync_interval_minutes"),
            queue_max_age_hours: loader.number("queue_max_age_hours"),
            drain_concurrency: loader.number("drain_concurrency"),
            self_phone_numbers,
            canvas_create_unknown: loader.flag("canvas_create_unknown"),
        };
        if config.sync_interval_minutes == 0 {
            loader.invalid("sync_interval_minutes: must be at least 1".into());
        }
        if config.queue_max_age_hours == 0 {
            loader.invalid("queue_max_age_hours: must be at least 1".into());
        }
        if config.drain_concurrency == 0 {
            loader.invalid("drain_concurrency: must be at least 1".into());
        }
        config
    }
}

/// Names of the required variables that have no value, without reading any secret's value into the result.
pub fn missing_required(vars: &dyn Variables) -> Vec<&'static str> {
    VARIABLES
        .iter()
        .filter(|spec| spec.default.is_none())
        .filter(|spec| !matches!(vars.get(spec.name), Ok(Some(v)) if !v.trim().is_empty()))
        .map(|spec| spec.name)
        .collect()
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::native::MapVariables;

    fn full() -> MapVariables {
        MapVariables::from_pairs([
            ("openphone_api_key", "op-key"),
            ("openphone_webhook_secret", "c2VjcmV0LWtleQ=="),
            ("notion_api_key", "secret_notion"),
            ("notion_calls_database_id", "calls"),
            ("notion_messages_database_id", "messages"),
            ("s3_endpoint", "http://127.0.0.1:9000"),
            ("r2_bucket", "recordings"),
            ("r2_access_key_id", "AKID"),
            ("r2_secret_access_key", "SAK"),
            ("admin_token", "admin"),
        ])
    }

    fn load_all(
        vars: &MapVariables,
    ) -> Result<(OpenPhoneConfig, NotionConfig, StorageConfig, SyncConfig), ConfigError> {
        let mut loader = Loader::new(vars);
        let op = OpenPhoneConfig::load(&mut loader);
        let notion = NotionConfig::load(&mut loader);
        let storage = StorageConfig::load(&mut loader);
        let sync = SyncConfig::load(&mut loader);
        let _ = AdminConfig::load(&mut loader);
        let _ = WebhookConfig::load(&mut loader);
        loader.finish().map(|()| (op, notion, storage, sync))
    }

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let (op, notion, storage, sync) = load_all(&full()).unwrap();
        assert_eq!(op.api_base, "https://api.openphone.com");
        assert_eq!(op.media_base, "https://storage.googleapis.com");
        assert_eq!(notion.api_base, "https://api.notion.com");
        assert_eq!(notion.canvas_database_id, None);
        assert_eq!(storage.public_base_url, None);
        assert_eq!(storage.retention_days, 0);
        assert_eq!(sync.sync_interval_minutes, 360);
        assert!(sync.self_phone_numbers.is_empty());
        assert!(
            !sync.canvas_create_unknown,
            "creating Canvas records is off by default"
        );
    }

    #[test]
    fn one_error_names_every_missing_variable() {
        let vars = MapVariables::from_pairs([("notion_api_key", "x"), ("admin_token", "  ")]);
        let err = load_all(&vars).unwrap_err();
        assert_eq!(
            err.missing,
            vec![
                "openphone_api_key",
                "notion_calls_database_id",
                "notion_messages_database_id",
                "s3_endpoint",
                "r2_bucket",
                "r2_access_key_id",
                "r2_secret_access_key",
                "admin_token",
            ]
        );
        let message = err.to_string();
        assert!(
            message.contains("openphone_api_key") && message.contains("admin_token"),
            "{message}"
        );
    }

    #[test]
    fn invalid_values_are_reported_without_the_secret() {
        let mut vars = full();
        vars.0
            .insert("openphone_webhook_secret".into(), "not base64 !!".into());
        vars.0
            .insert("sync_interval_minutes".into(), "often".into());
        vars.0
            .insert("notion_api_base".into(), "api.notion.com".into());
        vars.0
            .insert("self_phone_numbers".into(), "+13365550100, banana".into());
        let err = load_all(&vars).unwrap_err();
        let message = err.to_string();
        assert!(err.missing.is_empty());
        assert!(
            message.contains("openphone_webhook_secret: not base64"),
            "{message}"
        );
        assert!(
            !message.contains("not base64 !!"),
            "the secret leaked: {message}"
        );
        assert!(message.contains("sync_interval_minutes"), "{message}");
        assert!(
            message.contains("notion_api_base: must start with https://"),
            "{message}"
        );
        assert!(message.contains("self_phone_numbers"), "{message}");
    }

    #[test]
    fn webhook_secret_accepts_whsec_prefix_and_several_keys() {
        let mut vars = full();
        vars.0.insert(
            "openphone_webhook_secret".into(),
            "whsec_c2VjcmV0LWtleQ==, b3RoZXI=".into(),
        );
        let mut loader = Loader::new(&vars);
        let webhook = WebhookConfig::load(&mut loader);
        loader.finish().unwrap();
        assert_eq!(
            webhook.signing_keys,
            vec![b"secret-key".to_vec(), b"other".to_vec()]
        );
    }

    #[test]
    fn switches_read_true_and_false_and_refuse_anything_else() {
        for (raw, expected) in [
            ("true", Some(true)),
            (" ON ", Some(true)),
            ("1", Some(true)),
            ("False", Some(false)),
            ("no", Some(false)),
            ("sure", None),
        ] {
            let mut vars = full();
            vars.0.insert("canvas_create_unknown".into(), raw.into());
            let mut loader = Loader::new(&vars);
            let value = loader.flag("canvas_create_unknown");
            match (expected, loader.finish()) {
                (Some(expected), Ok(())) => assert_eq!(value, expected, "{raw:?}"),
                (None, Err(e)) => assert!(
                    e.to_string()
                        .contains("canvas_create_unknown: \"sure\" is not true or false"),
                    "{e}"
                ),
                (expected, outcome) => panic!("{raw:?}: expected {expected:?}, got {outcome:?}"),
            }
        }
    }

    #[test]
    fn the_webhook_secret_may_be_left_to_setup() {
        let mut vars = full();
        vars.0.remove("openphone_webhook_secret");
        let mut loader = Loader::new(&vars);
        let webhook = WebhookConfig::load(&mut loader);
        loader.finish().unwrap();
        assert!(webhook.signing_keys.is_empty());
        assert!(missing_required(&vars).is_empty());
    }

    #[test]
    fn self_numbers_are_normalized() {
        let mut vars = full();
        vars.0.insert(
            "self_phone_numbers".into(),
            "(336) 555-0100\n+1 415 555 0199".into(),
        );
        let (_, _, _, sync) = load_all(&vars).unwrap();
        let numbers: Vec<&str> = sync.self_phone_numbers.iter().map(E164::as_str).collect();
        assert_eq!(numbers, vec!["+13365550100", "+14155550199"]);
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let (op, ..) = load_all(&full()).unwrap();
        let shown = format!("{op:?}");
        assert!(!shown.contains("op-key"), "{shown}");
    }

    #[test]
    fn missing_required_lists_unset_names_only() {
        let mut vars = full();
        vars.0.remove("admin_token");
        assert_eq!(missing_required(&vars), vec!["admin_token"]);
    }

    /// Counts the host reads of each variable.
    struct Counted {
        vars: MapVariables,
        reads: RefCell<BTreeMap<String, u32>>,
    }

    impl Variables for Counted {
        fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
            *self.reads.borrow_mut().entry(name.to_owned()).or_default() += 1;
            if name == "log_level" {
                anyhow::bail!("reading variable {name}: the host refused");
            }
            self.vars.get(name)
        }
    }

    #[test]
    fn settings_read_each_variable_once_however_many_sections_ask() {
        let mut vars = full();
        vars.0.remove("notion_api_key");
        let counted = Rc::new(Counted {
            vars,
            reads: RefCell::new(BTreeMap::new()),
        });
        let settings = Settings::new(counted.clone());
        for _ in 0..3 {
            let error = settings
                .load(|l| (NotionConfig::load(l), SyncConfig::load(l)))
                .unwrap_err();
            assert_eq!(error.missing, vec!["notion_api_key"]);
            assert!(settings.load(OpenPhoneConfig::load).is_ok());
            assert_eq!(settings.admin().token.expose(), "admin");
            assert_eq!(settings.missing_required(), vec!["notion_api_key"]);
            // A failed read is remembered too, and reported as the host said it.
            assert_eq!(settings.log_level(), "");
            let error = settings.load(|l| l.text("log_level")).unwrap_err();
            assert_eq!(
                error.invalid,
                vec!["log_level: reading variable log_level: the host refused"]
            );
        }
        let reads = counted.reads.borrow();
        assert!(reads.len() > 10, "{reads:?}");
        assert!(reads.values().all(|&n| n == 1), "{reads:?}");
    }
}
