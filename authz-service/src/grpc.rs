//! The `AuthzService`: parses requests into domain terms, waits for the revision
//! the caller's consistency asks for, answers from the in-memory projection under
//! one read lock (so an answer reflects exactly one revision), and converts back.
//! Errors map to `tonic::Status` in one place.

use std::sync::Arc;
use std::time::Duration;

use cohort_shared::auth::Principal;
use cohort_shared::catalog::Tool;
use cohort_shared::convert::role_from_proto;
use cohort_shared::proto::authz::v1 as pb;
use cohort_shared::proto::authz::v1::authz_service_server::AuthzService;
use cohort_shared::proto::directory::v1 as directory;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::Instrument;
use uuid::Uuid;

use crate::domain::{
    self, CheckError, GroupId, Holding, Reach, Resource, Revision, Source, SuppressReason,
    TenantState, UserId,
};
use crate::projection::{NotReached, Projection, SharedTenant};
use crate::upstream::Upstream;
use cohort_shared::call_log::REQUEST_ID_HEADER;

const MAX_BULK_ITEMS: usize = 1000;
const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Nothing of this kind (`tenant`, `user`, `group`) with this id in the
    /// tenant.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("revision {} of the tenant was not reached in time (at {})", .0.wanted, .0.current)]
    NotReached(NotReached),
    #[error("the directory cannot be reached for its current revision: {0}")]
    DirectoryUnavailable(String),
    /// The caller's credential does not cover the tenant (already a status).
    #[error("{}", .0.message())]
    Denied(Status),
}

impl ApiError {
    fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        ApiError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<CheckError> for ApiError {
    fn from(err: CheckError) -> Self {
        match err {
            CheckError::UnknownPermission(_) => ApiError::invalid("permission", err.to_string()),
            CheckError::NotApplicable { .. } => ApiError::invalid("resource", err.to_string()),
            CheckError::UserNotFound(user) => ApiError::not_found("user", user),
            CheckError::GroupNotFound(group) => ApiError::not_found("group", group),
        }
    }
}

/// A lookup's errors: its resource is implied (groups), so a permission that
/// does not apply to groups is the `permission` field's fault.
fn lookup_error(err: CheckError) -> ApiError {
    match err {
        CheckError::NotApplicable { .. } => ApiError::invalid("permission", err.to_string()),
        other => ApiError::from(other),
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let message = err.to_string();
        match err {
            ApiError::Invalid {
                field,
                message: reason,
            } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            ApiError::NotFound { kind, id } => {
                // As the directory answers: which resource was not found, and
                // a reason a program can switch on.
                let mut details = ErrorDetails::with_error_info(
                    format!("{}_NOT_FOUND", kind.to_uppercase()),
                    "authz.cohort",
                    [(kind.to_owned(), id.clone())],
                );
                details.set_resource_info(kind, id, "", format!("no {kind} with this id"));
                Status::with_error_details(Code::NotFound, message, details)
            }
            ApiError::NotReached(NotReached { wanted, current }) => Status::with_error_details(
                Code::DeadlineExceeded,
                message,
                ErrorDetails::with_error_info(
                    "REVISION_NOT_REACHED",
                    "authz.cohort",
                    [
                        ("wanted".to_owned(), wanted.to_string()),
                        ("current".to_owned(), current.to_string()),
                    ],
                ),
            ),
            ApiError::DirectoryUnavailable(_) => Status::unavailable(message),
            ApiError::Denied(status) => status,
        }
    }
}

pub struct AuthzApi {
    projection: Arc<Projection>,
    /// For fully consistent reads: the directory's current revision.
    directory: Upstream,
    /// One channel to the directory for those reads, connected on first use and
    /// reconnected by tonic when it drops (not a new connection per call).
    directory_channel: tonic::transport::Channel,
    /// The longest a read waits for a revision when the call has no deadline.
    max_wait: Duration,
}

impl AuthzApi {
    pub fn new(
        projection: Arc<Projection>,
        directory: Upstream,
        max_wait: Duration,
    ) -> Result<Self, tonic::transport::Error> {
        let directory_channel = directory
            .endpoint()?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        Ok(AuthzApi {
            projection,
            directory,
            directory_channel,
            max_wait,
        })
    }

