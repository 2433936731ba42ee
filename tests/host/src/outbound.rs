//! `allowed_outbound_hosts`: entries of the form `scheme://host[:port]`, with Spin's wildcards (`*` for
//! the scheme, the host or the port, `*.domain` for subdomains, `a..b` port ranges) and default ports.

use anyhow::{bail, ensure, Context, Result};

/// The hosts one component may send requests to.
#[derive(Debug, Default)]
pub(crate) struct AllowedHosts {
    entries: Vec<AllowedHost>,
    allow_all: bool,
}

#[derive(Debug, PartialEq)]
struct AllowedHost {
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostPattern,
    /// Inclusive; `*` is `0..=65535`.
    ports: (u16, u16),
}

#[derive(Debug, PartialEq)]
enum HostPattern {
    Any,
    /// `*.example.com` is stored as `.example.com`.
    Subdomains(String),
    Exact(String),
}

impl AllowedHosts {
    /// Parses resolved entries; `skip_empty` marks entries that came from a template and may have
    /// resolved to nothing (`""` or a bare `https://`), which Spin skips as an unset optional endpoint.
    pub(crate) fn parse<'a>(entries: impl IntoIterator<Item = (&'a str, bool)>) -> Result<Self> {
        let mut hosts = Self::default();
        for (entry, skip_empty) in entries {
            if entry == "insecure:allow-all" {
                hosts.allow_all = true;
                continue;
            }
            if skip_empty && (entry.is_empty() || entry.ends_with("://")) {
                continue;
            }
            hosts.entries.push(
                parse_entry(entry)
                    .with_context(|| format!("invalid allowed_outbound_hosts entry {entry:?}"))?,
            );
        }
        Ok(hosts)
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub(crate) fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.allow_all
            || self.entries.iter().any(|entry| {
                entry.scheme.as_deref().is_none_or(|s| s == scheme)
                    && entry.host.matches(host)
                    && (entry.ports.0..=entry.ports.1).contains(&port)
            })
    }
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        match self {
            HostPattern::Any => true,
            HostPattern::Subdomains(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(exact) => host == *exact,
        }
    }
}

/// The port a URL without one uses.
pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "redis" => 6379,
        "mysql" => 3306,
        "postgres" => 5432,
        "mqtt" => 1883,
        _ => return None,
    })
}

fn parse_entry(entry: &str) -> Result<AllowedHost> {
    let (scheme, rest) = entry
        .split_once("://")
        .context("it has no scheme (expected scheme://host[:port])")?;
    ensure!(!scheme.is_empty(), "the scheme is empty");
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    ensure!(!authority.contains('/'), "paths are not allowed");
    ensure!(!authority.is_empty(), "the host is empty");
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let ports = match port {
        Some("*") => (0, u16::MAX),
        Some(port) => match port.split_once("..") {
            Some((from, to)) => (parse_port(from)?, parse_port(to)?),
            None => {
                let p = parse_port(port)?;
                (p, p)
            }
        },
        None if scheme == "*" => bail!("a wildcard scheme needs an explicit port"),
        None => {
            let p = default_port(scheme)
                .with_context(|| format!("no port given and scheme `{scheme}` has no default"))?;
            (p, p)
        }
    };
    let host = host.to_ascii_lowercase();
    let host = if host == "*" {
        HostPattern::Any
    } else if let Some(domain) = host.strip_prefix("*.") {
        HostPattern::Subdomains(format!(".{domain}"))
    } else {
        ensure!(
            !host.contains('*'),
            "`*` may only be the whole host or its first label"
        );
        HostPattern::Exact(host)
    };
    Ok(AllowedHost {
        scheme: (scheme != "*").then(|| scheme.to_owned()),
        host,
        ports,
    })
}

fn parse_port(port: &str) -> Result<u16> {
    port.parse()
        .with_context(|| format!("invalid port {port:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries.iter().map(|e| (*e, true))).unwrap()
    }

    #[test]
    fn exact_hosts_use_default_ports_and_match_scheme() {
        let h = hosts(&["https://api.notion.com", "http://127.0.0.1:8080/"]);
        assert!(h.allows("https", "api.notion.com", 443));
        assert!(h.allows("https", "API.Notion.com", 443));
        assert!(!h.allows("http", "api.notion.com", 443));
        assert!(!h.allows("https", "api.notion.com", 8443));
        assert!(!h.allows("https", "evil.notion.com", 443));
        assert!(h.allows("http", "127.0.0.1", 8080));
        assert!(!h.allows("http", "127.0.0.1", 8081));
    }

    #[test]
    fn wildcards() {
        let h = hosts(&[
            "https://*.example.com",
            "*://localhost:*",
            "http://10.0.0.1:8000..8002",
        ]);
        assert!(h.allows("https", "a.example.com", 443));
        assert!(h.allows("https", "a.b.example.com", 443));
        assert!(!h.allows("https", "example.com", 443));
        assert!(h.allows("http", "localhost", 1));
        assert!(h.allows("https", "localhost", 65535));
        assert!(h.allows("http", "10.0.0.1", 8002));
        assert!(!h.allows("http", "10.0.0.1", 8003));
        assert!(hosts(&["insecure:allow-all"]).allows("ftp", "anything", 21));
    }

    #[test]
    fn service_chaining_entries() {
        let h = hosts(&["http://queue-drain.spin.internal"]);
        assert!(h.allows("http", "queue-drain.spin.internal", 80));
        assert!(!h.allows("http", "phone-sync.spin.internal", 80));
        assert!(hosts(&["http://*.spin.internal"]).allows("http", "phone-sync.spin.internal", 80));
    }

    #[test]
    fn empty_template_results_are_skipped_but_literals_are_checked() {
        assert!(!hosts(&["", "https://"]).allows("https", "x", 443));
        for bad in [
            "",
            "https://",
            "example.com",
            "https://example.com/path",
            "*://x",
            "gopher://x",
            "https://a.*.com",
        ] {
            assert!(AllowedHosts::parse([(bad, false)]).is_err(), "{bad}");
        }
    }
}
