//! Stopping the authorization service gracefully: calls in flight are answered,
//! including reads waiting for a revision the directory commits after the stop
//! began (the follower keeps following until those calls are done).

use std::time::Duration;

use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::directory::v1 as dir;
use cohort_tests::{fresh_database, AuthzProcess, DirectoryProcess};

#[tokio::test]
async fn a_read_waiting_for_a_revision_is_answered_while_the_service_stops() {
    if cohort_tests::skip_against_external(
        "a_read_waiting_for_a_revision_is_answered_while_the_service_stops",
    ) {
        return;
    }
    let directory = DirectoryProcess::start().await.unwrap();
    let (url, database) = fresh_database().await.unwrap();
    let mut authz = AuthzProcess::start(&directory.endpoint(), &url)
        .await
        .unwrap();
    let mut d = directory.client().await.unwrap();
    let created = d
        .create_tenant(dir::CreateTenantRequest {
            display_name: "Stopping".into(),
            admin_display_name: "Ada".into(),
            admin_email: "ada@stopping.test".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let tenant = created.tenant.unwrap().id;
    let tenant_id = tenant.clone();
    let admin = created.admin.unwrap().id;
    authz.wait_until_serving().await.unwrap();

    // A read at the next revision: it waits (the test settings' --max-wait is 2 s).
    let mut client = authz.client().await.unwrap();
    let read = tokio::spawn(async move {
        client
            .check(authz::CheckRequest {
                tenant_id: tenant.clone(),
                user_id: admin,
                permission: "global_admin.configuration.access".into(),
                resource: Some(authz::Resource {
                    resource: Some(authz::resource::Resource::Tenant(true)),
                }),
                consistency: Some(authz::Consistency {
                    requirement: Some(authz::consistency::Requirement::AtLeastRevision(
                        created.revision + 1,
                    )),
                }),
                explain: false,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The stop begins; then the directory commits the revision the read waits for.
    let write = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.create_user(dir::CreateUserRequest {
            tenant_id: tenant_id.clone(),
            display_name: "Late".into(),
            email: "late@stopping.test".into(),
            roles: vec![dir::Role::GlobalAdminUser as i32],
            request_id: String::new(),
        })
        .await
        .unwrap();
    };
    let (stopped, ()) = tokio::join!(authz.stop(), write);
    stopped.unwrap();
    let answer = read
        .await
        .unwrap()
        .expect("answered at the new revision, not cut off");
    assert_eq!(answer.into_inner().revision, created.revision + 1);

    directory.finish().await.unwrap();
    cohort_tests::drop_database(&database).await.unwrap();
}