    /// The tenant's state once it reflects what `consistency` asks for.
    async fn read(
        &self,
        principal: &Principal,
        metadata: &MetadataMap,
        tenant: Uuid,
        consistency: Option<pb::Consistency>,
    ) -> Result<SharedTenant, ApiError> {
        use pb::consistency::Requirement;
        cohort_shared::call_log::record_tenant(tenant);
        principal
            .check_tenant_id(tenant)
            .map_err(ApiError::Denied)?;
        // Give up a little before the caller's deadline, so that it hears why
        // rather than cancelling first.
        let budget = deadline_of(metadata)
            .unwrap_or(self.max_wait)
            .min(self.max_wait * 12);
        let deadline = Instant::now() + budget - (budget / 10).min(Duration::from_millis(50));
        let wanted = match consistency.and_then(|c| c.requirement) {
            None | Some(Requirement::MinimizeLatency(_)) => None,
            Some(Requirement::AtLeastRevision(r)) if r < 0 => {
                return Err(ApiError::invalid(
                    "consistency.at_least_revision",
                    "must not be negative",
                ))
            }
            Some(Requirement::AtLeastRevision(r)) => Some(r),
            Some(Requirement::FullyConsistent(_)) => {
                let request_id = metadata.get(REQUEST_ID_HEADER).cloned();
                Some(
                    self.directory_revision(tenant, deadline, request_id)
                        .await?,
                )
            }
        };
        if let Some(wanted) = wanted {
            self.projection
                .wait_for(tenant, wanted, deadline)
                .await
                .map_err(ApiError::NotReached)?;
        }
        self.projection
            .tenant(tenant)
            .ok_or_else(|| ApiError::not_found("tenant", tenant))
    }

    /// The directory's current revision of the tenant, asked with the caller's
    /// request id, so that both services' logs name the same call.
    async fn directory_revision(
        &self,
        tenant: Uuid,
        deadline: Instant,
        request_id: Option<tonic::metadata::AsciiMetadataValue>,
    ) -> Result<Revision, ApiError> {
        let unavailable = |e: String| ApiError::DirectoryUnavailable(e);
        let ask = async {
            let mut client = DirectoryServiceClient::new(self.directory_channel.clone());
            let mut request = tonic::Request::new(directory::GetTenantRequest {
                tenant_id: tenant.to_string(),
            });
            if let Some(id) = request_id {
                request.metadata_mut().insert(REQUEST_ID_HEADER, id);
            }
            self.directory.authorize(&mut request);
            cohort_shared::telemetry::inject(request.metadata_mut());
            let reply = client.get_tenant(request).await;
            match reply {
                Ok(r) => Ok(r.into_inner().tenant.map(|t| t.revision).unwrap_or(0)),
                Err(status) if status.code() == Code::NotFound => {
                    Err(ApiError::not_found("tenant", tenant))
                }
                Err(status) => Err(unavailable(status.message().to_owned())),
            }
        };
        let span =
            cohort_shared::telemetry::client_span("cohort.directory.v1.DirectoryService/GetTenant");
        tokio::time::timeout_at(deadline, ask.instrument(span))
            .await
            .map_err(|_| unavailable("timed out".into()))?
    }
}

/// The call's deadline, from the `grpc-timeout` header.
fn deadline_of(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

fn parse_id(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    parse_id_named(|| field.to_owned(), raw)
}

/// [`parse_id`] for a field whose name is built (`items[17].user_id`): built only
/// when an error names it, not for every item of every bulk call.
fn parse_id_named(field: impl FnOnce() -> String, raw: &str) -> Result<Uuid, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::invalid(field(), "is required"));
    }
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::invalid(field(), format!("`{raw}` is not a valid id (a UUID)")))
}

/// A resource; `field` names it in errors (built only then).
fn parse_resource(
    field: impl Fn() -> String,
    resource: Option<pb::Resource>,
) -> Result<Resource, ApiError> {
    use pb::resource::Resource as R;
    match resource.and_then(|r| r.resource) {
        None => Err(ApiError::invalid(field(), "is required")),
        Some(R::Tenant(_)) => Ok(Resource::Tenant),
        Some(R::GroupId(g)) => Ok(Resource::Group(GroupId(parse_id_named(
            || format!("{}.group_id", field()),
            &g,
        )?))),
        Some(R::UserId(u)) => Ok(Resource::User(UserId(parse_id_named(
            || format!("{}.user_id", field()),
            &u,
        )?))),
        Some(R::CatalogId(c)) if c.is_empty() => Err(ApiError::invalid(
            format!("{}.catalog_id", field()),
            "is required",
        )),
        Some(R::CatalogId(c)) => Ok(Resource::Catalog(c)),
    }
}

