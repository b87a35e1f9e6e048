//! The outbox: every committed write leaves exactly one change set, numbered by a
//! gapless tenant revision, in the write's own transaction; a refused write leaves
//! none.

use cohort_directory::domain::{Change, TenantId};
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
    let sets = app.store.read_changes(tenant, 0, 100).await.unwrap();
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

    let after_three = app.store.read_changes(tenant, 3, 1).await.unwrap();
    assert_eq!(
        after_three.iter().map(|s| s.revision).collect::<Vec<_>>(),
        vec![4]
    );
    let other = app.tenant().await;
    let other_sets = app
        .store
        .read_changes(TenantId(Uuid::parse_str(&other.id).unwrap()), 0, 100)
        .await
        .unwrap();
    assert_eq!(other_sets.len(), 1, "each tenant has its own revisions");
}

crate::on_both_backends!(every_write_leaves_one_change_set_and_refusals_none);
