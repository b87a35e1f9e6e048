//! Page tokens, the same in both services: a token names the last key of the
//! page before and a fingerprint of the request's filters, so it is opaque to
//! clients, costs one index seek to resume, and is refused when replayed with
//! other filters (or forged). Sizes default and are capped per listing.

/// The largest page any listing returns.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Why a page request is refused, with the field it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("must not be negative")]
    NegativeSize,
    #[error("is not a token this service issued")]
    NotIssuedHere,
    #[error("was issued for a listing with other filters")]
    OtherFilters,
}

impl PageError {
    /// The request field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            PageError::NegativeSize => "page_size",
            PageError::NotIssuedHere | PageError::OtherFilters => "page_token",
        }
    }
}

/// A validated page request: its size, and the key to resume after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub size: usize,
    /// The last key of the previous page (`None` for the first page).
    pub after: Option<String>,
    filters: u64,
}

impl PageCursor {
    /// Reads `page_size` (0: `default_size`; capped at [`MAX_PAGE_SIZE`]) and
    /// `page_token`, which must have been issued for the same `filters`
    /// (anything describing the listing; its `Debug` form is fingerprinted).
    pub fn parse(
        page_size: i32,
        page_token: &str,
        filters: &impl std::fmt::Debug,
        default_size: usize,
    ) -> Result<Self, PageError> {
        let size = match page_size {
            0 => default_size,
            n if n < 0 => return Err(PageError::NegativeSize),
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let filters = fnv1a(format!("{filters:?}").as_bytes());
        let after = if page_token.is_empty() {
            None
        } else {
            let (fingerprint, after) = decode(page_token).ok_or(PageError::NotIssuedHere)?;
            if fingerprint != filters {
                return Err(PageError::OtherFilters);
            }
            Some(after)
        };
        Ok(PageCursor {
            size,
            after,
            filters,
        })
    }

    /// A cursor for everything from the start, for internal listings.
    pub fn first(size: usize) -> Self {
        PageCursor {
            size,
            after: None,
            filters: 0,
        }
    }

    /// The token of the page that follows the one ending at `last_key`.
    pub fn token_after(&self, last_key: &str) -> String {
        let mut out = format!("{:016x}", self.filters);
        for byte in last_key.as_bytes() {
            out += &format!("{byte:02x}");
        }
        out
    }
}

fn decode(raw: &str) -> Option<(u64, String)> {
    if raw.len() < 16 || raw.len() % 2 != 0 || !raw.is_ascii() {
        return None;
    }
    let fingerprint = u64::from_str_radix(&raw[..16], 16).ok()?;
    let bytes = (16..raw.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((fingerprint, String::from_utf8(bytes).ok()?))
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
    fn a_token_resumes_after_its_key_with_the_same_filters_only() {
        let first = PageCursor::parse(2, "", &("tenant", 1), 50).unwrap();
        assert_eq!((first.size, first.after.as_deref()), (2, None));
        let token = first.token_after("b");
        let next = PageCursor::parse(2, &token, &("tenant", 1), 50).unwrap();
        assert_eq!(next.after.as_deref(), Some("b"));
        assert_eq!(
            PageCursor::parse(2, &token, &("tenant", 2), 50),
            Err(PageError::OtherFilters)
        );
    }

    #[test]
    fn forged_tokens_and_negative_sizes_are_refused_and_sizes_default_and_cap() {
        for forged in [
            "zz",
            "0123456789abcdefZZ",
            "0123456789abcde",
            "0123456789abcdef0",
        ] {
            assert_eq!(
                PageCursor::parse(1, forged, &(), 50),
                Err(PageError::NotIssuedHere),
                "{forged}"
            );
        }
        assert_eq!(
            PageCursor::parse(-1, "", &(), 50).unwrap_err().field(),
            "page_size"
        );
        assert_eq!(PageCursor::parse(0, "", &(), 100).unwrap().size, 100);
        assert_eq!(
            PageCursor::parse(5000, "", &(), 50).unwrap().size,
            MAX_PAGE_SIZE
        );
    }
}
