//! User RPCs: create, get, list with filters, update, suspend, reactivate, delete.

use cohort_shared::proto::directory::v1 as pb;

use super::convert::{self, UpdateMask};
use super::error::ApiError;
use crate::domain::{
    DisplayName, Email, Etag, GroupId, NewUser, PageRequest, RequestId, TenantId, UserFilter,
    UserId, UserState, UserUpdate, ValidationError, WriteContext,
};
use crate::storage::UserStore;

fn tenant_and_user(tenant_id: &str, user_id: &str) -> Result<(TenantId, UserId), ValidationError> {
    Ok((
        super::tenant_id(tenant_id)?,
        UserId::parse("user_id", user_id)?,
    ))
}

pub async fn create(
    store: &dyn UserStore,
    ctx: &WriteContext,
    req: pb::CreateUserRequest,
) -> Result<pb::CreateUserResponse, ApiError> {
    let tenant = super::tenant_id(&req.tenant_id)?;
    let new = NewUser {
        display_name: DisplayName::parse("display_name", &req.display_name)?,
        email: Email::parse("email", &req.email)?,
        roles: convert::parse_role_set("roles", &req.roles)?,
        request_id: RequestId::parse("request_id", &req.request_id)?,
    };
    let written = store.create_user(ctx, tenant, new).await?;
    Ok(pb::CreateUserResponse {
        user: Some(convert::user(&written.value)),
        revision: written.revision,
    })
}

/// Most users one `BatchCreateUsers` call creates.
pub const MAX_BATCH_USERS: usize = 1000;

pub async fn batch_create(
    store: &dyn UserStore,
    ctx: &WriteContext,
    req: pb::BatchCreateUsersRequest,
) -> Result<pb::BatchCreateUsersResponse, ApiError> {
    let tenant = super::tenant_id(&req.tenant_id)?;
    if req.users.is_empty() || req.users.len() > MAX_BATCH_USERS {
        return Err(ValidationError::new(
            "users",
            format!(
                "give between 1 and {MAX_BATCH_USERS} users (got {})",
                req.users.len()
            ),
        )
        .into());
    }
    let mut users = Vec::with_capacity(req.users.len());
    for (i, user) in req.users.into_iter().enumerate() {
        let field = |name: &str| format!("users[{i}].{name}");
        users.push(NewUser {
            display_name: DisplayName::parse(&field("display_name"), &user.display_name)?,
            email: Email::parse(&field("email"), &user.email)?,
            roles: convert::parse_role_set(&field("roles"), &user.roles)?,
            request_id: RequestId::parse(&field("request_id"), &user.request_id)?,
        });
    }
    refuse_repeats(&users)?;
    let written = store.create_users(ctx, tenant, users).await?;
    Ok(pb::BatchCreateUsersResponse {
        users: written.value.iter().map(convert::user).collect(),
        revision: written.revision,
    })
}

/// A batch may not hold the same email, or the same request id, twice.
fn refuse_repeats(users: &[NewUser]) -> Result<(), ValidationError> {
    let mut emails: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut request_ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, user) in users.iter().enumerate() {
        if let Some(first) = emails.insert(user.email.key(), i) {
            return Err(ValidationError::new(
                format!("users[{i}].email"),
                format!("is the email of users[{first}] (emails are unique per tenant, whatever their case)"),
            ));
        }
        if let Some(request_id) = &user.request_id {
            if let Some(first) = request_ids.insert(request_id.as_str(), i) {
                return Err(ValidationError::new(
                    format!("users[{i}].request_id"),
                    format!("is the request id of users[{first}]"),
                ));
            }
        }
    }
    Ok(())
}

pub async fn get(
    store: &dyn UserStore,
    req: pb::GetUserRequest,
) -> Result<pb::GetUserResponse, ApiError> {
    let (tenant, user) = tenant_and_user(&req.tenant_id, &req.user_id)?;
    let user = store.get_user(tenant, user).await?;
    Ok(pb::GetUserResponse {
        user: Some(convert::user(&user)),
    })
}

