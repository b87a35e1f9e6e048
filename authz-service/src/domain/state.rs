//! One tenant's projected state, as the authorization service keeps it in memory:
//! users, groups and their relations, with interned ids (a `u32` slot per user and
//! per group) so that relations are plain integer lists.
//!
//! Changes apply idempotently and in any order within a snapshot: an id that is
//! referenced before it is upserted gets a placeholder slot, filled in later.

use std::collections::HashMap;

use cohort_shared::catalog::{Role, Tool};
use uuid::Uuid;

/// A tenant revision.
pub type Revision = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub Uuid);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A change to the projection (the directory's feed, in this service's terms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    UserUpserted {
        id: UserId,
        roles: Vec<Role>,
        suspended: bool,
    },
    /// Also removes the user's memberships and administrator entries.
    UserDeleted {
        id: UserId,
    },
    GroupUpserted {
        id: GroupId,
        parent: Option<GroupId>,
        is_organization: bool,
        inherited: Vec<Role>,
    },
    /// Also removes the group's memberships, administrators and catalogs.
    GroupDeleted {
        id: GroupId,
    },
    MembershipAdded {
        group: GroupId,
        user: UserId,
        join_revision: Revision,
    },
    MembershipRemoved {
        group: GroupId,
        user: UserId,
    },
    AdministratorsChanged {
        group: GroupId,
        users: Vec<UserId>,
    },
    InheritedRoleChanged {
        group: GroupId,
        tool: Tool,
        role: Option<Role>,
    },
    CatalogAssigned {
        group: GroupId,
        catalog: String,
    },
    CatalogUnassigned {
        group: GroupId,
        catalog: String,
    },
}

pub(crate) type UserSlot = u32;
pub(crate) type GroupSlot = u32;

#[derive(Debug, Clone)]
pub(crate) struct UserEntry {
    pub id: UserId,
    /// Direct roles.
    pub roles: Vec<Role>,
    pub suspended: bool,
    /// Direct memberships with their join revision, by group slot.
    pub memberships: Vec<(GroupSlot, Revision)>,
    /// Groups the user administers.
    pub administers: Vec<GroupSlot>,
}

#[derive(Debug, Clone)]
pub(crate) struct GroupEntry {
    pub id: GroupId,
    pub parent: Option<GroupSlot>,
    pub is_organization: bool,
    /// At most one role per tool.
    pub inherited: Vec<Role>,
    pub children: Vec<GroupSlot>,
    pub members: Vec<UserSlot>,
    pub administrators: Vec<UserSlot>,
    pub catalogs: Vec<String>,
}

/// One tenant's state at `revision`.
#[derive(Debug, Clone, Default)]
pub struct TenantState {
    pub revision: Revision,
    pub(crate) users: Vec<Option<UserEntry>>,
    user_slots: HashMap<UserId, UserSlot>,
    pub(crate) groups: Vec<Option<GroupEntry>>,
    group_slots: HashMap<GroupId, GroupSlot>,
    /// Catalog id to the groups it is assigned to.
    pub(crate) catalogs: HashMap<String, Vec<GroupSlot>>,
}

fn remove_value<T: PartialEq>(list: &mut Vec<T>, value: &T) {
    list.retain(|v| v != value);
}

fn add_value<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        list.push(value);
    }
}

impl TenantState {
    pub(crate) fn user_slot(&self, id: UserId) -> Option<UserSlot> {
        self.user_slots
            .get(&id)
            .copied()
            .filter(|s| self.users[*s as usize].is_some())
    }

    pub(crate) fn group_slot(&self, id: GroupId) -> Option<GroupSlot> {
        self.group_slots
            .get(&id)
            .copied()
            .filter(|s| self.groups[*s as usize].is_some())
    }

    pub(crate) fn user(&self, slot: UserSlot) -> &UserEntry {
        self.users[slot as usize]
            .as_ref()
            .expect("a live user slot")
    }

