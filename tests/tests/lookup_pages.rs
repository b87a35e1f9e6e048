//! Paged reverse lookups against brute force, on random worlds larger and deeper
//! than the oracle test's, through random histories of changes.
//!
//! - Who holds a permission on a group: every user checked one by one (the engine's
//!   own check, itself held to the reference model by `engine_oracle`).
//! - Who holds a role on a group: every user asked of the reference model.
//! - On which groups a user holds a permission: every group checked one by one.
//!
//! Each lookup is read in pages of a random size, resuming after the last id of
//! the page before, and the pages together must be exactly the brute-force list,
//! in id order, with `more` set exactly when a page is followed by another. After
//! every change, the reverse indexes the engine keeps change by change must equal
//! indexes built from scratch; a state loaded in bulk must answer the same.

use cohort_authz::domain::{
    check, lookup_groups_page, lookup_subjects_page, Change, GroupId, Holding, Page, Resource,
    TenantState, UserId,
};
use cohort_shared::catalog::{self, Role};
use cohort_tests::oracle::{Shape, World};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const WORLDS: u64 = 24;
const ROUNDS: usize = 4;

const SHAPE: Shape = Shape {
    users: 8..28,
    groups: 4..16,
    memberships: 0..60,
    administrators: 0..8,
    catalogs: 0..3,
};

/// Every page of a lookup, concatenated, checking each page's `more`.
fn all_pages<T: Copy + std::fmt::Debug>(
    rng: &mut StdRng,
    context: &str,
    mut page: impl FnMut(Option<T>, usize) -> Page<T>,
) -> Vec<T> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let limit = rng.random_range(1..6);
        let Page { items, more } = page(after, limit);
        assert!(
            items.len() <= limit,
            "{context}: a page holds at most its size"
        );
        if more {
            assert_eq!(
                items.len(),
                limit,
                "{context}: only a full page is followed by more"
            );
        }
        all.extend(items.iter().copied());
        if !more {
            return all;
        }
        after = items.last().copied();
    }
}

fn compare(world: &World, state: &TenantState, rng: &mut StdRng, context: &str) {
    state
        .check_indexes()
        .unwrap_or_else(|e| panic!("{context}: {e}"));
    let users: Vec<UserId> = world.users.keys().copied().collect();
    let groups: Vec<GroupId> = world.groups.keys().copied().collect();
    // The permissions a lookup (about groups) can ask for; the others are
    // refused, which engine_oracle.rs checks.
    let permissions: Vec<&str> = catalog::permissions()
        .into_iter()
        .filter(|p| catalog::resource_kinds(p).contains(&catalog::ResourceKind::Group))
        .collect();
    let roles: Vec<_> = users.iter().map(|u| world.roles(*u)).collect();

    for group in &groups {
        for permission in &permissions {
            let expected: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| {
                    check(state, *u, permission, &Resource::Group(*group), false)
                        .unwrap()
                        .allowed
                })
                .collect();
            let holding = Holding::Permission(permission.to_string());
            let context = format!("{context}: holders of {permission} on {group}");
            let got = all_pages(rng, &context, |after, limit| {
                lookup_subjects_page(state, *group, &holding, after, limit).unwrap()
            });
            assert_eq!(got, expected, "{context}");
        }
        for role in Role::ALL {
            let expected: Vec<UserId> = users
                .iter()
                .zip(&roles)
                .filter(|(u, r)| world.holds_role_on_with(r, **u, role, *group))
                .map(|(u, _)| *u)
                .collect();
            let holding = Holding::Role(role);
            let context = format!("{context}: holders of {role} on {group}");
            let got = all_pages(rng, &context, |after, limit| {
                lookup_subjects_page(state, *group, &holding, after, limit).unwrap()
            });
            assert_eq!(got, expected, "{context}");
        }
    }
    for user in &users {
        for permission in &permissions {
            let expected: Vec<GroupId> = groups
                .iter()
                .copied()
                .filter(|g| {
                    check(state, *user, permission, &Resource::Group(*g), false)
                        .unwrap()
                        .allowed
                })
                .collect();
            let context = format!("{context}: groups of {user} for {permission}");
            let got = all_pages(rng, &context, |after, limit| {
                lookup_groups_page(state, *user, permission, after, limit).unwrap()
            });
            assert_eq!(got, expected, "{context}");
        }
    }
}

#[test]
fn paged_lookups_agree_with_brute_force_and_indexes_with_a_rebuild() {
    for seed in 0..WORLDS {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let mut world = World::random_shaped(&mut rng, &SHAPE);
        let mut changes: Vec<Change> = world.changes();
        changes.shuffle(&mut rng);

        // The same snapshot, change by change and in bulk.
        let mut state = TenantState::default();
        let mut bulk = TenantState::bulk();
        if seed % 2 == 0 {
            for change in &changes {
                state.apply(change.clone());
            }
        } else {
            state.apply_all(changes.clone());
        }
        for change in &changes {
            bulk.apply(change.clone());
        }
        bulk.finish_bulk();
        compare(&world, &state, &mut rng, &format!("world {seed}, snapshot"));
        compare(
            &world,
            &bulk,
            &mut rng,
            &format!("world {seed}, bulk snapshot"),
        );

        for round in 0..ROUNDS {
            for step in 0..rng.random_range(1..8) {
                if rng.random_bool(0.5) {
                    for change in world.mutate(&mut rng) {
                        let described = format!("{change:?}");
                        state.apply(change);
                        state.check_indexes().unwrap_or_else(|e| {
                            panic!(
                                "world {seed}, round {round}, step {step}, after {described}: {e}"
                            )
                        });
                    }
                } else {
                    // Several writes' changes as one set, as `apply_all` takes a
                    // change set: its additions' index changes apply together.
                    let changes: Vec<Change> = (0..rng.random_range(1..6))
                        .flat_map(|_| world.mutate(&mut rng))
                        .collect();
                    let described = format!("{changes:?}");
                    state.apply_all(changes);
                    state.check_indexes().unwrap_or_else(|e| {
                        panic!("world {seed}, round {round}, step {step}, after {described}: {e}")
                    });
                }
            }
            compare(
                &world,
                &state,
                &mut rng,
                &format!("world {seed}, round {round}"),
            );
        }

        // The state, written out as changes and loaded again in bulk, answers alike.
        let mut reloaded = TenantState::bulk();
        for change in state.changes() {
            reloaded.apply(change);
        }
        reloaded.finish_bulk();
        compare(
            &world,
            &reloaded,
            &mut rng,
            &format!("world {seed}, reloaded"),
        );
    }
}
