//! `canvas_create_unknown`: a call or message from a number no Canvas record has creates one, named after
//! the number's OpenPhone contact (from a local index refreshed at most every few hours) or else the
//! formatted number, and only once, however the events arrive.

use common::contacts::REFRESH_INTERVAL_MS;
use common::domain::E164;
use common::platform::{HttpRequest, Method};
use common::testing::{text, World};
use serde_json::{json, Value};
use test_servers::openphone::model::{Contact, PhoneNumber};
use test_servers::webhooks::{CallFixture, MessageFixture};
use test_servers::{Fault, FaultRule};

async fn creating_world() -> World {
    let mut world = World::new().await;
    world.sync_config.canvas_create_unknown = true;
    world
}

/// An incoming text from `from`, with its own ids.
fn message_from(from: &str, n: u32) -> Value {
    let now = chrono::Utc::now();
    MessageFixture {
        event_id: format!("EVunknown{n}"),
        message_id: format!("ACunknown{n}"),
        from: from.into(),
        created_at: now,
        event_created_at: now,
        ..MessageFixture::example()
    }
    .message_received()
}

fn contact(id: &str, first: &str, last: &str, company: Option<&str>, phones: &[&str]) -> Contact {
    let mut contact = Contact::new(id, first, last, phones, &[]);
    contact.default_fields["company"] = json!(company);
    contact
}

/// The Canvas records not in the trash: id, name, phone.
fn canvas_records(world: &World) -> Vec<(String, String, String)> {
    world
        .notion
        .pages(&world.canvas_ds)
        .iter()
        .filter(|p| p["in_trash"] != true)
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                text(p, "Name"),
                text(p, "Phone"),
            )
        })
        .collect()
}

fn linked_canvas(world: &World, message_page: &str) -> Value {
    world.notion.page(message_page).unwrap()["properties"]["Canvas"]["relation"].clone()
}

#[tokio::test]
async fn a_text_from_a_new_number_creates_one_record_named_after_its_contact() {
    let world = creating_world().await;
    world.openphone.add_contact(contact(
        "CT1",
        "Olive",
        "Owner",
        Some("Acme Funding"),
        &["(555) 555-0123"],
    ));
    let page = world
        .apply_until_done("message.received", &message_from("+15555550123", 1))
        .await;

    let records = canvas_records(&world);
    assert_eq!(records.len(), 1, "{records:?}");
    let (canvas_id, name, phone) = &records[0];
    assert_eq!(name, "Olive Owner (Acme Funding)");
    assert_eq!(phone, "+15555550123");
    assert_eq!(linked_canvas(&world, &page), json!([{ "id": canvas_id }]));

    // The next event from the number, minutes later, costs no lookup: one Notion request (its page) and
    // none to OpenPhone.
    world.clock.advance_ms(10 * 60 * 1000);
    world.notion.reset_counters();
    world.openphone.reset_counters();
    let second = world
        .apply_until_done("message.received", &message_from("(555) 555-0123", 2))
        .await;
    assert_eq!(
        world.notion.total_requests(),
        1,
        "{:?}",
        world.notion.request_counts()
    );
    assert_eq!(
        world.openphone.total_requests(),
        0,
        "{:?}",
        world.openphone.request_counts()
    );
    assert_eq!(linked_canvas(&world, &second), json!([{ "id": canvas_id }]));
    assert_eq!(canvas_records(&world).len(), 1);
}

#[tokio::test]
async fn a_call_from_a_new_number_creates_and_links_its_record() {
    let world = creating_world().await;
    world
        .openphone
        .add_phone_number(PhoneNumber::new("PNtoDbDhuz", "+13365550100"));
    world
        .openphone
        .add_contact(contact("CT1", "Carl", "Caller", None, &["+15555550123"]));
    let mut call = CallFixture::example().with_ids("ACnewcaller", "EVnewcaller");
    call.created_at = chrono::Utc::now();
    call.voicemail = None;
    let page = world
        .apply_until_done("call.completed", &call.call_completed_v2())
        .await;

    let records = canvas_records(&world);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        (records[0].1.as_str(), records[0].2.as_str()),
        ("Carl Caller", "+15555550123")
    );
    assert_eq!(
        linked_canvas(&world, &page),
        json!([{ "id": records[0].0 }])
    );
}

