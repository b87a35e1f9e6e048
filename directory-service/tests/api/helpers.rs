//! The test harness: `spawn_app` starts the real directory server on a random port
//! against a fresh database (a new PostgreSQL database, or a new SQLite file), and
//! returns a gRPC client with helpers for the common set-up steps.
//!
//! One file on purpose: the harness every test file imports from, in one place.
//!
//! PostgreSQL is reached at `COHORT_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); every test creates its own
//! database there, dropped with the app, also when the test fails
//! (`cohort-test-support`).

use std::sync::Arc;

use cohort_directory::feed::FeedSettings;
use cohort_directory::startup::Application;
use cohort_directory::storage::postgres::PgStore;
use cohort_directory::storage::sqlite::SqliteStore;
use cohort_directory::storage::DirectoryStore;
use cohort_shared::auth::Auth;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::change_feed_service_client::ChangeFeedServiceClient;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use cohort_shared::serving::Limits;
use cohort_test_support::{ScratchDatabase, ScratchDir};
use sqlx::Connection;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// What a test app owns, removed with it (also when the test fails).
enum Scratch {
    Postgres(ScratchDatabase),
    // Held for its removal on drop.
    Sqlite(#[allow(dead_code)] ScratchDir),
}

pub struct TestApp {
    pub client: DirectoryServiceClient<Channel>,
    /// Where the server listens.
    pub addr: std::net::SocketAddr,
    pub feed: ChangeFeedServiceClient<Channel>,
    pub store: Arc<dyn DirectoryStore>,
    pub backend: Backend,
    /// The test database, for tests that need a connection of their own.
    pub database_url: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// The database this app owns and removes at cleanup (none for a replica).
    scratch: Option<Scratch>,
}

pub use cohort_test_support::admin_database_url;

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, FeedSettings::default()).await
}

/// A directory on a fresh database, with the given feed settings.
pub async fn spawn_app_with(backend: Backend, feed: FeedSettings) -> TestApp {
    spawn_app_limited(backend, feed, Limits::default()).await
}

/// A directory on a fresh database, with the given feed settings and limits.
pub async fn spawn_app_limited(backend: Backend, feed: FeedSettings, limits: Limits) -> TestApp {
    let (database_url, scratch) = match backend {
        Backend::Postgres => {
            let database = ScratchDatabase::migrated(
                "cohort_test",
                &cohort_directory::storage::postgres::MIGRATIONS,
            )
            .await
            .expect(
                "PostgreSQL must be reachable at COHORT_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres)",
            );
            (database.url().to_owned(), Scratch::Postgres(database))
        }
        Backend::Sqlite => {
            let dir = ScratchDir::create("cohort-test").unwrap();
            (
                format!("sqlite://{}", dir.path().join("directory.db").display()),
                Scratch::Sqlite(dir),
            )
        }
    };
    let mut app = start_server(backend, &database_url, feed, limits).await;
    app.scratch = Some(scratch);
    app
}

/// Another directory server on the same database (a replica). Its cleanup only
/// stops the server.
pub async fn spawn_replica(app: &TestApp, feed: FeedSettings) -> TestApp {
    start_server(app.backend, &app.database_url, feed, Limits::default()).await
}

async fn start_server(
    backend: Backend,
    database_url: &str,
    feed: FeedSettings,
    limits: Limits,
) -> TestApp {
    let store: Arc<dyn DirectoryStore> = match backend {
        Backend::Postgres => Arc::new(
            PgStore::connect(database_url, 16)
                .await
                .expect("connect to the test database"),
        ),
        Backend::Sqlite => Arc::new(
            SqliteStore::connect(database_url, 8)
                .await
                .expect("open the test database"),
        ),
    };
    let app = Application::with_store(
        "127.0.0.1:0".parse().unwrap(),
        store.clone(),
        feed,
        Auth::Open,
    )
    .await
    .unwrap()
    .with_limits(limits);
    let addr = app.local_addr();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stop.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the server");
    TestApp {
        addr,
        client: DirectoryServiceClient::new(channel.clone()),
        feed: ChangeFeedServiceClient::new(channel),
        store,
        backend,
        database_url: database_url.to_owned(),
        shutdown: Some(shutdown),
        server: Some(server),
        scratch: None,
    }
}

