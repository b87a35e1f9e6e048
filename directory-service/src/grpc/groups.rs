//! Group RPCs: create (organization or subgroup), get, list, update (rename, flag),
//! move, delete.

use cohort_shared::proto::directory::v1 as pb;

use super::convert::{self, UpdateMask};
use super::error::ApiError;
use crate::domain::{
    DisplayName, Etag, GroupFilter, GroupId, GroupUpdate, NewGroup, PageRequest, RequestId,
    TenantId, ValidationError, WriteContext,
};
use crate::storage::GroupStore;

pub(super) fn tenant_and_group(
    tenant_id: &str,
    group_id: &str,
) -> Result<(TenantId, GroupId), ValidationError> {
    Ok((
        super::tenant_id(tenant_id)?,
        GroupId::parse("group_id", group_id)?,
    ))
}

pub async fn create(
    store: &dyn GroupStore,
    ctx: &WriteContext,
    req: pb::CreateGroupRequest,
) -> Result<pb::CreateGroupResponse, ApiError> {
    let tenant = super::tenant_id(&req.tenant_id)?;
    let new = NewGroup {
        display_name: DisplayName::parse("display_name", &req.display_name)?,
        parent_id: convert::parse_optional_group("parent_id", &req.parent_id)?,
        is_organization: req.is_organization,
        inherited_roles: NewGroup::inherited_roles(
            "inherited_roles",
            &convert::parse_roles("inherited_roles", &req.inherited_roles)?,
        )?,
        request_id: RequestId::parse("request_id", &req.request_id)?,
    };
    let written = store.create_group(ctx, tenant, new).await?;
    Ok(pb::CreateGroupResponse {
        group: Some(convert::group(&written.value)),
        revision: written.revision,
    })
}

pub async fn get(
    store: &dyn GroupStore,
    req: pb::GetGroupRequest,
) -> Result<pb::GetGroupResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let group = store.get_group(tenant, group).await?;
    Ok(pb::GetGroupResponse {
        group: Some(convert::group(&group)),
    })
}

pub async fn list(
    store: &dyn GroupStore,
    req: pb::ListGroupsRequest,
) -> Result<pb::ListGroupsResponse, ApiError> {
    let tenant = super::tenant_id(&req.tenant_id)?;
    let filter = GroupFilter {
        parent_id: convert::parse_optional_group("parent_id", &req.parent_id)?,
        top_level_only: req.top_level_only,
        organizations_only: req.organizations_only,
        query: convert::parse_query("query", &req.query)?,
    };
    if filter.parent_id.is_some() && filter.top_level_only {
        return Err(
            ValidationError::new("top_level_only", "cannot be combined with parent_id").into(),
        );
    }
    let page = PageRequest::parse(req.page_size, &req.page_token, &(tenant, &filter))?;
    let groups = store.list_groups(tenant, &filter, &page).await?;
    Ok(pb::ListGroupsResponse {
        groups: groups.items.iter().map(convert::group).collect(),
        next_page_token: page.next_token(&groups),
    })
}

pub async fn update(
    store: &dyn GroupStore,
    ctx: &WriteContext,
    req: pb::UpdateGroupRequest,
) -> Result<pb::UpdateGroupResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let mask = UpdateMask::parse(
        req.update_mask.as_ref(),
        &["display_name", "is_organization"],
    )?;
    let update = GroupUpdate {
        display_name: mask
            .changes("display_name", req.display_name.is_some())
            .then(|| DisplayName::parse("display_name", req.display_name.as_deref().unwrap_or("")))
            .transpose()?,
        is_organization: mask
            .changes("is_organization", req.is_organization.is_some())
            .then(|| req.is_organization.unwrap_or(false)),
        etag: Etag::parse("etag", &req.etag)?,
    };
    let written = store.update_group(ctx, tenant, group, update).await?;
    Ok(pb::UpdateGroupResponse {
        group: Some(convert::group(&written.value)),
        revision: written.revision,
    })
}

pub async fn move_to(
    store: &dyn GroupStore,
    ctx: &WriteContext,
    req: pb::MoveGroupRequest,
) -> Result<pb::MoveGroupResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let new_parent = convert::parse_optional_group("new_parent_id", &req.new_parent_id)?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store
        .move_group(ctx, tenant, group, new_parent, etag)
        .await?;
    Ok(pb::MoveGroupResponse {
        group: Some(convert::group(&written.value)),
        revision: written.revision,
    })
}

pub async fn delete(
    store: &dyn GroupStore,
    ctx: &WriteContext,
    req: pb::DeleteGroupRequest,
) -> Result<pb::DeleteGroupResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store
        .delete_group(ctx, tenant, group, req.cascade, etag)
        .await?;
    Ok(pb::DeleteGroupResponse {
        deleted_group_ids: convert::ids(&written.value),
        revision: written.revision,
    })
}
