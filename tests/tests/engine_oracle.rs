//! The authorization engine against the reference model (`cohort_tests::oracle`).
//!
//! The oracle keeps the world as plain maps and answers by brute force (every
//! group is asked whether the user is in it; every scope is expanded by walking
//! parents), following DOMAIN.md's wording. Random worlds are fed to the engine as
//! changes in shuffled order (as a snapshot may be), then changed at random, and
//! after every round every user's roles, every check and every lookup must agree.

use cohort_authz::domain::REACH_ORDER;
use cohort_authz::domain::{
    check, lookup_groups, lookup_subjects, resolve, resolve_with, CheckError, Detail, GroupId,
    Holding, Reach, Resource, Source, SuppressReason, TenantState, UserId,
};
use cohort_shared::catalog::{self, Role, ScopeKind};
use cohort_tests::oracle::World;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const WORLDS: u64 = 40;
const ROUNDS: usize = 6;

// ------------------------------------------------------------------ the comparison

fn compare(world: &World, state: &TenantState, context: &str) {
    let users: Vec<UserId> = world.users.keys().copied().collect();
    let groups: Vec<GroupId> = world.groups.keys().copied().collect();
    assert_eq!(state.user_ids(), users, "{context}: users");
    assert_eq!(state.group_ids(), groups, "{context}: groups");

    for user in &users {
        let expected = world.roles(*user);
        let resolution = resolve(state, *user).unwrap();
        // The basic detail is the same resolution without the reaches.
        let mut without_reaches = resolution.clone();
        without_reaches
            .tools
            .iter_mut()
            .flat_map(|(_, t)| t.roles.iter_mut())
            .for_each(|held| held.reaches = None);
        assert_eq!(
            resolve_with(state, *user, Detail::Roles).unwrap(),
            without_reaches,
            "{context}: roles of {user} without their reaches"
        );
        for (tool, tool_roles) in &resolution.tools {
            let (held, suppressed) = expected.get(tool).cloned().unwrap_or_default();
            let got: Vec<(Role, Vec<Option<GroupId>>)> = tool_roles
                .roles
                .iter()
                .map(|h| {
                    let sources = h
                        .sources
                        .iter()
                        .map(|s| match s {
                            Source::Direct => None,
                            Source::Inherited(via) => Some(via.group),
                        })
                        .collect();
                    (h.role, sources)
                })
                .collect();
            assert_eq!(got, held, "{context}: held {tool:?} roles of {user}");
            // Where each permission of each held role reaches, against the oracle's
            // scopes, kind by kind.
            for (held_role, (role, sources)) in tool_roles.roles.iter().zip(&held) {
                let reaches = &held_role
                    .reaches
                    .as_ref()
                    .expect("reaches asked for")
                    .by_kind;
                let mut kinds: Vec<ScopeKind> = role.grants().iter().map(|g| g.scope).collect();
                kinds.sort_by_key(|k| REACH_ORDER.iter().position(|o| o == k));
                kinds.dedup();
                let got: Vec<ScopeKind> = reaches.iter().map(|r| r.kind).collect();
                assert_eq!(got, kinds, "{context}: reach kinds of {role} for {user}");
                for reach in reaches {
                    let expected = match world.scope(*user, sources, reach.kind) {
                        None => Reach::Tenant,
                        Some(_) if reach.kind == ScopeKind::Own => Reach::Own,
                        Some(mut groups) => {
                            groups.sort();
                            groups.dedup();
                            Reach::Groups(groups)
                        }
                    };
                    assert_eq!(
                        reach.reach, expected,
                        "{context}: {:?} reach of {role} for {user}",
                        reach.kind
                    );
                    let mut permissions: Vec<&str> = role
                        .grants()
                        .iter()
                        .filter(|g| g.scope == reach.kind)
                        .map(|g| g.permission)
                        .collect();
                    permissions.sort();
                    assert_eq!(reach.permissions, permissions);
                }
            }
            let got: Vec<(Role, SuppressReason)> = tool_roles
                .suppressed
                .iter()
                .map(|s| (s.role, s.reason))
                .collect();
            assert_eq!(
                got, suppressed,
                "{context}: suppressed {tool:?} roles of {user}"
            );
        }
    }

    let mut resources = vec![Resource::Tenant];
    resources.extend(groups.iter().map(|g| Resource::Group(*g)));
    resources.extend(users.iter().map(|u| Resource::User(*u)));
    resources.extend((0..3).map(|i| Resource::Catalog(format!("cat-{i}"))));
    let permissions = catalog::permissions();
    for user in &users {
        for permission in &permissions {
            for resource in &resources {
                let got = check(state, *user, permission, resource, false);
                if !World::applies(permission, resource) {
                    assert!(
                        matches!(got, Err(CheckError::NotApplicable { .. })),
                        "{context}: {user} {permission} on {resource:?} must be refused: {got:?}"
                    );
                    continue;
                }
                assert_eq!(
                    got.unwrap().allowed,
                    world.check(*user, permission, resource),
                    "{context}: {user} {permission} on {resource:?}"
                );
            }
            if !World::applies(permission, &Resource::Group(GroupId(uuid::Uuid::nil()))) {
                assert!(matches!(
                    lookup_groups(state, *user, permission),
                    Err(CheckError::NotApplicable { .. })
                ));
                continue;
            }
            let expected: Vec<GroupId> = groups
                .iter()
                .copied()
                .filter(|g| world.check(*user, permission, &Resource::Group(*g)))
                .collect();
            assert_eq!(
                lookup_groups(state, *user, permission).unwrap(),
                expected,
                "{context}: groups of {user} for {permission}"
            );
        }
    }
    for group in &groups {
        for permission in &permissions {
            if !World::applies(permission, &Resource::Group(*group)) {
                assert!(matches!(
                    lookup_subjects(state, *group, &Holding::Permission(permission.to_string())),
                    Err(CheckError::NotApplicable { .. })
                ));
                continue;
            }
            let expected: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| world.check(*u, permission, &Resource::Group(*group)))
                .collect();
            let got = lookup_subjects(state, *group, &Holding::Permission(permission.to_string()))
                .unwrap();
            assert_eq!(
                got, expected,
                "{context}: holders of {permission} on {group}"
            );
        }
        for role in Role::ALL {
            let expected: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| world.holds_role_on(*u, role, *group))
                .collect();
            let got = lookup_subjects(state, *group, &Holding::Role(role)).unwrap();
            assert_eq!(got, expected, "{context}: holders of {role} on {group}");
        }
    }
}

#[test]
fn the_engine_agrees_with_the_oracle_on_random_worlds_and_changes() {
    for seed in 0..WORLDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut world = World::random(&mut rng);
        let mut changes = world.changes();
        changes.shuffle(&mut rng);
        let mut state = TenantState::default();
        for change in changes {
            state.apply(change);
        }
        compare(&world, &state, &format!("world {seed}, snapshot"));
        for round in 0..ROUNDS {
            for _ in 0..rng.random_range(1..5) {
                for change in world.mutate(&mut rng) {
                    state.apply(change);
                }
            }
            compare(&world, &state, &format!("world {seed}, round {round}"));
        }
    }
}
