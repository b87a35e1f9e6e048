//! Per-group settings: inherited roles and (organization feature) catalog
//! assignments.

use cohort_shared::convert::tool_from_proto;
use cohort_shared::proto::directory::v1 as pb;

use super::convert;
use super::error::ApiError;
use super::groups::tenant_and_group;
use crate::domain::{CatalogId, Etag, PageRequest, ValidationError, WriteContext};
use crate::storage::GroupSettingsStore;

pub async fn set_inherited_role(
    store: &dyn GroupSettingsStore,
    ctx: &WriteContext,
    req: pb::SetInheritedRoleRequest,
) -> Result<pb::SetInheritedRoleResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let role = convert::parse_role("role", req.role)?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store
        .set_inherited_role(ctx, tenant, group, role, etag)
        .await?;
    Ok(pb::SetInheritedRoleResponse {
        group: Some(convert::group(&written.value)),
        revision: written.revision,
    })
}

pub async fn clear_inherited_role(
    store: &dyn GroupSettingsStore,
    ctx: &WriteContext,
    req: pb::ClearInheritedRoleRequest,
) -> Result<pb::ClearInheritedRoleResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let tool =
        tool_from_proto(req.tool).map_err(|e| ValidationError::new("tool", e.to_string()))?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store
        .clear_inherited_role(ctx, tenant, group, tool, etag)
        .await?;
    Ok(pb::ClearInheritedRoleResponse {
        group: Some(convert::group(&written.value)),
        revision: written.revision,
    })
}

pub async fn assign_catalog(
    store: &dyn GroupSettingsStore,
    ctx: &WriteContext,
    req: pb::AssignCatalogRequest,
) -> Result<pb::AssignCatalogResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let catalog = CatalogId::parse("catalog_id", &req.catalog_id)?;
    let written = store.assign_catalog(ctx, tenant, group, catalog).await?;
    Ok(pb::AssignCatalogResponse {
        assignment: Some(convert::catalog_assignment(&written.value)),
        revision: written.revision,
    })
}

pub async fn unassign_catalog(
    store: &dyn GroupSettingsStore,
    ctx: &WriteContext,
    req: pb::UnassignCatalogRequest,
) -> Result<pb::UnassignCatalogResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let catalog = CatalogId::parse("catalog_id", &req.catalog_id)?;
    let written = store.unassign_catalog(ctx, tenant, group, catalog).await?;
    Ok(pb::UnassignCatalogResponse {
        revision: written.revision,
    })
}

pub async fn list_catalogs(
    store: &dyn GroupSettingsStore,
    req: pb::ListCatalogAssignmentsRequest,
) -> Result<pb::ListCatalogAssignmentsResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let page = PageRequest::parse(req.page_size, &req.page_token, &(tenant, group))?;
    let (assignments, active) = store.list_catalogs(tenant, group, &page).await?;
    Ok(pb::ListCatalogAssignmentsResponse {
        assignments: assignments
            .items
            .iter()
            .map(convert::catalog_assignment)
            .collect(),
        active,
        next_page_token: page.next_token(&assignments),
    })
}
