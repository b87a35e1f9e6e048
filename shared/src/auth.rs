//! Authentication of calling services, the same in both servers.
//!
//! Each calling service holds a credential, `name:secret`, optionally restricted
//! to tenants (`name:secret:tenant-id,tenant-id`). Calls carry it as
//! `authorization: Bearer <secret>`; [`AuthLayer`] compares it in constant time
//! with every configured secret, refuses a call without a valid one
//! (UNAUTHENTICATED; only the gRPC health service is open), and hands the handlers
//! the caller's [`Principal`], which says which tenants it may touch
//! ([`Principal::check_tenant`], PERMISSION_DENIED otherwise).
//!
//! Why a layer of ours rather than a tonic interceptor or tower-http's
//! `ValidateRequestHeaderLayer::bearer`: interceptors attach per service (the
//! directory's two, reflection's two, health), and a service added without one
//! would be open; this layer wraps the whole server. tower-http's checks one
//! token, not a list compared in constant time, and hands the handlers no
//! principal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use subtle::ConstantTimeEq;
use tonic::codegen::http::{Request, Response};
use tower::{Layer, Service};
use uuid::Uuid;

/// Paths that need no credential: orchestrators probe health without one.
const OPEN_PATH_PREFIX: &str = "/grpc.health.v1.Health/";

/// One configured credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    secret: String,
    /// `None`: every tenant.
    pub tenants: Option<Vec<Uuid>>,
}

impl std::fmt::Debug for Credential {
    // The secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("tenants", &self.tenants)
            .finish_non_exhaustive()
    }
}

impl Credential {
    pub fn new(
        name: impl Into<String>,
        secret: impl Into<String>,
        tenants: Option<Vec<Uuid>>,
    ) -> Self {
        Credential {
            name: name.into(),
            secret: secret.into(),
            tenants,
        }
    }

    /// The development credential (`dev`) kept in `file`: read when it exists,
    /// else generated and written there, readable by its owner only.
    pub fn dev_kept_in(file: &std::path::Path) -> anyhow::Result<Self> {
        use std::io::Write;
        let read = |file: &std::path::Path| -> anyhow::Result<Self> {
            let secret = std::fs::read_to_string(file).map_err(|e| {
                anyhow::anyhow!("reading the development credential {}: {e}", file.display())
            })?;
            let secret = secret.trim();
            Credential::parse(&format!("dev:{secret}")).map_err(|e| {
                anyhow::anyhow!("the development credential in {}: {e}", file.display())
            })
        };
        if file.exists() {
            return read(file);
        }
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let dev = Credential::generate("dev");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(file) {
            Ok(mut out) => {
                out.write_all(dev.secret().as_bytes())?;
                Ok(dev)
            }
            // Another service sharing the file wrote it first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(file),
            Err(e) => Err(anyhow::anyhow!(
                "writing the development credential {}: {e}",
                file.display()
            )),
        }
    }

    /// A fresh credential with a random secret, for development.
    pub fn generate(name: &str) -> Self {
        let secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        Credential::new(name, secret, None)
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The `authorization` header value that presents this credential.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.secret)
    }

    /// Parses `name:secret` or `name:secret:tenant,tenant`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut parts = raw.splitn(3, ':');
        let name = parts.next().unwrap_or_default().trim();
        let secret = parts.next().unwrap_or_default().trim();
        if name.is_empty() || secret.len() < 16 {
            return Err(format!("`{name}`: expected name:secret[:tenant,...] with a secret of at least 16 characters"));
        }
        let tenants = match parts.next() {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(|t| {
                        Uuid::parse_str(t.trim())
                            .map_err(|_| format!("`{name}`: `{t}` is not a tenant id"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Credential::new(name, secret, tenants))
    }

    /// Parses a list separated by whitespace or `;` (as an environment variable holds it).
    pub fn parse_list(raw: &str) -> Result<Vec<Self>, String> {
        raw.split(|c: char| c == ';' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(Credential::parse)
            .collect()
    }
}

/// Who is calling, as established by [`AuthLayer`]; in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// `None`: every tenant.
    pub tenants: Option<Vec<Uuid>>,
}

impl Principal {
    /// The caller of a server running without authentication (tests only).
    pub fn open() -> Self {
        Principal {
            name: "anonymous".into(),
            tenants: None,
        }
    }

    /// The principal of a call (open when the server authenticates nobody).
    pub fn of<T>(request: &tonic::Request<T>) -> Principal {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .unwrap_or_else(Principal::open)
    }

    /// Whether it may touch every tenant (create or list tenants, follow all).
    pub fn is_unrestricted(&self) -> bool {
        self.tenants.is_none()
    }

    /// PERMISSION_DENIED unless the credential covers the tenant. An id that is not
    /// a UUID is let through, for the handler to refuse with INVALID_ARGUMENT.
    #[allow(clippy::result_large_err)]
    pub fn check_tenant(&self, tenant_id: &str) -> Result<(), tonic::Status> {
        let Some(allowed) = &self.tenants else {
            return Ok(());
        };
        match Uuid::parse_str(tenant_id) {
            Ok(tenant) if !allowed.contains(&tenant) => self.check_tenant_id(tenant),
            _ => Ok(()),
        }
    }

    /// PERMISSION_DENIED unless the credential covers the tenant (already parsed).
    #[allow(clippy::result_large_err)]
    pub fn check_tenant_id(&self, tenant: Uuid) -> Result<(), tonic::Status> {
        match &self.tenants {
            Some(allowed) if !allowed.contains(&tenant) => Err(tonic::Status::permission_denied(
                format!("credential `{}` does not cover tenant {tenant}", self.name),
            )),
            _ => Ok(()),
        }
    }

    /// PERMISSION_DENIED unless the credential covers every tenant.
    #[allow(clippy::result_large_err)]
    pub fn check_unrestricted(&self, what: &str) -> Result<(), tonic::Status> {
        if self.is_unrestricted() {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "credential `{}` is limited to some tenants: {what}",
                self.name
            )))
        }
    }
}

