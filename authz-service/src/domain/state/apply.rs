//! How changes apply to a tenant's state: ids interned to slots and released,
//! relations added and removed, and the reverse indexes kept in step.
//!
//! One file on purpose: every change's effect on the relations and on the reverse
//! indexes is in one `apply`, so that no change updates one and not the other.

use super::*;

/// The slot remembered for `id` in `last`, if it is `id`'s and still holds it:
/// checked against the id column (`ids`), so a slot released or reused since
/// is never returned for another id.
fn remembered(last: Option<(Uuid, u32)>, ids: &[Uuid], id: Uuid) -> Option<u32> {
    let (last_id, slot) = last?;
    (last_id == id && ids.get(slot as usize) == Some(&id)).then_some(slot)
}

/// How many slots after the last user [`following`] looks at: a stored base
/// skips the users without memberships, and these ids share the cache line of
/// the last one or the next.
const FOLLOWING_SLOTS: u32 = 4;

/// The slot of `id` when it is one of the few after the last one looked up.
///
/// A stored base lists memberships user by user in slot order, and a load gives
/// users slots in the order they come, so on a restart the next membership's user
/// is almost always the last one's or a slot or two after. Found here, it costs a
/// comparison of ids that are already in the cache; found in the table, two
/// cache misses (its control bytes and its bucket), which were a third of a
/// restart at 3M memberships. A nil id is not looked for here: it marks a free
/// slot.
fn following(last: Option<(Uuid, u32)>, ids: &[Uuid], id: Uuid) -> Option<u32> {
    let (_, last) = last?;
    if id.is_nil() {
        return None;
    }
    (last.saturating_add(1)..=last.saturating_add(FOLLOWING_SLOTS))
        .find(|slot| ids.get(*slot as usize) == Some(&id))
}

/// Pending memberships ordered by user, each user's in the order they came (a
/// stable sort).
fn sorted_by_user(mut pending: Vec<(UserSlot, Joined)>) -> Vec<(UserSlot, Joined)> {
    pending.sort_by_key(|(user, _)| *user);
    pending
}

/// As [`sorted_by_user`], by counting: two passes and no comparisons. `users`:
/// one more than the largest user slot in `pending`.
fn counted_by_user(pending: Vec<(UserSlot, Joined)>, users: usize) -> Vec<(UserSlot, Joined)> {
    // next[u]: where user u's next membership goes.
    let mut next = vec![0u32; users + 1];
    for (user, _) in &pending {
        next[*user as usize + 1] += 1;
    }
    for u in 1..next.len() {
        next[u] += next[u - 1];
    }
    let unset = (
        0,
        Joined {
            group: 0,
            revision: 0,
        },
    );
    let mut sorted = vec![unset; pending.len()];
    for (user, joined) in pending {
        let at = &mut next[user as usize];
        sorted[*at as usize] = (user, joined);
        *at += 1;
    }
    sorted
}

