//! Seeds a tenant of a given shape through the directory's API, as a platform
//! onboarding a customer would: users in batches of 1,000 (`BatchCreateUsers`),
//! organizations and their subgroups level by level, memberships in calls of up
//! to 1,000 ids (`AddGroupMembers`), an inherited role on one group in
//! `inherited_every` (given with `CreateGroup`), and an administrator on every
//! organization and level-2 group. Calls run `concurrency` at a time.
//!
//! Every organization is a tree four wide: group `k` of an organization's block
//! (0 is the organization) has group `(k - 1) / 4` as its parent, so a block of 50
//! has levels of 1, 4, 16 and 29 groups.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::client::Clients;
use crate::manifest::Manifest;

/// The shape of a seeded tenant.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
pub struct Shape {
    /// Users in the tenant (besides its first admin).
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Groups, organizations included.
    #[arg(long, default_value_t = 10_000)]
    pub groups: usize,
    /// Organizations: top-level groups with the flag on, each the root of an equal
    /// share of the groups.
    #[arg(long, default_value_t = 200)]
    pub organizations: usize,
    /// Memberships per user, in distinct random groups.
    #[arg(long, default_value_t = 3)]
    pub memberships_per_user: usize,
    /// One group in this many passes a role on to its members (LMS VALIDATOR and
    /// LMS GROUP_ADMINISTRATOR in turn).
    #[arg(long, default_value_t = 10)]
    pub inherited_every: usize,
}

/// A user's direct roles, by position: one in 200 an LMS admin, one in 50 a group
/// administrator, one in 10 an LMS author, the rest learners.
pub fn roles_of(i: usize) -> Vec<catalog_pb::Role> {
    use catalog_pb::Role::*;
    match i % 200 {
        0 => vec![GlobalAdminAdmin, LmsAdmin],
        n if n % 50 == 1 => vec![GlobalAdminGroupAdministrator, LmsGroupAdministrator],
        n if n % 10 == 2 => vec![GlobalAdminUser, LmsAuthor],
        _ => vec![GlobalAdminUser, LmsUser, ShareConsumer],
    }
}

/// Runs `work` for every item, `concurrency` at a time, stopping at the first error.
pub async fn each<T, F, Fut, R>(
    concurrency: usize,
    items: Vec<T>,
    work: F,
) -> anyhow::Result<Vec<R>>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = anyhow::Result<R>>,
{
    futures::stream::iter(items.into_iter().map(work))
        .buffered(concurrency.max(1))
        .try_collect()
        .await
}

fn phase(name: &str, started: Instant, count: usize) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "  {name}: {count} in {secs:.1} s ({:.0}/s)",
        count as f64 / secs.max(1e-9)
    );
}

