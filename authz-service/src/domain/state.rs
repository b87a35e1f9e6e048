//! One tenant's projected state, as the authorization service keeps it in memory:
//! users, groups and their relations, with interned ids (a `u32` slot per user and
//! per group) so that relations are plain integer lists, plus the reverse indexes
//! of [`super::index`] that lookups start from.
//!
//! Laid out for tenants of millions of users (DESIGN.md, "The authorization
//! engine's memory"): a user is a 16-byte id, a role bitmask and a boxed slice of
//! 8-byte memberships; the id-to-slot table stores only slots. Slots of deleted
//! users and groups are reused.
//!
//! Changes apply idempotently and in any order within a snapshot: an id that is
//! referenced before it is upserted gets a placeholder slot, filled in later. A
//! snapshot or a load applies its changes in bulk mode ([`TenantState::bulk`]):
//! the reverse indexes are built once at the end instead of change by change.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use cohort_shared::catalog::{Role, Tool};
use hashbrown::{DefaultHashBuilder, HashTable};
use uuid::Uuid;

use super::index::{Deltas, Indexes};

/// A tenant revision.
pub type Revision = i64;

/// A tenant: the unit the projection keeps, follows and answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub Uuid);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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
    /// The group's whole administrator set.
    AdministratorsChanged {
        group: GroupId,
        users: Vec<UserId>,
    },
    /// Users who joined the group's administrator set.
    AdministratorsAdded {
        group: GroupId,
        users: Vec<UserId>,
    },
    /// Users who left the group's administrator set.
    AdministratorsRemoved {
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

/// A set of roles, one bit per role; iterates in catalog order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RoleMask(u16);

const _: () = assert!(Role::ALL.len() <= 16, "a role mask holds 16 roles");

impl RoleMask {
    pub fn of(roles: &[Role]) -> Self {
        let mut mask = RoleMask::default();
        for role in roles {
            mask.insert(*role);
        }
        mask
    }

    fn bit(role: Role) -> u16 {
        1 << role as u16
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    pub fn insert(&mut self, role: Role) {
        self.0 |= Self::bit(role);
    }

    pub fn remove(&mut self, role: Role) {
        self.0 &= !Self::bit(role);
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn and(self, other: RoleMask) -> RoleMask {
        RoleMask(self.0 & other.0)
    }

    pub fn union(self, other: RoleMask) -> RoleMask {
        RoleMask(self.0 | other.0)
    }

    /// The roles, in catalog order (one step per role held, not per role).
    pub fn iter(self) -> impl Iterator<Item = Role> + Clone {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(Role::ALL[i])
        })
    }

    pub fn to_vec(self) -> Vec<Role> {
        self.iter().collect()
    }
}

/// A direct membership: the group, and the revision the user joined it at.
/// Packed in 8 bytes; a revision that does not fit in 32 bits is kept aside
/// (`TenantState::late_joins`) and marked here with [`Joined::LATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Joined {
    pub group: GroupSlot,
    revision: u32,
}

impl Joined {
    const LATE: u32 = u32::MAX;
}

#[derive(Debug, Clone)]
pub(crate) struct UserEntry {
    /// Direct roles (the directory sends a valid role set; kept in catalog order).
    pub roles: RoleMask,
    pub suspended: bool,
    /// Direct memberships, in the order they were added.
    pub memberships: Box<[Joined]>,
}

/// What every check reads of a group, in 8 bytes: walking up a tree touches
/// only these (the lists of [`GroupEntry`] live apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupNode {
    /// The parent's slot, or [`NO_GROUP`] for a top-level group.
    parent: GroupSlot,
    /// The roles members inherit, at most one per tool.
    pub inherited: RoleMask,
    pub is_organization: bool,
}

/// No group: the parent of a top-level group.
const NO_GROUP: GroupSlot = GroupSlot::MAX;

impl GroupNode {
    const PLACEHOLDER: GroupNode = GroupNode {
        parent: NO_GROUP,
        inherited: RoleMask(0),
        is_organization: false,
    };

    pub fn parent(self) -> Option<GroupSlot> {
        (self.parent != NO_GROUP).then_some(self.parent)
    }
}