/// A lookup's page request: how many ids, and the id to resume after (the page
/// token is the last id of the page before).
struct PageRequest {
    size: usize,
    after: Option<Uuid>,
}

impl PageRequest {
    fn parse(page_size: i32, token: &str) -> Result<Self, ApiError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(ApiError::invalid("page_size", "must not be negative")),
            n => (n as usize).min(MAX_PAGE_SIZE),
        };
        let after = if token.is_empty() {
            None
        } else {
            Some(Uuid::try_parse(token).map_err(|_| {
                ApiError::invalid("page_token", "is not a token this service issued")
            })?)
        };
        Ok(PageRequest { size, after })
    }

    /// The token of the page after `page`: its last id, when more follow.
    fn next_token<T: Copy>(page: &domain::Page<T>, id: impl Fn(T) -> Uuid) -> String {
        match page.items.last() {
            Some(last) if page.more => id(*last).simple().to_string(),
            _ => String::new(),
        }
    }
}

/// An id as the contract writes it (hyphenated, lower case), without the
/// formatting machinery: answers carry many.
fn id_string(id: &Uuid) -> String {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buffer).to_owned()
}

fn via(v: &domain::Via) -> pb::InheritedVia {
    pb::InheritedVia {
        group_id: id_string(&v.group.0),
        path: v.path.iter().map(|g| id_string(&g.0)).collect(),
    }
}

fn scope(reach: Reach) -> pb::Scope {
    use pb::scope::Scope as S;
    pb::Scope {
        scope: Some(match reach {
            Reach::Tenant => S::Tenant(true),
            Reach::Own => S::Own(true),
            Reach::Groups(groups) => S::Groups(pb::GroupIds {
                group_ids: groups.iter().map(|g| id_string(&g.0)).collect(),
            }),
        }),
    }
}

fn effective_roles(
    state: &TenantState,
    user: UserId,
) -> Result<pb::GetEffectiveRolesResponse, ApiError> {
    use cohort_shared::proto::catalog::v1::{Role as PbRole, Tool as PbTool};
    let resolution =
        domain::resolve(state, user).ok_or_else(|| ApiError::not_found("user", user))?;
    let tools = resolution
        .tools
        .iter()
        .filter(|(_, t)| !t.roles.is_empty() || !t.suppressed.is_empty())
        .map(|(tool, roles): &(Tool, domain::ToolRoles)| pb::ToolRoles {
            tool: PbTool::from(*tool) as i32,
            roles: roles
                .roles
                .iter()
                .map(|held| pb::EffectiveRole {
                    role: PbRole::from(held.role) as i32,
                    #[allow(deprecated)]
                    scope: Some(scope(held.reach.clone())),
                    reaches: held
                        .reaches
                        .iter()
                        .map(|r| pb::PermissionReach {
                            kind: cohort_shared::proto::catalog::v1::ScopeKind::from(r.kind) as i32,
                            scope: Some(scope(r.reach.clone())),
                            permissions: r.permissions.iter().map(|p| p.to_string()).collect(),
                        })
                        .collect(),
                    provenance: held
                        .sources
                        .iter()
                        .map(|s| pb::Provenance {
                            source: Some(match s {
                                Source::Direct => pb::provenance::Source::Direct(true),
                                Source::Inherited(v) => pb::provenance::Source::Inherited(via(v)),
                            }),
                        })
                        .collect(),
                })
                .collect(),
            suppressed: roles
                .suppressed
                .iter()
                .map(|s| {
                    let (reason, prevailing, description) = match &s.reason {
                        SuppressReason::IncompatibleWith(held) => (
                            "INCOMPATIBLE_WITH_HELD_ROLE",
                            PbRole::from(*held) as i32,
                            format!("{} is incompatible with the held {held}, which it does not contain", s.role),
                        ),
                        SuppressReason::RequiresGlobalAdminGroupAdministrator => (
                            "REQUIRES_GLOBAL_ADMIN_GROUP_ADMINISTRATOR",
                            PbRole::Unspecified as i32,
                            "an inherited LMS GROUP_ADMINISTRATOR needs the Global Admin role GROUP_ADMINISTRATOR".to_owned(),
                        ),
                    };
                    pb::SuppressedRole {
                        role: PbRole::from(s.role) as i32,
                        via: Some(via(&s.via)),
                        reason: reason.to_owned(),
                        prevailing_role: prevailing,
                        description,
                    }
                })
                .collect(),
        })
        .collect();
    Ok(pb::GetEffectiveRolesResponse {
        tools,
        revision: state.revision,
        suspended: resolution.suspended,
    })
}

