//! Two replicas, as SpinKube runs the app: two `spin up` processes of the same app sharing one Redis
//! key-value store and one SQLite database, webhooks alternating between them, the cron trigger ticking
//! in both. Each call and each text must end as exactly one complete page, and the per-number leases
//! must have one holder at a time (read from both replicas' logs).
//!
//! Needs real Spin (`SPIN_BIN`, as `scripts/test-spin` sets it); on the test host it is skipped, saying
//! so: the test host is one process.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use e2e::app::{TestApp, TestAppOptions};
use e2e::workload::{contact, CallScript, Line};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use test_servers::notion::property_text;
use test_servers::webhooks::MessageFixture;

const NUMBERS: usize = 5;
const MESSAGES: usize = 200;

fn text(page: &Value, property: &str) -> String {
    property_text(&page["properties"][property]).unwrap_or_default()
}

/// Delivers `payload` to `replica` as OpenPhone does: a `503` (a replica busy on the shared database) is
/// delivered again after a pause, up to 20 times.
async fn deliver(app: &TestApp, replica: usize, payload: &Value) -> u16 {
    for _ in 0..20 {
        let status = app.deliver_to(replica, payload).await.status().as_u16();
        if status != 503 {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    503
}

/// One holder's time with a lease, from the JSON log lines of a replica: acquired, renewed until,
/// released.
#[derive(Debug, Clone)]
struct Tenure {
    replica: usize,
    holder: String,
    from: String,
    /// The release time, or (held to the end of its slot) `None` with `until_ms` set.
    to: Option<String>,
    until_ms: i64,
}

/// Every lease tenure in `logs`, per lease name.
fn tenures(logs: &[String]) -> BTreeMap<String, Vec<Tenure>> {
    let mut open: HashMap<String, Tenure> = HashMap::new();
    let mut done: BTreeMap<String, Vec<Tenure>> = BTreeMap::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for (replica, log) in logs.iter().enumerate() {
        for line in log.lines() {
            let Some(start) = line.find('{') else {
                continue;
            };
            let Ok(entry) = serde_json::from_str::<Value>(&line[start..]) else {
                continue;
            };
            let fields = &entry["fields"];
            let (Some(message), Some(holder)) =
                (fields["message"].as_str(), fields["holder"].as_str())
            else {
                continue;
            };
            let timestamp = entry["timestamp"].as_str().unwrap_or_default().to_owned();
            let until_ms = fields["until"].as_i64().unwrap_or(0);
            match message {
                "lease acquired" => {
                    let name = fields["lease"].as_str().unwrap_or_default().to_owned();
                    names.insert(holder.to_owned(), name);
                    open.insert(
                        holder.to_owned(),
                        Tenure {
                            replica,
                            holder: holder.to_owned(),
                            from: timestamp,
                            to: None,
                            until_ms,
                        },
                    );
                }
                "lease renewed" => {
                    if let Some(tenure) = open.get_mut(holder) {
                        tenure.until_ms = until_ms;
                    }
                }
                "lease released" => {
                    if let Some(mut tenure) = open.remove(holder) {
                        tenure.to = Some(timestamp);
                        done.entry(names[holder].clone()).or_default().push(tenure);
                    }
                }
                _ => {}
            }
        }
    }
    for (holder, tenure) in open {
        done.entry(names[&holder].clone()).or_default().push(tenure);
    }
    done
}

fn millis(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp_millis())
        .unwrap_or(i64::MAX)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_redis_and_one_database_write_each_page_once() {
    if std::env::var_os("SPIN_BIN").is_none() {
        eprintln!("skipped: two replicas need real Spin (set SPIN_BIN; scripts/test-spin does)");
        return;
    }
    let app = TestApp::start(TestAppOptions {
        with_s3: true,
        replicas: 2,
        redis: true,
        ..Default::default()
    })
    .await
    .unwrap();

    // A call with everything that follows it on the first line, and 200 texts over 5 lines, each
    // line talking to two people.
    let lines: Vec<Line> = (0..NUMBERS)
        .map(|i| Line::register(&app.openphone, i))
        .collect();
    let now = chrono::Utc::now();
    let call = CallScript::answered(&app.openphone, &lines[0], &contact(0), "ACreplicacall", now);
    let mut payloads = call.events();
    for i in 0..MESSAGES {
        let line = &lines[i % NUMBERS];
        let text = MessageFixture {
            event_id: format!("EVreplicamsg{i:04}"),
            message_id: format!("ACreplicamsg{i:04}"),
            from: contact(2 * (i % NUMBERS) + i % 2),
            to: vec![line.number.clone()],
            phone_number_id: line.id.clone(),
            body: format!("text {i}"),
            media: Vec::new(),
            created_at: now,
            event_created_at: now,
            ..MessageFixture::example()
        };
        payloads.push(text.message_received());
    }

    // Two waves, each to one replica: the first half to replica 0, then, once its pages are there, the
    // rest to replica 1. A drain keeps a number's events while it holds the number, so with deliveries
    // alternating one replica could hold every lease of a run, and the overlap check below would compare
    // nothing; this way each number's lease is taken by both replicas (its webhook kicks the replica's
    // own drain), and both crons still tick throughout.
    let (first, second) = payloads.split_at(payloads.len() / 2);
    let first_texts = first
        .iter()
        .filter(|p| p["type"] == "message.received")
        .count();
    for (replica, wave, texts) in [(0, first, first_texts), (1, second, MESSAGES)] {
        let statuses: Vec<u16> = stream::iter(wave)
            .map(|payload| deliver(&app, replica, payload))
            .buffer_unordered(8)
            .collect()
            .await;
        let refused: Vec<&u16> = statuses.iter().filter(|s| **s != 202).collect();
        assert!(refused.is_empty(), "answers other than 202: {refused:?}");
        // The webhooks kick the replica's drain and both crons tick: no admin call.
        let settled = app
            .eventually(Duration::from_secs(300), |app| {
                app.notion.pages(&app.messages_ds).len() >= texts
                    && (replica == 0 || app.has_one_complete_call_page())
            })
            .await;
        assert!(
            settled,
            "wave {replica}: {} message pages, calls: {:#?}; logs:\n{}",
            app.notion.pages(&app.messages_ds).len(),
            app.notion.pages(&app.calls_ds),
            app.logs()
        );
    }
    // Give a late duplicate the time to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
    for page in app.notion.pages(&app.messages_ds) {
        *per_message.entry(text(&page, "Message ID")).or_default() += 1;
    }
    assert_eq!(per_message.len(), MESSAGES, "one page per text");
    let twice: Vec<_> = per_message.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "texts with more than one page: {twice:?}");
    let calls = app.notion.pages(&app.calls_ds);
    assert_eq!(calls.len(), 1);
    assert_eq!(text(&calls[0], "Status"), "completed");
    let body = app
        .notion
        .block_texts(calls[0]["id"].as_str().unwrap_or_default());
    for heading in ["Recordings", "Transcript", "Summary", "Next steps"] {
        assert_eq!(
            body.iter().filter(|b| b.as_str() == heading).count(),
            1,
            "{heading} once in {body:#?}"
        );
    }

    // Both replicas worked, and no lease ever had two holders at once.
    let logs = [app.replica_logs(0), app.replica_logs(1)];
    let tenures = tenures(&logs);
    let by_replica = |replica| {
        tenures
            .values()
            .flatten()
            .filter(|t| t.replica == replica)
            .count()
    };
    // Both replicas held leases, and some number's lease was held by both: the overlap check below
    // compares tenures of the two processes, not only one process's with its own.
    let shared: Vec<&String> = tenures
        .iter()
        .filter(|(_, list)| (0..2).all(|r| list.iter().any(|t| t.replica == r)))
        .map(|(name, _)| name)
        .collect();
    assert!(
        by_replica(0) > 0 && by_replica(1) > 0 && !shared.is_empty(),
        "lease tenures per replica: {} and {}; leases both held: {shared:?}",
        by_replica(0),
        by_replica(1)
    );
    for (name, list) in &tenures {
        let mut list = list.clone();
        list.sort_by_key(|t| millis(&t.from));
        for pair in list.windows(2) {
            let (earlier, later) = (&pair[0], &pair[1]);
            let earlier_end = earlier.to.as_deref().map_or(earlier.until_ms, millis);
            assert!(
                earlier_end <= millis(&later.from),
                "lease {name}: {} (replica {}) held it until {earlier_end} when {} (replica {}) took it at {}",
                earlier.holder,
                earlier.replica,
                later.holder,
                later.replica,
                later.from
            );
        }
    }
}
