//! A lookup's page request, with the page tokens both services share
//! ([`cohort_shared::page_token`]): opaque, naming the last id of the page
//! before, and refused when replayed with another request.

use cohort_shared::page_token::PageCursor;
use uuid::Uuid;

use super::error::ApiError;
use crate::domain;

const DEFAULT_PAGE_SIZE: usize = 100;

/// How many ids, and the id to resume after.
pub(super) struct PageRequest {
    pub size: usize,
    pub after: Option<Uuid>,
    cursor: PageCursor,
}

impl PageRequest {
    /// Reads `page_size` and `page_token`; `filters` describes the lookup (a
    /// token is good only for the lookup that issued it).
    pub fn parse(
        page_size: i32,
        token: &str,
        filters: &impl std::fmt::Debug,
    ) -> Result<Self, ApiError> {
        let cursor = PageCursor::parse(page_size, token, filters, DEFAULT_PAGE_SIZE)
            .map_err(|e| ApiError::invalid(e.field(), e.to_string()))?;
        let after = cursor
            .after
            .as_deref()
            .map(|raw| {
                Uuid::try_parse(raw).map_err(|_| {
                    ApiError::invalid("page_token", "is not a token this service issued")
                })
            })
            .transpose()?;
        Ok(PageRequest {
            size: cursor.size,
            after,
            cursor,
        })
    }

    /// The token of the page after `page`: its last id, when more follow.
    pub fn next_token<T: Copy>(&self, page: &domain::Page<T>, id: impl Fn(T) -> Uuid) -> String {
        match page.items.last() {
            Some(last) if page.more => self.cursor.token_after(&id(*last).simple().to_string()),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_name_the_last_id_when_more_follow_and_bind_the_lookup() {
        let id = Uuid::now_v7();
        let page = domain::Page {
            items: vec![id],
            more: true,
        };
        let first = PageRequest::parse(1, "", &"lookup").unwrap();
        let token = first.next_token(&page, |u: Uuid| u);
        assert_eq!(
            PageRequest::parse(1, &token, &"lookup").unwrap().after,
            Some(id)
        );
        assert!(PageRequest::parse(1, &token, &"another lookup").is_err());
        let last = domain::Page {
            more: false,
            ..page
        };
        assert_eq!(first.next_token(&last, |u: Uuid| u), "");
        assert_eq!(
            PageRequest::parse(0, "", &()).unwrap().size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::parse(5000, "", &()).unwrap().size,
            cohort_shared::page_token::MAX_PAGE_SIZE
        );
        assert!(PageRequest::parse(-1, "", &()).is_err());
        assert!(PageRequest::parse(1, "nope", &()).is_err());
        // A raw id, as tokens were before they were bound to the lookup.
        assert!(PageRequest::parse(1, &id.simple().to_string(), &()).is_err());
    }
}