    pub(crate) fn group(&self, slot: GroupSlot) -> &GroupEntry {
        self.groups[slot as usize]
            .as_ref()
            .expect("a live group slot")
    }

    /// Every live user, in id order.
    pub fn user_ids(&self) -> Vec<UserId> {
        let mut ids: Vec<UserId> = self.users.iter().flatten().map(|u| u.id).collect();
        ids.sort();
        ids
    }

    /// Every live group, in id order.
    pub fn group_ids(&self) -> Vec<GroupId> {
        let mut ids: Vec<GroupId> = self.groups.iter().flatten().map(|g| g.id).collect();
        ids.sort();
        ids
    }

    pub fn has_user(&self, id: UserId) -> bool {
        self.user_slot(id).is_some()
    }

    pub fn has_group(&self, id: GroupId) -> bool {
        self.group_slot(id).is_some()
    }

    /// The group and its ancestors, from the group up.
    pub(crate) fn ancestors_or_self(&self, slot: GroupSlot) -> Vec<GroupSlot> {
        let mut chain = vec![slot];
        let mut current = self.group(slot).parent;
        while let Some(parent) = current {
            if chain.contains(&parent) {
                break; // never in a valid tree; a guard against a corrupt feed
            }
            chain.push(parent);
            current = self.groups[parent as usize].as_ref().and_then(|g| g.parent);
        }
        chain
    }

    /// The group's top-level ancestor (itself when top-level).
    pub(crate) fn root(&self, slot: GroupSlot) -> GroupSlot {
        *self
            .ancestors_or_self(slot)
            .last()
            .expect("a chain holds the group")
    }

    /// The group and all its descendants.
    pub(crate) fn subtree(&self, slot: GroupSlot) -> Vec<GroupSlot> {
        let mut all = vec![slot];
        let mut i = 0;
        while i < all.len() {
            all.extend(self.group(all[i]).children.iter().copied());
            i += 1;
        }
        all
    }

    /// Whether the group is an organization with its flag on.
    pub(crate) fn is_active_organization(&self, slot: GroupSlot) -> bool {
        let group = self.group(slot);
        group.parent.is_none() && group.is_organization
    }

    fn intern_user(&mut self, id: UserId) -> UserSlot {
        if let Some(slot) = self.user_slots.get(&id) {
            if self.users[*slot as usize].is_some() {
                return *slot;
            }
        }
        let slot = self.users.len() as UserSlot;
        self.users.push(Some(UserEntry {
            id,
            roles: Vec::new(),
            suspended: false,
            memberships: Vec::new(),
            administers: Vec::new(),
        }));
        self.user_slots.insert(id, slot);
        slot
    }

    fn intern_group(&mut self, id: GroupId) -> GroupSlot {
        if let Some(slot) = self.group_slots.get(&id) {
            if self.groups[*slot as usize].is_some() {
                return *slot;
            }
        }
        let slot = self.groups.len() as GroupSlot;
        self.groups.push(Some(GroupEntry {
            id,
            parent: None,
            is_organization: false,
            inherited: Vec::new(),
            children: Vec::new(),
            members: Vec::new(),
            administrators: Vec::new(),
            catalogs: Vec::new(),
        }));
        self.group_slots.insert(id, slot);
        slot
    }

    fn user_mut(&mut self, slot: UserSlot) -> &mut UserEntry {
        self.users[slot as usize]
            .as_mut()
            .expect("a live user slot")
    }

