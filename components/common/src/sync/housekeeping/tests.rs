//! Housekeeping against a real S3 server that checks signatures (`s3s-fs`) and real SQLite/KV files.

use std::rc::Rc;

use test_servers::S3Server;

use super::*;
use crate::lease::{Lease, LeaseConfig};
use crate::platform::native::{ManualClock, NativePlatformBuilder};
use crate::platform::{Clock, Value};
use crate::storage::s3::ObjectAttributes;

const DAY: i64 = 24 * 60 * 60 * 1000;

struct Setup {
    s3: S3Server,
    store: ObjectStore,
    platform: Platform,
    clock: Rc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// A migrated platform whose clock reads the real time (the store checks signature dates) and an empty
/// bucket.
async fn setup() -> Setup {
    let s3 = S3Server::start().expect("s3s-fs starts (scripts/install-test-deps installs it)");
    let store =
        ObjectStore::new(s3.endpoint(), s3.bucket(), s3.access_key(), s3.secret_key()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = Rc::new(ManualClock::at(chrono::Utc::now().timestamp_millis()));
    let platform = NativePlatformBuilder::new(dir.path())
        .clock(clock.clone())
        .build()
        .unwrap();
    crate::migrations::ensure_checked(&platform).await.unwrap();
    Setup {
        s3,
        store,
        platform,
        clock,
        _dir: dir,
    }
}

async fn put(client: &S3Client<'_>, key: &str, size: usize) {
    let attributes = ObjectAttributes {
        content_type: "audio/mpeg".into(),
        metadata: Vec::new(),
    };
    client.put(key, &attributes, vec![1u8; size]).await.unwrap();
}

fn today_key(prefix: &str, now: i64, name: &str) -> String {
    let day = chrono::DateTime::from_timestamp_millis(now)
        .unwrap()
        .format("%Y/%m/%d");
    format!("{prefix}{day}/{name}")
}

#[tokio::test]
async fn retention_takes_old_message_media_and_their_rows_too() {
    let setup = setup().await;
    let client = S3Client::new(&setup.platform, &setup.store);
    let now = setup.clock.now_ms();
    let old = "media/2020/01/01/AC9-1.jpg";
    let recent = today_key("media/", now, "AC8-1.jpg");
    put(&client, old, 40).await;
    put(&client, &recent, 60).await;
    for (id, key) in [("AC9", old), ("AC8", recent.as_str())] {
        setup
            .platform
            .sql
            .execute(
                "INSERT INTO message_media (message_id, position, key, state, size, created_at, updated_at)
                 VALUES (?1, 1, ?2, 'stored', 1, 0, 0)",
                &[id.into(), key.into()],
            )
            .unwrap();
    }
    let report = walk_storage(&setup.platform, &client, 30, 10)
        .await
        .unwrap();
    assert_eq!(
        report.deleted,
        PrefixStats {
            objects: 1,
            bytes: 40
        }
    );
    assert_eq!(
        report.prefixes["media/"],
        PrefixStats {
            objects: 1,
            bytes: 60
        }
    );
    let rows = setup
        .platform
        .sql
        .execute("SELECT key FROM message_media", &[])
        .unwrap();
    let keys: Vec<String> = rows
        .iter()
        .map(|r| r.str("key").unwrap().to_owned())
        .collect();
    assert_eq!(keys, [recent], "the deleted object's row goes with it");
}

#[tokio::test]
async fn statistics_cover_every_page_and_retention_deletes_only_old_recordings() {
    let setup = setup().await;
    let client = S3Client::new(&setup.platform, &setup.store);
    let now = setup.clock.now_ms();
    let recent = today_key("recordings/", now, "AC2-1.mp3");
    put(&client, "recordings/2020/01/01/AC1-1.mp3", 100).await;
    put(&client, "recordings/2020/01/01/AC1-2.mp3", 50).await;
    put(&client, &recent, 70).await;
    put(&client, "voicemails/2020/01/02/AC3.mp3", 30).await;
    // Not the app's: kept whatever its age says.
    put(&client, "exports/2020/01/01/report.csv", 5).await;
    put(&client, "top-level.txt", 1).await;

    // Keep forever: counted over pages of two keys, nothing deleted.
    let report = walk_storage(&setup.platform, &client, 0, 2).await.unwrap();
    assert_eq!(report.pages, 3);
    assert_eq!(
        report.total,
        PrefixStats {
            objects: 6,
            bytes: 256
        }
    );
    assert_eq!(
        report.prefixes["recordings/"],
        PrefixStats {
            objects: 3,
            bytes: 220
        }
    );
    assert_eq!(
        report.prefixes["voicemails/"],
        PrefixStats {
            objects: 1,
            bytes: 30
        }
    );
    assert_eq!(
        report.prefixes[""],
        PrefixStats {
            objects: 1,
            bytes: 1
        }
    );
    assert_eq!(report.deleted, PrefixStats::default());

    // 30 days: the 2020 recordings and voicemail go, today's recording and the other files stay.
    let report = walk_storage(&setup.platform, &client, 30, 2).await.unwrap();
    assert_eq!(
        report.deleted,
        PrefixStats {
            objects: 3,
            bytes: 180
        }
    );
    assert_eq!(
        report.total,
        PrefixStats {
            objects: 3,
            bytes: 76
        }
    );
    let mut left: Vec<String> = setup
        .s3
        .objects()
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            "exports/2020/01/01/report.csv".to_owned(),
            recent,
            "top-level.txt".to_owned()
        ]
    );
}

