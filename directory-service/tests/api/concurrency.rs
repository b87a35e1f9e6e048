//! Many concurrent writers on the same group and users: no lost or duplicated row,
//! counters that match the rows, and revisions that stay gapless with one change
//! set per committed write, whose replay gives exactly the stored memberships.
//! Concurrent creates and member additions of one tenant (written together on
//! PostgreSQL) each get their own answer, revision and change set, refusals,
//! twins and overlaps included.
//!
//! One file on purpose: the writers, the replay of their change sets and the
//! comparison with the stored rows are one check, run in a few shapes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use cohort_directory::domain::{Change, ChangeSet, TenantId};
use cohort_shared::convert::role_from_proto;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{assert_error, Tenant, TestApp};

const WRITERS: usize = 8;
const OPS_PER_WRITER: usize = 25;

/// Sends every request at once: one task each, released together (a barrier),
/// so that the server has them all in flight; their results in order.
async fn all_at_once<R, T, F, Fut>(
    app: &TestApp,
    requests: Vec<R>,
    call: F,
) -> Vec<Result<T, Status>>
where
    R: Send + 'static,
    T: Send + 'static,
    F: Fn(DirectoryServiceClient<Channel>, R) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let (barrier, sent) = (barrier.clone(), call(app.client(), request));
            tokio::spawn(async move {
                barrier.wait().await;
                sent.await.map(|r| r.into_inner())
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// The tenant's change sets, after checking their revisions run from 1 to the
/// tenant's, without a gap.
async fn gapless_change_sets(app: &TestApp, t: &Tenant) -> Vec<ChangeSet> {
    let tenant = TenantId(Uuid::parse_str(&t.id).unwrap());
    let sets = app
        .store
        .read_changes(tenant, 0, 100_000, i64::MAX)
        .await
        .unwrap();
    let last = app.revision(t).await;
    assert_eq!(
        sets.iter().map(|s| s.revision).collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>()
    );
    sets
}

/// The change set of each reported revision, in the order given, after checking
/// that no two calls reported the same revision and that the tenant's revisions
/// run without a gap.
async fn change_set_of_each(app: &TestApp, t: &Tenant, reported: &[i64]) -> Vec<ChangeSet> {
    let distinct: BTreeSet<i64> = reported.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        reported.len(),
        "two creates reported the same revision"
    );
    let mut by_revision: std::collections::BTreeMap<i64, ChangeSet> = gapless_change_sets(app, t)
        .await
        .into_iter()
        .map(|set| (set.revision, set))
        .collect();
    reported
        .iter()
        .map(|r| {
            by_revision
                .remove(r)
                .expect("a change set at every reported revision")
        })
        .collect()
}

/// On PostgreSQL, that some rows of `table` written by different calls (a
/// different `distinct` column) were committed in one transaction.
async fn assert_committed_together(app: &TestApp, table: &str, distinct: &str, message: &str) {
    if app.backend == crate::helpers::Backend::Postgres {
        let together = format!(
            "EXISTS (SELECT 1 FROM {table} b WHERE b.xmin = a.xmin AND b.{distinct} <> a.{distinct})"
        );
        assert!(
            app.count_rows(&format!("{table} a"), &together).await > 0,
            "{message}"
        );
    }
}

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

    let sets = gapless_change_sets(app, &t).await;
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

/// What each concurrent `CreateUser` of the test sends.
#[derive(Clone, Copy)]
enum Create {
    /// A new email: created.
    Fresh(usize),
    /// One of several calls with the same new email: one is created.
    SameEmail(usize),
    /// The email of a user that exists (in other letter case): refused.
    TakenEmail,
    /// One of a pair with the same request id and request: one user, one answer.
    Twin(usize),
    /// A tenant that does not exist.
    NoTenant(usize),
}

async fn concurrent_creates_of_a_tenant_each_get_their_own_answer(app: &TestApp) {
    let t = app.tenant().await;
    app.user(&t, "Taken").await;
    let mut calls = Vec::new();
    for i in 0..40 {
        calls.push(Create::Fresh(i));
    }
    for i in 0..5 {
        calls.push(Create::SameEmail(i));
    }
    calls.push(Create::TakenEmail);
    for pair in 0..3 {
        calls.push(Create::Twin(pair));
        calls.push(Create::Twin(pair));
    }
    for i in 0..3 {
        calls.push(Create::NoTenant(i));
    }
    calls.shuffle(&mut StdRng::seed_from_u64(5));

    let requests = calls
        .iter()
        .map(|call| {
            let tenant = t.id.clone();
            let (tenant_id, name, email, request_id) = match call {
                Create::Fresh(i) => (
                    tenant,
                    format!("Fresh {i}"),
                    format!("fresh.{i}@acme.test"),
                    String::new(),
                ),
                Create::SameEmail(i) => (
                    tenant,
                    format!("Same {i}"),
                    "same@acme.test".into(),
                    String::new(),
                ),
                Create::TakenEmail => (
                    tenant,
                    "Taken Again".into(),
                    "TAKEN@acme.test".into(),
                    String::new(),
                ),
                Create::Twin(pair) => (
                    tenant,
                    format!("Twin {pair}"),
                    format!("twin.{pair}@acme.test"),
                    format!("twin-{pair}"),
                ),
                Create::NoTenant(i) => (
                    Uuid::now_v7().to_string(),
                    format!("Lost {i}"),
                    format!("lost.{i}@acme.test"),
                    String::new(),
                ),
            };
            pb::CreateUserRequest {
                tenant_id,
                display_name: name,
                email,
                roles: vec![catalog_pb::Role::GlobalAdminUser as i32],
                request_id,
            }
        })
        .collect();
    let results = all_at_once(app, requests, |mut client, request| async move {
        client.create_user(request).await
    })
    .await;
    let mut created = Vec::new();
    let mut same_email_created = 0;
    let mut twins: Vec<Vec<(String, i64)>> = vec![Vec::new(); 3];
    for (call, result) in calls.iter().zip(results) {
        match call {
            Create::Fresh(_) => {
                let reply = result.expect("a fresh email is created");
                created.push((reply.user.unwrap(), reply.revision));
            }
            Create::SameEmail(_) => match result {
                Ok(reply) => {
                    same_email_created += 1;
                    created.push((reply.user.unwrap(), reply.revision));
                }
                Err(status) => {
                    assert_error::<()>(Err(status), Code::AlreadyExists, Some("email"));
                }
            },
            Create::TakenEmail => {
                assert_error(result, Code::AlreadyExists, Some("email"));
            }
            Create::Twin(pair) => {
                let reply = result.expect("a twin is answered");
                let user = reply.user.unwrap();
                twins[*pair].push((user.id.clone(), reply.revision));
                if twins[*pair].len() == 2 {
                    created.push((user, reply.revision));
                }
            }
            Create::NoTenant(_) => {
                assert_error(result, Code::NotFound, None);
            }
        }
    }
    assert_eq!(
        same_email_created, 1,
        "one of the calls with the same email is created"
    );
    for pair in &twins {
        assert_eq!(pair[0], pair[1], "twins get the same user and revision");
    }

    // Each created user at its own revision, whose change set holds it alone,
    // and the tenant's revisions gapless.
    let revisions: Vec<i64> = created.iter().map(|(_, r)| *r).collect();
    let sets = change_set_of_each(app, &t, &revisions).await;
    for ((user, revision), set) in created.iter().zip(&sets) {
        match set.changes.as_slice() {
            [Change::UserUpserted { user: changed }] => {
                assert_eq!(changed.id.to_string(), user.id);
                assert_eq!(changed.email.as_str(), user.email);
                assert_eq!(
                    changed.revision, *revision,
                    "the change carries its own revision"
                );
            }
            other => panic!("revision {revision}: {other:?}"),
        }
        let stored = app.get_user(&t, &user.id).await;
        assert_eq!(
            stored.etag, user.etag,
            "the stored user is the one answered"
        );
    }
    assert_eq!(
        app.count_rows("users", "1 = 1").await,
        created.len() as i64 + 2,
        "no other user was written (the admin and Taken exist)"
    );
    assert_committed_together(
        app,
        "users",
        "id",
        "concurrent creates of a tenant are committed together",
    )
    .await;
}

async fn concurrent_member_additions_of_a_tenant_each_get_their_own_answer(app: &TestApp) {
    let t = app.tenant().await;
    let groups = [
        app.organization(&t, "North").await.id,
        app.organization(&t, "South").await.id,
    ];
    let mut users = Vec::new();
    for i in 0..30 {
        users.push(app.user(&t, &format!("Member {i}")).await);
    }
    // Already a member: never added again.
    app.add_members(&t, &groups[0], &[users[0].as_str()])
        .await
        .unwrap();
    let lonely = app.user(&t, "Lonely").await;
    let ghost = Uuid::now_v7().to_string();

    // Overlapping additions to both groups, a call naming a user that does not
    // exist (with a real user no other call adds), one to a group that does not
    // exist, and one that adds nothing new.
    let mut rng = StdRng::seed_from_u64(9);
    let mut calls: Vec<(String, Vec<String>)> = Vec::new();
    for _ in 0..24 {
        let group = groups[rng.random_range(0..2)].clone();
        let picked = (0..rng.random_range(1..8))
            .map(|_| users[rng.random_range(0..users.len())].clone())
            .collect();
        calls.push((group, picked));
    }
    calls.push((groups[1].clone(), vec![lonely.clone(), ghost.clone()]));
    calls.push((Uuid::now_v7().to_string(), vec![users[1].clone()]));
    calls.push((groups[0].clone(), vec![users[0].clone()]));
    calls.shuffle(&mut rng);

    let requests = calls
        .iter()
        .map(|(group, picked)| pb::AddGroupMembersRequest {
            tenant_id: t.id.clone(),
            group_id: group.clone(),
            user_ids: picked.clone(),
        })
        .collect();
    let results = all_at_once(app, requests, |mut client, request| async move {
        client.add_group_members(request).await
    })
    .await;
    let mut added: Vec<(String, String)> = Vec::new();
    let mut revisions = Vec::new();
    for ((group, picked), result) in calls.iter().zip(results) {
        if picked.contains(&ghost) {
            let status = assert_error(result, Code::NotFound, None);
            assert!(
                status.message().contains(&ghost),
                "names the missing user: {status:?}"
            );
        } else if !groups.contains(group) {
            let status = assert_error(result, Code::NotFound, None);
            assert!(
                status.message().contains(group.as_str()),
                "names the missing group: {status:?}"
            );
        } else {
            let reply = result.expect("an addition to a group that exists");
            for user in &reply.added_user_ids {
                assert!(picked.contains(user), "added a user it was not asked for");
                added.push((group.clone(), user.clone()));
            }
            if !reply.added_user_ids.is_empty() {
                revisions.push(reply.revision);
            }
        }
    }
    let unique: BTreeSet<_> = added.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        added.len(),
        "a membership reported added twice"
    );
    assert!(
        !added.contains(&(groups[0].clone(), users[0].clone())),
        "an existing member was added again"
    );
    let distinct: BTreeSet<i64> = revisions.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        revisions.len(),
        "two calls reported the same revision"
    );

    // The stored members are the ones there before and the ones reported added;
    // the refused call added nothing.
    for group in &groups {
        let mut expected: BTreeSet<String> = added
            .iter()
            .filter(|(g, _)| g == group)
            .map(|(_, u)| u.clone())
            .collect();
        if *group == groups[0] {
            expected.insert(users[0].clone());
        }
        let stored: BTreeSet<String> = app
            .all_members(&t, group, false)
            .await
            .into_iter()
            .collect();
        assert_eq!(stored, expected, "group {group}");
        assert!(!stored.contains(&lonely));
        assert_eq!(
            app.get_group(&t, group).await.member_count,
            expected.len() as i64,
            "the counter matches"
        );
    }

    // One change set per revision, gapless, each holding exactly what its call
    // reported, at its revision.
    let sets = gapless_change_sets(app, &t).await;
    let mut replayed = BTreeSet::new();
    for set in sets.iter().filter(|s| distinct.contains(&s.revision)) {
        for change in &set.changes {
            match change {
                Change::MembershipAdded { membership } => {
                    assert_eq!(membership.join_revision, set.revision);
                    replayed.insert((
                        membership.group_id.to_string(),
                        membership.user_id.to_string(),
                    ));
                }
                other => panic!("revision {}: {other:?}", set.revision),
            }
        }
    }
    assert_eq!(
        replayed, unique,
        "the change sets hold what the calls reported"
    );
    assert_committed_together(
        app,
        "memberships",
        "join_revision",
        "concurrent additions of a tenant are committed together",
    )
    .await;
}

