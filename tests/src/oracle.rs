//! A deliberately simple reference model of DOMAIN.md's role semantics, for the
//! randomized tests: the world as plain maps, answers by brute force (every group
//! is asked whether the user is in it; every scope is expanded by walking parents).
//! It shares nothing with the authorization engine but the role catalog.
//!
//! One file on purpose: the model is meant to be read top to bottom against
//! DOMAIN.md, rule by rule.

use std::collections::{BTreeMap, BTreeSet};

use cohort_authz::domain::{Change, GroupId, Resource, SuppressReason, UserId};
use cohort_shared::catalog::{self, Role, RoleSet, ScopeKind, Tool};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use uuid::Uuid;

/// Per tool: held roles with their granting groups (`None` = direct), and the
/// suppressed ones with the reason.
pub type ToolOutcome = (
    Vec<(Role, Vec<Option<GroupId>>)>,
    Vec<(Role, SuppressReason)>,
);

#[derive(Debug, Clone)]
pub struct Group {
    pub parent: Option<GroupId>,
    pub organization: bool,
    pub inherited: BTreeMap<Tool, Role>,
}

#[derive(Debug, Clone, Default)]
pub struct World {
    pub users: BTreeMap<UserId, (Vec<Role>, bool)>,
    pub groups: BTreeMap<GroupId, Group>,
    /// (user, group) -> join revision
    pub members: BTreeMap<(UserId, GroupId), i64>,
    pub admins: BTreeSet<(GroupId, UserId)>,
    pub catalogs: BTreeSet<(GroupId, String)>,
    pub revision: i64,
}

impl World {
    pub fn is_ancestor_or_self(&self, ancestor: GroupId, group: GroupId) -> bool {
        let mut current = Some(group);
        while let Some(g) = current {
            if g == ancestor {
                return true;
            }
            current = self.groups[&g].parent;
        }
        false
    }

    pub fn root(&self, group: GroupId) -> GroupId {
        let mut g = group;
        while let Some(parent) = self.groups[&g].parent {
            g = parent;
        }
        g
    }

    pub fn active(&self, group: GroupId) -> bool {
        let g = &self.groups[&group];
        g.parent.is_none() && g.organization
    }

    /// The earliest join through which the user is in `group` (directly or through
    /// a subgroup), if they are.
    pub fn joined(&self, user: UserId, group: GroupId) -> Option<i64> {
        self.members
            .iter()
            .filter(|((u, g), _)| *u == user && self.is_ancestor_or_self(group, *g))
            .map(|(_, join)| *join)
            .min()
    }

    /// Per tool: held roles with their granting groups (None = direct), and the
    /// suppressed ones with the reason.
    #[allow(clippy::type_complexity)]
    pub fn roles(
        &self,
        user: UserId,
    ) -> BTreeMap<
        Tool,
        (
            Vec<(Role, Vec<Option<GroupId>>)>,
            Vec<(Role, SuppressReason)>,
        ),
    > {
        let (direct, suspended) = &self.users[&user];
        let mut out = BTreeMap::new();
        if *suspended {
            return out;
        }
        let mut offers: Vec<(i64, GroupId, Role)> = Vec::new();
        for (id, group) in &self.groups {
            if let Some(join) = self.joined(user, *id) {
                for role in group.inherited.values() {
                    offers.push((join, *id, *role));
                }
            }
        }
        offers.sort();
        let mut global_admin = None;
        for tool in Tool::ALL {
            let mut held: Vec<(Role, Vec<Option<GroupId>>)> = direct
                .iter()
                .filter(|r| r.tool() == tool)
                .map(|r| (*r, vec![None]))
                .collect();
            let mut suppressed = Vec::new();
            for (_, group, role) in offers.iter().filter(|o| o.2.tool() == tool) {
                if *role == Role::LmsGroupAdministrator
                    && global_admin != Some(Role::GlobalAdminGroupAdministrator)
                {
                    suppressed.push((*role, SuppressReason::RequiresGlobalAdminGroupAdministrator));
                } else if let Some(entry) = held.iter_mut().find(|(r, _)| r == role) {
                    entry.1.push(Some(*group));
                } else {
                    let conflicting: Vec<Role> = held
                        .iter()
                        .map(|(r, _)| *r)
                        .filter(|r| !role.is_compatible_with(*r))
                        .collect();
                    match conflicting.iter().find(|c| !role.contains(**c)) {
                        Some(prevailing) => {
                            suppressed.push((*role, SuppressReason::IncompatibleWith(*prevailing)))
                        }
                        None => {
                            held.retain(|(r, _)| !conflicting.contains(r));
                            held.push((*role, vec![Some(*group)]));
                        }
                    }
                }
            }
            if tool == Tool::GlobalAdmin {
                global_admin = held.first().map(|(r, _)| *r);
            }
            out.insert(tool, (held, suppressed));
        }
        out
    }

