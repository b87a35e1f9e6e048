//! Listing users: filters and pages.

use super::*;

async fn users_are_filtered_and_paged(app: &TestApp) {
    let t = app.tenant().await;
    let ann = app
        .user_with(&t, "Ann Author", &[GA_USER, Role::LmsAuthor])
        .await
        .id;
    let ben = app
        .user_with(&t, "Ben Teacher", &[GA_USER, Role::LmsTeacher])
        .await
        .id;
    let cat = app
        .user_with(&t, "Cat 100% Author", &[GA_USER, Role::LmsAuthor])
        .await
        .id;
    let org = app.organization(&t, "Org").await.id;
    app.add_members(&t, &org, &[&ben, &cat]).await.unwrap();
    app.client()
        .suspend_user(pb::SuspendUserRequest {
            tenant_id: t.id.clone(),
            user_id: cat.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();

    let list = |req: pb::ListUsersRequest| {
        let mut client = app.client();
        async move { client.list_users(req).await.map(|r| r.into_inner()) }
    };
    let base = pb::ListUsersRequest {
        tenant_id: t.id.clone(),
        ..Default::default()
    };
    let ids = |r: pb::ListUsersResponse| r.users.into_iter().map(|u| u.id).collect::<Vec<_>>();

    assert_eq!(
        ids(list(pb::ListUsersRequest {
            query: "AUTHOR".into(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ann.clone(), cat.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            query: "ben.teacher@".into(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ben.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            query: "100%".into(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![cat.clone()]
    );
    // A NUL (which PostgreSQL refuses in text) or any control character is bad
    // input, named, not a database error.
    for query in ["a\0b", "tab\there"] {
        assert_error(
            list(pb::ListUsersRequest {
                query: query.into(),
                ..base.clone()
            })
            .await,
            Code::InvalidArgument,
            Some("query"),
        );
    }
    assert!(
        ids(list(pb::ListUsersRequest {
            query: "_".into(),
            ..base.clone()
        })
        .await
        .unwrap())
        .is_empty(),
        "LIKE wildcards are literal"
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            role: Role::LmsTeacher as i32,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ben.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            group_id: org.clone(),
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ben.clone(), cat.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            state: pb::UserState::Suspended as i32,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![cat.clone()]
    );
    assert_eq!(
        ids(list(pb::ListUsersRequest {
            role: Role::LmsAuthor as i32,
            state: pb::UserState::Active as i32,
            ..base.clone()
        })
        .await
        .unwrap()),
        vec![ann.clone()]
    );

    // Pages of one, each user exactly once, in creation order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(pb::ListUsersRequest {
            page_size: 1,
            page_token: token,
            ..base.clone()
        })
        .await
        .unwrap();
        assert!(page.users.len() <= 1);
        seen.extend(page.users.iter().map(|u| u.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, vec![t.admin_id.clone(), ann, ben, cat]);

    let first = list(pb::ListUsersRequest {
        page_size: 1,
        ..base.clone()
    })
    .await
    .unwrap();
    let other_filter = list(pb::ListUsersRequest {
        page_size: 1,
        page_token: first.next_page_token,
        query: "x".into(),
        ..base.clone()
    })
    .await;
    assert_error(other_filter, Code::InvalidArgument, Some("page_token"));
    assert_error(
        list(pb::ListUsersRequest {
            page_size: -1,
            ..base.clone()
        })
        .await,
        Code::InvalidArgument,
        Some("page_size"),
    );
    assert_error(
        list(pb::ListUsersRequest {
            group_id: "x".into(),
            ..base.clone()
        })
        .await,
        Code::InvalidArgument,
        Some("group_id"),
    );
}

crate::on_both_backends!(users_are_filtered_and_paged,);
