//! The directory this service follows: its address and the credential presented
//! to it, for the feed and for fully consistent reads alike.

use tonic::metadata::MetadataValue;

#[derive(Clone)]
pub struct Upstream {
    /// `http://host:port`.
    pub url: String,
    /// The secret presented as `authorization: Bearer <secret>`.
    token: Option<String>,
}

impl std::fmt::Debug for Upstream {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        Upstream {
            url: url.into(),
            token,
        }
    }

    /// Adds the credential to a request for the directory.
    pub fn authorize<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(token) = &self.token {
            if let Ok(value) = MetadataValue::try_from(format!("Bearer {token}")) {
                request.metadata_mut().insert("authorization", value);
            }
        }
    }
}
