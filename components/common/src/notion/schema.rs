//! The properties the sync writes, by database, with their Notion types: the reference implementation's
//! Calls and Messages schemas (so existing workspaces keep working) and the Canvas properties it reads.
//! The schema check (`/admin/notion/check`) compares a data source against these, and test servers build
//! their databases from them.

/// Calls database: one page per call.
pub const CALLS: &[(&str, &str)] = &[
    ("Call ID", "title"),
    ("Direction", "select"),
    ("Status", "select"),
    ("Duration", "number"),
    ("Participants", "rich_text"),
    ("OpenPhone User", "rich_text"),
    ("Phone Number Used", "rich_text"),
    ("Phone Number ID", "rich_text"),
    ("Created At", "date"),
    ("Answered At", "date"),
    ("Completed At", "date"),
    ("Has Recording", "checkbox"),
    ("Recording URL", "url"),
    ("Recording Duration", "number"),
    ("Has Transcript", "checkbox"),
    ("Transcript", "rich_text"),
    ("Transcript Status", "select"),
    ("Has Summary", "checkbox"),
    ("Summary", "rich_text"),
    ("Next Steps", "rich_text"),
    ("Has Voicemail", "checkbox"),
    ("Voicemail URL", "url"),
    ("Voicemail Transcript", "rich_text"),
    ("Call Route", "rich_text"),
    ("Forwarded From", "rich_text"),
    ("Forwarded To", "rich_text"),
    ("Raw Data", "rich_text"),
    ("Canvas", "relation"),
    ("Synced At", "date"),
    ("Last Updated", "date"),
];

/// Messages database: one page per message.
pub const MESSAGES: &[(&str, &str)] = &[
    ("Message ID", "title"),
    ("Direction", "select"),
    ("From", "phone_number"),
    ("To", "phone_number"),
    ("Content", "rich_text"),
    ("Status", "select"),
    ("OpenPhone Number", "rich_text"),
    ("Phone Number ID", "rich_text"),
    ("User ID", "rich_text"),
    ("Created At", "date"),
    ("Updated At", "date"),
    ("Has Media", "checkbox"),
    ("Media URLs", "rich_text"),
    ("Conversation ID", "rich_text"),
    ("Canvas", "relation"),
    ("Raw Data", "rich_text"),
    ("Synced At", "date"),
];

/// Canvas database: the properties lookups read (`Phone` may also be `rich_text` in older workspaces).
pub const CANVAS: &[(&str, &str)] = &[
    ("Name", "title"),
    ("Phone", "phone_number"),
    ("Email", "email"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_database_has_exactly_one_title_and_unique_names() {
        for schema in [CALLS, MESSAGES, CANVAS] {
            assert_eq!(schema.iter().filter(|(_, t)| *t == "title").count(), 1);
            let mut names: Vec<&str> = schema.iter().map(|(n, _)| *n).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), schema.len());
        }
    }
}
