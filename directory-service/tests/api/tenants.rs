//! Tenants: creation with the first Global Admin ADMIN, idempotency, isolation.

use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use tonic::Code;

use crate::helpers::{assert_error, TestApp};

fn create_request(request_id: &str, email: &str) -> pb::CreateTenantRequest {
    pb::CreateTenantRequest {
        display_name: "Acme".into(),
        admin_display_name: "Ada".into(),
        admin_email: email.into(),
        request_id: request_id.into(),
    }
}

async fn a_tenant_is_created_with_its_first_admin(app: &TestApp) {
    let resp = app
        .client()
        .create_tenant(create_request("", "ada@acme.test"))
        .await
        .unwrap()
        .into_inner();
    let tenant = resp.tenant.unwrap();
    let admin = resp.admin.unwrap();
    assert_eq!(resp.revision, 1);
    assert_eq!(tenant.revision, 1);
    assert_eq!(admin.tenant_id, tenant.id);
    assert_eq!(admin.roles, vec![catalog_pb::Role::GlobalAdminAdmin as i32]);
    assert_eq!(admin.state, pb::UserState::Active as i32);

    let fetched = app
        .client()
        .get_tenant(pb::GetTenantRequest {
            tenant_id: tenant.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(fetched.into_inner().tenant.unwrap().display_name, "Acme");
}

async fn tenant_creation_is_idempotent_by_request_id(app: &TestApp) {
    let first = app
        .client()
        .create_tenant(create_request("req-1", "ada@acme.test"))
        .await
        .unwrap()
        .into_inner();
    let again = app
        .client()
        .create_tenant(create_request("req-1", "ada@acme.test"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        first.tenant.as_ref().unwrap().id,
        again.tenant.as_ref().unwrap().id
    );
    assert_eq!(first.admin.unwrap().id, again.admin.unwrap().id);
    assert_eq!(again.revision, 1);

    let reused = app
        .client()
        .create_tenant(create_request("req-1", "bob@acme.test"))
        .await;
    assert_error(reused, Code::InvalidArgument, Some("request_id"));

    let all = app
        .client()
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.tenants.len(),
        1,
        "a retry must not create a second tenant"
    );
}

async fn bad_tenant_input_names_the_field(app: &TestApp) {
    assert_error(
        app.client()
            .create_tenant(create_request("", "not-an-email"))
            .await,
        Code::InvalidArgument,
        Some("admin_email"),
    );
    let mut no_name = create_request("", "ada@acme.test");
    no_name.display_name = "   ".into();
    assert_error(
        app.client().create_tenant(no_name).await,
        Code::InvalidArgument,
        Some("display_name"),
    );
    let bad_id = app
        .client()
        .get_tenant(pb::GetTenantRequest {
            tenant_id: "nope".into(),
        })
        .await;
    assert_error(bad_id, Code::InvalidArgument, Some("tenant_id"));
    let unknown = app
        .client()
        .get_tenant(pb::GetTenantRequest {
            tenant_id: uuid::Uuid::now_v7().to_string(),
        })
        .await;
    assert_error(unknown, Code::NotFound, None);
    let all = app
        .client()
        .list_tenants(pb::ListTenantsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(all.tenants.is_empty());
}

async fn tenants_are_listed_page_by_page(app: &TestApp) {
    let mut created = Vec::new();
    for i in 0..5 {
        let resp = app
            .client()
            .create_tenant(create_request("", &format!("a{i}@acme.test")))
            .await
            .unwrap();
        created.push(resp.into_inner().tenant.unwrap().id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client()
            .list_tenants(pb::ListTenantsRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.tenants.len() <= 2);
        seen.extend(page.tenants.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created, "every tenant once, in creation order");
    let bad = app
        .client()
        .list_tenants(pb::ListTenantsRequest {
            page_size: 2,
            page_token: "garbage".into(),
        })
        .await;
    assert_error(bad, Code::InvalidArgument, Some("page_token"));
}

crate::on_both_backends!(
    a_tenant_is_created_with_its_first_admin,
    tenant_creation_is_idempotent_by_request_id,
    bad_tenant_input_names_the_field,
    tenants_are_listed_page_by_page,
);
