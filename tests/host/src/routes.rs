//! HTTP routing as Spin does it: exact routes (`/health`), `:name` segments, a trailing `/...` wildcard;
//! of the routes that match, literal segments beat `:name` segments, which beat the wildcard, compared
//! left to right, so exact routes beat wildcards and the longest prefix wins. A trailing slash is ignored.
//! A route listed twice goes to the last trigger, as in Spin.

use anyhow::{ensure, Result};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The public routes of an app.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: Vec<Route>,
}

#[derive(Debug)]
struct Route {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
    component: String,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

/// The component a request goes to, and what Spin tells the component about the match.
#[derive(Debug)]
pub(crate) struct RouteMatch {
    pub(crate) component: String,
    /// The route as written in the manifest (`/...` for a chained request).
    raw_route: String,
    /// The part of the path the trailing wildcard captured (Spin's `spin-path-info`).
    path_info: String,
    params: Vec<(String, String)>,
}

impl Router {
    /// Builds the router from `(route, component)` pairs in manifest order.
    pub(crate) fn build<'a>(routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut router = Self::default();
        for (raw, component) in routes {
            let route = Route::parse(raw, component)?;
            router
                .routes
                .retain(|r| r.normalized() != route.normalized());
            router.routes.push(route);
        }
        Ok(router)
    }

    /// The best route for `path` (without the query), if any.
    pub(crate) fn route(&self, path: &str) -> Option<RouteMatch> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .filter(|r| r.matches(&segments))
            .max_by(|a, b| a.rank().cmp(&b.rank()))
            .map(|route| route.capture(&segments, path.ends_with('/')))
    }
}

impl Route {
    fn parse(raw: &str, component: &str) -> Result<Self> {
        let absolute = if raw.starts_with('/') {
            raw.to_owned()
        } else {
            format!("/{raw}")
        };
        let (prefix, wildcard) = match absolute
            .strip_suffix("/...")
            .or_else(|| absolute.strip_suffix("/*"))
        {
            Some(prefix) => (prefix, true),
            None => (absolute.as_str(), false),
        };
        let segments = prefix
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix(':') {
                Some(name) => {
                    ensure!(!name.is_empty(), "route {raw:?} has an unnamed `:` segment");
                    Ok(Segment::Param(name.to_owned()))
                }
                None => {
                    ensure!(
                        !s.contains('*') && s != "...",
                        "route {raw:?}: a wildcard may only end a route"
                    );
                    Ok(Segment::Literal(s.to_owned()))
                }
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            raw: raw.to_owned(),
            segments,
            wildcard,
            component: component.to_owned(),
        })
    }

    /// The route's shape, for duplicate detection: `/a/:x` and `/a/:y/` are the same route.
    fn normalized(&self) -> (Vec<Option<&str>>, bool) {
        let segments = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Param(_) => None,
            })
            .collect();
        (segments, self.wildcard)
    }

    fn matches(&self, path: &[&str]) -> bool {
        let length_ok = if self.wildcard {
            path.len() >= self.segments.len()
        } else {
            path.len() == self.segments.len()
        };
        length_ok
            && self.segments.iter().zip(path).all(|(s, p)| match s {
                Segment::Literal(l) => l == p,
                Segment::Param(_) => true,
            })
    }

    /// Compared lexicographically among routes that match the same path: per segment a literal (3) beats
    /// a parameter (2); where one route ends, ending exactly (4) beats a wildcard (1), and a wildcard loses
    /// to any further segment.
    fn rank(&self) -> Vec<u8> {
        let mut rank: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 3,
                Segment::Param(_) => 2,
            })
            .collect();
        rank.push(if self.wildcard { 1 } else { 4 });
        rank
    }

    fn capture(&self, path: &[&str], trailing_slash: bool) -> RouteMatch {
        let params = self
            .segments
            .iter()
            .zip(path)
            .filter_map(|(s, p)| match s {
                Segment::Param(name) => Some((name.clone(), (*p).to_owned())),
                Segment::Literal(_) => None,
            })
            .collect();
        let path_info = if self.wildcard {
            // Spin keeps the trailing slash in the captured part, unlike its router library.
            let rest = path[self.segments.len()..].join("/");
            match (rest.is_empty(), trailing_slash) {
                (true, false) => String::new(),
                (true, true) => "/".into(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            }
        } else {
            String::new()
        };
        RouteMatch {
            component: self.component.clone(),
            raw_route: self.raw.clone(),
            path_info,
            params,
        }
    }
}

impl RouteMatch {
    /// The match Spin synthesises for a request chained through `<component>.spin.internal`: as if the
    /// component were mounted at `/...`.
    pub(crate) fn chained(component: &str, path: &str) -> Self {
        Self {
            component: component.to_owned(),
            raw_route: "/...".into(),
            path_info: path.to_owned(),
            params: Vec::new(),
        }
    }