    /// The groups a scope reaches (each with its subgroups); `None` for the tenant.
    pub fn scope(
        &self,
        user: UserId,
        sources: &[Option<GroupId>],
        kind: ScopeKind,
    ) -> Option<Vec<GroupId>> {
        match kind {
            ScopeKind::Tenant => None,
            ScopeKind::Own => Some(Vec::new()),
            ScopeKind::AdministeredGroups => Some(
                sources
                    .iter()
                    .flat_map(|s| match s {
                        None => self
                            .admins
                            .iter()
                            .filter(|(_, u)| *u == user)
                            .map(|(g, _)| *g)
                            .collect::<Vec<_>>(),
                        Some(g) => vec![*g],
                    })
                    .collect(),
            ),
            ScopeKind::MemberGroups => Some(
                self.groups
                    .keys()
                    .copied()
                    .filter(|g| self.joined(user, *g).is_some())
                    .collect(),
            ),
        }
    }

    /// Whether a check of `permission` on `resource` is a question at all: a
    /// permission some role grants on own content and none on groups is about
    /// its owner, so it is asked of users only (else INVALID_ARGUMENT).
    pub fn applies(permission: &str, resource: &Resource) -> bool {
        let scopes: Vec<ScopeKind> = Role::ALL
            .iter()
            .flat_map(|r| r.grants())
            .filter(|g| g.permission == permission)
            .map(|g| g.scope)
            .collect();
        let own_only = scopes.contains(&ScopeKind::Own)
            && !scopes.contains(&ScopeKind::AdministeredGroups)
            && !scopes.contains(&ScopeKind::MemberGroups);
        !own_only || matches!(resource, Resource::User(_))
    }

    pub fn check(&self, user: UserId, permission: &str, resource: &Resource) -> bool {
        let feature = catalog::is_organization_feature(permission);
        for (held, _) in self.roles(user).values() {
            for (role, sources) in held {
                for grant in role.grants().iter().filter(|g| g.permission == permission) {
                    if grant.scope == ScopeKind::Own {
                        if *resource == Resource::User(user) {
                            return true;
                        }
                        continue;
                    }
                    let scope = self.scope(user, sources, grant.scope);
                    let reaches = |g: GroupId| {
                        scope
                            .as_ref()
                            .is_none_or(|s| s.iter().any(|a| self.is_ancestor_or_self(*a, g)))
                    };
                    let allowed = match resource {
                        Resource::Tenant => scope.is_none(),
                        Resource::Group(g) => {
                            reaches(*g) && (!feature || self.active(self.root(*g)))
                        }
                        Resource::User(v) => {
                            (scope.is_none() && !feature)
                                || self.members.keys().any(|(u, g)| {
                                    u == v
                                        && reaches(*g)
                                        && (!feature || self.active(self.root(*g)))
                                })
                        }
                        Resource::Catalog(c) => self
                            .catalogs
                            .iter()
                            .any(|(g, cat)| cat == c && self.active(*g) && reaches(*g)),
                    };
                    if allowed {
                        return true;
                    }
                }
            }
        }
        false
    }

