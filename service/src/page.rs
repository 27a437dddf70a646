//! Cursor pagination of lists.
//!
//! A list is ordered by a unique key (ids are time-ordered UUIDv7, so that is creation
//! order); a page holds up to `limit` items and, when more follow, an opaque cursor
//! naming the last key returned. The next page starts strictly after it, so items
//! created or deleted between calls neither repeat nor shift the pages.

use base64::Engine;
use serde::Serialize;

use crate::{Error, Result};

/// Items per page when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 50;
/// Most items per page.
pub const MAX_LIMIT: u32 = 500;

/// One page of a list.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Which page to read.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// Items wanted (1 to [`MAX_LIMIT`]).
    pub limit: u32,
    /// The key the page starts after (decoded from the cursor).
    pub after: Option<String>,
}

impl PageRequest {
    /// Validates a `limit` and decodes a `cursor` from a request.
    pub fn new(limit: Option<u32>, cursor: Option<&str>) -> Result<PageRequest> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::Invalid(format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .filter(|s| !s.is_empty() && s.len() <= 256)
                    .ok_or_else(|| Error::Invalid("invalid cursor (pass next_cursor of the previous page)".into()))?,
            ),
        };
        Ok(PageRequest { limit, after })
    }

    /// The first page of `limit` items.
    pub fn first(limit: u32) -> PageRequest {
        PageRequest { limit, after: None }
    }

    /// The string key to start after (`""` sorts before every id).
    pub fn after_text(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// The integer key to start after (for integer-keyed lists).
    pub fn after_int(&self) -> Result<i64> {
        match &self.after {
            None => Ok(0),
            Some(a) => {
                a.parse().map_err(|_| Error::Invalid("invalid cursor (pass next_cursor of the previous page)".into()))
            }
        }
    }

    /// Rows to fetch: one more than the page, to learn whether more follow.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the fetched rows to a page.
    pub fn page<T>(&self, mut items: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let limit = self.limit as usize;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let req = PageRequest::new(Some(2), None).unwrap();
        let page = req.page(vec!["a".to_string(), "b".into(), "c".into()], Clone::clone);
        assert_eq!(page.items, ["a", "b"]);
        let next = PageRequest::new(Some(2), page.next_cursor.as_deref()).unwrap();
        assert_eq!(next.after_text(), "b");
        let last = next.page(vec!["c".to_string()], Clone::clone);
        assert!(last.next_cursor.is_none());
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(MAX_LIMIT + 1), None).is_err());
        assert!(PageRequest::new(None, Some("%%%")).is_err());
        assert!(PageRequest::new(None, Some("eA")).unwrap().after_int().is_err());
    }
}
