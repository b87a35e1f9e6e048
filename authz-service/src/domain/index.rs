//! The reverse indexes lookups start from, kept in step with the state as changes
//! apply (or built at once at the end of a bulk load):
//!
//! - per role with a tenant-wide grant, the users who hold it directly, and the
//!   users a group setting offers it to (once per membership and offering group:
//!   a member of a subgroup is offered the settings of every ancestor);
//! - per top-level group, the users with a membership anywhere in its tree (once
//!   per membership), and per group whose setting offers a role with an
//!   administered-groups grant, the users it offers that role to (once per
//!   membership in its subtree).
//!
//! Only what a lookup can start from is kept: a role without a tenant-wide grant
//! reaches a group only through its tree, so who holds it directly (every LMS
//! user, say) is never asked.
//!
//! Administrators need no index of their own: a group's administrators, and its
//! ancestors', are a handful of lists in the state.
//!
//! Every index is an [`OrderedUsers`]: user slots in the order of the users' ids,
//! so that a lookup can merge them and stop after one page, in the same order as
//! it answers.
//!
//! One file on purpose: each index's incremental update and its bulk build are kept
//! next to each other, so that they cannot drift apart.

// hashbrown's maps hash with foldhash, not SipHash: a build looks a key up once
// per membership, and every lookup call reads them. The keys are slots and roles,
// not caller-chosen strings, so there is no flooding to defend against.
use hashbrown::HashMap;

use cohort_shared::catalog::{Role, ScopeKind};
use uuid::Uuid;

use super::state::{GroupSlot, RoleMask, TenantState, UserSlot};

/// Most slots in one chunk of an [`OrderedUsers`]: an insertion moves at most this
/// many, and a chunk is found by a binary search over the chunks' last ids.
const CHUNK: usize = 512;

/// A multiset of user slots ordered by user id: sorted chunks of at most
/// [`CHUNK`] slots. Comparisons read the ids from the state's id column.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderedUsers {
    chunks: Vec<Vec<UserSlot>>,
}

impl OrderedUsers {
    /// From slots already in id order.
    fn from_sorted(slots: &[UserSlot]) -> Self {
        let fill = CHUNK;
        OrderedUsers {
            chunks: slots.chunks(fill).map(<[UserSlot]>::to_vec).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Appends a slot whose id is not below any held (building in id order).
    fn push_last(&mut self, slot: UserSlot) {
        let fill = CHUNK;
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < fill => chunk.push(slot),
            _ => {
                if let Some(full) = self.chunks.last_mut() {
                    full.shrink_to_fit();
                }
                let mut chunk = Vec::with_capacity(fill);
                chunk.push(slot);
                self.chunks.push(chunk);
            }
        }
    }

    /// Releases spare capacity at the end of a build.
    fn trim(&mut self) {
        if let Some(last) = self.chunks.last_mut() {
            last.shrink_to_fit();
        }
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// The chunk that holds (or would hold) `id`: the first whose last id is not
    /// below it, or the last chunk.
    fn chunk_for(&self, id: &Uuid, ids: &[Uuid]) -> usize {
        let i = self
            .chunks
            .partition_point(|c| ids[*c.last().expect("chunks are never empty") as usize] < *id);
        i.min(self.chunks.len().saturating_sub(1))
    }

    pub fn insert(&mut self, slot: UserSlot, ids: &[Uuid]) {
        let id = &ids[slot as usize];
        if self.chunks.is_empty() {
            self.chunks.push(vec![slot]);
            return;
        }
        let c = self.chunk_for(id, ids);
        let chunk = &mut self.chunks[c];
        let at = chunk.partition_point(|s| ids[*s as usize] < *id);
        chunk.insert(at, slot);
        if chunk.len() > CHUNK {
            let upper = chunk.split_off(CHUNK / 2);
            chunk.shrink_to_fit();
            self.chunks.insert(c + 1, upper);
        }
    }

    /// Removes one occurrence of `slot`; false when there is none.
    pub fn remove(&mut self, slot: UserSlot, ids: &[Uuid]) -> bool {
        if self.chunks.is_empty() {
            return false;
        }
        let id = &ids[slot as usize];
        let c = self.chunk_for(id, ids);
        let chunk = &mut self.chunks[c];
        let at = chunk.partition_point(|s| ids[*s as usize] < *id);
        if chunk.get(at) != Some(&slot) {
            return false;
        }
        chunk.remove(at);
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        true
    }

    /// The slots whose ids come after `after` (all with `None`), in id order,
    /// each as often as it is held.
    pub fn iter_after<'a>(
        &'a self,
        after: Option<&Uuid>,
        ids: &'a [Uuid],
    ) -> impl Iterator<Item = UserSlot> + 'a {
        let (c, at) = match after {
            None => (0, 0),
            Some(after) => {
                let c = self
                    .chunks
                    .partition_point(|ch| ids[*ch.last().expect("never empty") as usize] <= *after);
                let at = self
                    .chunks
                    .get(c)
                    .map_or(0, |ch| ch.partition_point(|s| ids[*s as usize] <= *after));
                (c, at)
            }
        };
        self.chunks
            .iter()
            .skip(c)
            .enumerate()
            .flat_map(move |(i, chunk)| chunk[if i == 0 { at } else { 0 }..].iter().copied())
    }

