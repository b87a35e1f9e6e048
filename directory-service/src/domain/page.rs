//! Keyset pagination over the shared page tokens
//! ([`cohort_shared::page_token`]: the last key of the previous page and a
//! fingerprint of the listing's filters, opaque to clients, refused with other
//! filters): a listing fetches one row more than the page to know whether
//! another follows.

use cohort_shared::page_token::{PageCursor, PageError};

use super::ValidationError;

pub const DEFAULT_PAGE_SIZE: usize = 50;

/// A validated page request: its size, and the key to resume after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest(PageCursor);

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The key to resume after; `None` when the listing is complete.
    pub next_after: Option<String>,
}

impl From<PageError> for ValidationError {
    fn from(err: PageError) -> Self {
        ValidationError::new(err.field(), err.to_string())
    }
}

impl PageRequest {
    /// Validates `page_size` and `page_token`. `filters` is anything that describes
    /// the listing's filters (its `Debug` form is fingerprinted).
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filters: &impl std::fmt::Debug,
    ) -> Result<Self, ValidationError> {
        Ok(PageRequest(PageCursor::parse(
            page_size,
            page_token,
            filters,
            DEFAULT_PAGE_SIZE,
        )?))
    }

    /// A request for everything from the start, for internal use.
    pub fn first(size: usize) -> Self {
        PageRequest(PageCursor::first(size))
    }

    /// How many items a page holds.
    pub fn size(&self) -> usize {
        self.0.size
    }

    /// The last key of the previous page (`None` for the first page).
    pub fn after(&self) -> Option<&str> {
        self.0.after.as_deref()
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size() as i64 + 1
    }

    /// Cuts the fetched rows to a page, remembering where the next one starts.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let next_after = if rows.len() > self.size() {
            rows.truncate(self.size());
            rows.last().map(&key)
        } else {
            None
        };
        Page {
            items: rows,
            next_after,
        }
    }

    /// The opaque token for the page after `page`, or an empty string at the end.
    pub fn next_token<T>(&self, page: &Page<T>) -> String {
        page.next_after
            .as_deref()
            .map(|after| self.0.token_after(after))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_shared::page_token::MAX_PAGE_SIZE;

    #[test]
    fn tokens_resume_after_the_last_key_of_a_page() {
        let request = PageRequest::parse(2, "", &"filters").unwrap();
        let page = request.page(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(page.items, vec!["a", "b"]);
        let token = request.next_token(&page);
        let next = PageRequest::parse(2, &token, &"filters").unwrap();
        assert_eq!(next.after(), Some("b"));
        let last = next.page(vec!["c"], |s| s.to_string());
        assert_eq!(next.next_token(&last), "");
    }

    #[test]
    fn tokens_are_refused_with_other_filters_or_when_forged() {
        let request = PageRequest::parse(1, "", &"a").unwrap();
        let token = request.next_token(&request.page(vec![1, 2], |n| n.to_string()));
        assert_eq!(
            PageRequest::parse(1, &token, &"b").unwrap_err().field,
            "page_token"
        );
        assert!(PageRequest::parse(1, "zz", &"a").is_err());
        assert!(PageRequest::parse(1, "0123456789abcdefZZ", &"a").is_err());
    }

    #[test]
    fn page_sizes_default_and_cap() {
        assert_eq!(
            PageRequest::parse(0, "", &()).unwrap().size(),
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::parse(5000, "", &()).unwrap().size(),
            MAX_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::parse(-1, "", &()).unwrap_err().field,
            "page_size"
        );
    }
}
