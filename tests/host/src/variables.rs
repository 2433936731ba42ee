//! Application variables and `{{ name }}` templates, resolved the way Spin's default providers do: an
//! explicit value (Spin's `--variable`), else `SPIN_VARIABLE_<UPPER_NAME>` from the environment, else the
//! manifest default.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, ensure, Context, Result};

use crate::manifest::VariableDecl;

/// Whether `name` is a valid Spin variable name: lower-case ASCII letters, digits and single underscores,
/// starting with a letter and not ending with an underscore.
pub(crate) fn is_valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// The value of every application variable. Fails, naming them, when required variables have no value.
pub(crate) fn resolve_application(
    decls: &BTreeMap<String, VariableDecl>,
    explicit: &HashMap<String, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<HashMap<String, String>> {
    let mut values = HashMap::new();
    let mut missing = Vec::new();
    for (name, decl) in decls {
        let value = explicit
            .get(name)
            .cloned()
            .or_else(|| env(&format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())))
            .or_else(|| decl.default.clone());
        match value {
            Some(value) => {
                values.insert(name.clone(), value);
            }
            None => missing.push(name.as_str()),
        }
    }
    ensure!(
        missing.is_empty(),
        "required application variable(s) without a value: {} (set SPIN_VARIABLE_<NAME> or pass them in HostOptions::variables)",
        missing.join(", ")
    );
    Ok(values)
}

/// A string with `{{ name }}` references to application variables.
#[derive(Debug, PartialEq)]
pub(crate) struct Template(Vec<Part>);

#[derive(Debug, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("unclosed `{{{{` in template {text:?}"))?;
            let name = after[..end].trim();
            ensure!(
                is_valid_name(name),
                "invalid variable name {name:?} in template {text:?}"
            );
            parts.push(Part::Variable(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    pub(crate) fn has_variables(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Part::Variable(_)))
    }

    /// The text with every reference replaced; a reference to a name that is not an application variable
    /// is an error, as in Spin.
    pub(crate) fn resolve(&self, values: &HashMap<String, String>) -> Result<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => match values.get(name) {
                    Some(value) => out.push_str(value),
                    None => bail!("`{name}` is not an application variable"),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl(default: Option<&str>, required: bool) -> VariableDecl {
        toml::from_str(&match default {
            Some(d) => format!("default = {d:?}"),
            None => format!("required = {required}"),
        })
        .unwrap()
    }

    #[test]
    fn names() {
        for ok in ["a", "notion_api_base", "x1_y2"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "1a", "_a", "a_", "a__b", "a-b", "a.b"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn precedence_is_explicit_then_env_then_default() -> Result<()> {
        let decls = BTreeMap::from([
            ("a".to_owned(), decl(Some("default-a"), false)),
            ("b".to_owned(), decl(Some("default-b"), false)),
            ("c".to_owned(), decl(Some("default-c"), false)),
        ]);
        let explicit = HashMap::from([("a".to_owned(), "explicit-a".to_owned())]);
        let env = |name: &str| match name {
            "SPIN_VARIABLE_A" | "SPIN_VARIABLE_B" => Some(format!("env-{name}")),
            _ => None,
        };
        let values = resolve_application(&decls, &explicit, env)?;
        assert_eq!(values["a"], "explicit-a");
        assert_eq!(values["b"], "env-SPIN_VARIABLE_B");
        assert_eq!(values["c"], "default-c");
        Ok(())
    }

    #[test]
    fn missing_required_variables_are_named() {
        let decls = BTreeMap::from([
            ("token".to_owned(), decl(None, true)),
            ("other_token".to_owned(), decl(None, true)),
            ("set".to_owned(), decl(None, true)),
        ]);
        let explicit = HashMap::from([("set".to_owned(), "v".to_owned())]);
        let err = resolve_application(&decls, &explicit, |_| None).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("token") && message.contains("other_token"),
            "{message}"
        );
        assert!(!message.contains(" set"), "{message}");
    }

    #[test]
    fn templates() -> Result<()> {
        let values = HashMap::from([
            ("account".to_owned(), "acme".to_owned()),
            ("empty".to_owned(), String::new()),
        ]);
        let t = Template::parse("https://{{ account }}.r2.example.com:{{account}}")?;
        assert!(t.has_variables());
        assert_eq!(t.resolve(&values)?, "https://acme.r2.example.com:acme");
        assert_eq!(Template::parse("{{empty}}")?.resolve(&values)?, "");
        assert!(!Template::parse("plain")?.has_variables());
        assert!(Template::parse("{{ unclosed").is_err());
        assert!(Template::parse("{{ Bad }}").is_err());
        assert!(Template::parse("{{ nope }}")?.resolve(&values).is_err());
        Ok(())
    }
}
