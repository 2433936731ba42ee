//! The OpenPhone contacts' names by phone number, for naming the Canvas record of a new caller.
//!
//! OpenPhone's API cannot search contacts by number (`GET /v1/contacts` lists them all, 50 a page), so the
//! whole list is indexed in SQLite (`contacts`). A number not in the index triggers a refresh only when the
//! last one finished more than [`REFRESH_INTERVAL_MS`] ago, so a stream of unknown callers costs one
//! listing every few hours, not one per caller. One instance refreshes at a time (a [`JobClaim`]); each
//! page of contacts is written with one statement, and contacts no longer listed are dropped at the end.
//! The same refresh maps each contact's emails to its numbers (`contact_emails`, one more statement a
//! page), so a Canvas record known only by its Email finds that person's numbers ([`numbers_of_email`]).

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

use crate::domain::E164;
use crate::jobs::JobClaim;
use crate::openphone::OpenPhone;
use crate::outbound::ApiError;
use crate::platform::Platform;

/// A miss refreshes the index only when the last refresh finished longer ago than this.
pub const REFRESH_INTERVAL_MS: i64 = 6 * 3600 * 1000;
/// A refresh claimed longer ago than this belongs to a dead instance.
const REFRESH_STALE_MS: i64 = 10 * 60 * 1000;
/// The `job_claims` name of the refresh.
const JOB: &str = "contacts-refresh";
/// `GET /v1/contacts` allows at most 50 a page.
const PAGE_SIZE: &str = "50";

/// Who a number belongs to, as OpenPhone's contacts say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactName {
    /// First and last name.
    pub name: Option<String>,
    /// Company.
    pub company: Option<String>,
}

impl ContactName {
    /// `Name (Company)`, or whichever of the two is known; `None` when neither is.
    pub fn title(&self) -> Option<String> {
        match (&self.name, &self.company) {
            (Some(name), Some(company)) => Some(format!("{name} ({company})")),
            (Some(only), None) | (None, Some(only)) => Some(only.clone()),
            (None, None) => None,
        }
    }
}

/// Why a number's contact could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// Listing the contacts failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The app's database failed.
    #[error("database: {0:#}")]
    Database(#[from] anyhow::Error),
    /// Another instance is refreshing the index right now: ask again shortly.
    #[error("the contact index is being refreshed")]
    Refreshing,
}

/// The contact of `number`, refreshing the index first when it does not know the number and is old.
pub async fn lookup(
    platform: &Platform,
    openphone: &OpenPhone<'_>,
    number: &E164,
) -> Result<Option<ContactName>, ContactError> {
    if let Some(found) = find(platform, number)? {
        return Ok(Some(found));
    }
    let Some(claim) = JobClaim::try_claim(platform, JOB, REFRESH_INTERVAL_MS, REFRESH_STALE_MS)?
    else {
        // The refresh that another instance just finished may have added it.
        if let Some(found) = find(platform, number)? {
            return Ok(Some(found));
        }
        return if JobClaim::state(platform, JOB, REFRESH_STALE_MS)?.running {
            Err(ContactError::Refreshing)
        } else {
            Ok(None)
        };
    };
    refresh(platform, openphone).await?;
    claim.finish()?;
    Ok(find(platform, number)?)
}

/// How a page names the other party `raw`: "Name (Company)" from its OpenPhone contact, else the formatted
/// number (`raw` as given when it is not a phone number). The index is read, and refreshed on a miss at most
/// every [`REFRESH_INTERVAL_MS`], so naming costs no OpenPhone request per event. A failed lookup names the
/// party by number: a name is never worth delaying a page for.
pub async fn party_name(platform: &Platform, openphone: &OpenPhone<'_>, raw: &str) -> String {
    let Ok(number) = E164::parse(raw) else {
        return raw.trim().to_owned();
    };
    match lookup(platform, openphone, &number).await {
        Ok(contact) => contact.and_then(|c| c.title()),
        Err(e) => {
            tracing::debug!(error = %e, "contact name not available; the number names the party");
            None
        }
    }
    .unwrap_or_else(|| number.formatted())
}