/// The user roles of most tests.
pub const GA_USER: catalog_pb::Role = catalog_pb::Role::GlobalAdminUser;
pub const GA_GROUP_ADMIN: catalog_pb::Role = catalog_pb::Role::GlobalAdminGroupAdministrator;

pub fn roles(roles: &[catalog_pb::Role]) -> Vec<i32> {
    roles.iter().map(|r| *r as i32).collect()
}

/// A tenant with its first admin.
pub struct Tenant {
    pub id: String,
    pub admin_id: String,
}

impl TestApp {
    pub fn client(&self) -> DirectoryServiceClient<Channel> {
        self.client.clone()
    }

    pub async fn tenant(&self) -> Tenant {
        let resp = self
            .client()
            .create_tenant(pb::CreateTenantRequest {
                display_name: "Acme".into(),
                admin_display_name: "Ada Admin".into(),
                admin_email: format!("admin-{}@acme.test", Uuid::new_v4().simple()),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        Tenant {
            id: resp.tenant.unwrap().id,
            admin_id: resp.admin.unwrap().id,
        }
    }

    pub async fn user_with(
        &self,
        tenant: &Tenant,
        name: &str,
        role_list: &[catalog_pb::Role],
    ) -> pb::User {
        self.client()
            .create_user(pb::CreateUserRequest {
                tenant_id: tenant.id.clone(),
                display_name: name.into(),
                email: format!("{}@acme.test", name.to_lowercase().replace(' ', ".")),
                roles: roles(role_list),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
    }

    /// A user whose only role is Global Admin USER.
    pub async fn user(&self, tenant: &Tenant, name: &str) -> String {
        self.user_with(tenant, name, &[GA_USER]).await.id
    }

    /// A user eligible to administer groups.
    pub async fn group_admin(&self, tenant: &Tenant, name: &str) -> String {
        self.user_with(tenant, name, &[GA_GROUP_ADMIN]).await.id
    }

    pub async fn organization(&self, tenant: &Tenant, name: &str) -> pb::Group {
        self.create_group(tenant, name, "", true).await
    }

    pub async fn subgroup(&self, tenant: &Tenant, name: &str, parent: &str) -> pb::Group {
        self.create_group(tenant, name, parent, false).await
    }

    /// A top-level group without the organization flag.
    pub async fn create_top_level(&self, tenant: &Tenant, name: &str) -> pb::Group {
        self.create_group(tenant, name, "", false).await
    }

    async fn create_group(
        &self,
        tenant: &Tenant,
        name: &str,
        parent: &str,
        org: bool,
    ) -> pb::Group {
        self.client()
            .create_group(pb::CreateGroupRequest {
                tenant_id: tenant.id.clone(),
                display_name: name.into(),
                parent_id: parent.into(),
                is_organization: org,
                request_id: String::new(),
                inherited_roles: Vec::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .group
            .unwrap()
    }

    pub async fn get_group(&self, tenant: &Tenant, group: &str) -> pb::Group {
        self.client()
            .get_group(pb::GetGroupRequest {
                tenant_id: tenant.id.clone(),
                group_id: group.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .group
            .unwrap()
    }

    pub async fn get_user(&self, tenant: &Tenant, user: &str) -> pb::User {
        self.client()
            .get_user(pb::GetUserRequest {
                tenant_id: tenant.id.clone(),
                user_id: user.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .user
            .unwrap()
    }

    pub async fn add_members(
        &self,
        tenant: &Tenant,
        group: &str,
        users: &[&str],
    ) -> Result<pb::AddGroupMembersResponse, Status> {
        self.client()
            .add_group_members(pb::AddGroupMembersRequest {
                tenant_id: tenant.id.clone(),
                group_id: group.into(),
                user_ids: users.iter().map(|u| u.to_string()).collect(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn set_admins(
        &self,
        tenant: &Tenant,
        group: &str,
        users: &[&str],
    ) -> Result<Vec<String>, Status> {
        self.client()
            .set_group_administrators(pb::SetGroupAdministratorsRequest {
                tenant_id: tenant.id.clone(),
                group_id: group.into(),
                user_ids: users.iter().map(|u| u.to_string()).collect(),
                etag: String::new(),
            })
            .await
            .map(|r| r.into_inner().administrator_ids)
    }

    /// The tenant's current revision.
    pub async fn revision(&self, tenant: &Tenant) -> i64 {
        self.client()
            .get_tenant(pb::GetTenantRequest {
                tenant_id: tenant.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .tenant
            .unwrap()
            .revision
    }

    /// Every member of a group, following page tokens.
    pub async fn all_members(
        &self,
        tenant: &Tenant,
        group: &str,
        include_subgroups: bool,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        let mut token = String::new();
        loop {
            let resp = self
                .client()
                .list_group_members(pb::ListGroupMembersRequest {
                    tenant_id: tenant.id.clone(),
                    group_id: group.into(),
                    include_subgroups,
                    page_size: 2,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            ids.extend(resp.users.into_iter().map(|u| u.id));
            if resp.next_page_token.is_empty() {
                return ids;
            }
            token = resp.next_page_token;
        }
    }

    /// Stops the server and removes the test's database.
    /// Rows of `table` in the test database matching `condition` (raw SQL, for
    /// checks the API cannot make, such as rows left behind).
    pub async fn count_rows(&self, table: &str, condition: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {condition}");
        match self.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
            }
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }

    /// The outbox rows of a tenant as stored: revision and change-set text.
    pub async fn raw_change_sets(&self, tenant: &Tenant) -> Vec<(i64, String)> {
        let id = uuid::Uuid::parse_str(&tenant.id).unwrap();
        match self.backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                sqlx::query_as("SELECT revision, changes::text FROM change_events WHERE tenant_id = $1 ORDER BY revision")
                    .bind(id)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.database_url)
                    .await
                    .unwrap();
                sqlx::query_as("SELECT revision, changes FROM change_events WHERE tenant_id = $1 ORDER BY revision")
                    .bind(id)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap()
            }
        }
    }

    pub async fn cleanup(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        drop(self.client);
        drop(self.feed);
        drop(self.store);
        match self.scratch.take() {
            Some(Scratch::Postgres(database)) => database.drop_now().await.unwrap(),
            // The folder goes with its guard.
            Some(Scratch::Sqlite(_)) | None => {}
        }
    }
}

/// Asserts a call failed with `code`, and (when given) names `field` in its
/// `BadRequest` details. Returns the status for further checks.
pub fn assert_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    field: Option<&str>,
) -> Status {
    let status = result.expect_err("the call should have failed");
    assert_eq!(status.code(), code, "unexpected status: {status:?}");
    if let Some(field) = field {
        let details = status.get_error_details();
        let fields: Vec<&str> = details
            .bad_request()
            .map(|b| {
                b.field_violations
                    .iter()
                    .map(|v| v.field.as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            fields.contains(&field),
            "expected field {field} in {fields:?} ({status:?})"
        );
    }
    status
}

/// The `ErrorInfo` reason of a failed call.
pub fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// The reason of a FAILED_PRECONDITION and the resources that block it (its
/// `PreconditionFailure` subjects).
pub fn reason_and_subjects(status: &Status) -> (String, Vec<String>) {
    let details = status.get_error_details();
    let subjects = details
        .precondition_failure()
        .map(|p| p.violations.iter().map(|v| v.subject.clone()).collect())
        .unwrap_or_default();
    (reason(status), subjects)
}

/// Generates, for every listed `async fn name(app: &TestApp)`, one test per backend:
/// `postgres::name` and `sqlite::name`, optionally with feed settings.
#[macro_export]
macro_rules! on_both_backends {
    (feed = $feed:expr; $($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let app = $crate::helpers::spawn_app_with($crate::helpers::Backend::Postgres, $feed).await;
                    super::$test(&app).await;
                    app.cleanup().await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let app = $crate::helpers::spawn_app_with($crate::helpers::Backend::Sqlite, $feed).await;
                    super::$test(&app).await;
                    app.cleanup().await;
                }
            )*
        }
    };
    ($($test:ident),* $(,)?) => {
        $crate::on_both_backends!(feed = Default::default(); $($test),*);
    };
}
