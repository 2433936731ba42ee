//! The edge over every route of every table: wrong methods, missing and wrong credentials and a broken
//! database are answered before the handler runs, and no answer carries the database's error.

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::rc::Rc;

use super::*;
use crate::admin::status_page;
use crate::http::routes::{Auth, PathMatch, PHONE_SYNC, QUEUE_DRAIN, WEBHOOK};
use crate::platform::{Rows, Sql, Value};
use crate::testing::{migrated_platform, ADMIN_TOKEN, T0};

/// What a broken database says: a path and a detail no client may see.
const INTERNAL: &str = "disk I/O error in /var/lib/app/sqlite_db.db";

struct BrokenSql;

impl Sql for BrokenSql {
    fn execute(&self, _statement: &str, _params: &[Value]) -> anyhow::Result<Rows> {
        anyhow::bail!("{INTERNAL}")
    }
}

fn broken(platform: &Platform) -> Platform {
    Platform {
        sql: Rc::new(BrokenSql),
        intake: Rc::new(BrokenSql),
        ..platform.clone()
    }
}

fn path_of<H>(route: &Route<H>) -> String {
    match route.path {
        PathMatch::Exact(path) => path.to_owned(),
        PathMatch::Prefix(prefix) => format!("{prefix}PNline0001"),
    }
}

fn request(method: &str, path: &str, authorization: Option<&str>) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        headers: authorization
            .map(|a| vec![("authorization".to_owned(), a.to_owned())])
            .unwrap_or_default(),
        body: b"{}".to_vec(),
        ..Default::default()
    }
}

/// Runs `request` through the edge; the answer, and the handler value if the handler ran.
async fn answer<H: Copy + 'static>(
    routes: &[Route<H>],
    platform: anyhow::Result<Platform>,
    request: Result<Request, Response>,
) -> (Response, Option<H>) {
    let sent = Rc::new(RefCell::new(None));
    let reply = {
        let sent = sent.clone();
        Reply::new(move |response| {
            *sent.borrow_mut() = Some(response);
            async {}
        })
    };
    let ran = Rc::new(Cell::new(None));
    let handler = {
        let ran = ran.clone();
        move |_: Context, route: H, reply: Reply| async move {
            ran.set(Some(route));
            reply
                .send(Response::json(200, &serde_json::json!({})))
                .await
        }
    };
    dispatch("test", request, platform, routes, reply, handler).await;
    let response = sent.borrow_mut().take().expect("the edge always answers");
    (response, ran.get())
}

fn assert_no_internal_text(response: &Response, case: &str) {
    let body = String::from_utf8_lossy(&response.body);
    assert!(
        !body.contains("disk I/O") && !body.contains("sqlite_db") && !body.contains("/var/lib"),
        "{case}: the answer names the internal error: {body}"
    );
}

async fn check_table<H: Copy + Debug + PartialEq + 'static>(routes: &[Route<H>]) {
    let (_dir, platform, _clock) = migrated_platform().await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    for route in routes {
        let path = path_of(route);
        let case = format!("{} {path}", route.method);

        // The right method and credentials reach the handler, and only this route's.
        let (response, ran) = answer(
            routes,
            Ok(platform.clone()),
            Ok(request(route.method, &path, Some(&bearer))),
        )
        .await;
        assert_eq!((response.status, ran), (200, Some(route.handler)), "{case}");

        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if method == route.method {
                continue;
            }
            let (response, ran) = answer(
                routes,
                Ok(platform.clone()),
                Ok(request(method, &path, Some(&bearer))),
            )
            .await;
            assert_eq!((response.status, ran), (405, None), "{method} {path}");
            assert_eq!(
                response.headers.iter().find(|(n, _)| n == "allow"),
                Some(&("allow".to_owned(), route.method.to_owned())),
                "{method} {path}"
            );
        }

        let needs_token = matches!(route.auth, Auth::Admin | Auth::AdminOrSignedLink);
        let wrong_tokens = [
            None,
            Some("Bearer wrong".to_owned()),
            Some(ADMIN_TOKEN.to_owned()),
        ];
        for authorization in &wrong_tokens {
            for platform in [platform.clone(), broken(&platform)] {
                let (response, ran) = answer(
                    routes,
                    Ok(platform),
                    Ok(request(route.method, &path, authorization.as_deref())),
                )
                .await;
                if needs_token {
                    // Refused before the database is touched, broken or not.
                    assert_eq!(
                        (response.status, ran),
                        (401, None),
                        "{case} {authorization:?}"
                    );
                    assert_eq!(response.json_body()["error"], "unauthorized", "{case}");
                } else {
                    assert_ne!(response.status, 401, "{case} needs no token");
                }
                assert_no_internal_text(&response, &case);
            }
        }

        // A database that fails once the caller is let in: one 503 without the cause.
        let (response, ran) = answer(
            routes,
            Ok(broken(&platform)),
            Ok(request(route.method, &path, Some(&bearer))),
        )
        .await;
        if route.needs_schema != Schemas::None {
            assert_eq!((response.status, ran), (503, None), "{case}");
            assert_eq!(unavailable(), response, "{case}");
        } else {
            assert_eq!((response.status, ran), (200, Some(route.handler)), "{case}");
        }
        assert_no_internal_text(&response, &case);

        // A platform that cannot be built at all: the same 503, whoever asks.
        for authorization in [None, Some(bearer.as_str())] {
            let (response, ran) = answer(
                routes,
                Err(anyhow::anyhow!("opening the store: {INTERNAL}")),
                Ok(request(route.method, &path, authorization)),
            )
            .await;
            assert_eq!((response.status, ran), (503, None), "{case}");
            assert_no_internal_text(&response, &case);
        }
    }

    let (response, ran) = answer(
        routes,
        Ok(platform.clone()),
        Ok(request("POST", "/nowhere", Some(&bearer))),
    )
    .await;
    assert_eq!((response.status, ran), (404, None));
    let refusal = Response::error(413, "request body is larger than 10 bytes");
    let (response, ran) = answer(routes, Ok(platform), Err(refusal.clone())).await;
    assert_eq!((response, ran), (refusal, None));
}