fn reply<T>(result: Result<T, ApiError>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl AuthzService for AuthzApi {
    async fn get_effective_roles(
        &self,
        request: Request<pb::GetEffectiveRolesRequest>,
    ) -> Result<Response<pb::GetEffectiveRolesResponse>, Status> {
        let principal = Principal::of(&request);
        let (metadata, _, req) = request.into_parts();
        reply(
            async {
                let tenant = parse_id("tenant_id", &req.tenant_id)?;
                let user = UserId(parse_id("user_id", &req.user_id)?);
                let state = self
                    .read(&principal, &metadata, tenant, req.consistency)
                    .await?;
                let state = state.read().expect("not poisoned");
                effective_roles(&state, user)
            }
            .await,
        )
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        let principal = Principal::of(&request);
        let (metadata, _, req) = request.into_parts();
        reply(
            async {
                let tenant = parse_id("tenant_id", &req.tenant_id)?;
                let user = UserId(parse_id("user_id", &req.user_id)?);
                let resource = parse_resource(|| "resource".to_owned(), req.resource)?;
                let state = self
                    .read(&principal, &metadata, tenant, req.consistency)
                    .await?;
                let state = state.read().expect("not poisoned");
                let decision =
                    domain::check(&state, user, &req.permission, &resource, req.explain)?;
                Ok(pb::CheckResponse {
                    allowed: decision.allowed,
                    revision: state.revision,
                    explanation: decision.explanation,
                })
            }
            .await,
        )
    }

    async fn bulk_check(
        &self,
        request: Request<pb::BulkCheckRequest>,
    ) -> Result<Response<pb::BulkCheckResponse>, Status> {
        let principal = Principal::of(&request);
        let (metadata, _, req) = request.into_parts();
        reply(
            async {
                let tenant = parse_id("tenant_id", &req.tenant_id)?;
                if req.items.len() > MAX_BULK_ITEMS {
                    return Err(ApiError::invalid(
                        "items",
                        format!("at most {MAX_BULK_ITEMS} checks per call"),
                    ));
                }
                let mut items = Vec::with_capacity(req.items.len());
                for (i, item) in req.items.into_iter().enumerate() {
                    let user = UserId(parse_id_named(
                        || format!("items[{i}].user_id"),
                        &item.user_id,
                    )?);
                    let resource =
                        parse_resource(|| format!("items[{i}].resource"), item.resource)?;
                    items.push((i, user, item.permission, resource));
                }
                let state = self
                    .read(&principal, &metadata, tenant, req.consistency)
                    .await?;
                let state = state.read().expect("not poisoned");
                // Checks of the same user share the work of resolving their roles.
                let mut checker = domain::Checker::new(&state);
                let mut results = Vec::with_capacity(items.len());
                for (i, user, permission, resource) in items {
                    let decision = checker
                        .check(user, &permission, &resource, req.explain)
                        .map_err(|e| match e {
                            CheckError::UnknownPermission(_) => {
                                ApiError::invalid(format!("items[{i}].permission"), e.to_string())
                            }
                            CheckError::NotApplicable { .. } => {
                                ApiError::invalid(format!("items[{i}].resource"), e.to_string())
                            }
                            other => ApiError::from(other),
                        })?;
                    results.push(pb::BulkCheckResult {
                        allowed: decision.allowed,
                        explanation: decision.explanation,
                    });
                }
                Ok(pb::BulkCheckResponse {
                    results,
                    revision: state.revision,
                })
            }
            .await,
        )
    }

    async fn lookup_subjects(
        &self,
        request: Request<pb::LookupSubjectsRequest>,
    ) -> Result<Response<pb::LookupSubjectsResponse>, Status> {
        use pb::lookup_subjects_request::What;
        let principal = Principal::of(&request);
        let (metadata, _, req) = request.into_parts();
        reply(
            async {
                let tenant = parse_id("tenant_id", &req.tenant_id)?;
                let group = GroupId(parse_id("group_id", &req.group_id)?);
                let holding = match req.what {
                    None => return Err(ApiError::invalid("role", "name a role or a permission")),
                    Some(What::Role(r)) => Holding::Role(
                        role_from_proto(r).map_err(|e| ApiError::invalid("role", e.to_string()))?,
                    ),
                    Some(What::Permission(p)) => Holding::Permission(p),
                };
                let state = self
                    .read(&principal, &metadata, tenant, req.consistency)
                    .await?;
                let page_request = PageRequest::parse(req.page_size, &req.page_token)?;
                let state = state.read().expect("not poisoned");
                let page = domain::lookup_subjects_page(
                    &state,
                    group,
                    &holding,
                    page_request.after.map(UserId),
                    page_request.size,
                )
                .map_err(lookup_error)?;
                Ok(pb::LookupSubjectsResponse {
                    next_page_token: PageRequest::next_token(&page, |u: UserId| u.0),
                    user_ids: page.items.iter().map(|u| id_string(&u.0)).collect(),
                    revision: state.revision,
                })
            }
            .await,
        )
    }

    async fn get_sync_status(
        &self,
        request: Request<pb::GetSyncStatusRequest>,
    ) -> Result<Response<pb::GetSyncStatusResponse>, Status> {
        let principal = Principal::of(&request);
        let req = request.into_inner();
        reply((|| {
            let tenants = if req.tenant_id.is_empty() {
                principal
                    .check_unrestricted("the status of every tenant")
                    .map_err(ApiError::Denied)?;
                self.projection.tenant_ids()
            } else {
                principal
                    .check_tenant(&req.tenant_id)
                    .map_err(ApiError::Denied)?;
                vec![parse_id("tenant_id", &req.tenant_id)?]
            };
            let now = std::time::SystemTime::now();
            let tenants = tenants
                .into_iter()
                .map(|tenant| {
                    let vouched = self.projection.vouched(tenant);
                    pb::TenantSync {
                        tenant_id: tenant.to_string(),
                        revision: self.projection.revision(tenant),
                        vouched_time: vouched.map(prost_types::Timestamp::from),
                        lag: vouched
                            .and_then(|at| now.duration_since(at).ok())
                            .and_then(|lag| prost_types::Duration::try_from(lag).ok()),
                    }
                })
                .collect();
            Ok(pb::GetSyncStatusResponse {
                connected: self.projection.connected(),
                caught_up: self.projection.is_synced(),
                tenants,
            })
        })())
    }

    async fn lookup_groups(
        &self,
        request: Request<pb::LookupGroupsRequest>,
    ) -> Result<Response<pb::LookupGroupsResponse>, Status> {
        let principal = Principal::of(&request);
        let (metadata, _, req) = request.into_parts();
        reply(
            async {
                let tenant = parse_id("tenant_id", &req.tenant_id)?;
                let user = UserId(parse_id("user_id", &req.user_id)?);
                let state = self
                    .read(&principal, &metadata, tenant, req.consistency)
                    .await?;
                let page_request = PageRequest::parse(req.page_size, &req.page_token)?;
                let state = state.read().expect("not poisoned");
                let page = domain::lookup_groups_page(
                    &state,
                    user,
                    &req.permission,
                    page_request.after.map(GroupId),
                    page_request.size,
                )
                .map_err(lookup_error)?;
                Ok(pb::LookupGroupsResponse {
                    next_page_token: PageRequest::next_token(&page, |g: GroupId| g.0),
                    group_ids: page.items.iter().map(|g| id_string(&g.0)).collect(),
                    revision: state.revision,
                })
            }
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_read_from_grpc_timeout() {
        let mut metadata = MetadataMap::new();
        assert_eq!(deadline_of(&metadata), None);
        metadata.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(deadline_of(&metadata), Some(Duration::from_millis(250)));
        metadata.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(deadline_of(&metadata), Some(Duration::from_secs(3)));
    }

    #[test]
    fn page_tokens_name_the_last_id_when_more_follow() {
        let id = Uuid::now_v7();
        let page = domain::Page {
            items: vec![id],
            more: true,
        };
        let token = PageRequest::next_token(&page, |u: Uuid| u);
        assert_eq!(PageRequest::parse(1, &token).unwrap().after, Some(id));
        let last = domain::Page {
            more: false,
            ..page
        };
        assert_eq!(PageRequest::next_token(&last, |u: Uuid| u), "");
        assert_eq!(PageRequest::parse(0, "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::parse(5000, "").unwrap().size, MAX_PAGE_SIZE);
        assert!(PageRequest::parse(-1, "").is_err());
        assert!(PageRequest::parse(1, "nope").is_err());
    }
}