#[test]
fn age_comes_from_the_key_date_else_last_modified() {
    let object = |key: &str, modified: Option<&str>| ListedObject {
        key: key.into(),
        size: 1,
        last_modified: modified.map(String::from),
    };
    let cutoff = crate::domain::parse_iso("2025-10-20T12:00:00Z").unwrap();
    assert!(expired(
        &object("recordings/2025/10/19/AC1-1.mp3", None),
        cutoff
    ));
    // The cutoff's own day is not over yet.
    assert!(!expired(
        &object("recordings/2025/10/20/AC1-1.mp3", None),
        cutoff
    ));
    assert!(expired(
        &object("voicemails/misc/AC1.mp3", Some("2025-10-01T00:00:00.000Z")),
        cutoff
    ));
    assert!(
        !expired(&object("voicemails/misc/AC1.mp3", None), cutoff),
        "unknown age is kept"
    );
    assert!(!expired(&object("other/2020/01/01/x", None), cutoff));
    assert_eq!(prefix_of("recordings/2025/x"), "recordings/");
    assert_eq!(prefix_of("x"), "");
}

fn insert(platform: &Platform, statement: &str, at: i64) {
    platform.sql.execute(statement, &[at.into()]).unwrap();
}

#[tokio::test]
async fn old_keys_and_rows_are_pruned_and_recent_ones_kept() {
    let setup = setup().await;
    let platform = &setup.platform;
    let now = setup.clock.now_ms();
    let options = SyncOptions::default();
    let old = now - 100 * DAY;

    // A lease taken long ago (early in its slot, so it holds that slot only) and one held now.
    let window = LeaseConfig::default().window_ms;
    let old_clock = Rc::new(ManualClock::at(old - old.rem_euclid(window) + 1_000));
    let old_platform = Platform {
        clock: old_clock,
        ..platform.clone()
    };
    Lease::acquire(&old_platform, "PN1", LeaseConfig::default())
        .unwrap()
        .unwrap()
        .release();
    let held = Lease::acquire(platform, "PN2", LeaseConfig::default())
        .unwrap()
        .unwrap();
    crate::ratelimit::RateBudget::new(&old_platform, "openphone:x".into(), 10)
        .acquire()
        .await
        .unwrap();

    for (id, state, finished) in [
        ("EV1", "done", old),
        ("EV2", "skipped", old),
        ("EV3", "dead", old),
        ("EV4", "done", now),
    ] {
        platform
            .sql
            .execute(
                "INSERT INTO events (id, type, lease_key, created_at, received_at, payload, state, available_at,
                                     updated_at, finished_at)
                 VALUES (?1, 'call.completed', ?1, ?3, ?3, '{}', ?2, ?3, ?3, ?3)",
                &[id.into(), state.into(), finished.into()],
            )
            .unwrap();
    }
    for at in [old, now] {
        insert(
            platform,
            "INSERT INTO sync_history (resource_type, resource_id, source, sync_status, synced_at)
             VALUES ('call', 'AC1', 'backfill', 'success', ?1)",
            at,
        );
    }
    insert(
        platform,
        "INSERT INTO sync_runs (id, kind, started_at, finished_at) VALUES ('old', 'sync', ?1, ?1)",
        old,
    );
    insert(
        platform,
        "INSERT INTO sync_runs (id, kind, started_at) VALUES ('running', 'sync', ?1)",
        old,
    );
    insert(
        platform,
        "INSERT INTO sync_runs (id, kind, started_at, finished_at) VALUES ('tick', 'tick', ?1, ?1)",
        now - 2 * DAY,
    );
    insert(
        platform,
        "INSERT INTO sync_runs (id, kind, started_at, finished_at) VALUES ('new', 'sync', ?1, ?1)",
        now - 2 * DAY,
    );
    for (call, needs, gave_up) in [("AC1", 0, None), ("AC2", 2, Some(old)), ("AC3", 2, None)] {
        platform
            .sql
            .execute(
                "INSERT INTO pending_work (call_id, phone_number_id, call_created_at, needs, next_check_at,
                                           gave_up_at, updated_at)
                 VALUES (?1, 'PN1', ?3, ?2, ?3, ?4, ?3)",
                &[call.into(), Value::Integer(needs), old.into(), Value::from(gave_up)],
            )
            .unwrap();
    }

    let report = run(platform, &options, None).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.storage, None);
    assert_eq!(
        report.lease_keys_pruned, 2,
        "the old slot's generation and winner keys"
    );
    assert_eq!(report.rate_windows_pruned, 1);
    assert_eq!(
        report.events_pruned, 2,
        "done and skipped; dead stays for the DLQ"
    );
    assert_eq!(report.history_pruned, 1);
    assert_eq!(
        report.runs_pruned, 2,
        "the old finished sync and the day-old tick"
    );
    assert_eq!(
        report.pending_pruned, 2,
        "settled and given up; AC3 still waits"
    );

    let left = |statement: &str| -> Vec<String> {
        platform
            .sql
            .execute(statement, &[])
            .unwrap()
            .iter()
            .map(|r| r.str("id").unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        left("SELECT id FROM events ORDER BY id"),
        vec!["EV3", "EV4"]
    );
    assert_eq!(
        left("SELECT id FROM sync_runs ORDER BY id"),
        vec!["new", "running"]
    );
    assert_eq!(left("SELECT call_id AS id FROM pending_work"), vec!["AC3"]);
    held.check().unwrap();
    assert!(!platform
        .kv
        .keys_with_prefix("lease:PN2")
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn without_storage_configuration_the_rest_still_runs() {
    let setup = setup().await;
    let report = run_configured(&setup.platform, &SyncOptions::default(), None).await;
    assert_eq!(report.storage, None);
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("object storage not configured")),
        "{:?}",
        report.errors
    );
}