    fn all(&self) -> impl Iterator<Item = UserSlot> + '_ {
        self.chunks.iter().flatten().copied()
    }

    /// Applies many insertions and removals at once: a merge, in one pass.
    fn merge(&mut self, mut inserts: Vec<UserSlot>, removals: &[UserSlot], ids: &[Uuid]) {
        inserts.sort_unstable_by_key(|s| ids[*s as usize]);
        let mut remove: HashMap<UserSlot, usize> = HashMap::new();
        for slot in removals {
            *remove.entry(*slot).or_default() += 1;
        }
        let mut merged: Vec<UserSlot> = Vec::with_capacity(self.chunks.len() * CHUNK);
        let mut pending = inserts.into_iter().peekable();
        for slot in self.all() {
            while let Some(next) = pending.next_if(|n| ids[*n as usize] <= ids[slot as usize]) {
                merged.push(next);
            }
            merged.push(slot);
        }
        merged.extend(pending);
        merged.retain(|slot| match remove.get_mut(slot) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        });
        *self = OrderedUsers::from_sorted(&merged);
    }
}

/// The roles whose holders a lookup may need wherever they are: those with a
/// tenant-wide grant.
pub(crate) fn tenant_wide_roles() -> RoleMask {
    static ROLES: std::sync::LazyLock<RoleMask> =
        std::sync::LazyLock::new(|| roles_with(ScopeKind::Tenant));
    *ROLES
}

/// The roles whose offers a lookup may need per offering group: those with an
/// administered-groups grant.
pub(crate) fn administered_roles() -> RoleMask {
    static ROLES: std::sync::LazyLock<RoleMask> =
        std::sync::LazyLock::new(|| roles_with(ScopeKind::AdministeredGroups));
    *ROLES
}

fn roles_with(kind: ScopeKind) -> RoleMask {
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| r.grants().iter().any(|g| g.scope == kind))
        .collect();
    RoleMask::of(&roles)
}

/// What an index entry is kept under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Direct(Role),
    Offered(Role),
    Tree(GroupSlot),
    GroupOffered(GroupSlot, Role),
}

/// The reverse indexes of one tenant.
#[derive(Debug, Clone, Default)]
pub(crate) struct Indexes {
    direct: HashMap<Role, OrderedUsers>,
    offered: HashMap<Role, OrderedUsers>,
    tree: HashMap<GroupSlot, OrderedUsers>,
    group_offered: HashMap<(GroupSlot, Role), OrderedUsers>,
}

static EMPTY: OrderedUsers = OrderedUsers { chunks: Vec::new() };

impl Indexes {
    /// The users who hold `role` directly.
    pub fn direct(&self, role: Role) -> &OrderedUsers {
        self.direct.get(&role).unwrap_or(&EMPTY)
    }

    /// The users a group setting offers `role` to.
    pub fn offered(&self, role: Role) -> &OrderedUsers {
        self.offered.get(&role).unwrap_or(&EMPTY)
    }

    /// The users with a membership in the tree of the top-level group `root`.
    pub fn tree(&self, root: GroupSlot) -> &OrderedUsers {
        self.tree.get(&root).unwrap_or(&EMPTY)
    }

    /// The users `group`'s setting offers `role` to (an administered-groups
    /// role): those with a membership in its subtree.
    pub fn offered_by(&self, group: GroupSlot, role: Role) -> &OrderedUsers {
        self.group_offered.get(&(group, role)).unwrap_or(&EMPTY)
    }

    fn entry(&mut self, key: Key) -> &mut OrderedUsers {
        match key {
            Key::Direct(role) => self.direct.entry(role).or_default(),
            Key::Offered(role) => self.offered.entry(role).or_default(),
            Key::Tree(root) => self.tree.entry(root).or_default(),
            Key::GroupOffered(group, role) => self.group_offered.entry((group, role)).or_default(),
        }
    }