/// A group's relations.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupEntry {
    pub children: Vec<GroupSlot>,
    /// Direct members, in no particular order.
    pub members: Vec<UserSlot>,
    pub administrators: Vec<UserSlot>,
    pub catalogs: Vec<String>,
}

/// One tenant's state at `revision`.
#[derive(Clone, Default)]
pub struct TenantState {
    pub revision: Revision,
    /// Per user slot: its id (nil for a free slot).
    pub(crate) user_ids: Vec<Uuid>,
    pub(crate) users: Vec<Option<UserEntry>>,
    /// Live user slots, found by id: only the slot is stored, the id is read from
    /// `user_ids` (a fifth of the memory of a map from id to slot).
    user_table: HashTable<UserSlot>,
    hasher: DefaultHashBuilder,
    free_users: Vec<UserSlot>,
    /// Per group slot: its id (nil for a free slot).
    pub(crate) group_ids: Vec<Uuid>,
    /// Per group slot: what checks read (a placeholder for a free slot).
    nodes: Vec<GroupNode>,
    pub(crate) groups: Vec<Option<GroupEntry>>,
    /// Live group slots, found by id. Unlike users, the id is kept beside the
    /// slot: one memory access a lookup instead of two (groups are few, and every
    /// membership of a load looks one up).
    group_table: hashbrown::HashMap<Uuid, GroupSlot>,
    /// Live groups by id, in id order (lookups page through groups in that order).
    pub(crate) group_slots: BTreeMap<Uuid, GroupSlot>,
    free_groups: Vec<GroupSlot>,
    /// The groups each user administers (only users who administer any).
    pub(crate) administers: HashMap<UserSlot, Vec<GroupSlot>>,
    /// Catalog id to the groups it is assigned to.
    pub(crate) catalogs: HashMap<String, Vec<GroupSlot>>,
    /// Join revisions too large for [`Joined`].
    late_joins: HashMap<(UserSlot, GroupSlot), Revision>,
    pub(crate) index: Indexes,
    /// True while changes apply in bulk: the indexes are rebuilt at the end.
    bulk: bool,
    /// In bulk mode, memberships added but not yet given to their users: gathered
    /// and handed out at once rather than growing each user's list change by change.
    pending: Vec<(UserSlot, Joined)>,
}

impl std::fmt::Debug for TenantState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantState")
            .field("revision", &self.revision)
            .field("users", &self.user_table.len())
            .field("groups", &self.group_slots.len())
            .finish_non_exhaustive()
    }
}

fn remove_value<T: PartialEq>(list: &mut Vec<T>, value: &T) {
    list.retain(|v| v != value);
}

fn add_value<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if !list.contains(&value) {
        list.push(value);
    }
}

/// How many live users, groups and memberships a state holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Size {
    pub users: usize,
    pub groups: usize,
    pub memberships: usize,
}

impl TenantState {
    /// An empty state that takes changes in bulk until [`TenantState::finish_bulk`].
    pub fn bulk() -> Self {
        TenantState {
            bulk: true,
            ..TenantState::default()
        }
    }

    /// Ends bulk mode: builds the reverse indexes and trims spare capacity.
    pub fn finish_bulk(&mut self) {
        self.flush_pending();
        self.bulk = false;
        self.index = Indexes::build(self);
        self.users.shrink_to_fit();
        self.user_ids.shrink_to_fit();
        for group in self.groups.iter_mut().flatten() {
            group.members.shrink_to_fit();
        }
    }

    /// Compares the reverse indexes, as kept change by change, with indexes built
    /// from scratch; the first difference, if any. (For tests: it rebuilds.)
    pub fn check_indexes(&self) -> Result<(), String> {
        let kept = self.index.contents();
        let built = Indexes::build(self).contents();
        if kept == built {
            return Ok(());
        }
        let keys: std::collections::BTreeSet<&String> = kept.keys().chain(built.keys()).collect();
        let key = keys
            .into_iter()
            .find(|k| kept.get(*k) != built.get(*k))
            .expect("the maps differ somewhere");
        Err(format!(
            "index `{key}`: kept {:?}, built {:?}",
            kept.get(key),
            built.get(key)
        ))
    }

