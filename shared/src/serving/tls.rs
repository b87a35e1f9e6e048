//! TLS material (PEM files) and the server configuration made from it.

/// Where a server's TLS material lives (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// When set, clients may present a certificate signed by this CA, and it is
    /// verified; `require_client_cert` makes it mandatory.
    pub client_ca: Option<std::path::PathBuf>,
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// The settings, when both a certificate and a key are given; an error naming
    /// the setting when only one is, or a file cannot be read.
    pub fn from_settings(
        cert: &Option<std::path::PathBuf>,
        key: &Option<std::path::PathBuf>,
        client_ca: &Option<std::path::PathBuf>,
        require_client_cert: bool,
    ) -> Result<Option<TlsFiles>, String> {
        match (cert, key) {
            (None, None) if client_ca.is_none() && !require_client_cert => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: client_ca.clone(),
                require_client_cert,
            })),
            _ => {
                Err("--tls-cert and --tls-key go together (and --tls-client-ca needs both)".into())
            }
        }
    }

    /// The server's TLS configuration.
    pub fn server_config(&self) -> Result<tonic::transport::ServerTlsConfig, String> {
        let read = |path: &std::path::Path, setting: &str| {
            std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))
        };
        let identity = tonic::transport::Identity::from_pem(
            read(&self.cert, "--tls-cert")?,
            read(&self.key, "--tls-key")?,
        );
        let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(read(
                    ca,
                    "--tls-client-ca",
                )?))
                .client_auth_optional(!self.require_client_cert);
        }
        Ok(config)
    }
}
