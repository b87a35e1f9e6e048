//! Every RPC as a typed call: one table (the `directory_calls!` and
//! `authz_calls!` macros) says, per request type, which method it goes to,
//! whether a retry is safe, and where a write's revision is read, so that
//! [`crate::Client::call`] and [`crate::Client::read`] serve them all alike.

use std::future::Future;
use std::pin::Pin;

use cohort_api::authz::v1 as authz;
use cohort_api::catalog::v1 as catalog;
use cohort_api::directory::v1 as directory;

use crate::Channels;

/// A boxed call in flight.
pub type CallFuture<T> = Pin<Box<dyn Future<Output = Result<T, tonic::Status>> + Send>>;

/// Whether a call may be sent again after it failed with UNAVAILABLE (when the
/// first attempt may or may not have been carried out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and writes whose repetition changes nothing more (adding members
    /// who were added, setting what was set, creates with a `request_id`).
    Safe,
    /// Writes that would not mean the same the second time (a delete answers
    /// NOT_FOUND, a move may have been overtaken).
    Unsafe,
}

/// A request of `cohort.directory.v1.DirectoryService`.
pub trait DirectoryCall: Clone + Send + Sync + 'static {
    /// The RPC's response.
    type Response: Send + 'static;
    /// The RPC, for logs.
    const METHOD: &'static str;
    /// Whether a retry is safe.
    const RETRY: Retry;
    /// Makes a retry safe where the request can say so: fills an empty
    /// `request_id` of a create with a new one.
    fn prepare(&mut self) {}
    /// The tenant a write committed in and its revision after the write
    /// (`None` for reads).
    fn written(&self, response: &Self::Response) -> Option<(String, i64)>;
    /// Sends the request.
    fn send(self, channels: &Channels) -> CallFuture<Self::Response>;
}

/// A request of `cohort.authz.v1.AuthzService` (all are reads, so all are safe
/// to retry).
pub trait AuthzCall: Clone + Send + Sync + 'static {
    /// The RPC's response.
    type Response: Send + 'static;
    /// The RPC, for logs.
    const METHOD: &'static str;
    /// The tenant the read is about, and its consistency requirement, which the
    /// client fills with the session's revision when the caller left it unset.
    fn consistency(&mut self) -> Option<(&str, &mut Option<authz::Consistency>)>;
    /// Sends the request.
    fn send(self, channels: &Channels) -> CallFuture<Self::Response>;
}

fn new_request_id(id: &mut String) {
    if id.is_empty() {
        *id = uuid::Uuid::new_v4().to_string();
    }
}

macro_rules! directory_calls {
    ($($request:ident => $response:ident, $method:ident, $retry:ident, $written:expr
        $(, prepare $prepare:expr)?;)*) => {$(
        impl DirectoryCall for directory::$request {
            type Response = directory::$response;
            const METHOD: &'static str = stringify!($method);
            const RETRY: Retry = Retry::$retry;

            $(fn prepare(&mut self) {
                #[allow(clippy::redundant_closure_call)]
                ($prepare)(self)
            })?

            fn written(&self, response: &Self::Response) -> Option<(String, i64)> {
                #[allow(clippy::redundant_closure_call)]
                ($written)(self, response)
            }

            fn send(self, channels: &Channels) -> CallFuture<Self::Response> {
                let mut client = channels.directory.clone();
                Box::pin(async move { client.$method(self).await.map(tonic::Response::into_inner) })
            }
        }
    )*};
}

/// Reads record nothing.
fn read<Q, R>(_: &Q, _: &R) -> Option<(String, i64)> {
    None
}

/// A write in the request's tenant.
macro_rules! write_in_tenant {
    () => {
        |request: &Self, response: &Self::Response| {
            Some((request.tenant_id.clone(), response.revision))
        }
    };
}

/// A create's own `request_id`, made when the caller left it empty.
macro_rules! request_id {
    () => {
        |request: &mut Self| new_request_id(&mut request.request_id)
    };
}