    pub fn size(&self) -> Size {
        debug_assert!(
            self.pending.is_empty(),
            "asked for the size of a state in bulk"
        );
        Size {
            users: self.user_table.len(),
            groups: self.group_slots.len(),
            memberships: self
                .users
                .iter()
                .flatten()
                .map(|u| u.memberships.len())
                .sum(),
        }
    }

    fn hash(&self, id: &Uuid) -> u64 {
        self.hasher.hash_one(id)
    }

    pub(crate) fn user_slot(&self, id: UserId) -> Option<UserSlot> {
        let ids = &self.user_ids;
        self.user_table
            .find(self.hash(&id.0), |slot| ids[*slot as usize] == id.0)
            .copied()
    }

    pub(crate) fn group_slot(&self, id: GroupId) -> Option<GroupSlot> {
        self.group_table.get(&id.0).copied()
    }

    /// What checks read of a group.
    pub(crate) fn node(&self, slot: GroupSlot) -> GroupNode {
        self.nodes[slot as usize]
    }

    /// The roles a group passes on to its members.
    pub(crate) fn inherited(&self, slot: GroupSlot) -> RoleMask {
        self.nodes[slot as usize].inherited
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

    pub(crate) fn user_id(&self, slot: UserSlot) -> UserId {
        UserId(self.user_ids[slot as usize])
    }

    pub(crate) fn group_id(&self, slot: GroupSlot) -> GroupId {
        GroupId(self.group_ids[slot as usize])
    }

    /// The revision a membership was joined at.
    pub(crate) fn joined(&self, user: UserSlot, membership: Joined) -> Revision {
        if membership.revision == Joined::LATE {
            self.late_joins[&(user, membership.group)]
        } else {
            Revision::from(membership.revision)
        }
    }

    /// Every live user, in id order.
    pub fn user_ids(&self) -> Vec<UserId> {
        let mut ids: Vec<UserId> = self.user_table.iter().map(|s| self.user_id(*s)).collect();
        ids.sort();
        ids
    }

    /// Every live group, in id order.
    pub fn group_ids(&self) -> Vec<GroupId> {
        self.group_slots.keys().map(|id| GroupId(*id)).collect()
    }

    pub fn has_user(&self, id: UserId) -> bool {
        self.user_slot(id).is_some()
    }

    pub fn has_group(&self, id: GroupId) -> bool {
        self.group_slot(id).is_some()
    }

    /// The group and its ancestors, from the group up. Bounded by the number of
    /// groups: a guard against a corrupt feed (a valid tree has no cycle).
    pub(crate) fn chain(&self, slot: GroupSlot) -> impl Iterator<Item = GroupSlot> + '_ {
        let mut next = Some(slot);
        let mut left = self.groups.len();
        std::iter::from_fn(move || {
            let current = next?;
            left = left.checked_sub(1)?;
            next = self.nodes[current as usize].parent();
            Some(current)
        })
    }

    /// The group's top-level ancestor (itself when top-level).
    pub(crate) fn root(&self, slot: GroupSlot) -> GroupSlot {
        self.chain(slot).last().expect("a chain holds the group")
    }

    /// The group and all its descendants, the group first.
    pub(crate) fn subtree(&self, slot: GroupSlot) -> Vec<GroupSlot> {
        let mut all = vec![slot];
        let mut i = 0;
        while i < all.len() && all.len() <= self.groups.len() {
            all.extend(self.group(all[i]).children.iter().copied());
            i += 1;
        }
        all
    }

    /// Whether the group is an organization with its flag on.
    pub(crate) fn is_active_organization(&self, slot: GroupSlot) -> bool {
        let node = self.node(slot);
        node.parent == NO_GROUP && node.is_organization
    }

    /// Whether a user administers a group.
    pub(crate) fn administers(&self, user: UserSlot, group: GroupSlot) -> bool {
        self.administers
            .get(&user)
            .is_some_and(|groups| groups.contains(&group))
    }

    /// The groups a user administers (in the order they were given).
    pub(crate) fn administered(&self, user: UserSlot) -> &[GroupSlot] {
        self.administers.get(&user).map_or(&[], Vec::as_slice)
    }

