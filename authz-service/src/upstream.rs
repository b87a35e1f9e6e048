//! The directory this service follows: its address and the credential presented
//! to it, for the feed and for fully consistent reads alike.

use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

#[derive(Clone)]
pub struct Upstream {
    /// `http://host:port`.
    pub url: String,
    /// The secret presented as `authorization: Bearer <secret>`.
    token: Option<String>,
    /// For an https:// directory: the CA its certificate must chain to.
    tls: Option<ClientTlsConfig>,
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
            tls: None,
        }
    }

    /// Trusts `ca` (a PEM file) for the directory's certificate.
    pub fn with_ca(mut self, ca: Option<&std::path::Path>) -> anyhow::Result<Self> {
        if let Some(path) = ca {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!(
                    "COHORT_AUTHZ_DIRECTORY_CA / --directory-ca {}: {e}",
                    path.display()
                )
            })?;
            self.tls = Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)));
        }
        Ok(self)
    }

    /// An endpoint for the directory, over TLS when its URL is https://.
    pub fn endpoint(&self) -> Result<Endpoint, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(self.url.clone())?;
        match &self.tls {
            Some(tls) => endpoint.tls_config(tls.clone()),
            // Without a CA there is nothing to trust: give one with --directory-ca.
            None if self.url.starts_with("https://") => endpoint.tls_config(ClientTlsConfig::new()),
            None => Ok(endpoint),
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
