//! Bulk user import (`BatchCreateUsers`): every user validated as CreateUser
//! validates one, errors named by index, all or nothing at one revision with one
//! change set, per-user idempotency by request id.

use catalog_pb::Role;
use cohort_directory::domain::{Change, TenantId};
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use pb::batch_create_users_request::NewUser;
use tonic::Code;
use uuid::Uuid;

use crate::helpers::{assert_error, roles, Tenant, TestApp, GA_USER};

fn user(email: &str) -> NewUser {
    NewUser {
        display_name: format!("User {email}"),
        email: email.into(),
        roles: roles(&[GA_USER, Role::LmsAuthor]),
        request_id: String::new(),
    }
}

fn batch(tenant: &Tenant, users: Vec<NewUser>) -> pb::BatchCreateUsersRequest {
    pb::BatchCreateUsersRequest {
        tenant_id: tenant.id.clone(),
        users,
    }
}

/// Every user of the tenant whose email contains `needle`.
async fn users_matching(app: &TestApp, tenant: &Tenant, needle: &str) -> Vec<pb::User> {
    app.client()
        .list_users(pb::ListUsersRequest {
            tenant_id: tenant.id.clone(),
            query: needle.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .users
}

async fn a_batch_is_created_at_one_revision_with_one_change_set(app: &TestApp) {
    let t = app.tenant().await;
    let before = app.revision(&t).await;
    let emails = ["b0@school.test", "b1@school.test", "b2@school.test"];
    let reply = app
        .client()
        .batch_create_users(batch(&t, emails.iter().map(|e| user(e)).collect()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.revision,
        before + 1,
        "one revision for the whole batch"
    );
    let got: Vec<&str> = reply.users.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(got, emails, "users come back in request order");
    assert!(reply.users.iter().all(|u| u.etag == reply.users[0].etag));
    assert!(
        reply.users[0].roles.contains(&(Role::LmsUser as i32)),
        "validated like CreateUser: LMS USER comes with any LMS role"
    );
    assert_eq!(users_matching(app, &t, "@school.test").await.len(), 3);

    let tenant = TenantId(Uuid::parse_str(&t.id).unwrap());
    let sets = app
        .store
        .read_changes(tenant, before, 10, i64::MAX)
        .await
        .unwrap();
    assert_eq!(sets.len(), 1, "one change set");
    let created: Vec<String> = sets[0]
        .changes
        .iter()
        .map(|c| match c {
            Change::UserUpserted { user } => user.email.as_str().to_owned(),
            other => panic!("unexpected change {other:?}"),
        })
        .collect();
    assert_eq!(created, emails);

    // A thousand at once.
    let many: Vec<NewUser> = (0..1000)
        .map(|i| user(&format!("m{i}@many.test")))
        .collect();
    let reply = app
        .client()
        .batch_create_users(batch(&t, many))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.users.len(), 1000);
    assert_eq!(reply.revision, before + 2);
}

async fn a_bad_user_is_named_by_index_and_nothing_is_written(app: &TestApp) {
    let t = app.tenant().await;
    app.user_with(&t, "Taken", &[GA_USER]).await; // taken@acme.test
    let before = app.revision(&t).await;
    let good = || vec![user("g0@x.test"), user("g1@x.test"), user("g2@x.test")];

    let mut bad_email = good();
    bad_email[2].email = "not an email".into();
    let mut bad_roles = good();
    bad_roles[1].roles = roles(&[Role::LmsAuthor]); // no Global Admin role
    let mut bad_name = good();
    bad_name[0].display_name = String::new();
    let mut repeated = good();
    repeated[2].email = "G0@X.test".into();
    let mut repeated_request = good();
    repeated_request[0].request_id = "r-1".into();
    repeated_request[1].request_id = "r-1".into();
    for (users, field) in [
        (bad_email, "users[2].email"),
        (bad_roles, "users[1].roles"),
        (bad_name, "users[0].display_name"),
        (repeated, "users[2].email"),
        (repeated_request, "users[1].request_id"),
        (Vec::new(), "users"),
        (
            (0..1001).map(|i| user(&format!("o{i}@x.test"))).collect(),
            "users",
        ),
    ] {
        assert_error(
            app.client().batch_create_users(batch(&t, users)).await,
            Code::InvalidArgument,
            Some(field),
        );
    }
    let mut taken = good();
    taken[1].email = "TAKEN@acme.test".into();
    assert_error(
        app.client().batch_create_users(batch(&t, taken)).await,
        Code::AlreadyExists,
        Some("users[1].email"),
    );
    assert_eq!(app.revision(&t).await, before, "no refused batch wrote");
    assert!(users_matching(app, &t, "@x.test").await.is_empty());

    let elsewhere = Tenant {
        id: Uuid::now_v7().to_string(),
        admin_id: String::new(),
    };
    assert_error(
        app.client()
            .batch_create_users(batch(&elsewhere, good()))
            .await,
        Code::NotFound,
        None,
    );
}

async fn each_user_of_a_batch_is_idempotent_by_request_id(app: &TestApp) {
    let t = app.tenant().await;
    let with_id = |email: &str, id: &str| NewUser {
        request_id: id.into(),
        ..user(email)
    };
    let first = app
        .client()
        .batch_create_users(batch(
            &t,
            vec![with_id("i0@x.test", "k0"), with_id("i1@x.test", "k1")],
        ))
        .await
        .unwrap()
        .into_inner();

    // The same batch again: the same users, nothing written.
    let again = app
        .client()
        .batch_create_users(batch(
            &t,
            vec![with_id("i0@x.test", "k0"), with_id("i1@x.test", "k1")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.users, first.users);
    assert_eq!(again.revision, first.revision);
    assert_eq!(
        app.revision(&t).await,
        first.revision,
        "the retry wrote nothing"
    );

    // A batch mixing a retried user with a new one creates only the new one.
    let mixed = app
        .client()
        .batch_create_users(batch(
            &t,
            vec![with_id("i2@x.test", "k2"), with_id("i1@x.test", "k1")],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mixed.revision, first.revision + 1);
    assert_eq!(mixed.users[1], first.users[1]);
    assert_eq!(users_matching(app, &t, "@x.test").await.len(), 3);

    // A request id is shared with CreateUser.
    let single = app
        .client()
        .create_user(pb::CreateUserRequest {
            tenant_id: t.id.clone(),
            display_name: "User i3@x.test".into(),
            email: "i3@x.test".into(),
            roles: roles(&[GA_USER, Role::LmsAuthor]),
            request_id: "k3".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = app
        .client()
        .batch_create_users(batch(&t, vec![with_id("i3@x.test", "k3")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed.users[0], single.user.unwrap());
    assert_eq!(replayed.revision, single.revision);

    // A request id used for another user is refused, naming the user.
    let before = app.revision(&t).await;
    assert_error(
        app.client()
            .batch_create_users(batch(
                &t,
                vec![with_id("i4@x.test", "k4"), with_id("other@x.test", "k0")],
            ))
            .await,
        Code::InvalidArgument,
        Some("users[1].request_id"),
    );
    assert_eq!(app.revision(&t).await, before);
}

crate::on_both_backends!(
    a_batch_is_created_at_one_revision_with_one_change_set,
    a_bad_user_is_named_by_index_and_nothing_is_written,
    each_user_of_a_batch_is_idempotent_by_request_id,
);