    pub fn holds_role_on(&self, user: UserId, role: Role, group: GroupId) -> bool {
        self.holds_role_on_with(&self.roles(user), user, role, group)
    }

    /// [`World::holds_role_on`], with the user's roles already worked out.
    pub fn holds_role_on_with(
        &self,
        roles: &BTreeMap<Tool, ToolOutcome>,
        user: UserId,
        role: Role,
        group: GroupId,
    ) -> bool {
        let Some((_, sources)) = roles
            .values()
            .flat_map(|(h, _)| h)
            .find(|(r, _)| *r == role)
        else {
            return false;
        };
        let kinds: Vec<ScopeKind> = role.grants().iter().map(|g| g.scope).collect();
        let kind = [
            ScopeKind::AdministeredGroups,
            ScopeKind::MemberGroups,
            ScopeKind::Tenant,
        ]
        .into_iter()
        .find(|k| kinds.contains(k))
        .unwrap_or(ScopeKind::MemberGroups);
        match self.scope(user, sources, kind) {
            None => true,
            Some(scope) => scope.iter().any(|a| self.is_ancestor_or_self(*a, group)),
        }
    }
}

// ------------------------------------------------------------------ random worlds

/// Random valid direct roles (as the directory would accept them).
pub fn random_roles(rng: &mut StdRng) -> Vec<Role> {
    loop {
        let mut picks = vec![*Tool::GlobalAdmin.roles().choose(rng).unwrap()];
        for _ in 0..rng.random_range(0..4) {
            picks.push(*Role::ALL.choose(rng).unwrap());
        }
        if let Ok(set) = RoleSet::new(picks) {
            return set.roles().to_vec();
        }
    }
}

pub fn random_inherited(rng: &mut StdRng) -> BTreeMap<Tool, Role> {
    let mut inherited = BTreeMap::new();
    for _ in 0..rng.random_range(0..3) {
        let role = *Role::ALL.choose(rng).unwrap();
        inherited.insert(role.tool(), role);
    }
    inherited
}

pub fn eligible(world: &World, user: UserId) -> bool {
    world.users[&user]
        .0
        .contains(&Role::GlobalAdminGroupAdministrator)
}

/// How large a random world is: each count drawn from its range.
#[derive(Debug, Clone)]
pub struct Shape {
    pub users: std::ops::Range<usize>,
    pub groups: std::ops::Range<usize>,
    /// Attempts at a membership (a repeated pair counts once).
    pub memberships: std::ops::Range<usize>,
    /// Attempts at an administrator (ineligible users are skipped).
    pub administrators: std::ops::Range<usize>,
    pub catalogs: std::ops::Range<usize>,
}

impl Shape {
    /// The worlds of the engine's oracle test: a handful of each.
    pub const SMALL: Shape = Shape {
        users: 3..9,
        groups: 2..10,
        memberships: 0..12,
        administrators: 0..4,
        catalogs: 0..3,
    };
}

impl World {
    pub fn random(rng: &mut StdRng) -> World {
        World::random_shaped(rng, &Shape::SMALL)
    }

    pub fn random_shaped(rng: &mut StdRng, shape: &Shape) -> World {
        let mut w = World::default();
        for _ in 0..rng.random_range(shape.users.clone()) {
            let suspended = rng.random_bool(0.1);
            w.users
                .insert(UserId(Uuid::new_v4()), (random_roles(rng), suspended));
        }
        for _ in 0..rng.random_range(shape.groups.clone()) {
            let ids: Vec<GroupId> = w.groups.keys().copied().collect();
            let parent = if ids.is_empty() || rng.random_bool(0.4) {
                None
            } else {
                Some(*ids.choose(rng).unwrap())
            };
            let organization = parent.is_none() && rng.random_bool(0.7);
            w.groups.insert(
                GroupId(Uuid::new_v4()),
                Group {
                    parent,
                    organization,
                    inherited: random_inherited(rng),
                },
            );
        }
        let users: Vec<UserId> = w.users.keys().copied().collect();
        let groups: Vec<GroupId> = w.groups.keys().copied().collect();
        for _ in 0..rng.random_range(shape.memberships.clone()) {
            w.revision += 1;
            let key = (*users.choose(rng).unwrap(), *groups.choose(rng).unwrap());
            w.members.entry(key).or_insert(w.revision);
        }
        for _ in 0..rng.random_range(shape.administrators.clone()) {
            let user = *users.choose(rng).unwrap();
            if eligible(&w, user) {
                w.admins.insert((*groups.choose(rng).unwrap(), user));
            }
        }
        for _ in 0..rng.random_range(shape.catalogs.clone()) {
            let group = *groups.choose(rng).unwrap();
            if w.groups[&group].parent.is_none() {
                w.catalogs
                    .insert((group, format!("cat-{}", rng.random_range(0..3))));
            }
        }
        w
    }

