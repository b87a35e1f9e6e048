//! Keyset pagination. A page token names the last key of the previous page and a
//! fingerprint of the listing's filters: it is opaque to clients, costs one index
//! seek to resume, and is refused when reused with other filters.

use super::ValidationError;

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 1000;

/// The position after which a page starts: the sort key of the last item seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    pub after: String,
    filter_fingerprint: u64,
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: usize,
    /// The last key of the previous page (`None` for the first page).
    pub after: Option<String>,
    filter_fingerprint: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The key to resume after; `None` when the listing is complete.
    pub next_after: Option<String>,
}

impl PageRequest {
    /// Validates `page_size` and `page_token`. `filters` is anything that describes
    /// the listing's filters (its `Debug` form is fingerprinted).
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filters: &impl std::fmt::Debug,
    ) -> Result<Self, ValidationError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(ValidationError::new("page_size", "must not be negative")),
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let filter_fingerprint = fnv1a(format!("{filters:?}").as_bytes());
        let after = if page_token.is_empty() {
            None
        } else {
            let token = PageToken::decode(page_token).ok_or_else(|| {
                ValidationError::new("page_token", "is not a token this service issued")
            })?;
            if token.filter_fingerprint != filter_fingerprint {
                return Err(ValidationError::new(
                    "page_token",
                    "was issued for a listing with other filters",
                ));
            }
            Some(token.after)
        };
        Ok(PageRequest {
            size,
            after,
            filter_fingerprint,
        })
    }

    /// A request for everything from the start, for internal use.
    pub fn first(size: usize) -> Self {
        PageRequest {
            size,
            after: None,
            filter_fingerprint: 0,
        }
    }

    /// How many rows to fetch: one more than the page, to know whether another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size as i64 + 1
    }

    /// Cuts the fetched rows to a page, remembering where the next one starts.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> Page<T> {
        let next_after = if rows.len() > self.size {
            rows.truncate(self.size);
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
            .as_ref()
            .map(|after| {
                PageToken {
                    after: after.clone(),
                    filter_fingerprint: self.filter_fingerprint,
                }
                .encode()
            })
            .unwrap_or_default()
    }
}

impl PageToken {
    fn encode(&self) -> String {
        let mut out = format!("{:016x}", self.filter_fingerprint);
        for byte in self.after.as_bytes() {
            out += &format!("{byte:02x}");
        }
        out
    }

    fn decode(raw: &str) -> Option<Self> {
        if raw.len() < 16 || raw.len() % 2 != 0 || !raw.is_ascii() {
            return None;
        }
        let filter_fingerprint = u64::from_str_radix(&raw[..16], 16).ok()?;
        let bytes = (16..raw.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(PageToken {
            after: String::from_utf8(bytes).ok()?,
            filter_fingerprint,
        })
    }
}

/// FNV-1a: a stable hash (unlike std's), so tokens survive a restart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_resume_after_the_last_key_of_a_page() {
        let request = PageRequest::parse(2, "", &"filters").unwrap();
        let page = request.page(vec!["a", "b", "c"], |s| s.to_string());
        assert_eq!(page.items, vec!["a", "b"]);
        let token = request.next_token(&page);
        let next = PageRequest::parse(2, &token, &"filters").unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
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
            PageRequest::parse(0, "", &()).unwrap().size,
            DEFAULT_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::parse(5000, "", &()).unwrap().size,
            MAX_PAGE_SIZE
        );
        assert_eq!(
            PageRequest::parse(-1, "", &()).unwrap_err().field,
            "page_size"
        );
    }
}