impl TenantState {
    fn intern_user(&mut self, id: UserId) -> UserSlot {
        if let Some(slot) = self.user_slot(id) {
            return slot;
        }
        let entry = UserEntry {
            roles: RoleMask::default(),
            suspended: false,
            offered: RoleMask::default(),
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

    /// [`Self::intern_user`], answered without a lookup when `id` is the last
    /// one asked for in bulk, or one of the few slots after it.
    fn intern_user_again(&mut self, id: UserId) -> UserSlot {
        if let Some(slot) = remembered(self.last_user, &self.user_ids, id.0) {
            return slot;
        }
        if let Some(slot) = following(self.last_user, &self.user_ids, id.0) {
            self.last_user = Some((id.0, slot));
            return slot;
        }
        let slot = self.intern_user(id);
        self.last_user = Some((id.0, slot));
        slot
    }

    /// [`Self::intern_group`], answered without a lookup when `id` is the last
    /// one asked for in bulk.
    fn intern_group_again(&mut self, id: GroupId) -> GroupSlot {
        if let Some(slot) = remembered(self.last_group, &self.group_ids, id.0) {
            return slot;
        }
        let slot = self.intern_group(id);
        self.last_group = Some((id.0, slot));
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
        // A user with several memberships below `slot` is worked out once.
        let mut users: Vec<UserSlot> = affected.iter().map(|(user, _)| *user).collect();
        users.sort_unstable();
        users.dedup();
        for user in users {
            self.refresh_offered(user);
        }
        self.apply_deltas(deltas);
    }

    /// Works out again the roles offered to `user` (after a change to their
    /// memberships or to the groups over them).
    pub(super) fn refresh_offered(&mut self, user: UserSlot) {
        let offered = self.offered_along_memberships(user);
        self.user_mut(user).offered = offered;
    }

    /// Applies index changes, or records them for [`Self::flush_deferred`] in a
    /// run of additions (see [`Self::apply_all`]). Every other change applies
    /// them at once: it may release the slot they name (a deleted user's id is
    /// cleared, and an index finds a slot by its id).
    fn apply_deltas(&mut self, deltas: Deltas) {
        if self.deferring {
            self.deferred.append(deltas);
        } else {
            self.index.apply(deltas, &self.user_ids);
        }
    }

    fn flush_deferred(&mut self) {
        if !self.deferred.is_empty() {
            let deltas = std::mem::take(&mut self.deferred);
            self.index.apply(deltas, &self.user_ids);
        }
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
        self.apply_all([change]);
    }

    /// Applies changes in order (a change set). The reverse indexes' changes of a
    /// run of additions (members added, users written) are applied together at
    /// the run's end, grouped by index: a bulk `AddGroupMembers` of 1,000 ids
    /// inserted into its tree's index one member at a time, which was a fifth of
    /// the service's work in following it. Such a run neither releases a slot nor
    /// changes the tree or a group's settings, so the changes it records stay
    /// true until they apply; every other change applies its own at once.
    pub fn apply_all(&mut self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            let adds = matches!(
                change,
                Change::MembershipAdded { .. } | Change::UserUpserted { .. }
            );
            if !adds {
                self.flush_deferred();
            }
            self.deferring = adds;
            self.apply_change(change);
        }
        self.deferring = false;
        self.flush_deferred();
    }

    fn apply_change(&mut self, change: Change) {
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
                let (group, user) = if self.bulk {
                    (self.intern_group_again(group), self.intern_user_again(user))
                } else {
                    (self.intern_group(group), self.intern_user(user))
                };
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
                // Sized exactly: one allocation, no reallocation to shrink it.
                let mut memberships = Vec::with_capacity(entry.memberships.len() + 1);
                memberships.extend_from_slice(&entry.memberships);
                memberships.push(Joined { group, revision });
                entry.memberships = memberships.into_boxed_slice();
                self.group_mut(group).members.push(user);
                self.refresh_offered(user);
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
    pub(super) fn flush_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        // A load's memberships (about as many as there are users, or more) are
        // counted, not sorted, and every group's member list is sized once: a
        // stable sort's scratch buffer and lists grown by doubling (then trimmed)
        // left about 3 bytes per membership of a 1M tenant in the allocator's
        // heap. A few, between the other changes of a stored log, are sorted:
        // counting walks every user and group slot.
        let pending = if pending.len() >= self.users.len() / 4 {
            let mut per_group = vec![0u32; self.groups.len()];
            for (_, joined) in &pending {
                per_group[joined.group as usize] += 1;
            }
            for (group, count) in self.groups.iter_mut().zip(per_group) {
                if let Some(group) = group {
                    group.members.reserve_exact(count as usize);
                }
            }
            counted_by_user(pending, self.users.len())
        } else {
            sorted_by_user(pending)
        };
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
        self.refresh_offered(user);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of ordering pending memberships by user give the same order:
    /// a load takes one, a stored log's few the other.
    #[test]
    fn counting_and_sorting_order_pending_memberships_alike() {
        let mut seed = 7u64;
        let mut next = |below: u32| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % u64::from(below)) as u32
        };
        for size in [0, 1, 2, 10, 1_000] {
            let pending: Vec<(UserSlot, Joined)> = (0..size)
                .map(|i| {
                    let joined = Joined {
                        group: next(20),
                        revision: i,
                    };
                    (next(50), joined)
                })
                .collect();
            assert_eq!(
                counted_by_user(pending.clone(), 50),
                sorted_by_user(pending),
                "{size} pending"
            );
        }
    }
}