#[tokio::test]
async fn every_route_is_refused_before_its_handler_when_method_token_or_database_is_wrong() {
    check_table(WEBHOOK).await;
    check_table(QUEUE_DRAIN).await;
    check_table(PHONE_SYNC).await;
}

#[tokio::test]
async fn the_status_page_opens_with_a_signed_link_but_not_a_forged_or_stale_one() {
    let (_dir, platform, clock) = migrated_platform().await;
    let link = status_page::signed_query(ADMIN_TOKEN, T0);
    let status = |query: String| Request {
        query,
        ..request("GET", "/status", None)
    };
    let (response, ran) = answer(QUEUE_DRAIN, Ok(platform.clone()), Ok(status(link.clone()))).await;
    assert_eq!((response.status, ran.is_some()), (200, true));
    let forged = status_page::signed_query("not-the-token", T0);
    let (response, ran) = answer(QUEUE_DRAIN, Ok(platform.clone()), Ok(status(forged))).await;
    assert_eq!((response.status, ran), (401, None));
    clock.advance_ms(status_page::LINK_TTL_MS + 1);
    let (response, ran) = answer(QUEUE_DRAIN, Ok(platform), Ok(status(link))).await;
    assert_eq!((response.status, ran), (401, None));
}

#[tokio::test]
async fn a_trigger_starts_like_a_request_and_reports_a_broken_database() {
    let (_dir, platform, _clock) = migrated_platform().await;
    let ran = Cell::new(false);
    run_trigger("cron", 0, Ok(platform.clone()), |_, _| async {
        ran.set(true);
        Ok(())
    })
    .await
    .unwrap();
    assert!(ran.get());
    ran.set(false);
    let error = run_trigger("cron", 0, Ok(broken(&platform)), |_, _| async {
        ran.set(true);
        Ok(())
    })
    .await
    .unwrap_err();
    assert!(!ran.get());
    assert!(format!("{error:#}").contains("disk I/O"), "{error:#}");
}

/// Counts the host reads of each variable.
struct CountedVariables {
    vars: Rc<dyn crate::platform::Variables>,
    reads: RefCell<std::collections::BTreeMap<String, u32>>,
}

impl crate::platform::Variables for CountedVariables {
    fn get(&self, name: &str) -> anyhow::Result<Option<String>> {
        *self.reads.borrow_mut().entry(name.to_owned()).or_default() += 1;
        self.vars.get(name)
    }
}

#[tokio::test]
async fn a_request_reads_each_variable_from_the_host_at_most_once() {
    let (_dir, platform, _clock) = migrated_platform().await;
    let counted = Rc::new(CountedVariables {
        vars: platform.vars.clone(),
        reads: RefCell::new(Default::default()),
    });
    let platform = Platform {
        vars: counted.clone(),
        ..platform
    };
    let route = QUEUE_DRAIN
        .iter()
        .find(|r| matches!(r.auth, Auth::Admin))
        .expect("an admin route");
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let sent = Rc::new(RefCell::new(None));
    let reply = {
        let sent = sent.clone();
        Reply::new(move |response| {
            *sent.borrow_mut() = Some(response);
            async {}
        })
    };
    // The edge reads `log_level` and `admin_token`; the handler loads sections that share variables
    // with each other and with the edge, as the tick does.
    let handler = |cx: Context, _: _, reply: Reply| async move {
        let drain = crate::sync::SyncSettings::load(&cx.settings).map(|_| ());
        let notion = cx
            .settings
            .load(crate::configuration::NotionConfig::load)
            .map(|_| ());
        let token = cx.settings.admin().token;
        let ok = drain.is_ok() && notion.is_ok() && token.expose() == ADMIN_TOKEN;
        let _ = cx.settings.missing_required();
        reply
            .send(Response::json(200, &serde_json::json!({ "ok": ok })))
            .await
    };
    let request = request(route.method, &path_of(route), Some(&bearer));
    dispatch(
        "test",
        Ok(request),
        Ok(platform),
        QUEUE_DRAIN,
        reply,
        handler,
    )
    .await;
    let response = sent.borrow_mut().take().expect("the edge always answers");
    assert_eq!(response.json_body()["ok"], true, "{response:?}");
    let reads = counted.reads.borrow();
    for name in [
        "log_level",
        "admin_token",
        "notion_api_key",
        "sync_interval_minutes",
    ] {
        assert_eq!(reads.get(name), Some(&1), "{name}: {reads:?}");
    }
    assert!(reads.values().all(|&n| n == 1), "{reads:?}");
}