/// The roles the concurrent group creates below give at creation: some groups
/// of a batch pass roles on, the others none.
fn inherited_at_creation(name: &str) -> Vec<catalog_pb::Role> {
    match name
        .strip_prefix("Sub ")
        .and_then(|n| n.parse::<u32>().ok())
    {
        Some(n) if n % 3 == 1 => vec![catalog_pb::Role::LmsTeacher],
        Some(n) if n % 3 == 2 => vec![
            catalog_pb::Role::LmsValidator,
            catalog_pb::Role::ShareConsumer,
        ],
        _ => vec![],
    }
}

async fn concurrent_group_creates_of_a_tenant_each_get_their_own_answer(app: &TestApp) {
    let t = app.tenant().await;
    let parent = app.organization(&t, "Parent").await.id;
    app.subgroup(&t, "Taken", &parent).await;
    let missing_parent = Uuid::now_v7().to_string();
    // (tenant, name, parent, request id)
    let mut calls: Vec<(String, String, String, String)> = Vec::new();
    for i in 0..30 {
        calls.push((
            t.id.clone(),
            format!("Sub {i}"),
            parent.clone(),
            String::new(),
        ));
    }
    for i in 0..10 {
        calls.push((
            t.id.clone(),
            format!("Top {i}"),
            String::new(),
            String::new(),
        ));
    }
    for _ in 0..4 {
        calls.push((t.id.clone(), "Same".into(), parent.clone(), String::new()));
    }
    calls.push((t.id.clone(), "TAKEN".into(), parent.clone(), String::new()));
    for pair in 0..3 {
        for _ in 0..2 {
            calls.push((
                t.id.clone(),
                format!("Twin {pair}"),
                String::new(),
                format!("group-twin-{pair}"),
            ));
        }
    }
    calls.push((
        t.id.clone(),
        "Orphan".into(),
        missing_parent.clone(),
        String::new(),
    ));
    calls.push((
        Uuid::now_v7().to_string(),
        "Lost".into(),
        String::new(),
        String::new(),
    ));
    calls.shuffle(&mut StdRng::seed_from_u64(13));

    let requests = calls
        .iter()
        .map(
            |(tenant_id, display_name, parent_id, request_id)| pb::CreateGroupRequest {
                tenant_id: tenant_id.clone(),
                display_name: display_name.clone(),
                parent_id: parent_id.clone(),
                is_organization: false,
                request_id: request_id.clone(),
                inherited_roles: inherited_at_creation(display_name)
                    .iter()
                    .map(|r| *r as i32)
                    .collect(),
            },
        )
        .collect();
    let results = all_at_once(app, requests, |mut client, request| async move {
        client.create_group(request).await
    })
    .await;
    let mut created: Vec<(pb::Group, i64)> = Vec::new();
    let mut same = 0;
    let mut twins: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for ((tenant_id, name, parent_id, request_id), result) in calls.iter().zip(results) {
        if *tenant_id != t.id {
            assert_error(result, Code::NotFound, None);
        } else if *parent_id == missing_parent {
            let status = assert_error(result, Code::NotFound, None);
            assert!(
                status.message().contains(&missing_parent),
                "names the parent: {status:?}"
            );
        } else if name == "TAKEN" {
            assert_error(result, Code::AlreadyExists, Some("display_name"));
        } else if name == "Same" {
            match result {
                Ok(reply) => {
                    same += 1;
                    created.push((reply.group.unwrap(), reply.revision));
                }
                Err(status) => {
                    assert_error::<()>(Err(status), Code::AlreadyExists, Some("display_name"));
                }
            }
        } else if !request_id.is_empty() {
            let reply = result.expect("a twin is answered");
            let group = reply.group.unwrap();
            let answers = twins.entry(request_id.clone()).or_default();
            answers.push((group.id.clone(), reply.revision));
            if answers.len() == 2 {
                assert_eq!(
                    answers[0], answers[1],
                    "twins get the same group and revision"
                );
                created.push((group, reply.revision));
            }
        } else {
            let reply = result.expect("a fresh name is created");
            created.push((reply.group.unwrap(), reply.revision));
        }
    }
    assert_eq!(same, 1, "one of the groups with the same name is created");
    assert_eq!(created.len(), 30 + 10 + 1 + 3);

    let revisions: Vec<i64> = created.iter().map(|(_, r)| *r).collect();
    let sets = change_set_of_each(app, &t, &revisions).await;
    for ((group, revision), set) in created.iter().zip(&sets) {
        match set.changes.as_slice() {
            [Change::GroupUpserted { group: changed }] => {
                assert_eq!(changed.id.to_string(), group.id);
                assert_eq!(changed.display_name.as_str(), group.display_name);
                assert_eq!(
                    changed.revision, *revision,
                    "the change carries its own revision"
                );
                let inherited = inherited_at_creation(&group.display_name);
                assert_eq!(
                    changed
                        .inherited_roles
                        .iter()
                        .map(|(_, role)| *role)
                        .collect::<Vec<_>>(),
                    inherited
                        .iter()
                        .map(|r| role_from_proto(*r as i32).unwrap())
                        .collect::<Vec<_>>(),
                    "the change carries the roles given at creation"
                );
                assert_eq!(
                    group
                        .inherited_roles
                        .iter()
                        .map(|r| r.role)
                        .collect::<Vec<_>>(),
                    inherited.iter().map(|r| *r as i32).collect::<Vec<_>>(),
                    "the answer carries the roles given at creation"
                );
            }
            other => panic!("revision {revision}: {other:?}"),
        }
        let stored = app.get_group(&t, &group.id).await;
        assert_eq!(
            (stored.etag, stored.inherited_roles),
            (group.etag.clone(), group.inherited_roles.clone()),
            "the stored group is the one answered"
        );
    }
    assert_eq!(
        app.get_group(&t, &parent).await.subgroup_count,
        1 + 30 + 1,
        "the parent counts its subgroups"
    );
    assert_eq!(
        app.count_rows("groups", "1 = 1").await,
        created.len() as i64 + 2,
        "no other group was written"
    );
    assert_committed_together(
        app,
        "groups",
        "id",
        "concurrent creates of a tenant are committed together",
    )
    .await;
}

crate::on_both_backends!(
    concurrent_writers_lose_and_duplicate_nothing,
    concurrent_creates_of_a_tenant_each_get_their_own_answer,
    concurrent_group_creates_of_a_tenant_each_get_their_own_answer,
    concurrent_member_additions_of_a_tenant_each_get_their_own_answer
);
