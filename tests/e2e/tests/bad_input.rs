//! Bad input, end to end: malformed and hostile webhook bodies, bad signatures and headers, admin routes
//! without or with wrong tokens, path tricks, and hostile data inside valid events. Every request gets a
//! clear answer (a status that says what was wrong, a short JSON error), no component traps, and nothing
//! is lost or half-stored: the queue, the DLQ and the Notion pages agree afterwards.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use e2e::app::{TestApp, TestAppOptions, ADMIN_TOKEN};
use serde_json::{json, Value};
use test_servers::notion::property_text;
use test_servers::webhooks::{
    legacy_signature, standard_signature, CallFixture, MessageFixture, TranscriptFixture,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest error body the app may answer with: it must not echo a hostile input back.
const MAX_ERROR_BYTES: usize = 2048;
const TEN_MIB: usize = 10 * 1024 * 1024;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn fresh_message(id: &str) -> MessageFixture {
    let now = chrono::Utc::now();
    MessageFixture {
        event_id: format!("EV{id}"),
        message_id: id.into(),
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    }
}

/// `POST /webhooks/openphone` with `body` and `headers` as given.
async fn post_webhook(
    app: &TestApp,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> anyhow::Result<(u16, String)> {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhooks/openphone", app.base_url))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let response = request.send().await.context("sending the webhook")?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// `body` signed with the app's key (legacy scheme), so only the body itself is wrong.
async fn post_signed(app: &TestApp, body: Vec<u8>) -> anyhow::Result<(u16, String)> {
    let signature = legacy_signature(&app.webhook_key, now_ms(), &body)?;
    post_webhook(
        app,
        body,
        &[
            ("openphone-signature", signature),
            ("content-type", "application/json".into()),
        ],
    )
    .await
}

/// Checks that an answer is `status` with a short JSON error mentioning `hint`.
fn expect_error(
    case: &str,
    (status, body): &(u16, String),
    expected: u16,
    hint: &str,
) -> anyhow::Result<()> {
    ensure!(
        *status == expected,
        "{case}: expected {expected}, got {status}: {}",
        shorten(body)
    );
    ensure!(
        body.len() <= MAX_ERROR_BYTES,
        "{case}: a {}-byte error echoes the input",
        body.len()
    );
    let json: Value = serde_json::from_str(body)
        .with_context(|| format!("{case}: the error is not JSON: {body}"))?;
    let error = json["error"]
        .as_str()
        .with_context(|| format!("{case}: no \"error\" in {body}"))?;
    ensure!(
        error.contains(hint),
        "{case}: the error {error:?} does not say {hint:?}"
    );
    Ok(())
}

fn shorten(text: &str) -> String {
    text.chars().take(300).collect()
}

/// Sends `head` (request line and headers, exactly as written: paths and header bytes an HTTP client
/// library would normalize or refuse) and `body`, and returns the status and body of the answer.
async fn raw_request(
    app: &TestApp,
    head: impl AsRef<[u8]>,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut request = head.as_ref().to_vec();
    request.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    exchange(app, vec![request]).await
}

/// Sends a body of `len` bytes with chunked transfer encoding: no `Content-Length` to refuse it by.
async fn chunked_request(app: &TestApp, head: &str, len: usize) -> anyhow::Result<(u16, String)> {
    let chunk = [
        format!("{:x}\r\n", 64 * 1024).into_bytes(),
        vec![b'x'; 64 * 1024],
        b"\r\n".to_vec(),
    ]
    .concat();
    let mut parts = vec![format!("{head}\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes()];
    parts.extend(std::iter::repeat_n(chunk, len / (64 * 1024)));
    parts.push(b"0\r\n\r\n".to_vec());
    exchange(app, parts).await
}

/// Writes `parts` on a new connection while reading the answer, which may come (and the server stop
/// reading) before the request is complete, as it should for a body it refuses. A server that closes
/// with part of the body unread resets the connection, and the reset can overtake the end of its answer
/// (seen on `spin up`: a `413` whose JSON body never arrived); such an exchange is tried again, three
/// times at most.
async fn exchange(app: &TestApp, parts: Vec<Vec<u8>>) -> anyhow::Result<(u16, String)> {
    let mut attempts = 1;
    loop {
        let (answer, reset) = exchange_once(app, parts.clone()).await?;
        if !reset || is_complete(&answer) || attempts == 3 {
            return parse_response(&answer);
        }
        attempts += 1;
    }
}

/// One exchange: the bytes of the answer, and whether the connection was reset while reading them.
async fn exchange_once(app: &TestApp, mut parts: Vec<Vec<u8>>) -> anyhow::Result<(Vec<u8>, bool)> {
    let address = app.base_url.trim_start_matches("http://").to_owned();
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .context("connecting")?;
    let (mut reader, mut writer) = stream.into_split();
    // Host and Connection go right after the request line, before whatever the caller wrote.
    let first = &mut parts[0];
    let line_end = first
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(first.len());
    first.splice(
        line_end..line_end,
        format!("\r\nHost: {address}\r\nConnection: close").into_bytes(),
    );
    let sender = tokio::spawn(async move {
        for part in parts {
            writer.write_all(&part).await?;
        }
        // Returned, not dropped: dropping the write half would half-close the connection, and a server
        // may take that for the client going away before it answers.
        anyhow::Ok(writer)
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut answer))
        .await
        .context("no answer within 30 s")?;
    drop(sender);
    // A reset after an answer is the server refusing the rest of the body.
    match read {
        Err(e) if answer.is_empty() => Err(e).context("reading the answer"),
        read => Ok((answer, read.is_err())),
    }
}

/// Whether `raw` holds a whole answer: its head, and all of the body its `Content-Length` or final chunk
/// announces.
fn is_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let head = head.to_ascii_lowercase();
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with("0\r\n\r\n");
    }
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_none_or(|n| body.len() >= n)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no complete answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status line: {head:?}"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

async fn stats(app: &TestApp) -> anyhow::Result<Value> {
    let response = app.admin_get("/stats").await;
    ensure!(
        response.status() == 200,
        "/stats answered {}",
        response.status()
    );
    response.json().await.context("/stats is JSON")
}

fn stored_events(stats: &Value) -> i64 {
    ["pending", "leased", "done", "skipped", "dead"]
        .iter()
        .map(|s| stats["queue"][s].as_i64().unwrap_or(0))
        .sum()
}

/// Lines of the logs that show a component panicking or trapping.
fn traps(app: &TestApp) -> Vec<String> {
    app.logs()
        .lines()
        .filter(|l| {
            l.contains("panicked") || l.contains("wasm trap") || l.contains("wasm backtrace")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_webhook_bodies_are_refused_clearly_and_store_nothing(
) -> anyhow::Result<()> {
    let app = TestApp::start(TestAppOptions::default()).await?;
    let deep = |depth: usize| {
        format!(
            r#"{{"id":"EVdeep","type":"message.received","data":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("empty body", Vec::new(), 400, "not JSON"),
        ("not JSON", b"hello".to_vec(), 400, "not JSON"),
        (
            "invalid UTF-8",
            b"{\"id\":\"EV\xff\xfe\",\"type\":\"message.received\"}".to_vec(),
            400,
            "not JSON",
        ),
        (
            "a lone surrogate",
            br#"{"id":"EVsur","type":"message.received","data":{"object":{"body":"\ud800"}}}"#
                .to_vec(),
            400,
            "not JSON",
        ),
        (
            "truncated JSON",
            br#"{"id":"EVcut","type":"message.rec"#.to_vec(),
            400,
            "not JSON",
        ),
        ("an array", b"[1,2,3]".to_vec(), 400, "not a JSON object"),
        ("null", b"null".to_vec(), 400, "not a JSON object"),
        (
            "no id",
            br#"{"type":"message.received"}"#.to_vec(),
            400,
            "no id",
        ),
        (
            "a numeric id",
            br#"{"id":12,"type":"message.received"}"#.to_vec(),
            400,
            "no id",
        ),
        (
            "an id with a path",
            br#"{"id":"../../etc/passwd","type":"message.received"}"#.to_vec(),
            400,
            "id is not usable",
        ),
        (
            "a 500 KB id",
            format!(
                r#"{{"id":"EV{}","type":"message.received"}}"#,
                "a".repeat(500_000)
            )
            .into_bytes(),
            400,
            "id is not usable",
        ),
        (
            "a type that is a list",
            br#"{"id":"EVtype","type":["message.received"]}"#.to_vec(),
            400,
            "no \"type\"",
        ),
        (
            "nesting 100 000 deep",
            deep(100_000).into_bytes(),
            400,
            "not JSON",
        ),
        (
            "a body just over 1 MiB",
            format!(
                r#"{{"id":"EVbig","type":"message.received","pad":"{}"}}"#,
                "x".repeat(1024 * 1024)
            )
            .into_bytes(),
            413,
            "larger than",
        ),
    ];
    for (case, body, status, hint) in cases {
        let answer = post_signed(&app, body)
            .await
            .with_context(|| case.to_owned())?;
        expect_error(case, &answer, status, hint)?;
    }
    // Refused by its Content-Length, before it is read (and before its signature is).
    let answer = raw_request(
        &app,
        "POST /webhooks/openphone HTTP/1.1",
        &vec![b' '; TEN_MIB],
    )
    .await?;
    expect_error("a 10 MiB body", &answer, 413, "larger than")?;
    // Without a Content-Length to refuse it by, a 10 MiB body is cut off after 1 MiB.
    let answer = chunked_request(&app, "POST /webhooks/openphone HTTP/1.1", TEN_MIB).await?;
    expect_error("a 10 MiB chunked body", &answer, 413, "larger than")?;

    let stats = stats(&app).await?;
    ensure!(
        stored_events(&stats) == 0,
        "refused bodies were stored: {stats}"
    );
    let traps = traps(&app);
    ensure!(traps.is_empty(), "components trapped: {traps:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_signatures_and_headers_are_refused_with_401_and_store_nothing() -> anyhow::Result<()> {
    let app = TestApp::start(TestAppOptions::default()).await?;
    let body = serde_json::to_vec(&fresh_message("ACsig1").message_received())?;
    let now = now_ms();
    let valid = legacy_signature(&app.webhook_key, now, &body)?;
    let digest = valid.rsplit(';').next().context("a digest")?.to_owned();
    let other_body = legacy_signature(&app.webhook_key, now, b"{}")?;
    let whsec = format!("whsec_{}", app.webhook_key);
    let standard = standard_signature(&whsec, "msg_1", now / 1000, &body)?;
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no signature", vec![]),
        (
            "an empty signature",
            vec![("openphone-signature", String::new())],
        ),
        (
            "a signature without a digest",
            vec![("openphone-signature", format!("hmac;1;{now}"))],
        ),
        (
            "a timestamp that is not a number",
            vec![("openphone-signature", format!("hmac;1;soon;{digest}"))],
        ),
        (
            "another scheme version",
            vec![("openphone-signature", format!("hmac;2;{now};{digest}"))],
        ),
        (
            "a digest that is not base64",
            vec![("openphone-signature", format!("hmac;1;{now};%%%"))],
        ),
        (
            "the signature of another body",
            vec![("openphone-signature", other_body)],
        ),
        (
            "a timestamp six minutes ahead",
            vec![(
                "openphone-signature",
                legacy_signature(&app.webhook_key, now + 360_000, &body)?,
            )],
        ),
        (
            "a 60 KB signature header",
            vec![(
                "openphone-signature",
                format!("hmac;1;{now};{}", "A".repeat(60_000)),
            )],
        ),
        (
            "a thousand signatures, none valid",
            vec![(
                "openphone-signature",
                vec![format!("hmac;1;{now};{digest}x"); 1000].join(","),
            )],
        ),
        (
            "standard: no webhook-id",
            vec![
                ("webhook-timestamp", (now / 1000).to_string()),
                ("webhook-signature", standard.clone()),
            ],
        ),
        (
            "standard: another webhook-id",
            vec![
                ("webhook-id", "msg_2".into()),
                ("webhook-timestamp", (now / 1000).to_string()),
                ("webhook-signature", standard.clone()),
            ],
        ),
        (
            "standard: a timestamp that is not a number",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", "now".into()),
                ("webhook-signature", standard.clone()),
            ],
        ),
        (
            "standard: no timestamp",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-signature", standard),
            ],
        ),
        (
            "standard: a garbage signature",
            vec![
                ("webhook-id", "msg_1".into()),
                ("webhook-timestamp", (now / 1000).to_string()),
                ("webhook-signature", "v1,!!!".into()),
            ],
        ),
    ];
    for (case, headers) in cases {
        let answer = post_webhook(&app, body.clone(), &headers).await?;
        expect_error(case, &answer, 401, "")?;
    }
    // A header value that is not UTF-8 never reaches the app: Spin answers 500 itself (and so does the
    // test host), and nothing is stored.
    let head = [
        b"POST /webhooks/openphone HTTP/1.1\r\nOpenphone-Signature: hmac;1;".as_slice(),
        b"\xff\xfe;\x80",
    ]
    .concat();
    let answer = raw_request(&app, head, &body)
        .await
        .context("a signature that is not UTF-8")?;
    ensure!(
        answer.0 == 500,
        "a signature that is not UTF-8: Spin answers 500 before the app, got {answer:?}"
    );
    for method in ["GET", "PUT", "DELETE"] {
        let answer = raw_request(&app, format!("{method} /webhooks/openphone HTTP/1.1"), b"")
            .await
            .context(method)?;
        expect_error(method, &answer, 405, "")?;
    }

    let stats = stats(&app).await?;
    ensure!(
        stored_events(&stats) == 0,
        "refused deliveries were stored: {stats}"
    );
    let traps = traps(&app);
    ensure!(traps.is_empty(), "components trapped: {traps:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_routes_refuse_wrong_tokens_and_path_tricks_reach_nothing() -> anyhow::Result<()> {
    let app = TestApp::start(TestAppOptions::default()).await?;
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_TOKEN}"))
    };
    let almost = format!("{}X", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let wrong: Vec<(&str, String)> = vec![
        ("an empty bearer", "Bearer ".into()),
        ("a bearer with no space", format!("Bearer{ADMIN_TOKEN}")),
        ("the token without a scheme", ADMIN_TOKEN.into()),
        (
            "the token's last character changed",
            format!("Bearer {almost}"),
        ),
        (
            "a prefix of the token",
            format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
        ),
        (
            "the token and more",
            format!("Bearer {ADMIN_TOKEN}{ADMIN_TOKEN}"),
        ),
        ("basic auth with the token", format!("Basic {basic}")),
        ("a 60 KB token", format!("Bearer {}", "t".repeat(60_000))),
    ];
    for (method, path) in [
        ("GET", "/stats"),
        ("POST", "/admin/drain"),
        ("POST", "/admin/dlq/replay"),
        ("GET", "/admin/dlq"),
        ("POST", "/admin/sync"),
    ] {
        for (case, authorization) in &wrong {
            let head = format!("{method} {path} HTTP/1.1\r\nAuthorization: {authorization}");
            let answer = raw_request(&app, &head, b"{}")
                .await
                .with_context(|| format!("{path} {case}"))?;
            expect_error(
                &format!("{method} {path} with {case}"),
                &answer,
                401,
                "unauthorized",
            )?;
        }
        let answer = raw_request(
            &app,
            &format!("{method} {path}?token={ADMIN_TOKEN} HTTP/1.1"),
            b"{}",
        )
        .await?;
        expect_error(
            &format!("{method} {path} with the token in the query"),
            &answer,
            401,
            "unauthorized",
        )?;
    }

    // Path tricks, sent exactly as written, with the right token: none reaches a private route, and none
    // gets past a route's own name; the only acceptable answers are "no such route" and refusals.
    let bearer = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let tricks = [
        "POST /drain",
        "POST //drain",
        "POST /./drain",
        "POST /admin/../drain",
        "POST /admin/%2e%2e/drain",
        "POST /webhooks/openphone/../../drain",
        "POST /%64rain",
        "POST /sync/PNline0000",
        "POST /admin/sync/../../sync/PNline0000",
        "POST http://queue-drain.spin.internal/drain",
        "POST /admin/drain%00",
        "POST /admin/drain/..%2f..%2fdrain",
        "POST /admin//drain",
        "POST /ADMIN/DRAIN",
        "GET /stats/../admin/dlq",
        "GET /health/../stats",
    ];
    for trick in tricks {
        let answer = raw_request(&app, format!("{trick} HTTP/1.1\r\n{bearer}"), b"{}")
            .await
            .context(trick)?;
        ensure!(
            matches!(answer.0, 400 | 401 | 404 | 405),
            "{trick} answered {}: {}",
            answer.0,
            shorten(&answer.1)
        );
    }
    let private = raw_request(
        &app,
        "POST /drain HTTP/1.1\r\nX-Forwarded-Host: queue-drain.spin.internal",
        b"",
    )
    .await?;
    ensure!(
        private.0 == 404,
        "the private drain route answered {} to a forwarded host",
        private.0
    );

    // Bodies the admin routes refuse, with the right token.
    let authorized =
        |path: &str| format!("POST {path} HTTP/1.1\r\n{bearer}\r\nContent-Type: application/json");
    let bodies: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "replay: not JSON",
            "/admin/dlq/replay",
            b"{ids".to_vec(),
            400,
            "",
        ),
        (
            "replay: ids not a list",
            "/admin/dlq/replay",
            br#"{"ids":"all"}"#.to_vec(),
            400,
            "",
        ),
        (
            "replay: a numeric type",
            "/admin/dlq/replay",
            br#"{"type":5}"#.to_vec(),
            400,
            "",
        ),
        (
            "replay: 10 MiB",
            "/admin/dlq/replay",
            vec![b' '; TEN_MIB],
            413,
            "larger than",
        ),
        (
            "canvas lookup: nothing to look up",
            "/admin/canvas/lookup",
            b"{}".to_vec(),
            400,
            "",
        ),
        (
            "canvas lookup: a list",
            "/admin/canvas/lookup",
            b"[]".to_vec(),
            400,
            "",
        ),
    ];
    for (case, path, body, status, hint) in bodies {
        let answer = raw_request(&app, &authorized(path), &body).await?;
        expect_error(case, &answer, status, hint)?;
    }
    for query in [
        "limit=abc",
        "limit=0",
        "limit=99999999999999999999",
        "limit=-1",
    ] {
        let answer = raw_request(
            &app,
            &format!("GET /admin/dlq?{query} HTTP/1.1\r\n{bearer}"),
            b"",
        )
        .await?;
        expect_error(query, &answer, 400, "limit")?;
    }
    let lookup = raw_request(
        &app,
        &authorized("/admin/canvas/lookup"),
        format!(r#"{{"phone":"{}"}}"#, "9".repeat(10_000)).as_bytes(),
    )
    .await?;
    ensure!(
        matches!(lookup.0, 200 | 400),
        "a 10 000-digit phone lookup answered {}: {}",
        lookup.0,
        shorten(&lookup.1)
    );
    ensure!(
        lookup.1.len() <= MAX_ERROR_BYTES,
        "the lookup echoes the 10 000 digits back"
    );

    let traps = traps(&app);
    ensure!(traps.is_empty(), "components trapped: {traps:?}");
    Ok(())
}

/// A database that stops answering: every route that needs the app's database answers one `503` naming
/// nothing internal (no database error, no file), and the admin token is still checked first; the webhook,
/// which needs only the intake database, still takes deliveries. With the intake database down, a
/// delivery is refused with the same `503`, and stored when OpenPhone delivers it again.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_stops_answering_is_one_503_that_names_nothing_internal(
) -> anyhow::Result<()> {
    const UNAVAILABLE: &str = r#"{"error":"the database is unavailable; try again later"}"#;
    let app = TestApp::start(TestAppOptions::default()).await?;
    let before = stored_events(&stats(&app).await?);
    let taken = fresh_message("ACtaken").message_received();
    let delivery = fresh_message("ACdown").message_received();

    let lock = app.lock_database()?;
    let bearer = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let accepted = app.deliver(&taken).await;
    let accepted = (accepted.status().as_u16(), accepted.text().await?);
    let answers = vec![
        (
            "GET /stats with the token".to_owned(),
            raw_request(&app, format!("GET /stats HTTP/1.1\r\n{bearer}"), b"").await?,
        ),
        (
            "POST /admin/sync with the token".to_owned(),
            raw_request(&app, format!("POST /admin/sync HTTP/1.1\r\n{bearer}"), b"").await?,
        ),
    ];
    // The token is decided without the database: a stranger learns nothing, not even that it is down.
    let stranger = raw_request(&app, "GET /admin/dlq HTTP/1.1", b"").await?;
    drop(lock);

    ensure!(
        accepted.0 == 202,
        "a webhook delivery with the app's database locked answered {}: {}",
        accepted.0,
        shorten(&accepted.1)
    );
    for (case, (status, body)) in &answers {
        ensure!(
            *status == 503 && body == UNAVAILABLE,
            "{case} with the database locked answered {status}: {}",
            shorten(body)
        );
    }
    expect_error(
        "GET /admin/dlq without a token, database locked",
        &stranger,
        401,
        "unauthorized",
    )?;
    ensure!(
        app.logs().contains("database is locked"),
        "the cause of the 503s is not in the log"
    );

    let lock = app.lock_intake_database()?;
    let refused = app.deliver(&delivery).await;
    let refused = (refused.status().as_u16(), refused.text().await?);
    drop(lock);
    ensure!(
        refused.0 == 503 && refused.1 == UNAVAILABLE,
        "a webhook delivery with the intake database locked answered {}: {}",
        refused.0,
        shorten(&refused.1)
    );

    // OpenPhone delivers again once the database is back: stored once, nothing lost.
    let status = app.deliver(&delivery).await.status();
    ensure!(status == 202, "the redelivery answered {status}");
    let after = stored_events(&stats(&app).await?);
    ensure!(
        after == before + 2,
        "{before} events stored before, {after} after two accepted deliveries"
    );
    let traps = traps(&app);
    ensure!(traps.is_empty(), "components trapped: {traps:?}");
    Ok(())
}

/// Drains until nothing is pending or leased, bounded in rounds and time. No fault is injected here, so
/// every event is done or dead at its first attempt; but an event is given back for a few seconds when
/// another holder has its number (on Spin, the cron trigger's periodic sync), and a drain then finds
/// nothing due, so a round that leaves work waits a second before the next.
async fn drain_until_settled(app: &TestApp) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(240);
    for _ in 0..40 {
        ensure!(
            Instant::now() < deadline,
            "the queue did not settle within 240 s; stats: {}",
            stats(app).await?
        );
        let response = app.admin_post("/admin/drain", &json!({})).await;
        ensure!(
            response.status() == 200,
            "/admin/drain answered {}",
            response.status()
        );
        let now = stats(app).await?;
        if now["queue"]["pending"] == 0 && now["queue"]["leased"] == 0 {
            return Ok(now);
        }
        app.wait_idle().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!(
        "the queue did not settle in 40 drain rounds; stats: {}",
        stats(app).await?
    )
}

/// A 300 KB text: over Notion's 2000 characters per text item and 100 items per property.
fn long_text() -> MessageFixture {
    MessageFixture {
        body: "ABCDEFGHIJ".repeat(30_000),
        ..fresh_message("AClongtext")
    }
}

/// `n` people a group text goes to.
fn recipients(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("+1555555{:04}", 2000 + i)).collect()
}

/// A text from the workspace to `n` people.
fn group_text(n: usize) -> MessageFixture {
    let recipients = recipients(n);
    let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
    MessageFixture {
        event_id: "EVgroup".into(),
        message_id: "ACgroup".into(),
        ..MessageFixture::outgoing("+13365550100", &to)
    }
}

fn text(page: &Value, property: &str) -> String {
    property_text(&page["properties"][property]).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_data_inside_valid_events_is_written_or_dead_lettered_never_lost(
) -> anyhow::Result<()> {
    let app = TestApp::start(TestAppOptions::default()).await?;
    // The first request applies the migrations; events created after it do not predate the app.
    stats(&app).await?;
    let now = chrono::Utc::now();

    // A sender whose "phone number" is 200 characters, and a text with every kind of awkward character.
    let long_number = format!("+1{}", "5".repeat(198));
    let odd_sender = MessageFixture {
        from: long_number.clone(),
        body: "NUL \u{0} RTL \u{202e} emoji 😀 quote \" backslash \\".into(),
        ..fresh_message("ACodd")
    };
    let long_text = long_text();
    // A 200-character phone number id (not an id intake can key on).
    let mut long_id = fresh_message("AClongpn").message_received();
    long_id["data"]["object"]["phoneNumberId"] = json!(format!("PN{}", "x".repeat(198)));
    // Fields of the wrong type inside a well-formed envelope.
    let mut wrong_types = fresh_message("ACtypes").message_received();
    wrong_types["data"]["object"]["to"] = json!(5);
    wrong_types["data"]["object"]["createdAt"] = json!({ "when": "yesterday" });
    let mut no_object = fresh_message("ACnoobj").message_received();
    no_object["data"] = json!("not an object");
    // An answered call whose transcript is about 1 MB, just under the 1 MiB body limit.
    let mut call = CallFixture::example().with_ids("AChuge", "EVhugecall");
    call.created_at = now;
    call.answered_at = Some(now);
    call.voicemail = None;
    let mut transcript = TranscriptFixture::long("AChuge", "EVhugetranscript", 480, 2000);
    while serde_json::to_vec(&transcript.to_event())?.len() > 1024 * 1024 - 4096 {
        transcript.dialogue.pop();
    }
    let transcript_bytes = serde_json::to_vec(&transcript.to_event())?.len();
    ensure!(
        transcript_bytes > 950_000,
        "the transcript event is only {transcript_bytes} bytes"
    );

    let events = [
        group_text(100).message_delivered(),
        odd_sender.message_received(),
        long_text.message_received(),
        long_id,
        wrong_types,
        no_object,
        call.call_completed_v2(),
        transcript.to_event(),
    ];
    for event in &events {
        let status = app.deliver(event).await.status();
        ensure!(status == 202, "{} answered {status}", event["id"]);
    }
    let settled = drain_until_settled(&app).await?;

    // Nothing lost: every event is done, or dead with a reason.
    let (done, dead) = (
        settled["queue"]["done"].as_i64().unwrap_or(-1),
        settled["queue"]["dead"].as_i64().unwrap_or(-1),
    );
    ensure!(
        done + dead == events.len() as i64,
        "{} events accepted, {done} done and {dead} dead: {settled}",
        events.len()
    );
    let dlq: Value = app.admin_get("/admin/dlq").await.json().await?;
    let dead_events = dlq["events"].as_array().context("the DLQ lists events")?;
    for event in dead_events {
        let reason = event["last_error"].as_str().unwrap_or_default();
        ensure!(
            !reason.is_empty() && reason.len() <= 1000,
            "dead without a usable reason: {event}"
        );
        println!("dead: {} {}: {reason}", event["id"], event["type"]);
    }
    let dead_ids: Vec<&str> = dead_events
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    ensure!(
        dead_ids
            .iter()
            .all(|id| ["EVACtypes", "EVACnoobj"].contains(id)),
        "valid events died: {dead_ids:?}"
    );

    // Written in full: every recipient, the awkward characters, the long text, the whole transcript.
    let messages = app.notion.pages(&app.messages_ds);
    let page = |id: &str| {
        messages
            .iter()
            .find(|p| text(p, "Message ID") == id)
            .cloned()
    };
    let group = page("ACgroup").context("the group text has no page")?;
    let raw_data = text(&group, "Raw Data");
    let unrecorded: Vec<String> = recipients(100)
        .into_iter()
        .filter(|r| !raw_data.contains(r.as_str()))
        .collect();
    ensure!(
        unrecorded.is_empty(),
        "recipients not on the page: {unrecorded:?}"
    );
    let odd = page("ACodd").context("the awkward text has no page")?;
    ensure!(
        text(&odd, "Content") == odd_sender.body,
        "Content changed: {:?}",
        text(&odd, "Content")
    );
    ensure!(
        text(&odd, "From") == long_number,
        "From changed: {:?}",
        text(&odd, "From")
    );
    let long = page("AClongtext").context("the long text has no page")?;
    let content = text(&long, "Content");
    let kept = content.split('…').next().unwrap_or_default();
    ensure!(
        kept.len() >= 100_000 && long_text.body.starts_with(kept),
        "Content is not the text's beginning ({} chars)",
        content.len()
    );
    ensure!(
        page("AClongpn").is_some(),
        "the text with a 200-character number id has no page"
    );
    let calls = app.notion.pages(&app.calls_ds);
    ensure!(calls.len() == 1, "{} call pages for one call", calls.len());
    ensure!(
        calls[0]["properties"]["Has Transcript"]["checkbox"] == true,
        "Has Transcript is not set"
    );
    let body = app
        .notion
        .block_texts(calls[0]["id"].as_str().unwrap_or_default())
        .concat();
    let missing: Vec<usize> = (0..transcript.dialogue.len())
        .filter(|i| !body.contains(&format!("line {i}: ")))
        .collect();
    ensure!(
        missing.is_empty(),
        "{} of {} transcript lines are not in the page body",
        missing.len(),
        transcript.dialogue.len()
    );

    let traps = traps(&app);
    ensure!(traps.is_empty(), "components trapped: {traps:?}");
    Ok(())
}

/// `To` is a phone-number property, 200 characters at most: it cannot hold 100 recipients, but what it
/// holds must be whole numbers, never a cut-off one that looks like a real number.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_text_to_100_people_never_cuts_a_number_in_to() -> anyhow::Result<()> {
    let app = TestApp::start(TestAppOptions::default()).await?;
    stats(&app).await?;
    let now = chrono::Utc::now();
    let message = MessageFixture {
        created_at: now,
        event_created_at: now,
        ..group_text(100)
    };
    ensure!(
        app.deliver(&message.message_delivered()).await.status() == 202,
        "the group text was refused"
    );
    drain_until_settled(&app).await?;
    let pages = app.notion.pages(&app.messages_ds);
    let page = pages.first().context("the group text has no page")?;
    let to = text(page, "To");
    let all = recipients(100).join(", ");
    ensure!(
        !to.is_empty() && all.starts_with(&to),
        "To is not the recipients in order: {to:?}"
    );
    ensure!(
        to.len() == all.len() || all[to.len()..].starts_with(", "),
        "To ends in a cut-off number: {to:?}"
    );
    Ok(())
}

/// A text longer than a property holds (100 items of 2000 characters) must still be on its page whole:
/// the property is cut with a note that "the full text is in the page body", so the body must have it.
#[tokio::test(flavor = "multi_thread")]
async fn a_300_kb_text_is_on_its_page_whole() -> anyhow::Result<()> {
    let app = TestApp::start(TestAppOptions::default()).await?;
    stats(&app).await?;
    let message = long_text();
    ensure!(
        app.deliver(&message.message_received()).await.status() == 202,
        "the text was refused"
    );
    drain_until_settled(&app).await?;
    let pages = app.notion.pages(&app.messages_ds);
    let page = pages.first().context("the text has no page")?;
    let content = text(page, "Content");
    let body = app
        .notion
        .block_texts(page["id"].as_str().unwrap_or_default())
        .concat();
    let whole = content == message.body || body.contains(&message.body);
    ensure!(
        whole,
        "{} of {} characters are on the page (Content ends {:?}, the body has {} characters)",
        content.split('…').next().unwrap_or_default().len(),
        message.body.len(),
        content
            .chars()
            .rev()
            .take(60)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>(),
        body.len()
    );
    Ok(())
}
