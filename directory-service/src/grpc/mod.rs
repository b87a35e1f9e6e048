//! gRPC layer: the tonic `DirectoryService`. Each RPC group has its own file
//! (`tenants`, `users`, `groups`, `members`, `settings`) with handlers that parse the
//! request into domain types, call the store and convert the result back; this file
//! only routes. Errors map to `tonic::Status` in one place (`error`).

mod convert;
mod error;
mod feed;
mod groups;
mod members;
mod settings;
mod tenants;
mod users;

use std::sync::Arc;

use cohort_shared::auth::Principal;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::directory_service_server::DirectoryService;
use tonic::{Request, Response};

pub use error::{ApiError, ApiResult};
pub use feed::{FeedApi, MAX_CURSORS};

use crate::domain::WriteContext;
use crate::storage::DirectoryStore;

/// The directory's gRPC API over a store.
#[derive(Clone)]
pub struct DirectoryApi {
    store: Arc<dyn DirectoryStore>,
}

impl DirectoryApi {
    pub fn new(store: Arc<dyn DirectoryStore>) -> Self {
        DirectoryApi { store }
    }

    fn store(&self) -> &dyn DirectoryStore {
        &*self.store
    }
}

/// A request's tenant, for the credential check: `None` for the calls that are
/// about tenants as a whole (creating or listing them).
trait TenantScoped {
    fn tenant_id(&self) -> Option<&str>;
}

macro_rules! tenant_scoped {
    ($($req:ty),* $(,)?) => {
        $(impl TenantScoped for $req {
            fn tenant_id(&self) -> Option<&str> {
                Some(&self.tenant_id)
            }
        })*
    };
}

tenant_scoped!(
    pb::GetTenantRequest,
    pb::CreateUserRequest,
    pb::BatchCreateUsersRequest,
    pb::GetUserRequest,
    pb::ListUsersRequest,
    pb::UpdateUserRequest,
    pb::SuspendUserRequest,
    pb::ReactivateUserRequest,
    pb::DeleteUserRequest,
    pb::CreateGroupRequest,
    pb::GetGroupRequest,
    pb::ListGroupsRequest,
    pb::UpdateGroupRequest,
    pb::MoveGroupRequest,
    pb::DeleteGroupRequest,
    pb::SetGroupAdministratorsRequest,
    pb::AddGroupAdministratorsRequest,
    pb::RemoveGroupAdministratorsRequest,
    pb::ListGroupAdministratorsRequest,
    pb::AddGroupMembersRequest,
    pb::RemoveGroupMembersRequest,
    pb::ListGroupMembersRequest,
    pb::ListUserGroupsRequest,
    pb::SetInheritedRoleRequest,
    pb::ClearInheritedRoleRequest,
    pb::AssignCatalogRequest,
    pb::UnassignCatalogRequest,
    pb::ListCatalogAssignmentsRequest,
);

impl TenantScoped for pb::CreateTenantRequest {
    fn tenant_id(&self) -> Option<&str> {
        None
    }
}

impl TenantScoped for pb::ListTenantsRequest {
    fn tenant_id(&self) -> Option<&str> {
        None
    }
}

/// PERMISSION_DENIED unless the caller's credential covers the request's tenant
/// (or, for calls about tenants as a whole, every tenant).
#[allow(clippy::result_large_err)]
fn authorize<T: TenantScoped>(request: &Request<T>) -> Result<Principal, tonic::Status> {
    let principal = Principal::of(request);
    match request.get_ref().tenant_id() {
        Some(tenant) => principal.check_tenant(tenant)?,
        None => principal
            .check_unrestricted("creating or listing tenants needs an unrestricted credential")?,
    }
    Ok(principal)
}

/// Parses the request's tenant, and records it on the call's log line.
fn tenant_id(raw: &str) -> Result<crate::domain::TenantId, crate::domain::ValidationError> {
    cohort_shared::call_log::record_tenant(raw);
    crate::domain::TenantId::parse("tenant_id", raw)
}

fn reply<T>(result: Result<T, ApiError>) -> ApiResult<T> {
    result.map(Response::new).map_err(Into::into)
}

