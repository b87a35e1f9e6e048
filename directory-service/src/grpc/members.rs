//! Group administrator and membership RPCs.

use cohort_shared::proto::directory::v1 as pb;

use super::convert;
use super::error::ApiError;
use super::groups::tenant_and_group;
use crate::domain::{Etag, Group, Membership, PageRequest, UserId, ValidationError, WriteContext};
use crate::storage::MembershipStore;

pub async fn set_administrators(
    store: &dyn MembershipStore,
    ctx: &WriteContext,
    req: pb::SetGroupAdministratorsRequest,
) -> Result<pb::SetGroupAdministratorsResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let users = convert::parse_user_ids("user_ids", &req.user_ids)?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store
        .set_administrators(ctx, tenant, group, users, etag)
        .await?;
    Ok(pb::SetGroupAdministratorsResponse {
        administrator_ids: convert::ids(&written.value),
        revision: written.revision,
    })
}

pub async fn add_administrators(
    store: &dyn MembershipStore,
    ctx: &WriteContext,
    req: pb::AddGroupAdministratorsRequest,
) -> Result<pb::AddGroupAdministratorsResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let users = convert::parse_user_ids("user_ids", &req.user_ids)?;
    let written = store.add_administrators(ctx, tenant, group, users).await?;
    Ok(pb::AddGroupAdministratorsResponse {
        administrator_ids: convert::ids(&written.value),
        revision: written.revision,
    })
}

pub async fn remove_administrators(
    store: &dyn MembershipStore,
    ctx: &WriteContext,
    req: pb::RemoveGroupAdministratorsRequest,
) -> Result<pb::RemoveGroupAdministratorsResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let users = convert::parse_user_ids("user_ids", &req.user_ids)?;
    let written = store
        .remove_administrators(ctx, tenant, group, users)
        .await?;
    Ok(pb::RemoveGroupAdministratorsResponse {
        administrator_ids: convert::ids(&written.value),
        revision: written.revision,
    })
}

pub async fn list_administrators(
    store: &dyn MembershipStore,
    req: pb::ListGroupAdministratorsRequest,
) -> Result<pb::ListGroupAdministratorsResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let page = PageRequest::parse(req.page_size, &req.page_token, &(tenant, group))?;
    let users = store.list_administrators(tenant, group, &page).await?;
    Ok(pb::ListGroupAdministratorsResponse {
        users: users.items.iter().map(convert::user).collect(),
        next_page_token: page.next_token(&users),
    })
}

pub async fn add_members(
    store: &dyn MembershipStore,
    ctx: &WriteContext,
    req: pb::AddGroupMembersRequest,
) -> Result<pb::AddGroupMembersResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let users = convert::parse_user_ids("user_ids", &req.user_ids)?;
    let written = store.add_members(ctx, tenant, group, users).await?;
    Ok(pb::AddGroupMembersResponse {
        added_user_ids: convert::ids(&written.value),
        revision: written.revision,
    })
}

pub async fn remove_members(
    store: &dyn MembershipStore,
    ctx: &WriteContext,
    req: pb::RemoveGroupMembersRequest,
) -> Result<pb::RemoveGroupMembersResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let users = convert::parse_user_ids("user_ids", &req.user_ids)?;
    let written = store.remove_members(ctx, tenant, group, users).await?;
    Ok(pb::RemoveGroupMembersResponse {
        removed_user_ids: convert::ids(&written.value),
        revision: written.revision,
    })
}

pub async fn list_members(
    store: &dyn MembershipStore,
    req: pb::ListGroupMembersRequest,
) -> Result<pb::ListGroupMembersResponse, ApiError> {
    let (tenant, group) = tenant_and_group(&req.tenant_id, &req.group_id)?;
    let page = PageRequest::parse(
        req.page_size,
        &req.page_token,
        &(tenant, group, req.include_subgroups),
    )?;
    let users = store
        .list_members(tenant, group, req.include_subgroups, &page)
        .await?;
    Ok(pb::ListGroupMembersResponse {
        users: users.items.iter().map(convert::user).collect(),
        next_page_token: page.next_token(&users),
    })
}

pub async fn list_user_groups(
    store: &dyn MembershipStore,
    req: pb::ListUserGroupsRequest,
) -> Result<pb::ListUserGroupsResponse, ApiError> {
    use pb::GroupRelation;
    let tenant = super::tenant_id(&req.tenant_id)?;
    let user = UserId::parse("user_id", &req.user_id)?;
    let relation = match GroupRelation::try_from(req.relation) {
        Ok(GroupRelation::Unspecified | GroupRelation::Member) => GroupRelation::Member,
        Ok(GroupRelation::Administrator) => GroupRelation::Administrator,
        Err(_) => {
            return Err(ValidationError::new(
                "relation",
                format!("unknown relation value {}", req.relation),
            )
            .into())
        }
    };
    // The token is bound to the relation too: a member page's cursor is no
    // cursor into the administered groups.
    let page = PageRequest::parse(
        req.page_size,
        &req.page_token,
        &(tenant, user, relation as i32),
    )?;
    let listed = |membership: Option<&Membership>, group: &Group| pb::UserGroup {
        membership: membership.map(convert::membership),
        group: Some(convert::group(group)),
    };
    let (groups, next_page_token) = match relation {
        GroupRelation::Administrator => {
            let groups = store.list_administered_groups(tenant, user, &page).await?;
            let next = page.next_token(&groups);
            (groups.items.iter().map(|g| listed(None, g)).collect(), next)
        }
        _ => {
            let groups = store.list_user_groups(tenant, user, &page).await?;
            let next = page.next_token(&groups);
            let items = groups.items.iter().map(|(m, g)| listed(Some(m), g));
            (items.collect(), next)
        }
    };
    Ok(pb::ListUserGroupsResponse {
        groups,
        next_page_token,
    })
}
