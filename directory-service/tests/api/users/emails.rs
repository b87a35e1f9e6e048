//! Emails: unique per tenant case-insensitively, kept as typed but for
//! surrounding whitespace.

use super::*;

async fn emails_are_unique_per_tenant_case_insensitively(app: &TestApp) {
    let t = app.tenant().await;
    app.client()
        .create_user(new_user(&t, "Bob@Acme.test", &[GA_USER]))
        .await
        .unwrap();
    let before = app.revision(&t).await;
    let dup = app
        .client()
        .create_user(new_user(&t, "bob@ACME.TEST", &[GA_USER]))
        .await;
    assert_error(dup, Code::AlreadyExists, Some("email"));
    assert_eq!(app.revision(&t).await, before);

    let other = app.tenant().await;
    app.client()
        .create_user(new_user(&other, "bob@acme.test", &[GA_USER]))
        .await
        .expect("another tenant may use it");

    let carol = app.user(&t, "Carol").await;
    let steal = pb::UpdateUserRequest {
        tenant_id: t.id.clone(),
        user_id: carol,
        email: Some("BOB@acme.test".into()),
        ..Default::default()
    };
    assert_error(
        app.client().update_user(steal).await,
        Code::AlreadyExists,
        Some("email"),
    );
}

/// Emails are stored as typed, case included, but for surrounding whitespace
/// (a paste's artefact), which is trimmed on create and update alike; the
/// trimmed form is what uniqueness compares.
async fn emails_keep_their_case_and_lose_only_surrounding_whitespace(app: &TestApp) {
    let t = app.tenant().await;
    let created = app
        .client()
        .create_user(new_user(&t, "  Dana.Lee@Acme.test\t", &[GA_USER]))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(created.email, "Dana.Lee@Acme.test");
    assert_eq!(
        app.get_user(&t, &created.id).await.email,
        "Dana.Lee@Acme.test"
    );
    let twin = app
        .client()
        .create_user(new_user(&t, " dana.lee@acme.test ", &[GA_USER]))
        .await;
    assert_error(twin, Code::AlreadyExists, Some("email"));

    let updated = app
        .client()
        .update_user(pb::UpdateUserRequest {
            tenant_id: t.id.clone(),
            user_id: created.id.clone(),
            email: Some(" D.Lee@Acme.test  ".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(updated.email, "D.Lee@Acme.test");
    // Whitespace inside is not trimmed away: it is refused.
    assert_error(
        app.client()
            .create_user(new_user(&t, "dana lee@acme.test", &[GA_USER]))
            .await,
        Code::InvalidArgument,
        Some("email"),
    );
}

crate::on_both_backends!(
    emails_are_unique_per_tenant_case_insensitively,
    emails_keep_their_case_and_lose_only_surrounding_whitespace,
);