/// Implements `DirectoryService` by routing each RPC to its handler, after the
/// caller's credential is checked against the request's tenant: writes get the
/// caller's write context (its credential's name is the actor), reads only the
/// store.
macro_rules! route_rpcs {
    (
        writes { $( $w_rpc:ident => $w_handler:path : $w_req:ty => $w_resp:ty, )* }
        reads { $( $r_rpc:ident => $r_handler:path : $r_req:ty => $r_resp:ty, )* }
    ) => {
        #[tonic::async_trait]
        impl DirectoryService for DirectoryApi {
            $(
                async fn $w_rpc(&self, request: Request<$w_req>) -> ApiResult<$w_resp> {
                    let ctx = WriteContext::new(authorize(&request)?.name);
                    reply($w_handler(self.store(), &ctx, request.into_inner()).await)
                }
            )*
            $(
                async fn $r_rpc(&self, request: Request<$r_req>) -> ApiResult<$r_resp> {
                    authorize(&request)?;
                    reply($r_handler(self.store(), request.into_inner()).await)
                }
            )*
        }
    };
}

route_rpcs! {
    writes {
        create_tenant => tenants::create : pb::CreateTenantRequest => pb::CreateTenantResponse,
        create_user => users::create : pb::CreateUserRequest => pb::CreateUserResponse,
        batch_create_users => users::batch_create
            : pb::BatchCreateUsersRequest => pb::BatchCreateUsersResponse,
        update_user => users::update : pb::UpdateUserRequest => pb::UpdateUserResponse,
        suspend_user => users::suspend : pb::SuspendUserRequest => pb::SuspendUserResponse,
        reactivate_user => users::reactivate : pb::ReactivateUserRequest => pb::ReactivateUserResponse,
        delete_user => users::delete : pb::DeleteUserRequest => pb::DeleteUserResponse,
        create_group => groups::create : pb::CreateGroupRequest => pb::CreateGroupResponse,
        update_group => groups::update : pb::UpdateGroupRequest => pb::UpdateGroupResponse,
        move_group => groups::move_to : pb::MoveGroupRequest => pb::MoveGroupResponse,
        delete_group => groups::delete : pb::DeleteGroupRequest => pb::DeleteGroupResponse,
        set_group_administrators => members::set_administrators
            : pb::SetGroupAdministratorsRequest => pb::SetGroupAdministratorsResponse,
        add_group_administrators => members::add_administrators
            : pb::AddGroupAdministratorsRequest => pb::AddGroupAdministratorsResponse,
        remove_group_administrators => members::remove_administrators
            : pb::RemoveGroupAdministratorsRequest => pb::RemoveGroupAdministratorsResponse,
        add_group_members => members::add_members : pb::AddGroupMembersRequest => pb::AddGroupMembersResponse,
        remove_group_members => members::remove_members
            : pb::RemoveGroupMembersRequest => pb::RemoveGroupMembersResponse,
        set_inherited_role => settings::set_inherited_role
            : pb::SetInheritedRoleRequest => pb::SetInheritedRoleResponse,
        clear_inherited_role => settings::clear_inherited_role
            : pb::ClearInheritedRoleRequest => pb::ClearInheritedRoleResponse,
        assign_catalog => settings::assign_catalog : pb::AssignCatalogRequest => pb::AssignCatalogResponse,
        unassign_catalog => settings::unassign_catalog : pb::UnassignCatalogRequest => pb::UnassignCatalogResponse,
    }
    reads {
        get_tenant => tenants::get : pb::GetTenantRequest => pb::GetTenantResponse,
        list_tenants => tenants::list : pb::ListTenantsRequest => pb::ListTenantsResponse,
        get_user => users::get : pb::GetUserRequest => pb::GetUserResponse,
        list_users => users::list : pb::ListUsersRequest => pb::ListUsersResponse,
        get_group => groups::get : pb::GetGroupRequest => pb::GetGroupResponse,
        list_groups => groups::list : pb::ListGroupsRequest => pb::ListGroupsResponse,
        list_group_administrators => members::list_administrators
            : pb::ListGroupAdministratorsRequest => pb::ListGroupAdministratorsResponse,
        list_group_members => members::list_members : pb::ListGroupMembersRequest => pb::ListGroupMembersResponse,
        list_user_groups => members::list_user_groups : pb::ListUserGroupsRequest => pb::ListUserGroupsResponse,
        list_catalog_assignments => settings::list_catalogs
            : pb::ListCatalogAssignmentsRequest => pb::ListCatalogAssignmentsResponse,
    }
}