/// The names of the other parties `numbers`, joined with `, ` (each as [`party_name`] gives it).
pub async fn party_names(
    platform: &Platform,
    openphone: &OpenPhone<'_>,
    numbers: &[String],
) -> String {
    let mut names = Vec::with_capacity(numbers.len());
    for number in numbers {
        names.push(party_name(platform, openphone, number).await);
    }
    names.join(", ")
}

/// The name of workspace user `user_id`: from the users of `own` (the item's number) first, then of any
/// number the workspace has (a user answering a colleague's line), as `GET /v1/phone-numbers` last listed
/// them, so it costs no request; the id itself when no number lists the user.
pub fn user_name(
    platform: &Platform,
    own: Option<&crate::phone_numbers::KnownNumber>,
    user_id: &str,
) -> anyhow::Result<String> {
    if let Some(user) = own.and_then(|n| n.users.iter().find(|u| u.id == user_id)) {
        return Ok(user.display_name());
    }
    let rows = platform.sql.execute(
        "SELECT json_extract(value, '$.firstName') AS first_name, json_extract(value, '$.lastName') AS last_name,
                json_extract(value, '$.email') AS email
         FROM phone_numbers, json_each(phone_numbers.users)
         WHERE json_valid(phone_numbers.users) AND json_extract(value, '$.id') = ?1 LIMIT 1",
        &[user_id.into()],
    )?;
    Ok(match rows.first() {
        Some(row) => crate::openphone::types::PhoneNumberUser {
            id: user_id.to_owned(),
            first_name: row.opt_str("first_name")?.map(String::from),
            last_name: row.opt_str("last_name")?.map(String::from),
            email: row.opt_str("email")?.map(String::from),
        }
        .display_name(),
        None => user_id.to_owned(),
    })
}

/// The indexed contact of `number`.
pub fn find(platform: &Platform, number: &E164) -> anyhow::Result<Option<ContactName>> {
    let rows = platform.sql.execute(
        "SELECT name, company FROM contacts WHERE phone = ?1",
        &[number.as_str().into()],
    )?;
    rows.first()
        .map(|row| {
            Ok(ContactName {
                name: row.opt_str("name")?.map(String::from),
                company: row.opt_str("company")?.map(String::from),
            })
        })
        .transpose()
}

/// The phone numbers of the contacts that have `email` (case-insensitive), as the index last listed them.
pub fn numbers_of_email(platform: &Platform, email: &str) -> anyhow::Result<Vec<E164>> {
    let Some(email) = email_key(email) else {
        return Ok(Vec::new());
    };
    let rows = platform
        .sql
        .execute(
            "SELECT phone FROM contact_emails WHERE email = ?1 ORDER BY phone",
            &[email.into()],
        )
        .context("reading the numbers of a contact email")?;
    Ok(rows
        .iter()
        .map(|row| row.str("phone"))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        // Written by the refresh as E.164; anything else is not a number to link.
        .filter_map(|phone| E164::parse(phone).ok())
        .collect())
}

/// How the index keys an email: trimmed and lower-cased, as people type the same address in any case;
/// `None` when it is no address.
fn email_key(email: &str) -> Option<String> {
    let email = email.trim();
    email.contains('@').then(|| email.to_lowercase())
}