#[tokio::test]
async fn without_a_contact_the_number_names_it_and_the_index_is_refreshed_at_most_every_few_hours()
{
    let world = creating_world().await;
    let contacts_listed = || world.openphone.request_count("GET /v1/contacts");
    world
        .apply_until_done("message.received", &message_from("+15555550199", 1))
        .await;
    assert_eq!(contacts_listed(), 1);

    // A contact added in OpenPhone now is not seen before the interval has passed…
    world
        .openphone
        .add_contact(contact("CT7", "Late", "Larry", None, &["+15555550177"]));
    world
        .apply_until_done("message.received", &message_from("+15555550177", 2))
        .await;
    assert_eq!(
        contacts_listed(),
        1,
        "a miss refreshed the index again within the interval"
    );

    // …and is after it, on the next miss.
    world.clock.advance_ms(REFRESH_INTERVAL_MS + 1);
    world.openphone.add_contact(contact(
        "CT8",
        "Nora",
        "New",
        Some("Nook"),
        &["+1 555 555 0166"],
    ));
    world
        .apply_until_done("message.received", &message_from("+15555550166", 3))
        .await;
    assert_eq!(contacts_listed(), 2);

    let mut names: Vec<(String, String)> = canvas_records(&world)
        .into_iter()
        .map(|(_, n, p)| (p, n))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("+15555550166".to_owned(), "Nora New (Nook)".to_owned()),
            ("+15555550177".to_owned(), "(555) 555-0177".to_owned()),
            ("+15555550199".to_owned(), "(555) 555-0199".to_owned()),
        ]
    );
}

