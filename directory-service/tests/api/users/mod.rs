//! Users: role validation against the catalog, unique emails, filters and
//! pagination, updates with etags, suspension, deletion, and the rules that refuse
//! a change (still administering groups, last Global Admin ADMIN).
//!
//! Laid out by topic: `roles.rs`, `emails.rs`, `tenancy.rs`, `listing.rs`,
//! `updates.rs` and `rules.rs`; this file holds the request builders they share.

mod emails;
mod listing;
mod roles;
mod rules;
mod tenancy;
mod updates;

use catalog_pb::Role;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::helpers::{
    assert_error, reason, reason_and_subjects, roles, Tenant, TestApp, GA_GROUP_ADMIN, GA_USER,
};

fn new_user(tenant: &Tenant, email: &str, role_list: &[Role]) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        tenant_id: tenant.id.clone(),
        display_name: "Someone".into(),
        email: email.into(),
        roles: roles(role_list),
        request_id: String::new(),
    }
}

fn update_roles(tenant: &Tenant, user: &str, role_list: &[Role]) -> pb::UpdateUserRequest {
    pb::UpdateUserRequest {
        tenant_id: tenant.id.clone(),
        user_id: user.into(),
        roles: roles(role_list),
        ..Default::default()
    }
}