directory_calls! {
    CreateTenantRequest => CreateTenantResponse, create_tenant, Safe,
        |_: &Self, response: &Self::Response| {
            response.tenant.as_ref().map(|t| (t.id.clone(), response.revision))
        },
        prepare request_id!();
    GetTenantRequest => GetTenantResponse, get_tenant, Safe, read;
    ListTenantsRequest => ListTenantsResponse, list_tenants, Safe, read;
    CreateUserRequest => CreateUserResponse, create_user, Safe, write_in_tenant!(),
        prepare request_id!();
    BatchCreateUsersRequest => BatchCreateUsersResponse, batch_create_users, Safe, write_in_tenant!(),
        prepare |request: &mut Self| {
            for user in &mut request.users {
                new_request_id(&mut user.request_id);
            }
        };
    GetUserRequest => GetUserResponse, get_user, Safe, read;
    ListUsersRequest => ListUsersResponse, list_users, Safe, read;
    // An update sets fields to given values: repeating it sets them again.
    UpdateUserRequest => UpdateUserResponse, update_user, Safe, write_in_tenant!();
    SuspendUserRequest => SuspendUserResponse, suspend_user, Safe, write_in_tenant!();
    ReactivateUserRequest => ReactivateUserResponse, reactivate_user, Safe, write_in_tenant!();
    DeleteUserRequest => DeleteUserResponse, delete_user, Unsafe, write_in_tenant!();
    CreateGroupRequest => CreateGroupResponse, create_group, Safe, write_in_tenant!(),
        prepare request_id!();
    GetGroupRequest => GetGroupResponse, get_group, Safe, read;
    ListGroupsRequest => ListGroupsResponse, list_groups, Safe, read;
    UpdateGroupRequest => UpdateGroupResponse, update_group, Safe, write_in_tenant!();
    MoveGroupRequest => MoveGroupResponse, move_group, Unsafe, write_in_tenant!();
    DeleteGroupRequest => DeleteGroupResponse, delete_group, Unsafe, write_in_tenant!();
    SetGroupAdministratorsRequest => SetGroupAdministratorsResponse, set_group_administrators, Safe, write_in_tenant!();
    AddGroupAdministratorsRequest => AddGroupAdministratorsResponse, add_group_administrators, Safe, write_in_tenant!();
    RemoveGroupAdministratorsRequest => RemoveGroupAdministratorsResponse, remove_group_administrators, Safe, write_in_tenant!();
    ListGroupAdministratorsRequest => ListGroupAdministratorsResponse, list_group_administrators, Safe, read;
    AddGroupMembersRequest => AddGroupMembersResponse, add_group_members, Safe, write_in_tenant!();
    RemoveGroupMembersRequest => RemoveGroupMembersResponse, remove_group_members, Safe, write_in_tenant!();
    ListGroupMembersRequest => ListGroupMembersResponse, list_group_members, Safe, read;
    ListUserGroupsRequest => ListUserGroupsResponse, list_user_groups, Safe, read;
    SetInheritedRoleRequest => SetInheritedRoleResponse, set_inherited_role, Safe, write_in_tenant!();
    ClearInheritedRoleRequest => ClearInheritedRoleResponse, clear_inherited_role, Safe, write_in_tenant!();
    AssignCatalogRequest => AssignCatalogResponse, assign_catalog, Safe, write_in_tenant!();
    UnassignCatalogRequest => UnassignCatalogResponse, unassign_catalog, Safe, write_in_tenant!();
    ListCatalogAssignmentsRequest => ListCatalogAssignmentsResponse, list_catalog_assignments, Safe, read;
}

macro_rules! authz_calls {
    ($($request:ident => $response:ident, $method:ident, $kind:ident;)*) => {$(
        impl AuthzCall for authz::$request {
            type Response = authz::$response;
            const METHOD: &'static str = stringify!($method);

            fn consistency(&mut self) -> Option<(&str, &mut Option<authz::Consistency>)> {
                authz_calls!(@consistency $kind self)
            }

            fn send(self, channels: &Channels) -> CallFuture<Self::Response> {
                let mut client = channels.authz.clone();
                Box::pin(async move { client.$method(self).await.map(tonic::Response::into_inner) })
            }
        }
    )*};
    (@consistency tenant_read $request:ident) => {
        Some(($request.tenant_id.as_str(), &mut $request.consistency))
    };
    (@consistency no_consistency $request:ident) => {{
        let _ = $request;
        None
    }};
}

authz_calls! {
    GetEffectiveRolesRequest => GetEffectiveRolesResponse, get_effective_roles, tenant_read;
    CheckRequest => CheckResponse, check, tenant_read;
    BulkCheckRequest => BulkCheckResponse, bulk_check, tenant_read;
    LookupSubjectsRequest => LookupSubjectsResponse, lookup_subjects, tenant_read;
    LookupGroupsRequest => LookupGroupsResponse, lookup_groups, tenant_read;
    GetSyncStatusRequest => GetSyncStatusResponse, get_sync_status, no_consistency;
}

/// A request of `cohort.catalog.v1.CatalogService` (served by both services;
/// the client asks the authorization service).
pub trait CatalogCall: Clone + Send + Sync + 'static {
    /// The RPC's response.
    type Response: Send + 'static;
    /// The RPC, for logs.
    const METHOD: &'static str;
    /// Sends the request.
    fn send(self, channels: &Channels) -> CallFuture<Self::Response>;
}

macro_rules! catalog_calls {
    ($($request:ident => $response:ident, $method:ident;)*) => {$(
        impl CatalogCall for catalog::$request {
            type Response = catalog::$response;
            const METHOD: &'static str = stringify!($method);

            fn send(self, channels: &Channels) -> CallFuture<Self::Response> {
                let mut client = channels.catalog.clone();
                Box::pin(async move { client.$method(self).await.map(tonic::Response::into_inner) })
            }
        }
    )*};
}

catalog_calls! {
    ListToolsRequest => ListToolsResponse, list_tools;
    ListPermissionsRequest => ListPermissionsResponse, list_permissions;
}