    fn group_mut(&mut self, slot: GroupSlot) -> &mut GroupEntry {
        self.groups[slot as usize]
            .as_mut()
            .expect("a live group slot")
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::UserUpserted {
                id,
                roles,
                suspended,
            } => {
                let slot = self.intern_user(id);
                let user = self.user_mut(slot);
                user.roles = roles;
                user.suspended = suspended;
            }
            Change::UserDeleted { id } => {
                let Some(slot) = self.user_slot(id) else {
                    return;
                };
                let user = self.users[slot as usize].take().expect("live");
                self.user_slots.remove(&id);
                for (group, _) in user.memberships {
                    remove_value(&mut self.group_mut(group).members, &slot);
                }
                for group in user.administers {
                    remove_value(&mut self.group_mut(group).administrators, &slot);
                }
            }
            Change::GroupUpserted {
                id,
                parent,
                is_organization,
                inherited,
            } => {
                let slot = self.intern_group(id);
                let parent = parent.map(|p| self.intern_group(p));
                let old_parent = self.group(slot).parent;
                if old_parent != parent {
                    if let Some(old) = old_parent {
                        remove_value(&mut self.group_mut(old).children, &slot);
                    }
                    if let Some(new) = parent {
                        add_value(&mut self.group_mut(new).children, slot);
                    }
                }
                let group = self.group_mut(slot);
                group.parent = parent;
                group.is_organization = is_organization;
                group.inherited = inherited;
            }
            Change::GroupDeleted { id } => {
                let Some(slot) = self.group_slot(id) else {
                    return;
                };
                let group = self.groups[slot as usize].take().expect("live");
                self.group_slots.remove(&id);
                if let Some(parent) = group.parent {
                    if let Some(parent) = self.groups[parent as usize].as_mut() {
                        remove_value(&mut parent.children, &slot);
                    }
                }
                for child in group.children {
                    if let Some(child) = self.groups[child as usize].as_mut() {
                        child.parent = None;
                    }
                }
                for user in group.members {
                    self.user_mut(user).memberships.retain(|(g, _)| *g != slot);
                }
                for user in group.administrators {
                    remove_value(&mut self.user_mut(user).administers, &slot);
                }
                for catalog in group.catalogs {
                    self.unassign(&catalog, slot);
                }
            }
            Change::MembershipAdded {
                group,
                user,
                join_revision,
            } => {
                let (group, user) = (self.intern_group(group), self.intern_user(user));
                let entry = self.user_mut(user);
                if !entry.memberships.iter().any(|(g, _)| *g == group) {
                    entry.memberships.push((group, join_revision));
                }
                add_value(&mut self.group_mut(group).members, user);
            }
            Change::MembershipRemoved { group, user } => {
                let (Some(group), Some(user)) = (self.group_slot(group), self.user_slot(user))
                else {
                    return;
                };
                self.user_mut(user).memberships.retain(|(g, _)| *g != group);
                remove_value(&mut self.group_mut(group).members, &user);
            }
            Change::AdministratorsChanged { group, users } => {
                let group = self.intern_group(group);
                let old = std::mem::take(&mut self.group_mut(group).administrators);
                for user in old {
                    remove_value(&mut self.user_mut(user).administers, &group);
                }
                let slots: Vec<UserSlot> = users.into_iter().map(|u| self.intern_user(u)).collect();
                for user in &slots {
                    add_value(&mut self.user_mut(*user).administers, group);
                }
                self.group_mut(group).administrators = slots;
            }
            Change::InheritedRoleChanged { group, tool, role } => {
                let group = self.intern_group(group);
                let inherited = &mut self.group_mut(group).inherited;
                inherited.retain(|r| r.tool() != tool);
                inherited.extend(role);
                inherited.sort();
            }
            Change::CatalogAssigned { group, catalog } => {
                let group = self.intern_group(group);
                add_value(&mut self.group_mut(group).catalogs, catalog.clone());
                add_value(self.catalogs.entry(catalog).or_default(), group);
            }
            Change::CatalogUnassigned { group, catalog } => {
                let Some(group) = self.group_slot(group) else {
                    return;
                };
                remove_value(&mut self.group_mut(group).catalogs, &catalog);
                self.unassign(&catalog, group);
            }
        }
    }

    fn unassign(&mut self, catalog: &str, group: GroupSlot) {
        if let Some(groups) = self.catalogs.get_mut(catalog) {
            remove_value(groups, &group);
            if groups.is_empty() {
                self.catalogs.remove(catalog);
            }
        }
    }
}