/// A contact as `GET /v1/contacts` lists it (only what the index keeps).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Contact {
    id: String,
    #[serde(default)]
    default_fields: DefaultFields,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DefaultFields {
    first_name: Option<String>,
    last_name: Option<String>,
    company: Option<String>,
    phone_numbers: Vec<Entry>,
    emails: Vec<Entry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Entry {
    value: Option<String>,
}

fn non_empty(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
}

impl Contact {
    /// One index row per number of the contact that is a phone number (short codes and junk are left out).
    fn rows(&self) -> Vec<serde_json::Value> {
        let fields = &self.default_fields;
        let name = [fields.first_name.as_deref(), fields.last_name.as_deref()]
            .into_iter()
            .filter_map(non_empty)
            .collect::<Vec<_>>()
            .join(" ");
        let name = non_empty(Some(&name));
        let company = non_empty(fields.company.as_deref());
        fields
            .phone_numbers
            .iter()
            .filter_map(|entry| E164::parse(entry.value.as_deref()?).ok())
            .map(|phone| json!({ "phone": phone.as_str(), "id": self.id, "name": name, "company": company }))
            .collect()
    }

    /// One `contact_emails` row per email and phone number of the contact.
    fn email_rows(&self) -> Vec<serde_json::Value> {
        let fields = &self.default_fields;
        let phones: Vec<E164> = fields
            .phone_numbers
            .iter()
            .filter_map(|entry| E164::parse(entry.value.as_deref()?).ok())
            .collect();
        let mut rows = Vec::new();
        for email in fields
            .emails
            .iter()
            .filter_map(|entry| email_key(entry.value.as_deref()?))
        {
            for phone in &phones {
                rows.push(json!({ "email": email, "phone": phone.as_str(), "id": self.id }));
            }
        }
        rows
    }
}

/// Lists every contact into the index (numbers and emails), then drops what is no longer listed.
async fn refresh(platform: &Platform, openphone: &OpenPhone<'_>) -> Result<(), ContactError> {
    let started = platform.clock.now_ms();
    let mut page_token: Option<String> = None;
    let mut indexed = 0usize;
    loop {
        let mut query = vec![("maxResults", PAGE_SIZE)];
        if let Some(token) = &page_token {
            query.push(("pageToken", token));
        }
        let page = openphone.list::<Contact>("/v1/contacts", &query).await?;
        let rows: Vec<serde_json::Value> = page.data.iter().flat_map(Contact::rows).collect();
        if !rows.is_empty() {
            indexed += rows.len();
            // One statement per page; `WHERE true` lets SQLite parse the upsert after a SELECT.
            platform.sql.execute(
                "INSERT INTO contacts (phone, contact_id, name, company, refreshed_at)
                 SELECT json_extract(value, '$.phone'), json_extract(value, '$.id'), json_extract(value, '$.name'),
                        json_extract(value, '$.company'), ?2
                 FROM json_each(?1) WHERE true
                 ON CONFLICT (phone) DO UPDATE SET contact_id = excluded.contact_id, name = excluded.name,
                     company = excluded.company, refreshed_at = excluded.refreshed_at",
                &[serde_json::Value::Array(rows).to_string().into(), started.into()],
            )?;
        }
        let email_rows: Vec<serde_json::Value> =
            page.data.iter().flat_map(Contact::email_rows).collect();
        if !email_rows.is_empty() {
            platform
                .sql
                .execute(
                    "INSERT INTO contact_emails (email, phone, contact_id, refreshed_at)
                     SELECT json_extract(value, '$.email'), json_extract(value, '$.phone'),
                            json_extract(value, '$.id'), ?2
                     FROM json_each(?1) WHERE true
                     ON CONFLICT (email, phone) DO UPDATE SET contact_id = excluded.contact_id,
                         refreshed_at = excluded.refreshed_at",
                    &[
                        serde_json::Value::Array(email_rows).to_string().into(),
                        started.into(),
                    ],
                )
                .context("indexing a page of contact emails")?;
        }
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(next) => page_token = Some(next),
            None => break,
        }
    }
    platform.sql.execute(
        "DELETE FROM contacts WHERE refreshed_at < ?1",
        &[started.into()],
    )?;
    platform
        .sql
        .execute(
            "DELETE FROM contact_emails WHERE refreshed_at < ?1",
            &[started.into()],
        )
        .context("dropping the emails of contacts no longer listed")?;
    tracing::info!(numbers = indexed, "contact index refreshed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_use_what_is_known() {
        let both = ContactName {
            name: Some("Olive Owner".into()),
            company: Some("Acme".into()),
        };
        assert_eq!(both.title().as_deref(), Some("Olive Owner (Acme)"));
        let company = ContactName {
            name: None,
            company: Some("Acme".into()),
        };
        assert_eq!(company.title().as_deref(), Some("Acme"));
        assert_eq!(
            ContactName {
                name: None,
                company: None
            }
            .title(),
            None
        );
    }

    #[test]
    fn a_contact_gives_one_row_per_real_phone_number() {
        let contact: Contact = serde_json::from_value(json!({
            "id": "CT1",
            "defaultFields": {
                "firstName": " Olive ", "lastName": null, "company": "",
                "phoneNumbers": [
                    { "name": "mobile", "value": "(555) 555-0123", "id": "a" },
                    { "name": "short", "value": "262966", "id": "b" },
                    { "name": "none", "value": null, "id": "c" },
                ],
            },
        }))
        .unwrap();
        assert_eq!(
            contact.rows(),
            vec![json!({ "phone": "+15555550123", "id": "CT1", "name": "Olive", "company": null })]
        );
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod refresh_tests {
    use super::*;
    use crate::configuration::{OpenPhoneConfig, Secret};
    use crate::testing::migrated_platform;

    #[tokio::test]
    async fn while_another_instance_refreshes_a_miss_waits_and_a_hit_does_not() {
        let (_dir, platform, _clock) = migrated_platform().await;
        // Nothing listens there: a request would fail the test.
        let config = OpenPhoneConfig {
            api_key: Secret::new("unused"),
            api_base: "http://127.0.0.1:9".into(),
            media_base: "http://127.0.0.1:9".into(),
        };
        let openphone = OpenPhone::new(&platform, &config);
        let refreshing = JobClaim::try_claim(&platform, JOB, REFRESH_INTERVAL_MS, REFRESH_STALE_MS)
            .unwrap()
            .unwrap();
        platform
            .sql
            .execute(
                "INSERT INTO contacts (phone, contact_id, name, company, refreshed_at) VALUES ('+15555550123', 'CT1', 'Olive', NULL, 1)",
                &[],
            )
            .unwrap();
        let known = lookup(&platform, &openphone, &E164::parse("+15555550123").unwrap())
            .await
            .unwrap();
        assert_eq!(known.and_then(|c| c.name).as_deref(), Some("Olive"));
        let unknown = lookup(&platform, &openphone, &E164::parse("+15555550199").unwrap()).await;
        assert!(
            matches!(unknown, Err(ContactError::Refreshing)),
            "{unknown:?}"
        );

        // Once that refresh is done, a miss within the interval is simply unknown.
        refreshing.finish().unwrap();
        let unknown = lookup(&platform, &openphone, &E164::parse("+15555550199").unwrap()).await;
        assert!(matches!(unknown, Ok(None)), "{unknown:?}");
    }

    #[tokio::test]
    async fn the_index_maps_an_email_to_its_contacts_numbers_until_the_contact_is_gone() {
        use test_servers::openphone::model::Contact as Listed;
        let (_dir, platform, clock) = migrated_platform().await;
        let server = test_servers::OpenPhoneServer::start("op-test-key").unwrap();
        let config = OpenPhoneConfig {
            api_key: Secret::new(server.api_key()),
            api_base: server.base_url(),
            media_base: server.media_base_url(),
        };
        let openphone = OpenPhone::new(&platform, &config);
        server.add_contact(Listed::new(
            "CTcarla",
            "Carla",
            "Customer",
            &["(555) 555-0177", "+1 555 555 0176"],
            &[" Carla@Example.COM "],
        ));
        server.add_contact(Listed::new(
            "CTnobody",
            "No",
            "Body",
            &["+15555550150"],
            &["other@example.com"],
        ));
        refresh(&platform, &openphone).await.unwrap();
        let numbers = |email: &str| -> Vec<String> {
            numbers_of_email(&platform, email)
                .unwrap()
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect()
        };
        assert_eq!(
            numbers("carla@example.com"),
            ["+15555550176", "+15555550177"]
        );
        assert_eq!(numbers("CARLA@example.com"), numbers("carla@example.com"));
        assert!(numbers("nobody@example.com").is_empty());

        // A contact deleted in OpenPhone no longer maps its email after the next refresh.
        server.remove_contact("CTcarla");
        clock.advance_ms(REFRESH_INTERVAL_MS + 1);
        refresh(&platform, &openphone).await.unwrap();
        assert!(numbers("carla@example.com").is_empty());
        assert_eq!(numbers("other@example.com"), ["+15555550150"]);
    }
}
