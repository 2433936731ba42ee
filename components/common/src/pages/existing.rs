//! Pages an earlier tool may have made, looked up in bulk so a backfill does not query Notion once per
//! item (issue 16: at most 1.1 Notion requests per backfilled item).
//!
//! The first lookup of a kind reads every page Notion created since the earliest item (less
//! [`WINDOW_SLACK_MS`]: Notion reports `created_time` to the minute, and the clocks differ) — one query of
//! up to 100 results a page, so a database the earlier tool filled costs a request per 100 of its pages,
//! an empty one a single request. An item created inside that window whose page is not among them has
//! none. Where the window is over Notion's 10 000-result limit, or for an item older than it, items are
//! looked up by id instead: one `or` query per 100 ids.
//!
//! What a lookup learns lasts as long as the writer (one request): the pages found are used when their
//! item is written, the items found absent are created without a query of their own.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use crate::notion::Notion;
use crate::outbound::ApiError;

use super::map::Kind;

/// How much earlier than its items a lookup window starts.
const WINDOW_SLACK_MS: i64 = 3_600_000;

/// What the bulk lookups of one writer found.
#[derive(Default)]
pub(super) struct ExistingPages {
    /// Items with no page in Notion: created without asking again.
    absent: RefCell<HashSet<(Kind, String)>>,
    /// Pages found, not yet used. They are recorded in the page map when their item is written (as a
    /// page found by an item's own query is), so an item cut off before its write is looked up again.
    found: RefCell<HashMap<(Kind, String), String>>,
    /// Per kind, whether the pages created since a time were read whole: `Some(from)` covers the items
    /// created since `from`, `None` means the window was too wide.
    windows: RefCell<HashMap<Kind, Option<i64>>>,
    /// Items written to a page a lookup found.
    used: Cell<u32>,
}

impl ExistingPages {
    /// Whether a lookup already knows item `kind`/`id`, found or absent.
    pub(super) fn knows(&self, kind: Kind, id: &str) -> bool {
        let key = (kind, id.to_owned());
        self.absent.borrow().contains(&key) || self.found.borrow().contains_key(&key)
    }

    /// Whether a lookup found that item `kind`/`id` has no page.
    pub(super) fn is_absent(&self, kind: Kind, id: &str) -> bool {
        self.absent.borrow().contains(&(kind, id.to_owned()))
    }

    /// The page a lookup found for item `kind`/`id`, taken to be written (and counted as used).
    pub(super) fn take_found(&self, kind: Kind, id: &str) -> Option<String> {
        let page_id = self.found.borrow_mut().remove(&(kind, id.to_owned()))?;
        self.used.set(self.used.get() + 1);
        Some(page_id)
    }

    /// How many items were written to a page a lookup found.
    pub(super) fn used(&self) -> u32 {
        self.used.get()
    }

    /// Looks up the pages of `wanted` (OpenPhone id, creation time in epoch ms) in data source
    /// `data_source`, whose title property is `title`; `items_from` is the earliest any item of the caller
    /// may have been created.
    pub(super) async fn look_up(
        &self,
        notion: &Notion<'_>,
        kind: Kind,
        data_source: &str,
        title: &str,
        wanted: Vec<(&str, Option<i64>)>,
        items_from: i64,
    ) -> Result<(), ApiError> {
        let known = self.windows.borrow().get(&kind).copied();
        let covered_from = match known {
            Some(covered) => covered,
            None => {
                let window = notion
                    .created_since(data_source, title, items_from - WINDOW_SLACK_MS)
                    .await?;
                let covered = window.map(|pages| {
                    let mut found = self.found.borrow_mut();
                    for (title, page_id) in pages {
                        found.entry((kind, title)).or_insert(page_id);
                    }
                    items_from
                });
                self.windows.borrow_mut().insert(kind, covered);
                covered
            }
        };
        let mut by_id: Vec<&str> = Vec::new();
        for (id, created) in wanted {
            let key = (kind, id.to_owned());
            if self.found.borrow().contains_key(&key) {
                continue;
            } else if covered_from.is_some_and(|from| created.is_some_and(|c| c >= from)) {
                self.absent.borrow_mut().insert(key);
            } else {
                by_id.push(id);
            }
        }
        if by_id.is_empty() {
            return Ok(());
        }
        let found = notion.find_by_title(data_source, title, &by_id).await?;
        for id in by_id {
            let key = (kind, id.to_owned());
            match found.iter().find(|(title, _)| title.as_str() == id) {
                Some((_, page_id)) => {
                    self.found.borrow_mut().insert(key, page_id.clone());
                }
                None => {
                    self.absent.borrow_mut().insert(key);
                }
            }
        }
        Ok(())
    }
}
