//! Validated field types. Each `parse` names the offending field in its error, so
//! that a client is told exactly what to fix.

use std::fmt;

use uuid::Uuid;

use super::Revision;

/// A field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The request field, as named in the proto (`user.email`, `user_ids[3]`).
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7), so that creation order is id order.
            pub fn generate() -> Self {
                $name(Uuid::now_v7())
            }

            pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
                if raw.is_empty() {
                    return Err(ValidationError::new(field, "is required"));
                }
                Uuid::try_parse(raw)
                    .map($name)
                    .map_err(|_| ValidationError::new(field, format!("`{raw}` is not a valid id (a UUID)")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A tenant's id.
    TenantId
);
uuid_id!(
    /// A user's id, unique within its tenant.
    UserId
);
uuid_id!(
    /// A group's id, unique within its tenant.
    GroupId
);

const MAX_NAME_CHARS: usize = 200;

/// A display name for a tenant, user or group: trimmed, 1 to 200 characters, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new(field, "is required"));
        }
        if trimmed.chars().count() > MAX_NAME_CHARS {
            return Err(ValidationError::new(
                field,
                format!("is longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(DisplayName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key names are compared by (case-insensitive).
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// An email address: trimmed, at most 254 characters, one `@` with a non-empty
/// local part and a dotted domain, no spaces. Kept as given; compared lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        let email = raw.trim();
        if email.is_empty() {
            return Err(ValidationError::new(field, "is required"));
        }
        let invalid =
            || ValidationError::new(field, format!("`{email}` is not a valid email address"));
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@')
            && domain.split('.').count() >= 2
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key emails are unique by within a tenant.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// An opaque catalog id: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CatalogId(String);

impl CatalogId {
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new(field, "is required"));
        }
        if raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                field,
                "must be 1 to 128 printable ASCII characters without spaces",
            ));
        }
        Ok(CatalogId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An idempotency key for a create (AIP-155): 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// `None` for an empty field (no idempotency asked for).
    pub fn parse(field: &str, raw: &str) -> Result<Option<Self>, ValidationError> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.len() > 128 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                field,
                "must be 1 to 128 printable ASCII characters without spaces",
            ));
        }
        Ok(Some(RequestId(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optimistic-concurrency precondition: the revision at which the client last
/// saw the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Etag(pub Revision);

impl Etag {
    /// `None` for an empty field (no precondition).
    pub fn parse(field: &str, raw: &str) -> Result<Option<Self>, ValidationError> {
        if raw.is_empty() {
            return Ok(None);
        }
        raw.trim_matches('"')
            .parse::<Revision>()
            .ok()
            .filter(|r| *r > 0)
            .map(|r| Some(Etag(r)))
            .ok_or_else(|| {
                ValidationError::new(field, format!("`{raw}` is not an etag this service issued"))
            })
    }

    pub fn of(revision: Revision) -> String {
        revision.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(DisplayName::parse("n", "  Ada  ").unwrap().as_str(), "Ada");
        assert_eq!(DisplayName::parse("n", "   ").unwrap_err().field, "n");
        assert!(DisplayName::parse("n", &"x".repeat(201)).is_err());
        assert!(DisplayName::parse("n", &"é".repeat(200)).is_ok());
        assert!(DisplayName::parse("n", "a\u{0}b").is_err());
    }

    #[test]
    fn emails_are_checked_and_keyed_case_insensitively() {
        let email = Email::parse("email", " Ada@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Ada@Example.COM");
        assert_eq!(email.key(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@example.com",
            "ada@example..com",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_name_their_field() {
        let err = UserId::parse("user_ids[2]", "nope").unwrap_err();
        assert_eq!(err.field, "user_ids[2]");
        assert!(UserId::parse("user_id", "").is_err());
        let id = UserId::generate();
        assert_eq!(UserId::parse("user_id", &id.to_string()).unwrap(), id);
    }

    #[test]
    fn etags_and_request_ids_are_optional() {
        assert_eq!(Etag::parse("etag", "").unwrap(), None);
        assert_eq!(Etag::parse("etag", "7").unwrap(), Some(Etag(7)));
        assert_eq!(Etag::parse("etag", "\"7\"").unwrap(), Some(Etag(7)));
        assert!(Etag::parse("etag", "x").is_err());
        assert!(Etag::parse("etag", "0").is_err());
        assert_eq!(RequestId::parse("request_id", "").unwrap(), None);
        assert!(RequestId::parse("request_id", "has space").is_err());
    }

    #[test]
    fn catalog_ids_are_printable() {
        assert!(CatalogId::parse("catalog_id", "cat-42").is_ok());
        assert!(CatalogId::parse("catalog_id", "").is_err());
        assert!(CatalogId::parse("catalog_id", "a b").is_err());
    }
}
