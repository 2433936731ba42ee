//! `GET /status`: the numbers of `/stats` as a page a person would rather look at. A browser cannot send a
//! bearer token, so the page also opens with a short-lived signed link (`GET /admin/status-link` hands one
//! out to a holder of the admin token).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::stats::Stats;

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

/// The page.
pub fn render(stats: &Stats) -> String {
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
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>openphone-notion-sync status</title>\
         <meta name=\"viewport\" content=\"width=device-width\"><style>\
         body{{font:14px system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;margin-bottom:1rem}}\
         th,td{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}th{{background:#f4f4f4}}</style></head>\
         <body><h1>openphone-notion-sync</h1>{run}{queue}{dlq}{numbers}{api}{other}</body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            escape("<script>\"x\"&'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
