//! Many concurrent writers on the same group and users: no lost or duplicated row,
//! counters that match the rows, and revisions that stay gapless with one change
//! set per committed write, whose replay gives exactly the stored memberships.

use std::collections::BTreeSet;

use cohort_directory::domain::{Change, TenantId};
use cohort_shared::proto::directory::v1 as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::helpers::TestApp;

const WRITERS: usize = 8;
const OPS_PER_WRITER: usize = 25;

async fn concurrent_writers_lose_and_duplicate_nothing(app: &TestApp) {
    let t = app.tenant().await;
    let org = app.organization(&t, "Org").await.id;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(app.user(&t, &format!("User {i}")).await);
    }

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let mut client = app.client();
        let (tenant, group, users) = (t.id.clone(), org.clone(), users.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(writer as u64);
            let mut revisions = Vec::new();
            for op in 0..OPS_PER_WRITER {
                let pick: Vec<String> = (0..rng.random_range(1..4))
                    .map(|_| users[rng.random_range(0..users.len())].clone())
                    .collect();
                let revision = match rng.random_range(0..4) {
                    0 | 1 => {
                        let req = pb::AddGroupMembersRequest {
                            tenant_id: tenant.clone(),
                            group_id: group.clone(),
                            user_ids: pick,
                        };
                        let resp = client.add_group_members(req).await.unwrap().into_inner();
                        (!resp.added_user_ids.is_empty()).then_some(resp.revision)
                    }
                    2 => {
                        let req = pb::RemoveGroupMembersRequest {
                            tenant_id: tenant.clone(),
                            group_id: group.clone(),
                            user_ids: pick,
                        };
                        let resp = client.remove_group_members(req).await.unwrap().into_inner();
                        (!resp.removed_user_ids.is_empty()).then_some(resp.revision)
                    }
                    _ => {
                        let req = pb::UpdateUserRequest {
                            tenant_id: tenant.clone(),
                            user_id: pick[0].clone(),
                            display_name: Some(format!("Writer {writer} op {op}")),
                            ..Default::default()
                        };
                        Some(client.update_user(req).await.unwrap().into_inner().revision)
                    }
                };
                revisions.extend(revision);
            }
            revisions
        }));
    }
    let mut committed: Vec<i64> = Vec::new();
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }

    // Every committed write got its own revision.
    let unique: BTreeSet<i64> = committed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        committed.len(),
        "two writes reported the same revision"
    );

    let tenant = TenantId(Uuid::parse_str(&t.id).unwrap());
    let sets = app
        .store
        .read_changes(tenant, 0, 100_000, i64::MAX)
        .await
        .unwrap();
    let last = app.revision(&t).await;
    assert_eq!(
        sets.iter().map(|s| s.revision).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    assert!(unique.iter().all(|r| sets.iter().any(|s| s.revision == *r)));

    // Replaying the change sets gives exactly the stored memberships.
    let mut replayed = BTreeSet::new();
    for set in &sets {
        for change in &set.changes {
            match change {
                Change::MembershipAdded { membership } => assert!(
                    replayed.insert(membership.user_id.to_string()),
                    "added twice"
                ),
                Change::MembershipRemoved { user_id, .. } => assert!(
                    replayed.remove(&user_id.to_string()),
                    "removed a non-member"
                ),
                _ => {}
            }
        }
    }
    let stored: Vec<String> = app.all_members(&t, &org, false).await;
    let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "a member listed twice");
    assert_eq!(stored_set, replayed);
    assert_eq!(
        app.get_group(&t, &org).await.member_count,
        stored.len() as i64,
        "the counter matches the rows"
    );
}

crate::on_both_backends!(concurrent_writers_lose_and_duplicate_nothing);
