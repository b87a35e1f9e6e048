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
//! One file on purpose: the state's layout and every read of it; how changes
//! apply is `apply.rs`, the entries `entries.rs`, the export `export.rs`.
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

mod apply;
mod entries;
mod export;

use entries::NO_GROUP;
pub(crate) use entries::{GroupEntry, GroupNode, GroupSlot, Joined, RoleMask, UserEntry, UserSlot};
pub use export::ExportCursor;

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
    /// The user and the group of the last membership added in bulk: a stored
    /// base lists a user's memberships together, and the directory's snapshot
    /// often a group's, so most of a load's id lookups are the one before.
    last_user: Option<(Uuid, UserSlot)>,
    last_group: Option<(Uuid, GroupSlot)>,
    /// Index changes of a run of additions not applied yet (see
    /// [`TenantState::apply_all`]); empty between calls.
    deferred: Deltas,
    /// True while such a run applies.
    deferring: bool,
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
        // A user's offers are one lookup per membership.
        let chain_offers = self.offers_per_group();
        for user in self.users.iter_mut().flatten() {
            user.offered = user
                .memberships
                .iter()
                .fold(RoleMask::default(), |mask, m| {
                    mask.union(chain_offers[m.group as usize])
                });
        }
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
        for (slot, user) in self.users.iter().enumerate() {
            let Some(user) = user else { continue };
            let offered = self.offered_along_memberships(slot as UserSlot);
            if user.offered != offered {
                return Err(format!(
                    "roles offered to user slot {slot}: kept {:?}, worked out {offered:?}",
                    user.offered
                ));
            }
        }
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

    /// What the settings of each group and its ancestors offer, by group slot
    /// (nothing for a free slot): worked out once for bulk work over every
    /// membership.
    pub(crate) fn offers_per_group(&self) -> Vec<RoleMask> {
        (0..self.groups.len() as GroupSlot)
            .map(|slot| match self.groups[slot as usize] {
                Some(_) => self
                    .chain(slot)
                    .fold(RoleMask::default(), |mask, g| mask.union(self.inherited(g))),
                None => RoleMask::default(),
            })
            .collect()
    }

    /// The roles the groups over `user`'s memberships offer, worked out by
    /// walking up from each ([`UserEntry::offered`] keeps it).
    fn offered_along_memberships(&self, user: UserSlot) -> RoleMask {
        self.user(user)
            .memberships
            .iter()
            .flat_map(|m| self.chain(m.group))
            .fold(RoleMask::default(), |mask, g| mask.union(self.inherited(g)))
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

    /// One change set: many members added (so that its index changes are
    /// applied grouped by index) and a user given, then refused, a role with a
    /// tenant-wide grant. The insertion and the withdrawal of that user under the
    /// role's index must both apply: withdrawal first, it found nothing and the
    /// insertion stayed.
    #[test]
    fn a_change_set_applied_at_once_keeps_the_indexes_a_rebuild_gives() {
        let role = crate::domain::index::tenant_wide_roles()
            .iter()
            .next()
            .expect("some role has a tenant-wide grant");
        let group = GroupId(Uuid::new_v4());
        let user = UserId(Uuid::new_v4());
        let upsert = |roles: Vec<Role>| Change::UserUpserted {
            id: user,
            roles,
            suspended: false,
        };
        let mut changes = vec![Change::GroupUpserted {
            id: group,
            parent: None,
            is_organization: true,
            inherited: vec![],
        }];
        changes.extend((0..100).map(|_| Change::MembershipAdded {
            group,
            user: UserId(Uuid::new_v4()),
            join_revision: 2,
        }));
        changes.push(upsert(vec![Role::GlobalAdminUser, role]));
        changes.push(upsert(vec![Role::GlobalAdminUser]));
        let mut at_once = TenantState::default();
        at_once.apply_all(changes.clone());
        at_once.check_indexes().unwrap();
        let mut one_by_one = TenantState::default();
        for change in changes {
            one_by_one.apply(change);
        }
        assert_eq!(at_once.index.contents(), one_by_one.index.contents());
    }

    /// Applying in bulk remembers the last user and group a membership named;
    /// a slot released and reused since must not be taken for the old id.
    #[test]
    fn a_bulk_load_takes_no_reused_slot_for_an_id_it_saw_before() {
        let (a, b, c) = (
            UserId(Uuid::new_v4()),
            UserId(Uuid::new_v4()),
            UserId(Uuid::new_v4()),
        );
        let (g, h) = (GroupId(Uuid::new_v4()), GroupId(Uuid::new_v4()));
        let member = |user, group| Change::MembershipAdded {
            group,
            user,
            join_revision: 2,
        };
        let changes = vec![
            member(a, g),
            Change::UserDeleted { id: a },
            Change::GroupDeleted { id: g },
            // b and h take the slots a and g had, not through a membership.
            Change::UserUpserted {
                id: b,
                roles: vec![Role::GlobalAdminUser],
                suspended: false,
            },
            Change::GroupUpserted {
                id: h,
                parent: None,
                is_organization: true,
                inherited: vec![],
            },
            member(a, g),
            member(c, g),
            member(b, h),
        ];
        let mut bulk = TenantState::bulk();
        let mut one_by_one = TenantState::default();
        for change in changes {
            bulk.apply(change.clone());
            one_by_one.apply(change);
        }
        bulk.finish_bulk();
        assert_eq!(bulk.changes(), one_by_one.changes());
        let a_slot = bulk.user_slot(a).unwrap();
        assert_ne!(Some(a_slot), bulk.user_slot(b));
        assert_eq!(bulk.user(a_slot).memberships.len(), 1);
        bulk.check_indexes().unwrap();
    }

    /// A stored base lists memberships user by user in slot order, and a bulk
    /// load finds each user among the few slots after the last one before it
    /// asks the table. Users without memberships (skipped by the base), users
    /// deleted (free slots, nil ids) and the base's own order must all still
    /// land each membership on its user.
    #[test]
    fn a_base_loaded_in_bulk_gives_every_membership_to_its_user() {
        // A fixed xorshift sequence: the same world every run.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        let groups: Vec<GroupId> = (0..5).map(|_| GroupId(Uuid::new_v4())).collect();
        let mut original = TenantState::default();
        let mut users = Vec::new();
        for _ in 0..400 {
            let user = UserId(Uuid::new_v4());
            original.apply(Change::UserUpserted {
                id: user,
                roles: vec![Role::GlobalAdminUser],
                suspended: false,
            });
            // Runs of users with no membership, up to past the slots looked at.
            let memberships = match next(4) {
                0 => next(8) as usize,
                _ => 0,
            };
            for group in groups.iter().take(memberships) {
                original.apply(Change::MembershipAdded {
                    group: *group,
                    user,
                    join_revision: 2,
                });
            }
            users.push(user);
        }
        for user in users.iter().step_by(7) {
            original.apply(Change::UserDeleted { id: *user });
        }
        let base = original.changes();
        let mut loaded = TenantState::bulk();
        for change in base.iter().cloned() {
            loaded.apply(change);
        }
        loaded.finish_bulk();
        assert_eq!(loaded.changes(), base);
        loaded.check_indexes().unwrap();
    }
}
