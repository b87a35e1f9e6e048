//! The outbox: every committed write leaves exactly one change set, numbered by a
//! gapless tenant revision, in the write's own transaction; a refused write leaves
//! none.

use cohort_directory::domain::{Change, TenantId};
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use uuid::Uuid;

use crate::helpers::TestApp;

async fn every_write_leaves_one_change_set_and_refusals_none(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mo = app.user(&t, "Mo").await;
    app.add_members(&t, &org, &[&mo]).await.unwrap();
    app.add_members(&t, &org, &[&mo]).await.unwrap(); // no change: no change set
    assert!(app
        .add_members(&t, &org, &["00000000-0000-7000-8000-000000000000"])
        .await
        .is_err());
    let delete = pb::DeleteGroupRequest {
        tenant_id: t.id.clone(),
        group_id: org.clone(),
        cascade: true,
        etag: String::new(),
    };
    let last = app
        .client()
        .delete_group(delete)
        .await
        .unwrap()
        .into_inner()
        .revision;

    let tenant = TenantId(Uuid::parse_str(&t.id).unwrap());
    let sets = app
        .store
        .read_changes(tenant, 0, 100, i64::MAX)
        .await
        .unwrap();
    let revisions: Vec<i64> = sets.iter().map(|s| s.revision).collect();
    assert_eq!(
        revisions,
        (1..=last).collect::<Vec<_>>(),
        "gapless, in order, one per committed write"
    );
    assert_eq!(last, 5, "tenant+admin, org, user, membership, delete");
    assert!(matches!(
        sets[0].changes[..],
        [Change::TenantCreated { .. }, Change::UserUpserted { .. }]
    ));
    assert!(
        matches!(&sets[3].changes[..], [Change::MembershipAdded { membership }] if membership.join_revision == 4)
    );
    assert!(matches!(sets[4].changes[..], [Change::GroupDeleted { .. }]));
    assert!(sets
        .iter()
        .all(|s| s.tenant_id == tenant && s.actor == "anonymous"));

    let after_three = app
        .store
        .read_changes(tenant, 3, 1, i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        after_three.iter().map(|s| s.revision).collect::<Vec<_>>(),
        vec![4]
    );
    // A byte budget ends a batch early, but always after its first change set.
    let one_byte = app.store.read_changes(tenant, 0, 100, 1).await.unwrap();
    assert_eq!(
        one_byte.iter().map(|s| s.revision).collect::<Vec<_>>(),
        vec![1]
    );
    let first_two = app
        .store
        .read_changes(tenant, 0, 2, i64::MAX)
        .await
        .unwrap();
    let text = |set: &cohort_directory::domain::ChangeSet| {
        serde_json::to_string(&set.changes).unwrap().len() as i64
    };
    let budget = text(&first_two[0]) + 1;
    let within = app
        .store
        .read_changes(tenant, 0, 100, budget)
        .await
        .unwrap();
    assert!(
        (1..=2).contains(&within.len()),
        "a budget just over the first set's size takes at most one more: {}",
        within.len()
    );
    let other = app.tenant().await;
    let other_sets = app
        .store
        .read_changes(
            TenantId(Uuid::parse_str(&other.id).unwrap()),
            0,
            100,
            i64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(other_sets.len(), 1, "each tenant has its own revisions");
}

/// Every entity a stored change set carries is at the change set's revision, or
/// left at 0 for the reader to stamp (see `ChangeSet::stamp`), whatever the write.
async fn entities_in_a_change_set_are_at_its_revision(app: &TestApp) {
    let t = app.tenant().await;
    let c = app.client();
    let org = app.organization(&t, "Org").await.id;
    let team = app.subgroup(&t, "Team", &org).await.id;
    let other = app.create_top_level(&t, "Other").await.id;
    let boss = app.group_admin(&t, "Boss").await;
    let mo = app.user(&t, "Mo").await;
    app.add_members(&t, &team, &[&mo, &boss]).await.unwrap();
    app.set_admins(&t, &org, &[&boss]).await.unwrap();
    c.clone()
        .update_user(pb::UpdateUserRequest {
            tenant_id: t.id.clone(),
            user_id: mo.clone(),
            display_name: Some("Mo Moved".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    c.clone()
        .suspend_user(pb::SuspendUserRequest {
            tenant_id: t.id.clone(),
            user_id: mo.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    c.clone()
        .update_group(pb::UpdateGroupRequest {
            tenant_id: t.id.clone(),
            group_id: org.clone(),
            display_name: Some("Org 2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    c.clone()
        .move_group(pb::MoveGroupRequest {
            tenant_id: t.id.clone(),
            group_id: team.clone(),
            new_parent_id: other.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    c.clone()
        .set_inherited_role(pb::SetInheritedRoleRequest {
            tenant_id: t.id.clone(),
            group_id: team.clone(),
            role: catalog_pb::Role::LmsValidator as i32,
            etag: String::new(),
        })
        .await
        .unwrap();
    c.clone()
        .batch_create_users(pb::BatchCreateUsersRequest {
            tenant_id: t.id.clone(),
            users: vec![pb::batch_create_users_request::NewUser {
                display_name: "Bea".into(),
                email: "bea@acme.test".into(),
                roles: vec![catalog_pb::Role::GlobalAdminUser as i32],
                request_id: String::new(),
            }],
        })
        .await
        .unwrap();

    let sets = app.raw_change_sets(&t).await;
    assert!(sets.len() >= 12, "every write kind above left a change set");
    for (revision, raw) in sets {
        let stored: serde_json::Value = serde_json::from_str(&raw).unwrap();
        // Version 1 is an array; version 2 an object holding one.
        let changes = stored.get("changes").unwrap_or(&stored);
        for change in changes.as_array().unwrap() {
            let carried = [
                ("tenant", "revision"),
                ("user", "revision"),
                ("group", "revision"),
                ("membership", "join_revision"),
            ]
            .iter()
            .filter_map(|(entity, field)| change.get(entity).map(|e| e[field].as_i64().unwrap()))
            // Version 2's run of members added to a group.
            .chain(change.get("join_revision").map(|r| r.as_i64().unwrap()));
            for at in carried {
                assert!(
                    at == revision || at == 0,
                    "change set {revision} carries an entity at revision {at}: {change}"
                );
            }
        }
    }
}

crate::on_both_backends!(
    every_write_leaves_one_change_set_and_refusals_none,
    entities_in_a_change_set_are_at_its_revision,
);