    /// Adds the `spin-*` request headers Spin gives a component.
    /// `client` is the peer address of a public request; a chained request has none.
    pub(crate) fn add_spin_headers(
        &self,
        headers: &mut HeaderMap,
        full_url: &str,
        client: Option<&str>,
    ) {
        let component_route = self
            .raw_route
            .strip_suffix("/...")
            .unwrap_or(&self.raw_route);
        let mut set = |name: &str, value: &str| {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        };
        set("spin-full-url", full_url);
        set("spin-path-info", &self.path_info);
        set("spin-matched-route", &self.raw_route);
        set("spin-raw-component-route", &self.raw_route);
        set("spin-component-route", component_route);
        set("spin-base-path", "/");
        if let Some(client) = client {
            set("spin-client-addr", client);
        }
        for (name, value) in &self.params {
            set(&format!("spin-path-match-{name}"), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::build(routes.iter().copied()).unwrap()
    }

    fn component(r: &Router, path: &str) -> Option<String> {
        r.route(path).map(|m| m.component)
    }

    #[test]
    fn exact_param_and_wildcard() {
        let r = router(&[
            ("/health", "health"),
            ("/items/:id", "item"),
            ("/files/...", "files"),
            ("/", "root"),
        ]);
        assert_eq!(component(&r, "/health").as_deref(), Some("health"));
        assert_eq!(component(&r, "/health/").as_deref(), Some("health"));
        assert_eq!(component(&r, "/health/x"), None);
        assert_eq!(component(&r, "/items/42").as_deref(), Some("item"));
        assert_eq!(component(&r, "/items"), None);
        assert_eq!(component(&r, "/items/1/2"), None);
        assert_eq!(component(&r, "/files").as_deref(), Some("files"));
        assert_eq!(component(&r, "/files/a/b").as_deref(), Some("files"));
        assert_eq!(component(&r, "/").as_deref(), Some("root"));
        assert_eq!(component(&r, "/nothing"), None);

        let m = r.route("/items/42").unwrap();
        assert_eq!(m.params, vec![("id".to_owned(), "42".to_owned())]);
    }

    #[test]
    fn precedence() {
        let r = router(&[
            ("/...", "all"),
            ("/one/...", "one"),
            ("/one/two/...", "two"),
            ("/one/two", "two-exact"),
            ("/one/:x/three", "param"),
            ("/one/two/three", "literal"),
        ]);
        assert_eq!(component(&r, "/one/two/three/four").as_deref(), Some("two"));
        assert_eq!(component(&r, "/one/two").as_deref(), Some("two-exact"));
        assert_eq!(component(&r, "/one/two/three").as_deref(), Some("literal"));
        assert_eq!(component(&r, "/one/six/three").as_deref(), Some("param"));
        assert_eq!(component(&r, "/one/six").as_deref(), Some("one"));
        assert_eq!(component(&r, "/zzz").as_deref(), Some("all"));
    }

    #[test]
    fn the_last_duplicate_wins() {
        let r = router(&[
            ("/foo", "first"),
            ("/foo/", "second"),
            ("/a/:x", "p1"),
            ("/a/:y", "p2"),
        ]);
        assert_eq!(component(&r, "/foo").as_deref(), Some("second"));
        assert_eq!(component(&r, "/a/1").as_deref(), Some("p2"));
    }

    #[test]
    fn path_info_keeps_the_trailing_slash() {
        let r = router(&[("/test/...", "c")]);
        let info = |p: &str| r.route(p).unwrap().path_info;
        assert_eq!(info("/test"), "");
        assert_eq!(info("/test/"), "/");
        assert_eq!(info("/test/hello"), "/hello");
        assert_eq!(info("/test/hello/"), "/hello/");
    }

    #[test]
    fn headers() {
        let r = router(&[("/admin/:id/...", "c")]);
        let mut headers = HeaderMap::new();
        r.route("/admin/7/x").unwrap().add_spin_headers(
            &mut headers,
            "http://h/admin/7/x",
            Some("127.0.0.1:1"),
        );
        assert_eq!(headers["spin-path-info"], "/x");
        assert_eq!(headers["spin-matched-route"], "/admin/:id/...");
        assert_eq!(headers["spin-component-route"], "/admin/:id");
        assert_eq!(headers["spin-path-match-id"], "7");
        assert_eq!(headers["spin-full-url"], "http://h/admin/7/x");
    }

    #[test]
    fn bad_routes() {
        assert!(Router::build([("/a/.../b", "c")]).is_err());
        assert!(Router::build([("/a/:/b", "c")]).is_err());
    }
}