/// How a server authenticates its callers.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Every call must present one of these credentials.
    Required(Arc<Vec<Credential>>),
    /// Nobody is authenticated; every caller is [`Principal::open`]. For tests.
    Open,
}

impl Auth {
    pub fn required(credentials: Vec<Credential>) -> Self {
        Auth::Required(Arc::new(credentials))
    }

    /// The credential whose secret `presented` is, compared in constant time.
    fn authenticate(credentials: &[Credential], presented: &[u8]) -> Option<Principal> {
        let mut found = None;
        // Every secret is compared, whichever matches, so the time taken does not
        // tell which one (or how much of one) matched.
        for credential in credentials {
            if bool::from(credential.secret.as_bytes().ct_eq(presented)) {
                found = Some(Principal {
                    name: credential.name.clone(),
                    tenants: credential.tenants.clone(),
                });
            }
        }
        found
    }
}

#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    pub fn new(auth: Auth) -> Self {
        AuthLayer { auth }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    auth: Auth,
}

impl<S, ReqBody> Service<Request<ReqBody>> for Authenticate<S>
where
    S: Service<Request<ReqBody>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let principal = match &self.auth {
            Auth::Open => Some(Principal::open()),
            Auth::Required(_) if request.uri().path().starts_with(OPEN_PATH_PREFIX) => {
                Some(Principal::open())
            }
            Auth::Required(credentials) => request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .and_then(|secret| Auth::authenticate(credentials, secret.trim().as_bytes())),
        };
        let Some(principal) = principal else {
            tracing::info!(method = %request.uri().path(), "refused an unauthenticated call");
            let status = tonic::Status::unauthenticated(
                "a valid credential is required: authorization: Bearer <secret>",
            );
            return Box::pin(async move { Ok(status.into_http()) });
        };
        request.extensions_mut().insert(principal);
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_credential_is_kept_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("cohort-dev-{}", Uuid::new_v4().simple()));
        let file = dir.join("nested").join("dev-token");
        let first = Credential::dev_kept_in(&file).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "readable by its owner only");
        }
        let again = Credential::dev_kept_in(&file).unwrap();
        assert_eq!(
            again.secret(),
            first.secret(),
            "the same credential after a restart"
        );
        std::fs::write(&file, "short").unwrap();
        assert!(
            Credential::dev_kept_in(&file).is_err(),
            "a damaged file is an error"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn credentials_parse_and_hide_their_secret() {
        let tenant = Uuid::new_v4();
        let list = Credential::parse_list(&format!(
            "authz:0123456789abcdef; ops:fedcba9876543210:{tenant}"
        ))
        .unwrap();
        assert_eq!(list[0].name, "authz");
        assert_eq!(list[1].tenants, Some(vec![tenant]));
        assert!(!format!("{:?}", list[0]).contains("0123456789abcdef"));
        assert!(Credential::parse("short:abc").is_err());
        assert!(Credential::parse("x:0123456789abcdef:not-a-tenant").is_err());
    }

    #[test]
    fn only_a_configured_secret_authenticates() {
        let credentials = vec![Credential::new("a", "0123456789abcdef", None)];
        assert_eq!(
            Auth::authenticate(&credentials, b"0123456789abcdef")
                .unwrap()
                .name,
            "a"
        );
        assert!(Auth::authenticate(&credentials, b"0123456789abcdeF").is_none());
        assert!(Auth::authenticate(&credentials, b"").is_none());
    }

    #[test]
    fn restricted_principals_stay_in_their_tenants() {
        let (mine, other) = (Uuid::new_v4(), Uuid::new_v4());
        let principal = Principal {
            name: "p".into(),
            tenants: Some(vec![mine]),
        };
        assert!(principal.check_tenant(&mine.to_string()).is_ok());
        assert_eq!(
            principal
                .check_tenant(&other.to_string())
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert!(
            principal.check_tenant("not-an-id").is_ok(),
            "left for the handler's INVALID_ARGUMENT"
        );
        assert!(principal.check_unrestricted("list tenants").is_err());
        assert!(Principal::open().check_unrestricted("list tenants").is_ok());
    }
}
