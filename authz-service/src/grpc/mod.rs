//! The `AuthzService`: parses requests into domain terms, waits for the revision
//! the caller's consistency asks for, answers from the in-memory projection under
//! one read lock (so an answer reflects exactly one revision), and converts back.
//!
//! Layout, as in the directory: this file holds the service and its handlers;
//! [`error`] the one error type and its mapping to `tonic::Status`;
//! `consistency.rs` the wait for a revision; `convert.rs` parsing and answers;
//! `paging.rs` the lookups' page tokens.

pub mod error;

mod consistency;
mod convert;
mod paging;

use std::sync::Arc;
use std::time::Duration;

use cohort_shared::auth::Principal;
use cohort_shared::convert::role_from_proto;
use cohort_shared::proto::authz::v1 as pb;
use cohort_shared::proto::authz::v1::authz_service_server::AuthzService;
use tonic::{Request, Response, Status};

use crate::domain::{self, CheckError, GroupId, Holding, TenantId, TenantState, UserId};
use crate::projection::Projection;
use crate::upstream::Upstream;
use convert::{
    detail, effective_roles, id_string, parse_id, parse_id_named, parse_resource, parse_tenant,
};
use error::{lookup_error, reply, ApiError};
use paging::PageRequest;

const MAX_BULK_ITEMS: usize = 1000;

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
}

impl AuthzApi {
    /// What every read does alike: the request parsed first (so that a bad one
    /// fails before any wait), the caller's right to the tenant checked, the
    /// revision its consistency asks for waited on, and one read lock held for
    /// the whole answer (an answer reflects exactly one revision).
    async fn answer<Q, P, A>(
        &self,
        request: Request<Q>,
        parse: impl FnOnce(Q) -> Result<Parsed<P>, ApiError>,
        answer: impl FnOnce(P, &TenantState) -> Result<A, ApiError>,
    ) -> Result<Response<A>, Status> {
        let principal = Principal::of(&request);
        let (metadata, _, req) = request.into_parts();
        reply(
            async {
                let parsed = parse(req)?;
                let state = self
                    .read(&principal, &metadata, parsed.tenant, parsed.consistency)
                    .await?;
                let state = state.read().expect("not poisoned");
                answer(parsed.request, &state)
            }
            .await,
        )
    }
}

/// A request parsed into domain terms, with the tenant it reads and how fresh
/// the answer must be.
struct Parsed<P> {
    tenant: TenantId,
    consistency: Option<pb::Consistency>,
    request: P,
}

impl<P> Parsed<P> {
    fn new(
        tenant_id: &str,
        consistency: Option<pb::Consistency>,
        request: P,
    ) -> Result<Self, ApiError> {
        Ok(Parsed {
            tenant: parse_tenant(tenant_id)?,
            consistency,
            request,
        })
    }
}

#[tonic::async_trait]
impl AuthzService for AuthzApi {
    async fn get_effective_roles(
        &self,
        request: Request<pb::GetEffectiveRolesRequest>,
    ) -> Result<Response<pb::GetEffectiveRolesResponse>, Status> {
        self.answer(
            request,
            |req| {
                let user = UserId(parse_id("user_id", &req.user_id)?);
                let detail = detail(req.view)?;
                Parsed::new(&req.tenant_id, req.consistency, (user, detail))
            },
            |(user, detail), state| effective_roles(state, user, detail),
        )
        .await
    }

    async fn check(
        &self,
        request: Request<pb::CheckRequest>,
    ) -> Result<Response<pb::CheckResponse>, Status> {
        self.answer(
            request,
            |req| {
                let user = UserId(parse_id("user_id", &req.user_id)?);
                let resource = parse_resource(|| "resource".to_owned(), req.resource)?;
                let check = (user, req.permission, resource, req.explain);
                Parsed::new(&req.tenant_id, req.consistency, check)
            },
            |(user, permission, resource, explain), state| {
                let decision = domain::check(state, user, &permission, &resource, explain)?;
                Ok(pb::CheckResponse {
                    allowed: decision.allowed,
                    revision: state.revision,
                    explanation: decision.explanation,
                })
            },
        )
        .await
    }

    async fn bulk_check(
        &self,
        request: Request<pb::BulkCheckRequest>,
    ) -> Result<Response<pb::BulkCheckResponse>, Status> {
        self.answer(
            request,
            |req| {
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
                Parsed::new(&req.tenant_id, req.consistency, (items, req.explain))
            },
            |(items, explain), state| {
                // Checks of the same user share the work of resolving their roles.
                let mut checker = domain::Checker::new(state);
                let mut results = Vec::with_capacity(items.len());
                for (i, user, permission, resource) in items {
                    let decision = checker
                        .check(user, &permission, &resource, explain)
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
            },
        )
        .await
    }

    async fn lookup_subjects(
        &self,
        request: Request<pb::LookupSubjectsRequest>,
    ) -> Result<Response<pb::LookupSubjectsResponse>, Status> {
        use pb::lookup_subjects_request::What;
        self.answer(
            request,
            |req| {
                let tenant = parse_tenant(&req.tenant_id)?;
                let group = GroupId(parse_id("group_id", &req.group_id)?);
                let holding = match req.what {
                    None => return Err(ApiError::invalid("role", "name a role or a permission")),
                    Some(What::Role(r)) => Holding::Role(
                        role_from_proto(r).map_err(|e| ApiError::invalid("role", e.to_string()))?,
                    ),
                    Some(What::Permission(p)) => Holding::Permission(p),
                };
                let page =
                    PageRequest::parse(req.page_size, &req.page_token, &(tenant, group, &holding))?;
                Ok(Parsed {
                    tenant,
                    consistency: req.consistency,
                    request: (group, holding, page),
                })
            },
            |(group, holding, page_request), state| {
                let page = domain::lookup_subjects_page(
                    state,
                    group,
                    &holding,
                    page_request.after.map(UserId),
                    page_request.size,
                )
                .map_err(lookup_error)?;
                Ok(pb::LookupSubjectsResponse {
                    next_page_token: page_request.next_token(&page, |u: UserId| u.0),
                    user_ids: page.items.iter().map(|u| id_string(&u.0)).collect(),
                    revision: state.revision,
                })
            },
        )
        .await
    }

    async fn lookup_groups(
        &self,
        request: Request<pb::LookupGroupsRequest>,
    ) -> Result<Response<pb::LookupGroupsResponse>, Status> {
        self.answer(
            request,
            |req| {
                let tenant = parse_tenant(&req.tenant_id)?;
                let user = UserId(parse_id("user_id", &req.user_id)?);
                let page = PageRequest::parse(
                    req.page_size,
                    &req.page_token,
                    &(tenant, user, &req.permission),
                )?;
                Ok(Parsed {
                    tenant,
                    consistency: req.consistency,
                    request: (user, req.permission, page),
                })
            },
            |(user, permission, page_request), state| {
                let page = domain::lookup_groups_page(
                    state,
                    user,
                    &permission,
                    page_request.after.map(GroupId),
                    page_request.size,
                )
                .map_err(lookup_error)?;
                Ok(pb::LookupGroupsResponse {
                    next_page_token: page_request.next_token(&page, |g: GroupId| g.0),
                    group_ids: page.items.iter().map(|g| id_string(&g.0)).collect(),
                    revision: state.revision,
                })
            },
        )
        .await
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
                vec![parse_tenant(&req.tenant_id)?]
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
}