pub async fn list(
    store: &dyn UserStore,
    req: pb::ListUsersRequest,
) -> Result<pb::ListUsersResponse, ApiError> {
    let tenant = super::tenant_id(&req.tenant_id)?;
    let filter = UserFilter {
        query: convert::parse_query("query", &req.query)?,
        role: match req.role {
            0 => None,
            value => Some(convert::parse_role("role", value)?),
        },
        group_id: if req.group_id.is_empty() {
            None
        } else {
            Some(GroupId::parse("group_id", &req.group_id)?)
        },
        state: match pb::UserState::try_from(req.state) {
            Ok(pb::UserState::Unspecified) => None,
            Ok(pb::UserState::Active) => Some(UserState::Active),
            Ok(pb::UserState::Suspended) => Some(UserState::Suspended),
            Err(_) => {
                return Err(ValidationError::new(
                    "state",
                    format!("unknown state value {}", req.state),
                )
                .into())
            }
        },
    };
    let page = PageRequest::parse(req.page_size, &req.page_token, &(tenant, &filter))?;
    let users = store.list_users(tenant, &filter, &page).await?;
    Ok(pb::ListUsersResponse {
        users: users.items.iter().map(convert::user).collect(),
        next_page_token: page.next_token(&users),
    })
}

pub async fn update(
    store: &dyn UserStore,
    ctx: &WriteContext,
    req: pb::UpdateUserRequest,
) -> Result<pb::UpdateUserResponse, ApiError> {
    let (tenant, user) = tenant_and_user(&req.tenant_id, &req.user_id)?;
    let mask = UpdateMask::parse(
        req.update_mask.as_ref(),
        &["display_name", "email", "roles"],
    )?;
    let update = UserUpdate {
        display_name: mask
            .changes("display_name", req.display_name.is_some())
            .then(|| DisplayName::parse("display_name", req.display_name.as_deref().unwrap_or("")))
            .transpose()?,
        email: mask
            .changes("email", req.email.is_some())
            .then(|| Email::parse("email", req.email.as_deref().unwrap_or("")))
            .transpose()?,
        roles: mask
            .changes("roles", !req.roles.is_empty())
            .then(|| convert::parse_role_set("roles", &req.roles))
            .transpose()?,
        etag: Etag::parse("etag", &req.etag)?,
    };
    let written = store.update_user(ctx, tenant, user, update).await?;
    Ok(pb::UpdateUserResponse {
        user: Some(convert::user(&written.value)),
        revision: written.revision,
    })
}

pub async fn suspend(
    store: &dyn UserStore,
    ctx: &WriteContext,
    req: pb::SuspendUserRequest,
) -> Result<pb::SuspendUserResponse, ApiError> {
    let (tenant, user) = tenant_and_user(&req.tenant_id, &req.user_id)?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store
        .set_user_suspended(ctx, tenant, user, true, etag)
        .await?;
    Ok(pb::SuspendUserResponse {
        user: Some(convert::user(&written.value)),
        revision: written.revision,
    })
}

pub async fn reactivate(
    store: &dyn UserStore,
    ctx: &WriteContext,
    req: pb::ReactivateUserRequest,
) -> Result<pb::ReactivateUserResponse, ApiError> {
    let (tenant, user) = tenant_and_user(&req.tenant_id, &req.user_id)?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store
        .set_user_suspended(ctx, tenant, user, false, etag)
        .await?;
    Ok(pb::ReactivateUserResponse {
        user: Some(convert::user(&written.value)),
        revision: written.revision,
    })
}

pub async fn delete(
    store: &dyn UserStore,
    ctx: &WriteContext,
    req: pb::DeleteUserRequest,
) -> Result<pb::DeleteUserResponse, ApiError> {
    let (tenant, user) = tenant_and_user(&req.tenant_id, &req.user_id)?;
    let etag = Etag::parse("etag", &req.etag)?;
    let written = store.delete_user(ctx, tenant, user, etag).await?;
    Ok(pb::DeleteUserResponse {
        revision: written.revision,
    })
}
