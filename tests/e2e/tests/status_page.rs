//! The status page in a real browser: headless Chromium (Debian's `chromium`) opens `/status` through a
//! signed link at a phone's size, saves a screenshot (`target/tmp/status_page/status-390x844.png`, to look
//! at), dumps the DOM it rendered and logs every request it made. The page must show its charts with the
//! numbers of what happened, and must have loaded nothing but itself: no script, no external asset.
//!
//! Without `chromium` (`CHROMIUM` names another binary) the test says so and is skipped;
//! `scripts/install-test-deps` installs it, so CI always runs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use e2e::app::{TestApp, TestAppOptions};
use serde_json::Value;
use test_servers::webhooks::MessageFixture;

const PATIENCE: Duration = Duration::from_secs(60);
/// A phone's viewport, in CSS pixels.
const PHONE: (u32, u32) = (390, 844);
/// How long one Chromium run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);
/// The charts the page draws, by `data-chart`.
const CHARTS: [&str; 6] = [
    "events",
    "queue",
    "api-openphone",
    "api-notion",
    "api-s3",
    "api-media",
];

/// The Chromium to use: `CHROMIUM`, else `chromium` or `chromium-browser` on the `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(bin));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// What one Chromium run of a page left.
struct BrowserRun {
    /// `--dump-dom`'s output, when asked for.
    dom: String,
    /// Every URL the page's own requests went to (the main document's included), from the net log.
    page_requests: BTreeSet<String>,
}

/// Opens `url` in headless Chromium at [`PHONE`] size with a fresh profile in `dir`, logging the network to
/// `dir/<name>.netlog.json`, and either saves a screenshot to `screenshot` or dumps the DOM.
fn open_in_chromium(
    chromium: &Path,
    dir: &Path,
    name: &str,
    url: &str,
    screenshot: Option<&Path>,
) -> anyhow::Result<BrowserRun> {
    let net_log = dir.join(format!("{name}.netlog.json"));
    let mut command = Command::new(chromium);
    command
        .arg("--headless")
        // As root (CI) Chromium refuses to start sandboxed; the page is the app's own, on loopback.
        .arg("--no-sandbox")
        .arg("--disable-gpu")
        .arg(format!("--user-data-dir={}", dir.join(format!("{name}-profile")).display()))
        // Chromium's own background services (updates, sync, spelling, translation…) are turned off,
        // and any name but the loopback address fails to resolve, so nothing here leaves the machine.
        .args([
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-breakpad",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--disable-features=Translate,OptimizationHints,MediaRouter,SpellCheck,AutofillServerCommunication",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={},{}", PHONE.0, PHONE.1))
        .arg(format!("--log-net-log={}", net_log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match screenshot {
        Some(file) => command.arg(format!("--screenshot={}", file.display())),
        None => command.arg("--dump-dom"),
    };
    command.arg(url);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", chromium.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            child.kill()?;
            child.wait()?;
            bail!("chromium did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(status.success(), "chromium failed ({status}): {stderr}");
    let page_requests = page_requests(&net_log, url)
        .with_context(|| format!("reading {}; chromium said: {stderr}", net_log.display()))?;
    Ok(BrowserRun {
        dom: String::from_utf8(output.stdout).context("the DOM is UTF-8")?,
        page_requests,
    })
}

/// The URLs of every request made for the page at `url`, read from a Chromium net log: requests whose
/// network isolation key is the page's site (its document, its subresources, its favicon), as opposed
/// to the browser's own.
fn page_requests(net_log: &Path, url: &str) -> anyhow::Result<BTreeSet<String>> {
    let log: Value = serde_json::from_slice(&std::fs::read(net_log)?)?;
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_i64()
        .context("no URL_REQUEST_START_JOB in the net log's constants")?;
    let origin: String = url.split('/').take(3).collect::<Vec<_>>().join("/");
    // The site of `http://127.0.0.1:PORT` is `http://127.0.0.1`: the key leaves the port out.
    let site = origin
        .rsplit_once(':')
        .map_or(origin.as_str(), |(site, _)| site);
    let events = log["events"]
        .as_array()
        .context("no events in the net log")?;
    let requests: BTreeSet<String> = events
        .iter()
        .filter(|e| e["type"].as_i64() == Some(start_job))
        .filter(|e| {
            let key = e["params"]["network_isolation_key"].as_str().unwrap_or("");
            let initiator = e["params"]["initiator"].as_str().unwrap_or("");
            key.split_whitespace().next() == Some(site) || initiator.starts_with(&origin)
        })
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_owned))
        .collect();
    Ok(requests)
}

/// Whatever in `dom` makes a browser fetch something or run code: scripts, frames, objects, style sheets
/// and imports, and `src`/`href`/`srcset`/`url(…)` references other than `data:` URLs and in-page anchors.
fn loading_references(dom: &str) -> Vec<String> {
    let lower = dom.to_ascii_lowercase();
    let mut found: Vec<String> = [
        "<script", "<iframe", "<object", "<embed", "@import", " srcset=",
    ]
    .iter()
    .filter(|tag| lower.contains(*tag))
    .map(|tag| (*tag).to_owned())
    .collect();
    for attribute in [" src=\"", " href=\"", "url("] {
        for (at, _) in lower.match_indices(attribute) {
            let value = lower[at + attribute.len()..].trim_start_matches(['\'', '"']);
            if !(value.starts_with("data:") || value.starts_with('#')) {
                found.push(dom[at..(at + 80).min(dom.len())].to_owned());
            }
        }
    }
    found
}

/// The `(width, height)` of a PNG file, from its header.
fn png_size(file: &Path) -> anyhow::Result<(u32, u32)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    ensure!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "{} is not a PNG",
        file.display()
    );
    let number =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Ok((number(16), number(20)))
}

/// The sums of the `N done, N skipped, N dead` tooltips of the event chart's bars.
fn outcomes_in_bars(dom: &str) -> (i64, i64, i64) {
    let mut totals = (0, 0, 0);
    for title in dom.split("<title>").skip(1) {
        let Some((_, counts)) = title.split_once(" UTC: ") else {
            continue;
        };
        let counts = counts.split('<').next().unwrap_or("");
        for part in counts.split(", ") {
            let (n, what) = part.split_once(' ').unwrap_or(("0", ""));
            let n: i64 = n.parse().unwrap_or(0);
            match what {
                "done" => totals.0 += n,
                "skipped" => totals.1 += n,
                "dead" => totals.2 += n,
                _ => {}
            }
        }
    }
    totals
}

/// The markup of the chart `id` in `dom`.
fn chart<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = dom.find(&format!("data-chart=\"{id}\""))?;
    let end = dom[start..].find("</svg>")? + start;
    Some(&dom[start..end])
}

