//! Absolute `http(s)` URLs as the app meets them: the endpoints it is configured with (`s3_endpoint`,
//! `openphone_media_base`, `public_url`) and the media links OpenPhone sends. Parsed by hand: the `url`
//! crate (WHATWG parsing, IDNA tables) was about 35 KB of each component, and these URLs need none of it —
//! only ASCII hosts (an international domain name is written in its `xn--` form), no relative references.

/// Why a string is not an absolute `http(s)` URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Another scheme, or none.
    #[error("not an http(s) URL")]
    NotHttp,
    /// The rest does not parse.
    #[error("not a URL: {0}")]
    Invalid(&'static str),
}

/// An absolute `http://` or `https://` URL, split into the parts the app looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    https: bool,
    credentials: bool,
    /// Lower case; an IPv6 address keeps its brackets.
    host: String,
    /// `None` when absent or the scheme's default, as a `Host` header leaves it out.
    port: Option<u16>,
    path: String,
    query: Option<String>,
    fragment: Option<String>,
}

impl HttpUrl {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Invalid(
                "it contains spaces or control characters",
            ));
        }
        let (https, rest) = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
            _ => return Err(UrlError::NotHttp),
        };
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment.to_owned())),
            None => (rest, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query.to_owned())),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, "/"),
        };
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((_, host_port)) => (true, host_port),
            None => (false, authority),
        };
        let (host, port) = split_host_port(host_port)?;
        if host.is_empty() {
            return Err(UrlError::Invalid("it has no host"));
        }
        if !host.is_ascii() {
            return Err(UrlError::Invalid(
                "the host is not ASCII (write an international domain name in its xn-- form)",
            ));
        }
        let default_port = if https { 443 } else { 80 };
        Ok(Self {
            https,
            credentials,
            host: host.to_ascii_lowercase(),
            port: port.filter(|p| *p != default_port),
            path: path.to_owned(),
            query,
            fragment,
        })
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The host, in lower case.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port when it is not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The port requests go to.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The path, `/` at least.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query, without its `?`.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The fragment, without its `#`.
    pub fn fragment(&self) -> Option<&str> {
        self.fragment.as_deref()
    }

    /// Whether a user name or password precedes the host.
    pub fn has_credentials(&self) -> bool {
        self.credentials
    }

    /// `scheme://host[:port]`.
    pub fn origin(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme(), self.host),
            None => format!("{}://{}", self.scheme(), self.host),
        }
    }

    /// Whether `other` is on the same origin: scheme, host and port.
    pub fn same_origin(&self, other: &HttpUrl) -> bool {
        self.https == other.https
            && self.host == other.host
            && self.port_or_default() == other.port_or_default()
    }
}

/// `host[:port]`, the host of an IPv6 address in brackets.
fn split_host_port(host_port: &str) -> Result<(&str, Option<u16>), UrlError> {
    let (host, port) = if host_port.starts_with('[') {
        let end = host_port
            .find(']')
            .ok_or(UrlError::Invalid("an IPv6 host has no closing bracket"))?;
        let (host, after) = host_port.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(UrlError::Invalid("text follows the IPv6 host")),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(
            port.parse::<u16>()
                .map_err(|_| UrlError::Invalid("the port is not a number up to 65535"))?,
        ),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_as_the_url_crate_splits_them() {
        let cases = [
            "https://storage.openphone.com/recordings/AC1.mp3?sig=abc#t=1",
            "http://127.0.0.1:9000/bucket",
            "http://127.0.0.1:80/base/",
            "HTTPS://Sync.Example.COM",
            "https://sync.example.com:8443/app/",
            "http://[::1]:9000/x",
            "https://user:pw@h.example/p",
            "https://xn--bcher-kva.example",
            "https://h.example?x=1",
        ];
        for text in cases {
            let ours = HttpUrl::parse(text).unwrap();
            let theirs = url::Url::parse(text).unwrap();
            assert_eq!(ours.scheme(), theirs.scheme(), "{text}");
            assert_eq!(Some(ours.host()), theirs.host_str(), "{text}");
            assert_eq!(ours.port(), theirs.port(), "{text}");
            assert_eq!(
                Some(ours.port_or_default()),
                theirs.port_or_known_default(),
                "{text}"
            );
            assert_eq!(ours.path(), theirs.path(), "{text}");
            assert_eq!(ours.query(), theirs.query(), "{text}");
            assert_eq!(ours.fragment(), theirs.fragment(), "{text}");
            assert_eq!(
                ours.has_credentials(),
                !theirs.username().is_empty() || theirs.password().is_some(),
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_an_absolute_http_url_is_refused_saying_why() {
        assert_eq!(HttpUrl::parse("ftp://h"), Err(UrlError::NotHttp));
        assert_eq!(HttpUrl::parse("h:9000"), Err(UrlError::NotHttp));
        assert_eq!(HttpUrl::parse("sync.example.com"), Err(UrlError::NotHttp));
        assert_eq!(HttpUrl::parse(""), Err(UrlError::NotHttp));
        for bad in [
            "https://",
            "https:///path",
            "https://bücher.example",
            "https://h:99999",
            "https://h:port",
            "https://[::1",
            "https://h .example",
        ] {
            assert!(
                matches!(HttpUrl::parse(bad), Err(UrlError::Invalid(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn the_same_origin_is_scheme_host_and_port() {
        let base = HttpUrl::parse("https://storage.openphone.com").unwrap();
        let same = |text: &str| base.same_origin(&HttpUrl::parse(text).unwrap());
        assert!(same("https://STORAGE.openphone.com:443/r/AC1.mp3"));
        assert!(!same("http://storage.openphone.com/r"));
        assert!(!same("https://storage.openphone.com:8443/r"));
        assert!(!same("https://storage.openphone.com.evil.example/r"));
        assert_eq!(base.origin(), "https://storage.openphone.com");
        assert_eq!(
            HttpUrl::parse("http://127.0.0.1:9000/media/")
                .unwrap()
                .origin(),
            "http://127.0.0.1:9000"
        );
    }
}