#[tokio::test]
async fn media_retention_deleted_is_not_copied_back_by_a_later_event() {
    use crate::storage::media::{MediaCopier, MediaSource, StoredMedia};
    use crate::storage::testing::{media_server, storage_config};
    use test_servers::openphone::media_pattern;

    let setup = setup().await;
    let media = media_server();
    let copier = MediaCopier::new(
        &setup.platform,
        &storage_config(&setup.s3),
        &media.media_base_url(),
    )
    .unwrap();
    let source = |path: &str, content_type: &str| MediaSource {
        url: media.add_media(path, content_type, media_pattern(3, 2_000)),
        content_type: Some(content_type.to_owned()),
        duration: None,
    };
    let recording = source("/opstatics/old.mp3", "audio/mpeg");
    let voicemail = source("/opstatics/old-vm.mp3", "audio/mpeg");
    let picture = source("/opstatics/old.png", "image/png");
    let created: chrono::DateTime<chrono::Utc> = "2020-01-01T10:00:00Z".parse().unwrap();
    let copy_all = || async {
        let mut results = copier
            .copy_recordings("ACold", created, std::slice::from_ref(&recording))
            .await;
        results.push(copier.copy_voicemail("ACold", created, &voicemail).await);
        results.extend(
            copier
                .copy_message_media("ACmms", created, std::slice::from_ref(&picture))
                .await,
        );
        results
    };
    for result in copy_all().await {
        assert!(matches!(result, Ok(StoredMedia::Stored(_))), "{result:?}");
    }
    let client = S3Client::new(&setup.platform, &setup.store);
    let report = walk_storage(&setup.platform, &client, 30, 10)
        .await
        .unwrap();
    assert_eq!(report.deleted.objects, 3);

    // A replay of the call and the message: nothing is uploaded again, and no link is handed out.
    for result in copy_all().await {
        assert!(
            matches!(result, Ok(StoredMedia::Retired { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        setup.s3.objects().unwrap(),
        [],
        "the bucket got a retired copy back"
    );
    let report = walk_storage(&setup.platform, &client, 30, 10)
        .await
        .unwrap();
    assert_eq!(report.deleted.objects, 0);
    for table in ["media_objects", "message_media"] {
        let rows = setup
            .platform
            .sql
            .execute(&format!("SELECT key FROM {table}"), &[])
            .unwrap();
        assert!(rows.is_empty(), "{table} links a retired copy");
    }
}

#[test]
fn retired_keys_name_their_call_or_message_and_segment() {
    use crate::storage::media::retirement_of;
    let named = retirement_of;
    assert_eq!(
        named("recordings/2020/01/01/AC-x1-2.mp3"),
        Some(("AC-x1".into(), "recording", 2))
    );
    assert_eq!(
        named("voicemails/2020/01/01/AC1.m4a"),
        Some(("AC1".into(), "voicemail", 1))
    );
    assert_eq!(
        named("media/2020/01/01/ACm-3.png"),
        Some(("ACm".into(), "media", 3))
    );
    for other in [
        "recordings/2020/01/01/AC1.mp3",
        "recordings/2020/01/01/AC1-0.mp3",
        "recordings/AC1-1.mp3",
        "exports/2020/01/01/AC1-1.csv",
        "media/2020/01/01/-1.png",
    ] {
        assert_eq!(named(other), None, "{other}");
    }
}