    fn intern_user(&mut self, id: UserId) -> UserSlot {
        if let Some(slot) = self.user_slot(id) {
            return slot;
        }
        let entry = UserEntry {
            roles: RoleMask::default(),
            suspended: false,
            memberships: Box::new([]),
        };
        let slot = match self.free_users.pop() {
            Some(slot) => {
                self.user_ids[slot as usize] = id.0;
                self.users[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.user_ids.push(id.0);
                self.users.push(Some(entry));
                (self.users.len() - 1) as UserSlot
            }
        };
        let (ids, hasher) = (&self.user_ids, &self.hasher);
        self.user_table
            .insert_unique(hasher.hash_one(id.0), slot, |s| {
                hasher.hash_one(ids[*s as usize])
            });
        slot
    }

    fn intern_group(&mut self, id: GroupId) -> GroupSlot {
        if let Some(slot) = self.group_slot(id) {
            return slot;
        }
        let slot = match self.free_groups.pop() {
            Some(slot) => {
                self.group_ids[slot as usize] = id.0;
                self.nodes[slot as usize] = GroupNode::PLACEHOLDER;
                self.groups[slot as usize] = Some(GroupEntry::default());
                slot
            }
            None => {
                self.group_ids.push(id.0);
                self.nodes.push(GroupNode::PLACEHOLDER);
                self.groups.push(Some(GroupEntry::default()));
                (self.groups.len() - 1) as GroupSlot
            }
        };
        self.group_table.insert(id.0, slot);
        self.group_slots.insert(id.0, slot);
        slot
    }

    fn release_user(&mut self, slot: UserSlot) {
        let id = self.user_ids[slot as usize];
        let hash = self.hash(&id);
        let ids = &self.user_ids;
        if let Ok(entry) = self.user_table.find_entry(hash, |s| ids[*s as usize] == id) {
            entry.remove();
        }
        self.users[slot as usize] = None;
        self.user_ids[slot as usize] = Uuid::nil();
        self.free_users.push(slot);
    }

    fn release_group(&mut self, slot: GroupSlot) {
        let id = self.group_ids[slot as usize];
        self.group_table.remove(&id);
        self.nodes[slot as usize] = GroupNode::PLACEHOLDER;
        self.group_slots.remove(&id);
        self.groups[slot as usize] = None;
        self.group_ids[slot as usize] = Uuid::nil();
        self.free_groups.push(slot);
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

    /// Every direct membership in the group's subtree, as (user, group).
    fn memberships_under(&self, slot: GroupSlot) -> Vec<(UserSlot, GroupSlot)> {
        self.subtree(slot)
            .into_iter()
            .flat_map(|g| self.group(g).members.iter().map(move |u| (*u, g)))
            .collect()
    }

    /// Changes the tree or a group's settings: the index entries of every
    /// membership below `slot` are withdrawn before `change` and made again after.
    fn restructure(&mut self, slot: GroupSlot, change: impl FnOnce(&mut Self)) {
        if self.bulk {
            change(self);
            return;
        }
        let affected = self.memberships_under(slot);
        let mut deltas = Deltas::default();
        for (user, group) in &affected {
            deltas.membership(self, *user, *group, false);
        }
        change(self);
        for (user, group) in &affected {
            deltas.membership(self, *user, *group, true);
        }
        self.apply_deltas(deltas);
    }

    fn apply_deltas(&mut self, deltas: Deltas) {
        self.index.apply(deltas, &self.user_ids);
    }

    fn set_parent(&mut self, slot: GroupSlot, parent: Option<GroupSlot>) {
        let old_parent = self.node(slot).parent();
        if old_parent == parent {
            return;
        }
        if let Some(new) = parent {
            if self.chain(new).any(|g| g == slot) {
                // Would make a cycle: never in a valid feed. Ignored rather than
                // looping for ever.
                tracing::error!(group = %self.group_id(slot), "a move would make a cycle: ignored");
                return;
            }
        }
        self.restructure(slot, |state| {
            if let Some(old) = old_parent {
                remove_value(&mut state.group_mut(old).children, &slot);
            }
            if let Some(new) = parent {
                add_value(&mut state.group_mut(new).children, slot);
            }
            state.nodes[slot as usize].parent = parent.unwrap_or(NO_GROUP);
        });
    }

    fn set_inherited(&mut self, slot: GroupSlot, inherited: RoleMask) {
        if self.inherited(slot) == inherited {
            return;
        }
        self.restructure(slot, |state| {
            state.nodes[slot as usize].inherited = inherited
        });
    }

    /// Applies one change.
    pub fn apply(&mut self, change: Change) {
        if !matches!(
            change,
            Change::MembershipAdded { .. }
                | Change::UserUpserted { .. }
                | Change::GroupUpserted { .. }
        ) {
            // Every other change may read or remove memberships.
            self.flush_pending();
        }
        match change {
            Change::UserUpserted {
                id,
                roles,
                suspended,
            } => {
                let slot = self.intern_user(id);
                let roles = RoleMask::of(&roles);
                let user = self.user_mut(slot);
                let old = std::mem::replace(&mut user.roles, roles);
                user.suspended = suspended;
                if !self.bulk && old != roles {
                    let mut deltas = Deltas::default();
                    deltas.direct_roles(slot, old, roles);
                    self.apply_deltas(deltas);
                }
            }
            Change::UserDeleted { id } => {
                let Some(slot) = self.user_slot(id) else {
                    return;
                };
                let memberships = self.user(slot).memberships.clone();
                for membership in memberships.iter() {
                    self.remove_membership(slot, membership.group);
                }
                if !self.bulk {
                    let mut deltas = Deltas::default();
                    deltas.direct_roles(slot, self.user(slot).roles, RoleMask::default());
                    self.apply_deltas(deltas);
                }
                for group in self.administers.remove(&slot).unwrap_or_default() {
                    remove_value(&mut self.group_mut(group).administrators, &slot);
                }
                self.release_user(slot);
            }
            Change::GroupUpserted {
                id,
                parent,
                is_organization,
                inherited,
            } => {
                let slot = self.intern_group(id);
                let parent = parent.map(|p| self.intern_group(p));
                self.set_parent(slot, parent);
                self.set_inherited(slot, RoleMask::of(&inherited));
                self.nodes[slot as usize].is_organization = is_organization;
            }
            Change::GroupDeleted { id } => {
                let Some(slot) = self.group_slot(id) else {
                    return;
                };
                for user in self.group(slot).members.clone() {
                    self.remove_membership(user, slot);
                }
                for child in self.group(slot).children.clone() {
                    self.set_parent(child, None);
                }
                self.set_parent(slot, None);
                let group = self.groups[slot as usize].take().expect("live");
                for user in group.administrators {
                    self.unadminister(user, slot);
                }
                for catalog in group.catalogs {
                    self.unassign(&catalog, slot);
                }
                self.release_group(slot);
            }
            Change::MembershipAdded {
                group,
                user,
                join_revision,
            } => {
                let (group, user) = (self.intern_group(group), self.intern_user(user));
                if !self.bulk && self.user(user).memberships.iter().any(|m| m.group == group) {
                    return;
                }
                let revision = match u32::try_from(join_revision) {
                    Ok(r) if r != Joined::LATE => r,
                    _ => {
                        // The first join counts (a repeated add changes nothing).
                        self.late_joins
                            .entry((user, group))
                            .or_insert(join_revision);
                        Joined::LATE
                    }
                };
                if self.bulk {
                    self.pending.push((user, Joined { group, revision }));
                    return;
                }
                let entry = self.user_mut(user);
                let mut memberships = std::mem::take(&mut entry.memberships).into_vec();
                memberships.push(Joined { group, revision });
                entry.memberships = memberships.into_boxed_slice();
                self.group_mut(group).members.push(user);
                if !self.bulk {
                    let mut deltas = Deltas::default();
                    deltas.membership(self, user, group, true);
                    self.apply_deltas(deltas);
                }
            }
            Change::MembershipRemoved { group, user } => {
                let (Some(group), Some(user)) = (self.group_slot(group), self.user_slot(user))
                else {
                    return;
                };
                self.remove_membership(user, group);
            }
            Change::AdministratorsChanged { group, users } => {
                let group = self.intern_group(group);
                let old = std::mem::take(&mut self.group_mut(group).administrators);
                for user in old {
                    self.unadminister(user, group);
                }
                let slots: Vec<UserSlot> = users.into_iter().map(|u| self.intern_user(u)).collect();
                for user in &slots {
                    add_value(self.administers.entry(*user).or_default(), group);
                }
                self.group_mut(group).administrators = slots;
            }
            Change::AdministratorsAdded { group, users } => {
                let group = self.intern_group(group);
                let slots: Vec<UserSlot> = users.into_iter().map(|u| self.intern_user(u)).collect();
                let mut administrators = std::mem::take(&mut self.group_mut(group).administrators);
                // A large set arrives in parts: look the present ones up by hash,
                // not by scanning the set once per id.
                let present: std::collections::HashSet<UserSlot> =
                    administrators.iter().copied().collect();
                let mut added = std::collections::HashSet::new();
                for user in slots {
                    if !present.contains(&user) && added.insert(user) {
                        administrators.push(user);
                        add_value(self.administers.entry(user).or_default(), group);
                    }
                }
                self.group_mut(group).administrators = administrators;
            }
            Change::AdministratorsRemoved { group, users } => {
                let Some(group) = self.group_slot(group) else {
                    return;
                };
                let leaving: std::collections::HashSet<UserSlot> = users
                    .into_iter()
                    .filter_map(|u| self.user_slot(u))
                    .collect();
                let mut administrators = std::mem::take(&mut self.group_mut(group).administrators);
                administrators.retain(|user| !leaving.contains(user));
                self.group_mut(group).administrators = administrators;
                for user in leaving {
                    self.unadminister(user, group);
                }
            }
            Change::InheritedRoleChanged { group, tool, role } => {
                let group = self.intern_group(group);
                let mut inherited = self.inherited(group);
                for r in tool.roles() {
                    inherited.remove(*r);
                }
                if let Some(role) = role {
                    inherited.insert(role);
                }
                self.set_inherited(group, inherited);
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

    /// Hands the memberships gathered in bulk mode to their users and groups, in
    /// the order they came, a repeated one once.
    fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|(user, _)| *user);
        for run in pending.chunk_by(|a, b| a.0 == b.0) {
            let user = run[0].0;
            let entry = self.users[user as usize]
                .as_mut()
                .expect("a live user slot");
            let mut memberships = std::mem::take(&mut entry.memberships).into_vec();
            memberships.reserve_exact(run.len());
            for (_, joined) in run {
                if !memberships.iter().any(|m| m.group == joined.group) {
                    memberships.push(*joined);
                    self.groups[joined.group as usize]
                        .as_mut()
                        .expect("a live group slot")
                        .members
                        .push(user);
                }
            }
            entry.memberships = memberships.into_boxed_slice();
        }
    }

    fn remove_membership(&mut self, user: UserSlot, group: GroupSlot) {
        if !self.user(user).memberships.iter().any(|m| m.group == group) {
            return;
        }
        if !self.bulk {
            let mut deltas = Deltas::default();
            deltas.membership(self, user, group, false);
            self.apply_deltas(deltas);
        }
        let entry = self.user_mut(user);
        let mut memberships = std::mem::take(&mut entry.memberships).into_vec();
        memberships.retain(|m| m.group != group);
        entry.memberships = memberships.into_boxed_slice();
        self.late_joins.remove(&(user, group));
        remove_value(&mut self.group_mut(group).members, &user);
    }

    fn unadminister(&mut self, user: UserSlot, group: GroupSlot) {
        if let Some(groups) = self.administers.get_mut(&user) {
            remove_value(groups, &group);
            if groups.is_empty() {
                self.administers.remove(&user);
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

    /// The state as the changes that rebuild it: users, groups, memberships,
    /// administrator sets, catalogs.
    pub fn changes(&self) -> Vec<Change> {
        self.export(&mut ExportCursor::default(), usize::MAX)
    }

    /// The next part of the state as the changes that rebuild it, about `limit` of
    /// them (a user's memberships stay together), from `cursor` on: users, groups,
    /// memberships, administrator sets, catalogs, each in slot order. Parts written
    /// out while changes apply in between show the state at different revisions
    /// (see `storage::Base::Compaction` for why that is enough).
    pub fn export(&self, cursor: &mut ExportCursor, limit: usize) -> Vec<Change> {
        debug_assert!(
            self.pending.is_empty(),
            "asked for the changes of a state in bulk"
        );
        let mut out = Vec::new();
        while out.len() < limit && !cursor.is_done() {
            let slot = cursor.slot as u32;
            let stage_len = match cursor.stage {
                0 | 2 => self.users.len(),
                _ => self.groups.len(),
            };
            match cursor.stage {
                0 => {
                    if let Some(Some(user)) = self.users.get(cursor.slot) {
                        out.push(Change::UserUpserted {
                            id: self.user_id(slot),
                            roles: user.roles.to_vec(),
                            suspended: user.suspended,
                        });
                    }
                }
                1 => {
                    if let Some(Some(_)) = self.groups.get(cursor.slot) {
                        let node = self.node(slot);
                        out.push(Change::GroupUpserted {
                            id: self.group_id(slot),
                            parent: node.parent().map(|p| self.group_id(p)),
                            is_organization: node.is_organization,
                            inherited: node.inherited.to_vec(),
                        });
                    }
                }
                2 => {
                    if let Some(Some(user)) = self.users.get(cursor.slot) {
                        out.extend(user.memberships.iter().map(|m| Change::MembershipAdded {
                            group: self.group_id(m.group),
                            user: self.user_id(slot),
                            join_revision: self.joined(slot, *m),
                        }));
                    }
                }
                3 => {
                    if let Some(Some(group)) = self.groups.get(cursor.slot) {
                        if !group.administrators.is_empty() {
                            // By id: a set's order in memory follows the order
                            // its additions came in, which a reload changes.
                            let mut users: Vec<UserId> = group
                                .administrators
                                .iter()
                                .map(|u| self.user_id(*u))
                                .collect();
                            users.sort_unstable();
                            out.push(Change::AdministratorsChanged {
                                group: self.group_id(slot),
                                users,
                            });
                        }
                    }
                }
                _ => {
                    if let Some(Some(group)) = self.groups.get(cursor.slot) {
                        out.extend(
                            group
                                .catalogs
                                .iter()
                                .map(|catalog| Change::CatalogAssigned {
                                    group: self.group_id(slot),
                                    catalog: catalog.clone(),
                                }),
                        );
                    }
                }
            }
            cursor.slot += 1;
            if cursor.slot >= stage_len {
                cursor.stage += 1;
                cursor.slot = 0;
            }
        }
        out
    }
}

/// Where a state being written out has got to (see [`TenantState::export`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCursor {
    stage: u8,
    slot: usize,
}

impl ExportCursor {
    const STAGES: u8 = 5;

    pub fn is_done(&self) -> bool {
        self.stage >= Self::STAGES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_role_mask_iterates_in_catalog_order() {
        for (i, role) in Role::ALL.iter().enumerate() {
            assert_eq!(*role as usize, i, "bits follow the catalog");
        }
        let mask = RoleMask::of(&[Role::ShareAdmin, Role::GlobalAdminUser, Role::LmsUser]);
        assert_eq!(
            mask.to_vec(),
            vec![Role::GlobalAdminUser, Role::LmsUser, Role::ShareAdmin]
        );
    }

    #[test]
    fn join_revisions_beyond_32_bits_are_kept_exactly() {
        let mut state = TenantState::default();
        let (user, group) = (UserId(Uuid::new_v4()), GroupId(Uuid::new_v4()));
        state.apply(Change::MembershipAdded {
            group,
            user,
            join_revision: 1 << 40,
        });
        let slot = state.user_slot(user).unwrap();
        let membership = state.user(slot).memberships[0];
        assert_eq!(state.joined(slot, membership), 1 << 40);
        state.apply(Change::MembershipRemoved { group, user });
        assert!(state.late_joins.is_empty());
    }

    #[test]
    fn slots_of_deleted_users_and_groups_are_reused() {
        let mut state = TenantState::default();
        for _ in 0..3 {
            let (user, group) = (UserId(Uuid::new_v4()), GroupId(Uuid::new_v4()));
            state.apply(Change::MembershipAdded {
                group,
                user,
                join_revision: 1,
            });
            state.apply(Change::UserDeleted { id: user });
            state.apply(Change::GroupDeleted { id: group });
            assert!(!state.has_user(user) && !state.has_group(group));
        }
        assert_eq!(state.users.len(), 1);
        assert_eq!(state.groups.len(), 1);
    }
}