    /// The world as the changes of a snapshot.
    pub fn changes(&self) -> Vec<Change> {
        let mut changes = Vec::new();
        for (id, (roles, suspended)) in &self.users {
            changes.push(Change::UserUpserted {
                id: *id,
                roles: roles.clone(),
                suspended: *suspended,
            });
        }
        for (id, g) in &self.groups {
            changes.push(Change::GroupUpserted {
                id: *id,
                parent: g.parent,
                is_organization: g.organization,
                inherited: g.inherited.values().copied().collect(),
            });
        }
        for ((user, group), join) in &self.members {
            changes.push(Change::MembershipAdded {
                group: *group,
                user: *user,
                join_revision: *join,
            });
        }
        for group in self.groups.keys() {
            let users: Vec<UserId> = self
                .admins
                .iter()
                .filter(|(g, _)| g == group)
                .map(|(_, u)| *u)
                .collect();
            if !users.is_empty() {
                changes.push(Change::AdministratorsChanged {
                    group: *group,
                    users,
                });
            }
        }
        for (group, catalog) in &self.catalogs {
            changes.push(Change::CatalogAssigned {
                group: *group,
                catalog: catalog.clone(),
            });
        }
        changes
    }

    pub fn subtree(&self, group: GroupId) -> Vec<GroupId> {
        self.groups
            .keys()
            .copied()
            .filter(|g| self.is_ancestor_or_self(group, *g))
            .collect()
    }

