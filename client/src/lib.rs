//! `cohort-client`: a typed Rust client for Cohort's directory, authorization
//! service and role catalog.
//!
//! - **Every RPC, typed.** Send any request message of the three services:
//!   [`Client::call`] for the directory, [`Client::read`] for the authorization
//!   service, [`Client::catalog`] for the catalog. The response type follows
//!   from the request's.
//! - **Read-your-writes without bookkeeping.** The client is a session: it
//!   remembers, per tenant, the highest revision its directory writes returned,
//!   and an authorization read whose `consistency` is left unset asks for at
//!   least that revision. Set `consistency` on a request to choose otherwise.
//!   Clones share the session.
//! - **Retries.** A call that fails with UNAVAILABLE is sent again, with growing
//!   pauses, when repeating it is safe: reads, sets and adds, and creates, whose
//!   empty `request_id` the client fills so that a repeated create returns the
//!   first one's result. Deletes and moves are not repeated.
//! - **The change feed, resumed.** [`Client::watch`] follows tenants from
//!   cursors, gathers change sets cut into parts, and reopens a broken stream
//!   from where it was.
//!
//! One file on purpose: the client, its configuration and the session's revision
//! bookkeeping are one type; the RPC table is in `calls.rs` and watching in
//! `watch.rs`.
//!
//! ```
//! use cohort_client::{Client, Config, Resource};
//! use cohort_client::proto::directory::v1 as directory;
//! use cohort_client::proto::catalog::v1::Role;
//!
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! # let stack = cohort_stack::Ephemeral::start().await?;
//! # let (directory_url, authz_url, token) = (stack.directory_url(), stack.authz_url(), stack.token().to_owned());
//! let client = Client::connect(Config::new(directory_url, authz_url).token(token))?;
//!
//! let created = client
//!     .call(directory::CreateTenantRequest {
//!         display_name: "Acme Learning".into(),
//!         admin_display_name: "Ada Admin".into(),
//!         admin_email: "ada@acme.test".into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let tenant = created.tenant.unwrap().id;
//! let author = client
//!     .call(directory::CreateUserRequest {
//!         tenant_id: tenant.clone(),
//!         display_name: "Sam Author".into(),
//!         email: "sam@acme.test".into(),
//!         roles: vec![Role::GlobalAdminUser as i32, Role::LmsAuthor as i32],
//!         ..Default::default()
//!     })
//!     .await?
//!     .user
//!     .unwrap();
//!
//! // Read-your-writes: this check waits, if it must, for the revision of the
//! // write above; no revision is passed by hand.
//! let allowed = client
//!     .check(&tenant, &author.id, "lms.content.create", Resource::User(author.id.clone()))
//!     .await?;
//! assert!(allowed);
//! # stack.stop().await?;
//! # Ok(())
//! # }
//! ```

pub mod calls;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cohort_api::authz::v1::authz_service_client::AuthzServiceClient;
use cohort_api::catalog::v1::catalog_service_client::CatalogServiceClient;
use cohort_api::directory::v1::change_feed_service_client::ChangeFeedServiceClient;
use cohort_api::directory::v1::directory_service_client::DirectoryServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub use calls::{AuthzCall, CatalogCall, DirectoryCall, Retry};
pub use watch::{ChangeSet, FeedEvent, Watch};

/// The generated messages of Cohort's contracts (requests, responses,
/// resources and enums), one module per proto package.
pub mod proto {
    pub use cohort_api::{authz, catalog, directory};
}

use proto::authz::v1 as authz;

/// Where the services are and how to reach them.
#[derive(Debug, Clone)]
pub struct Config {
    directory: String,
    authz: String,
    token: Option<String>,
    tls: Option<ClientTlsConfig>,
    retries: Retries,
    timeout: Option<Duration>,
}

impl Config {
    /// The directory's and the authorization service's URLs
    /// (`http://host:port`, or `https://` with [`Config::tls`]).
    pub fn new(directory: impl Into<String>, authz: impl Into<String>) -> Self {
        Config {
            directory: directory.into(),
            authz: authz.into(),
            token: None,
            tls: None,
            retries: Retries::default(),
            timeout: None,
        }
    }

    /// The credential's secret, sent as `authorization: Bearer <secret>`.
    pub fn token(mut self, secret: impl Into<String>) -> Self {
        self.token = Some(secret.into());
        self
    }

    /// TLS for both services (for `https://` URLs): the CA to trust and,
    /// optionally, a client certificate.
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How calls are retried on UNAVAILABLE.
    pub fn retries(mut self, retries: Retries) -> Self {
        self.retries = retries;
        self
    }