    fn drop_if_empty(&mut self, key: Key) {
        let empty = self.entry(key).is_empty();
        if empty {
            match key {
                Key::Direct(role) => self.direct.remove(&role),
                Key::Offered(role) => self.offered.remove(&role),
                Key::Tree(root) => self.tree.remove(&root),
                Key::GroupOffered(group, role) => self.group_offered.remove(&(group, role)),
            };
        }
    }

    /// Applies index changes, in the order they were recorded; a large batch is
    /// grouped by key, and a key with many changes rewritten in one merge. Within
    /// a key the insertions go first: an index is a multiset, so that is right
    /// whatever order they were recorded in (a withdrawal always follows its
    /// insertion), where withdrawals first would miss a slot inserted and
    /// withdrawn in the same batch.
    pub fn apply(&mut self, deltas: Deltas, ids: &[Uuid]) {
        if deltas.0.len() <= 64 {
            for (key, slot, insert) in deltas.0 {
                let set = self.entry(key);
                if insert {
                    set.insert(slot, ids);
                } else {
                    let removed = set.remove(slot, ids);
                    debug_assert!(removed, "an index entry withdrawn was held");
                }
                self.drop_if_empty(key);
            }
            return;
        }
        let mut by_key: HashMap<Key, (Vec<UserSlot>, Vec<UserSlot>)> = HashMap::new();
        for (key, slot, insert) in deltas.0 {
            let (inserts, removals) = by_key.entry(key).or_default();
            if insert {
                inserts.push(slot);
            } else {
                removals.push(slot);
            }
        }
        for (key, (inserts, removals)) in by_key {
            let set = self.entry(key);
            let changes = inserts.len() + removals.len();
            if changes > 64 && changes > set.len() / 16 {
                set.merge(inserts, &removals, ids);
            } else {
                for slot in inserts {
                    set.insert(slot, ids);
                }
                for slot in removals {
                    let removed = set.remove(slot, ids);
                    debug_assert!(removed, "an index entry withdrawn was held");
                }
            }
            self.drop_if_empty(key);
        }
    }

    /// The indexes of a state, built in one pass over its users in id order.
    pub fn build(state: &TenantState) -> Indexes {
        let mut order: Vec<UserSlot> = state
            .users
            .iter()
            .enumerate()
            .filter(|(_, u)| u.is_some())
            .map(|(slot, _)| slot as UserSlot)
            .collect();
        order.sort_unstable_by_key(|s| state.user_ids[*s as usize]);
        // Each group's root and the roles its chain offers, worked out once.
        let mut roots: Vec<GroupSlot> = vec![GroupSlot::MAX; state.groups.len()];
        for (slot, group) in state.groups.iter().enumerate() {
            if group.is_some() {
                roots[slot] = state.root(slot as GroupSlot);
            }
        }
        let offers = state.offers_per_group();
        // Two passes over the users, on two threads: the trees' members (an entry
        // per membership, the bulk of it), and the rest.
        let (mut indexes, tree) = std::thread::scope(|scope| {
            let tree = scope.spawn(|| {
                // By root slot, then into the map: one array access per membership.
                let mut by_root: Vec<OrderedUsers> = vec![OrderedUsers::default(); roots.len()];
                for slot in &order {
                    for membership in state.user(*slot).memberships.iter() {
                        let root = roots[membership.group as usize];
                        by_root[root as usize].push_last(*slot);
                    }
                }
                by_root
                    .into_iter()
                    .enumerate()
                    .filter(|(_, users)| !users.is_empty())
                    .map(|(root, users)| (root as GroupSlot, users))
                    .collect::<HashMap<GroupSlot, OrderedUsers>>()
            });
            let mut indexes = Indexes::default();
            for slot in &order {
                let user = state.user(*slot);
                for role in user.roles.and(tenant_wide_roles()).iter() {
                    indexes.entry(Key::Direct(role)).push_last(*slot);
                }
                for membership in user.memberships.iter() {
                    if offers[membership.group as usize].is_empty() {
                        continue;
                    }
                    for granting in state.chain(membership.group) {
                        for key in offer_keys(state.inherited(granting), granting) {
                            indexes.entry(key).push_last(*slot);
                        }
                    }
                }
            }
            (
                indexes,
                tree.join().expect("building an index does not panic"),
            )
        });
        indexes.tree = tree;
        for set in indexes
            .direct
            .values_mut()
            .chain(indexes.offered.values_mut())
            .chain(indexes.tree.values_mut())
            .chain(indexes.group_offered.values_mut())
        {
            set.trim();
        }
        indexes
    }
}