    /// One random change, applied to the world and returned for the engine.
    pub fn mutate(&mut self, rng: &mut StdRng) -> Vec<Change> {
        let users: Vec<UserId> = self.users.keys().copied().collect();
        let groups: Vec<GroupId> = self.groups.keys().copied().collect();
        if users.is_empty() || groups.is_empty() {
            return Vec::new();
        }
        let user = *users.choose(rng).unwrap();
        let group = *groups.choose(rng).unwrap();
        self.revision += 1;
        match rng.random_range(0..10) {
            0 => {
                self.members.entry((user, group)).or_insert(self.revision);
                vec![Change::MembershipAdded {
                    group,
                    user,
                    join_revision: self.members[&(user, group)],
                }]
            }
            1 => {
                self.members.remove(&(user, group));
                vec![Change::MembershipRemoved { group, user }]
            }
            2 => {
                let roles = random_roles(rng);
                let keeps_eligibility = roles.contains(&Role::GlobalAdminGroupAdministrator);
                if !keeps_eligibility && self.admins.iter().any(|(_, u)| *u == user) {
                    return Vec::new(); // the directory refuses this
                }
                let suspended = rng.random_bool(0.15);
                self.users.insert(user, (roles.clone(), suspended));
                vec![Change::UserUpserted {
                    id: user,
                    roles,
                    suspended,
                }]
            }
            3 => {
                self.users.remove(&user);
                self.members.retain(|(u, _), _| *u != user);
                self.admins.retain(|(_, u)| *u != user);
                vec![Change::UserDeleted { id: user }]
            }
            4 => {
                let gone = self.subtree(group);
                for g in &gone {
                    self.groups.remove(g);
                }
                self.members.retain(|(_, g), _| !gone.contains(g));
                self.admins.retain(|(g, _)| !gone.contains(g));
                self.catalogs.retain(|(g, _)| !gone.contains(g));
                gone.into_iter()
                    .map(|id| Change::GroupDeleted { id })
                    .collect()
            }
            5 => {
                // Move under a group outside its subtree, or to the top.
                let subtree = self.subtree(group);
                let targets: Vec<GroupId> = groups
                    .iter()
                    .copied()
                    .filter(|g| !subtree.contains(g))
                    .collect();
                let g = self.groups.get_mut(&group).unwrap();
                let parent = if rng.random_bool(0.3) {
                    None
                } else {
                    targets.choose(rng).copied()
                };
                if parent.is_some()
                    && (g.organization || self.catalogs.iter().any(|(c, _)| *c == group))
                {
                    return Vec::new(); // the directory refuses these moves
                }
                let g = self.groups.get_mut(&group).unwrap();
                g.parent = parent;
                vec![Change::GroupUpserted {
                    id: group,
                    parent,
                    is_organization: g.organization,
                    inherited: g.inherited.values().copied().collect(),
                }]
            }
            6 => {
                let g = self.groups.get_mut(&group).unwrap();
                if g.parent.is_some() {
                    return Vec::new();
                }
                g.organization = !g.organization;
                vec![Change::GroupUpserted {
                    id: group,
                    parent: None,
                    is_organization: g.organization,
                    inherited: g.inherited.values().copied().collect(),
                }]
            }
            7 => {
                let tool = *Tool::ALL.choose(rng).unwrap();
                let role = rng
                    .random_bool(0.7)
                    .then(|| *tool.roles().choose(rng).unwrap());
                let g = self.groups.get_mut(&group).unwrap();
                match role {
                    Some(role) => g.inherited.insert(tool, role),
                    None => g.inherited.remove(&tool),
                };
                vec![Change::InheritedRoleChanged { group, tool, role }]
            }
            8 => {
                let candidates: Vec<UserId> = users
                    .iter()
                    .copied()
                    .filter(|u| eligible(self, *u) && rng.random_bool(0.5))
                    .collect();
                // The directory replaces a set, adds to it or removes from it;
                // a large set also arrives as a replacement and then additions.
                match rng.random_range(0..4) {
                    0 => {
                        self.admins.retain(|(g, _)| *g != group);
                        for u in &candidates {
                            self.admins.insert((group, *u));
                        }
                        vec![Change::AdministratorsChanged {
                            group,
                            users: candidates,
                        }]
                    }
                    1 => {
                        self.admins.retain(|(g, _)| *g != group);
                        for u in &candidates {
                            self.admins.insert((group, *u));
                        }
                        let (first, rest) = candidates.split_at(candidates.len() / 2);
                        vec![
                            Change::AdministratorsChanged {
                                group,
                                users: first.to_vec(),
                            },
                            Change::AdministratorsAdded {
                                group,
                                users: rest.to_vec(),
                            },
                        ]
                    }
                    2 => {
                        for u in &candidates {
                            self.admins.insert((group, *u));
                        }
                        vec![Change::AdministratorsAdded {
                            group,
                            users: candidates,
                        }]
                    }
                    _ => {
                        let leaving: Vec<UserId> = users
                            .iter()
                            .copied()
                            .filter(|_| rng.random_bool(0.5))
                            .collect();
                        for u in &leaving {
                            self.admins.remove(&(group, *u));
                        }
                        vec![Change::AdministratorsRemoved {
                            group,
                            users: leaving,
                        }]
                    }
                }
            }
            _ => {
                let catalog = format!("cat-{}", rng.random_range(0..3));
                if self.catalogs.remove(&(group, catalog.clone())) {
                    vec![Change::CatalogUnassigned { group, catalog }]
                } else if self.groups[&group].parent.is_none() && self.groups[&group].organization {
                    self.catalogs.insert((group, catalog.clone()));
                    vec![Change::CatalogAssigned { group, catalog }]
                } else {
                    Vec::new()
                }
            }
        }
    }
}