    /// A deadline for every call (sent as `grpc-timeout`; the authorization
    /// service stops waiting for a revision a little before it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// How calls that are safe to repeat are retried on UNAVAILABLE.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// The pause before the first retry; each next one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: 5,
            first_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid service URL `{url}`: {source}")]
    InvalidUrl {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("TLS settings: {0}")]
    Tls(tonic::transport::Error),
    #[error("the token is not a valid header value (visible ASCII only)")]
    InvalidToken,
}

/// Adds the credential to every call (`authorization: Bearer <secret>`), for
/// stubs made by hand as well as for [`Client`].
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The credential `secret`, or none (for a server without credentials).
    pub fn new(secret: Option<&str>) -> Result<Self, ConnectError> {
        secret
            .map(|secret| {
                let mut value: MetadataValue<Ascii> = format!("Bearer {secret}")
                    .parse()
                    .map_err(|_| ConnectError::InvalidToken)?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()
            .map(Bearer)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

/// The client stubs of the four services (opaque: reached through
/// [`Client`]).
#[derive(Debug, Clone)]
pub struct Channels {
    directory: DirectoryServiceClient<Authed>,
    feed: ChangeFeedServiceClient<Authed>,
    authz: AuthzServiceClient<Authed>,
    catalog: CatalogServiceClient<Authed>,
}

/// What a check is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// The whole tenant.
    Tenant,
    /// A group (and its subgroups).
    Group(String),
    /// A user: for own-content permissions, the content's owner.
    User(String),
    /// A content catalog.
    Catalog(String),
}

impl From<Resource> for authz::Resource {
    fn from(resource: Resource) -> Self {
        use authz::resource::Resource as R;
        authz::Resource {
            resource: Some(match resource {
                Resource::Tenant => R::Tenant(true),
                Resource::Group(id) => R::GroupId(id),
                Resource::User(id) => R::UserId(id),
                Resource::Catalog(id) => R::CatalogId(id),
            }),
        }
    }
}

/// A session with Cohort: the stubs, and the highest revision written per
/// tenant. Cheap to clone; clones share the session.
#[derive(Debug, Clone)]
pub struct Client {
    channels: Channels,
    revisions: Arc<Mutex<HashMap<String, i64>>>,
    retries: Retries,
}

impl Client {
    /// A client for the services `config` names. Connections are made when
    /// first needed (and remade after a failure), so this fails only on
    /// invalid settings; an unreachable service shows as UNAVAILABLE calls.
    pub fn connect(config: Config) -> Result<Client, ConnectError> {
        let bearer = Bearer::new(config.token.as_deref())?;
        let channel = |url: &str| -> Result<Channel, ConnectError> {
            let mut endpoint = Endpoint::from_shared(url.to_owned()).map_err(|source| {
                ConnectError::InvalidUrl {
                    url: url.to_owned(),
                    source,
                }
            })?;
            if let Some(tls) = &config.tls {
                endpoint = endpoint
                    .tls_config(tls.clone())
                    .map_err(ConnectError::Tls)?;
            }
            if let Some(timeout) = config.timeout {
                endpoint = endpoint.timeout(timeout);
            }
            Ok(endpoint.connect_lazy())
        };
        let directory = channel(&config.directory)?;
        let authz = channel(&config.authz)?;
        Ok(Client {
            channels: Channels {
                directory: DirectoryServiceClient::with_interceptor(
                    directory.clone(),
                    bearer.clone(),
                ),
                feed: ChangeFeedServiceClient::with_interceptor(directory, bearer.clone()),
                authz: AuthzServiceClient::with_interceptor(authz.clone(), bearer.clone()),
                catalog: CatalogServiceClient::with_interceptor(authz, bearer),
            },
            revisions: Arc::default(),
            retries: config.retries,
        })
    }

    /// Sends a directory request. A write's revision is remembered for its
    /// tenant, so the session's next authorization reads see it.
    pub async fn call<R: DirectoryCall>(
        &self,
        mut request: R,
    ) -> Result<R::Response, tonic::Status> {
        request.prepare();
        let response = self
            .with_retries(R::METHOD, R::RETRY, || request.clone().send(&self.channels))
            .await?;
        if let Some((tenant, revision)) = request.written(&response) {
            self.remember(&tenant, revision);
        }
        Ok(response)
    }

    /// Sends an authorization request. When its `consistency` is unset and the
    /// session wrote to the tenant, it asks for at least that revision.
    pub async fn read<R: AuthzCall>(&self, mut request: R) -> Result<R::Response, tonic::Status> {
        if let Some((tenant, consistency)) = request.consistency() {
            if consistency.is_none() {
                if let Some(revision) = self.revision(tenant) {
                    *consistency = Some(at_least(revision));
                }
            }
        }
        self.with_retries(R::METHOD, Retry::Safe, || {
            request.clone().send(&self.channels)
        })
        .await
    }

    /// Sends a catalog request (to the authorization service).
    pub async fn catalog<R: CatalogCall>(&self, request: R) -> Result<R::Response, tonic::Status> {
        self.with_retries(R::METHOD, Retry::Safe, || {
            request.clone().send(&self.channels)
        })
        .await
    }

    /// Whether `user` holds `permission` on `resource`, read at least at the
    /// session's revision of the tenant.
    pub async fn check(
        &self,
        tenant: &str,
        user: &str,
        permission: &str,
        resource: Resource,
    ) -> Result<bool, tonic::Status> {
        let response = self
            .read(authz::CheckRequest {
                tenant_id: tenant.to_owned(),
                user_id: user.to_owned(),
                permission: permission.to_owned(),
                resource: Some(resource.into()),
                consistency: None,
                explain: false,
            })
            .await?;
        Ok(response.allowed)
    }

    /// A user's effective roles in the full view (with where each reaches), read
    /// at least at the session's revision of the tenant.
    pub async fn effective_roles(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<authz::GetEffectiveRolesResponse, tonic::Status> {
        self.read(authz::GetEffectiveRolesRequest {
            tenant_id: tenant.to_owned(),
            user_id: user.to_owned(),
            consistency: None,
            view: authz::EffectiveRolesView::Full as i32,
        })
        .await
    }

    /// The highest revision this session wrote (or was told of) in `tenant`.
    pub fn revision(&self, tenant: &str) -> Option<i64> {
        self.revisions
            .lock()
            .expect("not poisoned")
            .get(tenant)
            .copied()
    }

    /// Records a revision of `tenant` the session's reads must reach (one that
    /// another process wrote and handed over, say); a lower one changes
    /// nothing.
    pub fn remember(&self, tenant: &str, revision: i64) {
        let mut revisions = self.revisions.lock().expect("not poisoned");
        let known = revisions.entry(tenant.to_owned()).or_insert(revision);
        *known = (*known).max(revision);
    }

    /// Follows the change feed of the tenants in `cursors` (tenant id → last
    /// revision applied; 0 starts from a snapshot), or of every tenant with
    /// `all_tenants` (the cursors are then resume points).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use cohort_client::{Client, Config, FeedEvent};
    /// use cohort_client::proto::directory::v1 as directory;
    ///
    /// # #[tokio::main(flavor = "multi_thread")]
    /// # async fn main() -> anyhow::Result<()> {
    /// # let stack = cohort_stack::Ephemeral::start().await?;
    /// # let client = Client::connect(Config::new(stack.directory_url(), stack.authz_url()).token(stack.token()))?;
    /// let tenant = client
    ///     .call(directory::CreateTenantRequest {
    ///         display_name: "Acme".into(),
    ///         admin_display_name: "Ada".into(),
    ///         admin_email: "ada@acme.test".into(),
    ///         ..Default::default()
    ///     })
    ///     .await?
    ///     .tenant
    ///     .unwrap()
    ///     .id;
    ///
    /// // From revision 0: the tenant's snapshot first, then live change sets.
    /// let mut feed = client.watch(false, BTreeMap::from([(tenant.clone(), 0)]));
    /// let mut snapshot_done = false;
    /// while !snapshot_done {
    ///     snapshot_done = matches!(feed.next().await?, FeedEvent::SnapshotEnd { .. });
    /// }
    /// let written = client
    ///     .call(directory::CreateGroupRequest {
    ///         tenant_id: tenant.clone(),
    ///         display_name: "Sales".into(),
    ///         ..Default::default()
    ///     })
    ///     .await?;
    /// loop {
    ///     if let FeedEvent::Changes(set) = feed.next().await? {
    ///         assert_eq!(set.revision, written.revision);
    ///         break;
    ///     }
    /// }
    /// // Where a new follower would resume:
    /// assert_eq!(feed.cursors()[&tenant], written.revision);
    /// # stack.stop().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(&self, all_tenants: bool, cursors: BTreeMap<String, i64>) -> Watch {
        Watch::new(self.channels.clone(), all_tenants, cursors)
    }

    async fn with_retries<T, F>(
        &self,
        method: &'static str,
        retry: Retry,
        mut send: impl FnMut() -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let attempts = match retry {
            Retry::Safe => self.retries.attempts.max(1),
            Retry::Unsafe => 1,
        };
        let mut backoff = self.retries.first_backoff;
        let mut attempt = 1;
        loop {
            match send().await {
                Err(status) if status.code() == tonic::Code::Unavailable && attempt < attempts => {
                    tracing::debug!(method, attempt, ?backoff, error = %status.message(), "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retries.max_backoff);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

fn at_least(revision: i64) -> authz::Consistency {
    authz::Consistency {
        requirement: Some(authz::consistency::Requirement::AtLeastRevision(revision)),
    }
}