/// The index entries of one membership under `granting`, a group whose setting
/// offers `roles`.
fn offer_keys(roles: RoleMask, granting: GroupSlot) -> impl Iterator<Item = Key> {
    let tenant_wide = roles.and(tenant_wide_roles()).iter().map(Key::Offered);
    let administered = roles
        .and(administered_roles())
        .iter()
        .map(move |role| Key::GroupOffered(granting, role));
    tenant_wide.chain(administered)
}

/// Index changes collected while the state changes, applied at once.
#[derive(Debug, Default, Clone)]
pub(crate) struct Deltas(Vec<(Key, UserSlot, bool)>);

impl Deltas {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `later`'s changes after these.
    pub fn append(&mut self, later: Deltas) {
        self.0.extend(later.0);
    }

    /// The entries of one membership of `user` in `group`, as the state is now:
    /// added (`insert`) or withdrawn.
    pub fn membership(
        &mut self,
        state: &TenantState,
        user: UserSlot,
        group: GroupSlot,
        insert: bool,
    ) {
        let root = state.root(group);
        self.0.push((Key::Tree(root), user, insert));
        for granting in state.chain(group) {
            for key in offer_keys(state.inherited(granting), granting) {
                self.0.push((key, user, insert));
            }
        }
    }

    /// A user's direct roles changed from `old` to `new`.
    pub fn direct_roles(&mut self, user: UserSlot, old: RoleMask, new: RoleMask) {
        let (old, new) = (old.and(tenant_wide_roles()), new.and(tenant_wide_roles()));
        for role in old.iter().filter(|r| !new.contains(*r)) {
            self.0.push((Key::Direct(role), user, false));
        }
        for role in new.iter().filter(|r| !old.contains(*r)) {
            self.0.push((Key::Direct(role), user, true));
        }
    }
}

impl Indexes {
    /// Every index, as sorted lists, for comparing an incrementally kept index
    /// with one built from scratch.
    pub fn contents(&self) -> std::collections::BTreeMap<String, Vec<UserSlot>> {
        let mut out = std::collections::BTreeMap::new();
        for (role, set) in &self.direct {
            out.insert(format!("direct {role}"), set.all().collect());
        }
        for (role, set) in &self.offered {
            out.insert(format!("offered {role}"), set.all().collect());
        }
        for (root, set) in &self.tree {
            out.insert(format!("tree {root}"), set.all().collect());
        }
        for ((group, role), set) in &self.group_offered {
            out.insert(format!("group {group} offers {role}"), set.all().collect());
        }
        out.retain(|_, v: &mut Vec<UserSlot>| !v.is_empty());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn an_ordered_set_keeps_id_order_through_inserts_and_removals() {
        let ids = ids(3000);
        let mut set = OrderedUsers::default();
        let mut model: Vec<UserSlot> = Vec::new();
        for (i, _) in ids.iter().enumerate() {
            let slot = (i * 7919 % ids.len()) as UserSlot;
            set.insert(slot, &ids);
            model.push(slot);
            if i % 3 == 0 {
                set.insert(slot, &ids); // a second reason for the same user
                model.push(slot);
            }
        }
        for slot in (0..ids.len() as UserSlot).step_by(5) {
            assert!(set.remove(slot, &ids));
            let at = model.iter().position(|s| *s == slot).unwrap();
            model.remove(at);
        }
        let gone = (0..ids.len() as UserSlot)
            .step_by(5)
            .find(|s| !model.contains(s))
            .expect("some slot was held once and removed");
        assert!(!set.remove(gone, &ids), "a removed slot is gone");
        model.sort_by_key(|s| ids[*s as usize]);
        assert_eq!(set.all().collect::<Vec<_>>(), model);
        assert_eq!(set.len(), model.len());
        assert!(set.chunks.iter().all(|c| !c.is_empty() && c.len() <= CHUNK));

        // Resuming after any id gives exactly the rest.
        for probe in [0usize, 1, 17, 1500, 2999] {
            let after = ids[model[probe] as usize];
            let rest: Vec<UserSlot> = set.iter_after(Some(&after), &ids).collect();
            let expected: Vec<UserSlot> = model
                .iter()
                .copied()
                .filter(|s| ids[*s as usize] > after)
                .collect();
            assert_eq!(rest, expected);
        }

        // A merge gives what the same changes one by one give.
        let mut merged = set.clone();
        let inserts: Vec<UserSlot> = (0..200).collect();
        let removals: Vec<UserSlot> = model.iter().copied().step_by(11).collect();
        merged.merge(inserts.clone(), &removals, &ids);
        for slot in &removals {
            set.remove(*slot, &ids);
        }
        for slot in inserts {
            set.insert(slot, &ids);
        }
        assert_eq!(
            merged.all().collect::<Vec<_>>(),
            set.all().collect::<Vec<_>>()
        );
    }
}
