//! `GET /status`: the numbers of `/stats` as a page a person would rather look at, led by the last 24 hours
//! as charts (events per hour by outcome, queue depth, API requests per minute against each budget) drawn
//! on the server as inline SVG ([`chart`]): the page has no script and loads nothing else, which its
//! `Content-Security-Policy` ([`CONTENT_SECURITY_POLICY`]) holds any browser to. A browser cannot send a
//! bearer token, so the page also opens with a short-lived signed link (`GET /admin/status-link` hands one
//! out to a holder of the admin token).

pub mod chart;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::api::Response;
use crate::stats::{LastDay, Stats};
use chart::{Bar, BarChart, Key, LineChart, Tick};

/// How long a signed status link works.
pub const LINK_TTL_MS: i64 = 15 * 60 * 1000;

fn signature(admin_token: &str, expires_ms: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(admin_token.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("status:{expires_ms}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The query string of a link valid until `now_ms + LINK_TTL_MS`.
pub fn signed_query(admin_token: &str, now_ms: i64) -> String {
    let expires = now_ms + LINK_TTL_MS;
    format!("expires={expires}&sig={}", signature(admin_token, expires))
}

/// Whether `expires`/`sig` make a valid, unexpired link (compared in constant time).
pub fn link_is_valid(
    admin_token: &str,
    expires: Option<&str>,
    sig: Option<&str>,
    now_ms: i64,
) -> bool {
    use subtle::ConstantTimeEq;
    let (Some(expires), Some(sig)) = (expires.and_then(|e| e.parse::<i64>().ok()), sig) else {
        return false;
    };
    !admin_token.is_empty()
        && expires > now_ms
        && expires <= now_ms + LINK_TTL_MS
        && bool::from(
            signature(admin_token, expires)
                .as_bytes()
                .ct_eq(sig.as_bytes()),
        )
}

fn escape(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn row(cells: &[String]) -> String {
    let cells: String = cells
        .iter()
        .map(|c| format!("<td>{}</td>", escape(c)))
        .collect();
    format!("<tr>{cells}</tr>")
}

fn table(title: &str, head: &[&str], rows: Vec<String>, empty: &str) -> String {
    let head: String = head.iter().map(|h| format!("<th>{h}</th>")).collect();
    let body = if rows.is_empty() {
        format!(
            "<tr><td colspan=\"{}\">{empty}</td></tr>",
            head.len().max(1)
        )
    } else {
        rows.concat()
    };
    format!("<h2>{title}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
}

fn bytes(n: i64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// What the page may load: nothing but its own inline styles and the `data:` favicon that keeps the
/// browser from asking for `/favicon.ico`. No script, no external asset, no form, no framing.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page as a `200` response, with its [`CONTENT_SECURITY_POLICY`].
pub fn response(stats: &Stats, day: &LastDay) -> Response {
    let mut response = Response::html(200, render(stats, day));
    response.headers.push((
        "content-security-policy".into(),
        CONTENT_SECURITY_POLICY.into(),
    ));
    response
}

const HOUR_MS: i64 = 60 * 60 * 1000;
const MINUTE_MS: i64 = 60 * 1000;
/// Colours of the event outcomes, in the order the bars stack them.
const OUTCOMES: [Key<'static>; 3] = [
    Key {
        name: "done",
        color: "#2a9d8f",
    },
    Key {
        name: "skipped",
        color: "#a8b0b8",
    },
    Key {
        name: "dead",
        color: "#d62828",
    },
];

/// `HH:00` (UTC) of an epoch hour start.
fn clock_hour(ms: i64) -> String {
    let hour =
        chrono::Timelike::hour(&chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default());
    format!("{hour:02}:00")
}

/// Labels for a window of `slots` evenly spaced slots starting at `first_ms`, `slot_ms` each: every UTC
/// hour divisible by six, and "now" at the right edge.
fn time_ticks(first_ms: i64, slot_ms: i64, slots: usize) -> Vec<Tick> {
    let span = slot_ms * slots as i64;
    let first_mark = first_ms + (6 * HOUR_MS - first_ms.rem_euclid(6 * HOUR_MS)) % (6 * HOUR_MS);
    let mut ticks: Vec<Tick> = (0..)
        .map(|i| first_mark + i * 6 * HOUR_MS)
        .take_while(|at| *at < first_ms + span)
        .map(|at| Tick {
            at: (at - first_ms) as f64 / span as f64,
            label: clock_hour(at),
        })
        // Room for "now".
        .filter(|tick| tick.at < 0.88)
        .collect();
    ticks.push(Tick {
        at: 1.0,
        label: "now".into(),
    });
    ticks
}

fn api_title(name: &str) -> &str {
    match name {
        "openphone" => "OpenPhone",
        "notion" => "Notion",
        "s3" => "Object storage (S3)",
        "media" => "Recording downloads",
        other => other,
    }
}

/// The "Last 24 hours" section: one figure per chart, each with a caption that says its numbers.
fn charts(day: &LastDay) -> String {
    let mut html = String::from("<h2>Last 24 hours <small>(UTC)</small></h2>");

    let hours = &day.outcomes_per_hour;
    let bars: Vec<Bar> = hours
        .iter()
        .map(|h| Bar {
            title: format!(
                "{}–{} UTC: {} done, {} skipped, {} dead",
                clock_hour(h.start_ms),
                clock_hour(h.start_ms + HOUR_MS),
                h.done,
                h.skipped,
                h.dead
            ),
            values: vec![h.done, h.skipped, h.dead],
        })
        .collect();
    let first_hour = hours.first().map_or(day.now_ms, |h| h.start_ms);
    let total = |f: fn(&crate::stats::HourOutcomes) -> i64| hours.iter().map(f).sum::<i64>();
    let legend: String = OUTCOMES
        .iter()
        .map(|k| {
            format!(
                "<span class=\"item\"><span class=\"key\" style=\"background:{}\"></span>{}</span>",
                k.color, k.name
            )
        })
        .collect();
    html.push_str(&figure(
        "Events per hour, by outcome",
        &legend,
        &chart::bars(&BarChart {
            id: "events",
            title: "Events per hour, by outcome",
            keys: &OUTCOMES,
            bars: &bars,
            x_ticks: &time_ticks(first_hour, HOUR_MS, hours.len()),
            empty: "no event reached an outcome",
        }),
        &format!(
            "{} done, {} skipped, {} dead",
            total(|h| h.done),
            total(|h| h.skipped),
            total(|h| h.dead)
        ),
    ));

    let minutes = day.queue_waiting.len();
    let first_minute = (day.now_ms.div_euclid(MINUTE_MS) - minutes as i64 + 1) * MINUTE_MS;
    let minute_ticks = time_ticks(first_minute, MINUTE_MS, minutes);
    let samples: Vec<i64> = day.queue_waiting.iter().flatten().copied().collect();
    let queue_note = match (
        day.queue_waiting.iter().rev().flatten().next(),
        samples.iter().max(),
    ) {
        (Some(last), Some(peak)) => format!("last sample {last}, peak {peak}"),
        _ => "no drain ran: nothing sampled".to_owned(),
    };
    html.push_str(&figure(
        "Queue depth",
        "events waiting or being processed, peak per minute",
        &chart::line(&LineChart {
            id: "queue",
            title: "Queue depth, peak per minute",
            color: "#e07a1f",
            points: &day.queue_waiting,
            limit: None,
            x_ticks: &minute_ticks,
            empty: "no drain ran",
        }),
        &queue_note,
    ));

    for api in &day.api_per_minute {
        let title = api_title(api.name);
        let peak = api.requests.iter().copied().max().unwrap_or(0);
        let sum: i64 = api.requests.iter().sum();
        let points: Vec<Option<i64>> = api.requests.iter().copied().map(Some).collect();
        let budget_label = api.budget_per_minute.map(|b| format!("budget {b}/min"));
        let note = match api.budget_per_minute {
            Some(budget) => format!(
                "peak {peak}/min, {}% of the {budget}/min budget; {sum} in 24 h",
                peak * 100 / budget.max(1)
            ),
            None => format!("peak {peak}/min; {sum} in 24 h; no shared budget"),
        };
        html.push_str(&figure(
            &format!("{title} requests"),
            "per minute",
            &chart::line(&LineChart {
                id: &format!("api-{}", api.name),
                title: &format!("{title} requests per minute"),
                color: "#1d4ed8",
                points: &points,
                limit: api.budget_per_minute.zip(budget_label.as_deref()),
                x_ticks: &minute_ticks,
                empty: "no requests",
            }),
            &note,
        ));
    }
    html
}

/// A chart with its caption (`title`, then `detail`, which is trusted markup) and a note under it.
fn figure(title: &str, detail: &str, svg: &str, note: &str) -> String {
    format!(
        "<figure><figcaption><b>{}</b> <span class=\"detail\">{detail}</span></figcaption>{svg}\
         <p class=\"note\">{}</p></figure>",
        escape(title),
        escape(note)
    )
}

/// The page.
pub fn render(stats: &Stats, day: &LastDay) -> String {
    let q = &stats.queue;
    let queue = table(
        "Queue",
        &[
            "pending",
            "leased",
            "done",
            "skipped",
            "dead",
            "oldest waiting",
        ],
        vec![row(&[
            q.pending.to_string(),
            q.leased.to_string(),
            q.done.to_string(),
            q.skipped.to_string(),
            q.dead.to_string(),
            stats
                .oldest_pending_age_seconds
                .map_or_else(|| "—".to_owned(), |s| format!("{s} s")),
        ])],
        "",
    );
    let dlq = table(
        &format!("Dead letters ({})", stats.dlq_size),
        &["event", "type", "attempts", "last error"],
        stats
            .dlq_recent
            .iter()
            .map(|d| {
                row(&[
                    d.id.clone(),
                    d.event_type.clone(),
                    d.attempts.to_string(),
                    d.last_error.clone().unwrap_or_default(),
                ])
            })
            .collect(),
        "none",
    );
    let numbers = table(
        "Numbers",
        &["number", "synced up to", "last sync", "last error"],
        stats
            .numbers
            .iter()
            .map(|n| {
                row(&[
                    n.number.clone(),
                    n.cursor.clone().unwrap_or_else(|| "never".into()),
                    n.last_sync_finished_at
                        .clone()
                        .unwrap_or_else(|| "never".into()),
                    n.last_sync_error.clone().unwrap_or_default(),
                ])
            })
            .collect(),
        "no number synced yet",
    );
    let api = table(
        "API requests today",
        &["API", "requests", "errors", "budget"],
        stats
            .api
            .iter()
            .map(|(name, u)| {
                row(&[
                    (*name).to_owned(),
                    u.requests_today.to_string(),
                    u.errors_today.to_string(),
                    u.budget_per_second
                        .map_or_else(|| "—".into(), |b| format!("{b}/s")),
                ])
            })
            .collect(),
        "",
    );
    let (hits, queries) = stats.canvas_lookups_today;
    let other = table(
        "Canvas, recordings, pending work",
        &[
            "canvas cache hit rate",
            "recordings stored",
            "storage used",
            "media gone",
            "calls pending",
            "given up",
        ],
        vec![row(&[
            stats.canvas_cache_hit_rate.map_or_else(
                || "no lookups today".into(),
                |r| format!("{:.0}% ({hits} of {})", r * 100.0, hits + queries),
            ),
            stats.media.stored.to_string(),
            bytes(stats.media.bytes),
            stats.media.gone.to_string(),
            stats.pending_work.waiting.to_string(),
            stats.pending_work.gave_up.to_string(),
        ])],
        "",
    );
    let run = match &stats.last_run {
        Some(r) => format!(
            "<p>Last {} run {} started {}{}: {} numbers, {} requests, {} errors.</p>",
            escape(&r.kind),
            escape(&r.id),
            escape(&r.started_at),
            r.finished_at.as_deref().map_or_else(
                || ", still running".to_owned(),
                |f| format!(", finished {}", escape(f))
            ),
            r.numbers_done,
            r.requests,
            r.errors
        ),
        None => "<p>No periodic run yet.</p>".into(),
    };
    let charts = charts(day);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>openphone-notion-sync status</title>\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><link rel=\"icon\" href=\"data:,\"><style>\
         body{{font:15px/1.4 system-ui,sans-serif;margin:0 auto;padding:.75rem;max-width:46rem;color:#222}}\
         h1{{font-size:1.3rem;margin:.3rem 0}}h2{{font-size:1.1rem;margin:1.4rem 0 .5rem}}h2 small{{font-weight:normal;color:#666}}\
         figure{{margin:0 0 1.1rem}}figcaption{{font-size:.95rem}}.detail,.note{{color:#555;font-size:.85rem}}\
         .note{{margin:.1rem 0 0}}svg{{display:block;height:auto}}\
         .key{{display:inline-block;width:.75em;height:.75em;margin:0 .25em 0 .7em;border-radius:2px;vertical-align:-.05em}}\
         .item{{white-space:nowrap}}.scroll{{overflow-x:auto}}table{{border-collapse:collapse;margin-bottom:1rem}}\
         th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}th{{background:#f4f4f4}}</style></head>\
         <body><h1>openphone-notion-sync</h1>{run}{charts}<div class=\"scroll\">{queue}{dlq}{numbers}{api}{other}</div></body></html>"
    )
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::platform::Clock;

    #[test]
    fn links_expire_and_cannot_be_forged() {
        let query = signed_query("tok", 1_000);
        let params: std::collections::HashMap<&str, &str> =
            query.split('&').filter_map(|p| p.split_once('=')).collect();
        let (e, s) = (params.get("expires").copied(), params.get("sig").copied());
        assert!(link_is_valid("tok", e, s, 1_000));
        assert!(!link_is_valid("tok", e, s, 1_000 + LINK_TTL_MS), "expired");
        assert!(!link_is_valid("other", e, s, 1_000), "another token");
        let later = (1_000 + LINK_TTL_MS * 10).to_string();
        assert!(
            !link_is_valid("tok", Some(&later), s, 1_000),
            "a moved expiry"
        );
        assert!(!link_is_valid("", e, s, 1_000));
        assert!(!link_is_valid("tok", None, s, 1_000));
    }

    #[tokio::test]
    async fn the_page_leads_with_the_charts_and_loads_nothing() {
        let (_dir, platform, clock) = crate::testing::migrated_platform().await;
        platform
            .sql
            .execute(
                "INSERT INTO events (id, type, lease_key, created_at, received_at, payload, state, available_at,
                                     updated_at, finished_at)
                 VALUES ('EV1', 'message.received', 'EV1', ?1, ?1, '{}', 'done', ?1, ?1, ?1)",
                &[clock.now_ms().into()],
            )
            .unwrap();
        crate::metrics::count(&platform, "requests.openphone", 12);
        crate::queue::sample_depth(&platform);
        let stats = crate::stats::collect(&platform).unwrap();
        let day = crate::stats::last_day(&platform).unwrap();
        let response = response(&stats, &day);
        let page = String::from_utf8(response.body).unwrap();

        let charts = [
            "events",
            "queue",
            "api-openphone",
            "api-notion",
            "api-s3",
            "api-media",
        ];
        for chart in charts {
            assert!(
                page.contains(&format!("data-chart=\"{chart}\"")),
                "{chart} missing"
            );
        }
        let first_chart = page.find("<svg").unwrap();
        assert!(
            first_chart < page.find("<table").unwrap(),
            "the charts come first"
        );
        let hour = clock_hour(clock.now_ms() - clock.now_ms().rem_euclid(HOUR_MS));
        assert!(page.contains(&format!("{hour}–")), "the current hour's bar");
        assert!(page.contains(": 1 done, 0 skipped, 0 dead</title>"));
        assert!(page.contains("peak 12/min, 2% of the 600/min budget; 12 in 24 h"));
        assert!(page.contains(">budget 180/min</text>"));
        assert!(page.contains("last sample 0, peak 0"));
        for external in ["<script", "src=", "://", "url(", "@import"] {
            assert!(!page.contains(external), "{external} in the page");
        }
        assert!(response
            .headers
            .iter()
            .any(|(name, value)| name == "content-security-policy"
                && value.starts_with("default-src 'none'")));
    }

    #[test]
    fn time_labels_fall_on_six_hour_marks() {
        let midnight = 1_760_918_400_000; // 2025-10-20T00:00:00Z
        let ticks = time_ticks(midnight - HOUR_MS, HOUR_MS, 24);
        let labels: Vec<(String, String)> = ticks
            .iter()
            .map(|t| (format!("{:.3}", t.at), t.label.clone()))
            .collect();
        let expected = [
            ("0.042", "00:00"),
            ("0.292", "06:00"),
            ("0.542", "12:00"),
            ("0.792", "18:00"),
            ("1.000", "now"),
        ];
        assert_eq!(
            labels,
            expected.map(|(a, l)| (a.to_owned(), l.to_owned())).to_vec()
        );
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