pub async fn seed(
    clients: &Clients,
    shape: &Shape,
    concurrency: usize,
) -> anyhow::Result<Manifest> {
    let mut rng = StdRng::seed_from_u64(42);
    let all = Instant::now();
    let tenant = clients
        .directory
        .clone()
        .create_tenant(pb::CreateTenantRequest {
            display_name: format!("Bench {}", uuid::Uuid::now_v7().simple()),
            admin_display_name: "Bench Admin".into(),
            admin_email: "admin@bench.test".into(),
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let tenant_id = tenant.tenant.expect("a tenant").id;

    // Users, a thousand per call.
    let started = Instant::now();
    let batches: Vec<Vec<usize>> = (0..shape.users)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[usize]>::to_vec)
        .collect();
    let created = each(concurrency, batches, |batch| {
        let mut client = clients.directory.clone();
        let tenant_id = tenant_id.clone();
        async move {
            let users = batch
                .iter()
                .map(|i| pb::batch_create_users_request::NewUser {
                    display_name: format!("User {i}"),
                    email: format!("user{i}@bench.test"),
                    roles: roles_of(*i).into_iter().map(|r| r as i32).collect(),
                    request_id: format!("seed-user-{i}"),
                })
                .collect();
            let reply = client
                .batch_create_users(pb::BatchCreateUsersRequest { tenant_id, users })
                .await?
                .into_inner();
            Ok(reply.users.into_iter().map(|u| u.id).collect::<Vec<_>>())
        }
    })
    .await?;
    let users: Vec<String> = created.into_iter().flatten().collect();
    phase(
        "users (BatchCreateUsers, 1,000 per call)",
        started,
        users.len(),
    );

    // Groups, level by level.
    let started = Instant::now();
    let per_org = (shape.groups / shape.organizations.max(1)).max(1);
    let level_of = |offset: usize| {
        let (mut level, mut k) = (1, offset);
        while k > 0 {
            k = (k - 1) / 4;
            level += 1;
        }
        level
    };
    let depth = level_of(per_org - 1);
    // An inherited role on one group in `inherited_every` (by its place in the
    // manifest's group list), given when the group is created.
    let inherited_of = |i: usize| {
        (shape.inherited_every > 0 && i % shape.inherited_every == 0).then(|| {
            if (i / shape.inherited_every) % 2 == 0 {
                catalog_pb::Role::LmsValidator
            } else {
                catalog_pb::Role::LmsGroupAdministrator
            }
        })
    };
    let mut ids: Vec<Vec<String>> = vec![vec![String::new(); per_org]; shape.organizations];
    let mut levels: Vec<Vec<String>> = vec![Vec::new(); depth];
    for level in 1..=depth {
        let todo: Vec<(usize, usize)> = (0..shape.organizations)
            .flat_map(|org| {
                (0..per_org)
                    .filter(move |k| level_of(*k) == level)
                    .map(move |k| (org, k))
            })
            .collect();
        let made = each(concurrency, todo.clone(), |(org, k)| {
            let mut client = clients.directory.clone();
            let request = pb::CreateGroupRequest {
                tenant_id: tenant_id.clone(),
                display_name: if k == 0 {
                    format!("Organization {org}")
                } else {
                    format!("Group {k}")
                },
                parent_id: if k == 0 {
                    String::new()
                } else {
                    ids[org][(k - 1) / 4].clone()
                },
                is_organization: k == 0,
                request_id: format!("seed-group-{org}-{k}"),
                inherited_roles: inherited_of(org * per_org + k)
                    .map(|role| role as i32)
                    .into_iter()
                    .collect(),
            };
            async move {
                let group = client.create_group(request).await?.into_inner().group;
                Ok(group.expect("a group").id)
            }
        })
        .await?;
        for ((org, k), id) in todo.into_iter().zip(made) {
            ids[org][k] = id.clone();
            levels[level - 1].push(id);
        }
    }
    let groups: Vec<String> = ids.into_iter().flatten().collect();
    phase("groups (CreateGroup)", started, groups.len());

    // Memberships: each user in distinct random groups; a call per group and
    // thousand members.
    let started = Instant::now();
    let mut members: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for user in &users {
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < shape.memberships_per_user.min(groups.len()) {
            let g = rng.random_range(0..groups.len());
            if !picked.contains(&g) {
                picked.push(g);
            }
        }
        for g in picked {
            members.entry(g).or_default().push(user.clone());
        }
    }
    let calls: Vec<(usize, Vec<String>)> = members
        .into_iter()
        .flat_map(|(g, users)| {
            users
                .chunks(1000)
                .map(|c| (g, c.to_vec()))
                .collect::<Vec<_>>()
        })
        .collect();
    let added = each(concurrency, calls, |(g, user_ids)| {
        let mut client = clients.directory.clone();
        let request = pb::AddGroupMembersRequest {
            tenant_id: tenant_id.clone(),
            group_id: groups[g].clone(),
            user_ids,
        };
        async move {
            let reply = client.add_group_members(request).await?.into_inner();
            Ok(reply.added_user_ids.len())
        }
    })
    .await?;
    phase("memberships (AddGroupMembers)", started, added.iter().sum());

    // Administrators.
    let started = Instant::now();
    let eligible: Vec<&String> = users
        .iter()
        .enumerate()
        .filter(|(i, _)| roles_of(*i).contains(&catalog_pb::Role::GlobalAdminGroupAdministrator))
        .map(|(_, u)| u)
        .collect();
    let administered: Vec<(String, String)> = levels
        .iter()
        .take(2)
        .flatten()
        .filter_map(|g| eligible.choose(&mut rng).map(|u| (g.clone(), (*u).clone())))
        .collect();
    let mut administrators: Vec<String> = administered.iter().map(|(_, u)| u.clone()).collect();
    administrators.sort();
    administrators.dedup();
    let revisions = each(concurrency, administered, |(group, user)| {
        let mut client = clients.directory.clone();
        let request = pb::SetGroupAdministratorsRequest {
            tenant_id: tenant_id.clone(),
            group_id: group,
            user_ids: vec![user],
            etag: String::new(),
        };
        async move {
            Ok(client
                .set_group_administrators(request)
                .await?
                .into_inner()
                .revision)
        }
    })
    .await?;
    phase("administrators", started, revisions.len());
    let revision = clients
        .directory
        .clone()
        .get_tenant(pb::GetTenantRequest {
            tenant_id: tenant_id.clone(),
        })
        .await?
        .into_inner()
        .tenant
        .map(|t| t.revision)
        .unwrap_or_default();
    eprintln!(
        "seeded tenant {tenant_id} at revision {revision} in {:.1} s",
        all.elapsed().as_secs_f64()
    );
    Ok(Manifest {
        tenant_id,
        shape: shape.clone(),
        users,
        levels,
        administrators,
        revision,
    })
}