/// The count in the Notion chart's caption ("…% of the 180/min budget; N in 24 h").
fn notion_caption_count(dom: &str) -> Option<i64> {
    let rest = &dom[dom.find("of the 180/min budget; ")? + "of the 180/min budget; ".len()..];
    rest[..rest.find(" in 24 h")?].parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_browser_shows_the_charts_and_loads_nothing_else() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "status page browser test skipped: no chromium on the PATH (scripts/install-test-deps installs \
             Debian's chromium; CHROMIUM=/path/to/chromium names another)"
        );
        return;
    };
    let app = TestApp::start(TestAppOptions::default()).await.unwrap();

    // One message written to Notion, one event of a type the sync ignores, one that cannot be processed.
    let now = chrono::Utc::now();
    let message = MessageFixture {
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    };
    assert_eq!(app.deliver(&message.message_received()).await.status(), 202);
    let mut ignored = message.message_received();
    ignored["id"] = "EVringing".into();
    ignored["type"] = "call.ringing".into();
    assert_eq!(app.deliver(&ignored).await.status(), 202);
    let mut broken = message.message_received();
    broken["id"] = "EVbroken".into();
    broken["data"]["object"] = "not a message".into();
    assert_eq!(app.deliver(&broken).await.status(), 202);
    let stats = app
        .stats_when(PATIENCE, |s| {
            s["queue"]["done"] == 1 && s["queue"]["skipped"] == 1 && s["queue"]["dead"] == 1
        })
        .await;
    assert_eq!(
        (
            &stats["queue"]["done"],
            &stats["queue"]["skipped"],
            &stats["queue"]["dead"]
        ),
        (&1.into(), &1.into(), &1.into()),
        "{stats}"
    );

    let link: Value = app
        .admin_get("/admin/status-link")
        .await
        .json()
        .await
        .unwrap();
    let url = format!("{}{}", app.base_url, link["path"].as_str().unwrap());
    let answer = app.get(link["path"].as_str().unwrap()).await;
    assert_eq!(answer.status(), 200);
    let policy = answer
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        policy.starts_with("default-src 'none'") && !policy.contains("script-src"),
        "the page may load things: {policy:?}"
    );
    let page = answer.text().await.unwrap();
    eprintln!("the status page is {} bytes of HTML", page.len());

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status_page");
    std::fs::create_dir_all(&artifacts).unwrap();
    let suffix = if app.on_spin() { "-spin" } else { "" };
    let screenshot = artifacts.join(format!("status-{}x{}{suffix}.png", PHONE.0, PHONE.1));
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::tempdir().unwrap();
    let (shot, dump) = {
        let (chromium, dir, url, screenshot) = (
            chromium.clone(),
            profile.path().to_owned(),
            url.clone(),
            screenshot.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let shot = open_in_chromium(&chromium, &dir, "screenshot", &url, Some(&screenshot));
            let dump = open_in_chromium(&chromium, &dir, "dom", &url, None);
            (shot, dump)
        })
        .await
        .unwrap()
    };
    let (shot, dump) = (shot.unwrap(), dump.unwrap());
    eprintln!("screenshot of the status page: {}", screenshot.display());
    assert_eq!(
        png_size(&screenshot).unwrap(),
        PHONE,
        "a phone-size screenshot"
    );

    // The browser asked for the page and nothing else, in both runs.
    for run in [&shot, &dump] {
        assert_eq!(
            run.page_requests,
            BTreeSet::from([url.clone()]),
            "requests the page made"
        );
    }

    let dom = &dump.dom;
    assert!(dom.contains("openphone-notion-sync"), "{dom}");
    let references = loading_references(dom);
    assert!(
        references.is_empty(),
        "the page loads or runs: {references:?}"
    );
    for id in CHARTS {
        let svg = chart(dom, id).unwrap_or_else(|| panic!("chart {id} missing from {dom}"));
        assert!(svg.contains("<line "), "chart {id} has no axis: {svg}");
    }
    let events = chart(dom, "events").unwrap();
    assert!(events.contains("<rect "), "no bar: {events}");
    assert_eq!(
        outcomes_in_bars(events),
        (1, 1, 1),
        "the bars add up to what happened: {events}"
    );
    assert!(
        dom.contains("1 done, 1 skipped, 1 dead"),
        "the caption says it"
    );
    assert!(
        chart(dom, "queue").unwrap().contains("<polyline"),
        "the drains sampled the queue"
    );
    let notion = chart(dom, "api-notion").unwrap();
    assert!(
        notion.contains("<polyline") && notion.contains(">budget 180/min<"),
        "{notion}"
    );
    // On real Spin the minute's cron tick may send Notion requests while the browser loads the page, so
    // the caption counts at least what /stats counted before the page and at most what it counts after.
    let before = stats["api"]["notion"]["requests_today"].as_i64().unwrap();
    assert!(before >= 1, "{stats}");
    let after = app.stats().await["api"]["notion"]["requests_today"]
        .as_i64()
        .unwrap();
    let caption = notion_caption_count(dom)
        .unwrap_or_else(|| panic!("no Notion caption with a 24-hour count in {dom}"));
    assert!(
        (before..=after).contains(&caption),
        "the Notion caption counts {caption} requests; /stats counted {before} before the page and {after} after"
    );
    assert!(
        chart(dom, "api-openphone")
            .unwrap()
            .contains(">budget 600/min<"),
        "the OpenPhone budget"
    );
}

#[test]
fn loading_references_are_found_and_inline_content_is_not() {
    let clean = r##"<link rel="icon" href="data:,"><a href="#x">x</a><p>see https://example.com</p><svg><rect/></svg>"##;
    assert!(
        loading_references(clean).is_empty(),
        "{:?}",
        loading_references(clean)
    );
    for dirty in [
        r#"<script>1</script>"#,
        r#"<img src="https://cdn.example.com/x.png">"#,
        r#"<link rel="stylesheet" href="/style.css">"#,
        r#"<div style="background:url(https://x/y.png)"></div>"#,
        r#"<svg><image href="http://127.0.0.2/x.png"/></svg>"#,
        r#"<style>@import "x.css";</style>"#,
    ] {
        assert!(!loading_references(dirty).is_empty(), "{dirty}");
    }
}
