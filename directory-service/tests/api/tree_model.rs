//! A randomized test of the group tree against a deliberately simple reference
//! model: random creates, moves, flag toggles, deletions (with and without cascade)
//! and membership changes are applied to the store and to the model; every call
//! must be accepted or refused exactly as the model says, and the final state
//! (parents, flags, counters, members) must be the model's.

use std::collections::{BTreeMap, BTreeSet};

use cohort_directory::domain::{
    DisplayName, Email, GroupFilter, GroupId, GroupUpdate, NewGroup, NewTenant, NewUser,
    PageRequest, TenantId, UserId, WriteContext,
};
use cohort_directory::storage::StoreError;
use cohort_shared::catalog::{Role, RoleSet};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::TestApp;

const SEEDS: u64 = 3;
const STEPS: usize = 120;
const NAMES: [&str; 4] = ["red", "Red", "blue", "green"];

/// What a call should do.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound,
    Invalid,
    Exists,
    Refused(&'static str),
}

fn outcome<T>(result: Result<T, StoreError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(StoreError::NotFound { .. }) => Outcome::NotFound,
        Err(StoreError::InvalidArgument { .. }) => Outcome::Invalid,
        Err(StoreError::AlreadyExists { .. }) => Outcome::Exists,
        Err(StoreError::Rule(violation)) => Outcome::Refused(violation.reason()),
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

#[derive(Debug, Clone)]
struct ModelGroup {
    parent: Option<GroupId>,
    organization: bool,
    name: String,
}

#[derive(Default)]
struct Model {
    groups: BTreeMap<GroupId, ModelGroup>,
    members: BTreeSet<(GroupId, UserId)>,
}

impl Model {
    fn children(&self, group: GroupId) -> Vec<GroupId> {
        self.groups
            .iter()
            .filter(|(_, g)| g.parent == Some(group))
            .map(|(id, _)| *id)
            .collect()
    }

    fn subtree(&self, group: GroupId) -> Vec<GroupId> {
        let mut out = vec![group];
        let mut i = 0;
        while i < out.len() {
            out.extend(self.children(out[i]));
            i += 1;
        }
        out
    }

    fn name_taken(&self, parent: Option<GroupId>, name: &str, except: Option<GroupId>) -> bool {
        self.groups.iter().any(|(id, g)| {
            Some(*id) != except
                && g.parent == parent
                && g.name.to_lowercase() == name.to_lowercase()
        })
    }

    fn create(&self, parent: Option<GroupId>, organization: bool, name: &str) -> Outcome {
        if organization && parent.is_some() {
            Outcome::Invalid
        } else if parent.is_some_and(|p| !self.groups.contains_key(&p)) {
            Outcome::NotFound
        } else if self.name_taken(parent, name, None) {
            Outcome::Exists
        } else {
            Outcome::Ok
        }
    }

    fn move_to(&self, group: GroupId, parent: Option<GroupId>) -> Outcome {
        let Some(g) = self.groups.get(&group) else {
            return Outcome::NotFound;
        };
        if g.parent == parent {
            return Outcome::Ok;
        }
        if let Some(parent) = parent {
            if g.organization {
                return Outcome::Refused("ORGANIZATION_CANNOT_BE_NESTED");
            }
            if !self.groups.contains_key(&parent) {
                return Outcome::NotFound;
            }
            if self.subtree(group).contains(&parent) {
                return Outcome::Refused("WOULD_CREATE_CYCLE");
            }
        }
        if self.name_taken(parent, &g.name, Some(group)) {
            return Outcome::Exists;
        }
        Outcome::Ok
    }

    fn delete(&self, group: GroupId, cascade: bool) -> Outcome {
        if !self.groups.contains_key(&group) {
            Outcome::NotFound
        } else if !cascade
            && (!self.children(group).is_empty() || self.members.iter().any(|(g, _)| *g == group))
        {
            Outcome::Refused("GROUP_NOT_EMPTY")
        } else {
            Outcome::Ok
        }
    }

    fn set_flag(&self, group: GroupId, flag: bool) -> Outcome {
        match self.groups.get(&group) {
            None => Outcome::NotFound,
            Some(g) if flag && g.parent.is_some() => Outcome::Refused("NOT_TOP_LEVEL"),
            Some(_) => Outcome::Ok,
        }
    }
}

async fn random_histories_match_the_reference_model(app: &TestApp) {
    for seed in 0..SEEDS {
        run_history(app, seed).await;
    }
}

async fn run_history(app: &TestApp, seed: u64) {
    let store = &app.store;
    let ctx = WriteContext::new("model-test");
    let name = |raw: &str| DisplayName::parse("display_name", raw).unwrap();
    let created = store
        .create_tenant(
            &ctx,
            NewTenant {
                display_name: name("Model"),
                admin_display_name: name("Admin"),
                admin_email: Email::parse("e", "admin@model.test").unwrap(),
                request_id: None,
            },
        )
        .await
        .unwrap();
    let tenant: TenantId = created.value.0.id;
    let mut users = Vec::new();
    for i in 0..4 {
        let new = NewUser {
            display_name: name(&format!("U{i}")),
            email: Email::parse("e", &format!("u{i}@model.test")).unwrap(),
            roles: RoleSet::new([Role::GlobalAdminUser]).unwrap(),
            request_id: None,
        };
        users.push(store.create_user(&ctx, tenant, new).await.unwrap().value.id);
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    // Known ids plus one that never exists, so NOT_FOUND paths are exercised too.
    let ghost = GroupId::generate();
    for step in 0..STEPS {
        let known: Vec<GroupId> = model.groups.keys().copied().chain([ghost]).collect();
        let any_group = |rng: &mut StdRng| known[rng.random_range(0..known.len())];
        let maybe_group = |rng: &mut StdRng| {
            if rng.random_bool(0.3) {
                None
            } else {
                Some(any_group(rng))
            }
        };
        let context = format!("seed {seed} step {step}");
        match rng.random_range(0..10) {
            0..=2 => {
                let parent = maybe_group(&mut rng);
                let organization =
                    parent.is_none() && rng.random_bool(0.5) || rng.random_bool(0.05);
                let group_name = NAMES[rng.random_range(0..NAMES.len())];
                let expected = model.create(parent, organization, group_name);
                let new = NewGroup {
                    display_name: name(group_name),
                    parent_id: parent,
                    is_organization: organization,
                    inherited_roles: Vec::new(),
                    request_id: None,
                };
                let result = store.create_group(&ctx, tenant, new).await;
                if let Ok(written) = &result {
                    model.groups.insert(
                        written.value.id,
                        ModelGroup {
                            parent,
                            organization,
                            name: group_name.into(),
                        },
                    );
                }
                assert_eq!(outcome(result), expected, "{context}: create");
            }
            3 | 4 => {
                let (group, parent) = (any_group(&mut rng), maybe_group(&mut rng));
                let expected = model.move_to(group, parent);
                let result = store.move_group(&ctx, tenant, group, parent, None).await;
                if result.is_ok() {
                    model.groups.get_mut(&group).unwrap().parent = parent;
                }
                assert_eq!(outcome(result), expected, "{context}: move");
            }
            5 => {
                let (group, cascade) = (any_group(&mut rng), rng.random_bool(0.5));
                let expected = model.delete(group, cascade);
                let result = store.delete_group(&ctx, tenant, group, cascade, None).await;
                if result.is_ok() {
                    for gone in model.subtree(group) {
                        model.groups.remove(&gone);
                        model.members.retain(|(g, _)| *g != gone);
                    }
                }
                assert_eq!(outcome(result), expected, "{context}: delete");
            }
            6 => {
                let (group, flag) = (any_group(&mut rng), rng.random_bool(0.5));
                let expected = model.set_flag(group, flag);
                let update = GroupUpdate {
                    is_organization: Some(flag),
                    ..Default::default()
                };
                let result = store.update_group(&ctx, tenant, group, update).await;
                if result.is_ok() {
                    model.groups.get_mut(&group).unwrap().organization = flag;
                }
                assert_eq!(outcome(result), expected, "{context}: flag");
            }
            _ => {
                let (group, user) = (any_group(&mut rng), users[rng.random_range(0..users.len())]);
                let add = rng.random_bool(0.6);
                let expected = if model.groups.contains_key(&group) {
                    Outcome::Ok
                } else {
                    Outcome::NotFound
                };
                let result = if add {
                    store.add_members(&ctx, tenant, group, vec![user]).await
                } else {
                    store.remove_members(&ctx, tenant, group, vec![user]).await
                };
                if result.is_ok() {
                    if add {
                        model.members.insert((group, user));
                    } else {
                        model.members.remove(&(group, user));
                    }
                }
                assert_eq!(outcome(result), expected, "{context}: membership");
            }
        }
    }

    let stored = store
        .list_groups(tenant, &GroupFilter::default(), &PageRequest::first(10_000))
        .await
        .unwrap()
        .items;
    assert_eq!(stored.len(), model.groups.len(), "seed {seed}: group count");
    for group in stored {
        let expected = &model.groups[&group.id];
        assert_eq!(
            group.parent_id, expected.parent,
            "seed {seed}: parent of {}",
            group.id
        );
        assert_eq!(
            group.is_organization, expected.organization,
            "seed {seed}: flag of {}",
            group.id
        );
        assert_eq!(
            group.subgroup_count,
            model.children(group.id).len() as i64,
            "seed {seed}: subgroups of {}",
            group.id
        );
        let members: BTreeSet<UserId> = model
            .members
            .iter()
            .filter(|(g, _)| *g == group.id)
            .map(|(_, u)| *u)
            .collect();
        assert_eq!(
            group.member_count,
            members.len() as i64,
            "seed {seed}: member count of {}",
            group.id
        );
        let listed = store
            .list_members(tenant, group.id, false, &PageRequest::first(1000))
            .await
            .unwrap()
            .items;
        assert_eq!(
            listed.iter().map(|u| u.id).collect::<BTreeSet<_>>(),
            members,
            "seed {seed}: members of {}",
            group.id
        );
    }
}

crate::on_both_backends!(random_histories_match_the_reference_model);
