//! Tenant RPCs: create (with the first Global Admin ADMIN), get, list.

use cohort_shared::proto::directory::v1 as pb;

use super::convert;
use super::error::ApiError;
use crate::domain::{DisplayName, Email, NewTenant, PageRequest, RequestId, WriteContext};
use crate::storage::TenantStore;

pub async fn create(
    store: &dyn TenantStore,
    ctx: &WriteContext,
    req: pb::CreateTenantRequest,
) -> Result<pb::CreateTenantResponse, ApiError> {
    let new = NewTenant {
        display_name: DisplayName::parse("display_name", &req.display_name)?,
        admin_display_name: DisplayName::parse("admin_display_name", &req.admin_display_name)?,
        admin_email: Email::parse("admin_email", &req.admin_email)?,
        request_id: RequestId::parse("request_id", &req.request_id)?,
    };
    let written = store.create_tenant(ctx, new).await?;
    let (tenant, admin) = written.value;
    Ok(pb::CreateTenantResponse {
        tenant: Some(convert::tenant(&tenant)),
        admin: Some(convert::user(&admin)),
        revision: written.revision,
    })
}

pub async fn get(
    store: &dyn TenantStore,
    req: pb::GetTenantRequest,
) -> Result<pb::GetTenantResponse, ApiError> {
    let tenant = store.get_tenant(super::tenant_id(&req.tenant_id)?).await?;
    Ok(pb::GetTenantResponse {
        tenant: Some(convert::tenant(&tenant)),
    })
}

pub async fn list(
    store: &dyn TenantStore,
    req: pb::ListTenantsRequest,
) -> Result<pb::ListTenantsResponse, ApiError> {
    let page = PageRequest::parse(req.page_size, &req.page_token, &"tenants")?;
    let tenants = store.list_tenants(&page).await?;
    Ok(pb::ListTenantsResponse {
        tenants: tenants.items.iter().map(convert::tenant).collect(),
        next_page_token: page.next_token(&tenants),
    })
}