#[tokio::test]
async fn every_page_of_contacts_is_indexed_and_removed_contacts_are_dropped() {
    let world = creating_world().await;
    for i in 0..120 {
        let phone = format!("+1555555{i:04}");
        world.openphone.add_contact(contact(
            &format!("CT{i:03}"),
            "Person",
            &i.to_string(),
            None,
            &[&phone],
        ));
    }
    world
        .apply_until_done("message.received", &message_from("+15555550119", 1))
        .await;
    assert_eq!(
        world.openphone.request_count("GET /v1/contacts"),
        3,
        "50 a page"
    );
    assert_eq!(canvas_records(&world)[0].1, "Person 119");
    let indexed =
        |n: &str| common::contacts::find(&world.platform, &E164::parse(n).unwrap()).unwrap();
    assert!(indexed("+15555550000").is_some());

    // A refresh forgets contacts OpenPhone no longer lists.
    let world2 = creating_world().await;
    world2
        .openphone
        .add_contact(contact("CT1", "Gone", "Soon", None, &["+15555550100"]));
    world2
        .apply_until_done("message.received", &message_from("+15555550101", 1))
        .await;
    assert!(
        common::contacts::find(&world2.platform, &E164::parse("+15555550100").unwrap())
            .unwrap()
            .is_some()
    );
    // The contact's number changes in OpenPhone.
    world2.clock.advance_ms(REFRESH_INTERVAL_MS + 1);
    world2
        .openphone
        .add_contact(contact("CT1", "Gone", "Soon", None, &["+15555550102"]));
    world2
        .apply_until_done("message.received", &message_from("+15555550103", 2))
        .await;
    assert!(
        common::contacts::find(&world2.platform, &E164::parse("+15555550100").unwrap())
            .unwrap()
            .is_none()
    );
    assert!(
        common::contacts::find(&world2.platform, &E164::parse("+15555550102").unwrap())
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn own_numbers_short_codes_and_the_default_setting_create_nothing() {
    let mut world = World::new().await;
    world
        .apply_until_done("message.received", &message_from("+15555550123", 1))
        .await;
    assert!(
        canvas_records(&world).is_empty(),
        "created with canvas_create_unknown off"
    );

    world.sync_config.canvas_create_unknown = true;
    world.sync_config.self_phone_numbers = vec![E164::parse("+15555550144").unwrap()];
    world
        .apply_until_done("message.received", &message_from("+15555550144", 2))
        .await;
    world
        .apply_until_done("message.received", &message_from("262966", 3))
        .await;
    assert!(
        canvas_records(&world).is_empty(),
        "{:?}",
        canvas_records(&world)
    );
    // One listing, to name the first text's `Contact`; creating records asked for nothing more.
    assert_eq!(world.openphone.request_count("GET /v1/contacts"), 1);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_rather_than_made_again() {
    let world = creating_world().await;
    // The Canvas create lands but answers 500: its outcome is unknown to the app.
    world
        .notion
        .inject(FaultRule::next(1, Fault::AppliedButFailed).on("POST /v1/pages"));
    let page = world
        .apply_until_done("message.received", &message_from("+15555550123", 1))
        .await;
    assert_eq!(world.notion.faults_triggered(), 1);
    // The text's page is written at once, without the relation the lost answer left unknown…
    assert_eq!(linked_canvas(&world, &page), json!([]));

    // …which the tick sets when the retry is due: the record that landed is found, not made again.
    world.clock.advance_ms(5 * 60_000 + 1_000);
    let relinked = world.retry_canvas_relinks().await;
    assert_eq!(relinked.linked, 1, "{relinked:?}");
    let records = canvas_records(&world);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        linked_canvas(&world, &page),
        json!([{ "id": records[0].0 }])
    );
}

#[tokio::test]
async fn a_record_deleted_in_notion_is_not_made_again() {
    let world = creating_world().await;
    world
        .apply_until_done("message.received", &message_from("+15555550123", 1))
        .await;
    let (canvas_id, ..) = canvas_records(&world).remove(0);
    let trash = HttpRequest::new(
        Method::Patch,
        format!("{}/v1/pages/{canvas_id}", world.notion.base_url()),
    )
    .header("authorization", format!("Bearer {}", world.notion.token()))
    .header("notion-version", common::notion::NOTION_VERSION)
    .json(&json!({ "in_trash": true }));
    assert_eq!(world.platform.http.send(trash).await.unwrap().status, 200);

    // A day later the cached hit has expired and the lookup misses.
    world.clock.advance_ms(25 * 3600 * 1000);
    let page = world
        .apply_until_done("message.received", &message_from("+15555550123", 2))
        .await;
    assert!(
        canvas_records(&world).is_empty(),
        "the deleted record was made again"
    );
    assert_eq!(linked_canvas(&world, &page), json!([]));
}

#[tokio::test]
async fn a_stale_cached_miss_does_not_hide_the_record_made_for_the_number() {
    let world = creating_world().await;
    world
        .apply_until_done("message.received", &message_from("+15555550123", 1))
        .await;
    let (canvas_id, ..) = canvas_records(&world).remove(0);
    // A worker stopped after recording the new record and before caching it: the cache still holds the
    // miss that led to the create.
    world
        .platform
        .sql
        .execute(
            "UPDATE canvas_cache SET canvas_id = NULL WHERE lookup_key = '+15555550123'",
            &[],
        )
        .unwrap();
    world.clock.advance_ms(10 * 60 * 1000);
    let page = world
        .apply_until_done("message.received", &message_from("+15555550123", 2))
        .await;
    assert_eq!(linked_canvas(&world, &page), json!([{ "id": canvas_id }]));
    assert_eq!(canvas_records(&world).len(), 1);
}
