//! Roles given on create and update, checked against the catalog's rules.

use super::*;

async fn role_assignments_follow_the_catalog_rules(app: &TestApp) {
    let t = app.tenant().await;
    let before = app.revision(&t).await;
    let refused: &[(&[Role], &str)] = &[
        (&[], "roles"),
        (&[Role::LmsAuthor], "roles"),
        (
            &[Role::GlobalAdminAdmin, Role::GlobalAdminGroupAdministrator],
            "roles",
        ),
        (&[Role::GlobalAdminAdmin, Role::GlobalAdminUser], "roles"),
        (&[GA_USER, Role::LmsGroupAdministrator], "roles"),
        (
            &[Role::GlobalAdminAdmin, Role::LmsGroupAdministrator],
            "roles",
        ),
        (
            &[GA_USER, Role::AuthorManager, Role::AuthorReviewer],
            "roles",
        ),
        (
            &[
                GA_USER,
                Role::AuthorAdministrator,
                Role::AuthorManager,
                Role::AuthorAuthor,
            ],
            "roles",
        ),
        (&[GA_USER, Role::ShareAdmin, Role::ShareConsumer], "roles"),
        (&[GA_USER, Role::Unspecified], "roles[1]"),
    ];
    for (i, (role_list, field)) in refused.iter().enumerate() {
        let result = app
            .client()
            .create_user(new_user(&t, &format!("u{i}@acme.test"), role_list))
            .await;
        assert_error(result, Code::InvalidArgument, Some(field));
    }
    let unknown_value = pb::CreateUserRequest {
        roles: vec![GA_USER as i32, 999],
        ..new_user(&t, "x@acme.test", &[])
    };
    assert_error(
        app.client().create_user(unknown_value).await,
        Code::InvalidArgument,
        Some("roles[1]"),
    );
    assert_eq!(
        app.revision(&t).await,
        before,
        "a refused create writes nothing"
    );

    let accepted: &[&[Role]] = &[
        &[GA_USER],
        &[GA_GROUP_ADMIN, Role::LmsGroupAdministrator, Role::LmsAuthor],
        &[
            GA_USER,
            Role::LmsAdmin,
            Role::LmsAuthor,
            Role::LmsTeacher,
            Role::LmsValidator,
        ],
        &[GA_USER, Role::AuthorAuthor, Role::AuthorManager],
        &[GA_USER, Role::ShareConsumer],
        &[Role::GlobalAdminAdmin, Role::GlobalAdminAdmin],
    ];
    for (i, role_list) in accepted.iter().enumerate() {
        app.client()
            .create_user(new_user(&t, &format!("ok{i}@acme.test"), role_list))
            .await
            .unwrap();
    }
}

async fn lms_user_comes_with_any_lms_role(app: &TestApp) {
    let t = app.tenant().await;
    let teacher = app
        .user_with(&t, "Tess", &[GA_USER, Role::LmsTeacher])
        .await;
    assert_eq!(
        teacher.roles,
        roles(&[GA_USER, Role::LmsTeacher, Role::LmsUser])
    );
    let no_lms = app.user_with(&t, "Nora", &[GA_USER]).await;
    assert_eq!(
        no_lms.roles,
        roles(&[GA_USER]),
        "no LMS role means no LMS access"
    );
}

crate::on_both_backends!(
    role_assignments_follow_the_catalog_rules,
    lms_user_comes_with_any_lms_role,
);
