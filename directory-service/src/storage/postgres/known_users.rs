//! The users this process knows to exist, per tenant, so that a bulk membership
//! write does not probe the `users` table for every id it names.
//!
//! At a million users that probe was the largest cost of `AddGroupMembers`: its
//! index walk and heap fetch land on a random page for each id (the heap of a
//! freshly loaded table cannot be skipped: its visibility map is not set yet),
//! 35 of the 53 seconds PostgreSQL spent judging the 3,000,000 memberships of a
//! load through the API.
//!
//! What is known, and why it stays true:
//! - Each user is remembered with the revision at which it was known to exist:
//!   the revision of the change set that created or updated it (every commit of
//!   this process passes through `PgStore::after_commit`), or the tenant's
//!   revision under its row lock when a probe found it.
//! - A user deletion writes its revision to `tenants.users_deleted_revision` in
//!   its own transaction, whichever process makes it. A writer reads that column
//!   under the tenant's row lock, and trusts a remembered user only when it was
//!   known at that revision or later: ids are never reused, so a user seen after
//!   the latest deletion still exists. Anything else is probed, as before.
//! - Deletions made by this process also forget the user at once.
//!
//! Memory is bounded: past [`CAPACITY`] users (across tenants) nothing more is
//! remembered, and those writes probe as before.

use std::sync::Mutex;

use hashbrown::HashMap;
use uuid::Uuid;

use crate::domain::{Change, ChangeSet, Revision, TenantId};

/// At most this many users remembered by one process, across tenants: 25 bytes a
/// user in the hash table (id, revision, control byte), about 50 MB for a tenant of
/// a million users and at most about 100 MB.
pub(super) const CAPACITY: usize = 2_000_000;

/// Users known to exist, per tenant, each with the revision it was known at.
pub(super) struct KnownUsers {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    remembered: usize,
    tenants: HashMap<TenantId, HashMap<Uuid, Revision>>,
}

impl State {
    fn remember(&mut self, capacity: usize, tenant: TenantId, user: Uuid, revision: Revision) {
        let users = self.tenants.entry(tenant).or_default();
        if let Some(known) = users.get_mut(&user) {
            *known = (*known).max(revision);
        } else if self.remembered < capacity {
            users.insert(user, revision);
            self.remembered += 1;
        }
    }
}

impl Default for KnownUsers {
    fn default() -> Self {
        KnownUsers::with_capacity(CAPACITY)
    }
}

impl KnownUsers {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        KnownUsers {
            capacity,
            state: Mutex::default(),
        }
    }

    /// How many users are remembered, across tenants.
    pub(super) fn remembered(&self) -> usize {
        self.state.lock().expect("not poisoned").remembered
    }

    /// Takes in what a committed change set says of users: the ones it creates or
    /// updates exist at its revision; the ones it deletes are forgotten.
    pub(super) fn committed(&self, set: &ChangeSet) {
        let mut state = self.state.lock().expect("not poisoned");
        for change in &set.changes {
            match change {
                Change::UserUpserted { user } => {
                    state.remember(self.capacity, set.tenant_id, user.id.0, set.revision)
                }
                Change::UserDeleted { user_id } => {
                    let forgotten = state
                        .tenants
                        .get_mut(&set.tenant_id)
                        .and_then(|users| users.remove(&user_id.0));
                    if forgotten.is_some() {
                        state.remembered -= 1;
                    }
                }
                _ => {}
            }
        }
    }

    /// Remembers users that a probe under the tenant's row lock found, at the
    /// tenant's revision then.
    pub(super) fn found(&self, tenant: TenantId, users: &[Uuid], revision: Revision) {
        let mut state = self.state.lock().expect("not poisoned");
        for user in users {
            state.remember(self.capacity, tenant, *user, revision);
        }
    }

    /// For each of `users`, whether it is known to exist, given the revision of
    /// the tenant's latest user deletion (read under the tenant's row lock).
    pub(super) fn known(
        &self,
        tenant: TenantId,
        users_deleted: Revision,
        users: impl IntoIterator<Item = Uuid>,
    ) -> Vec<bool> {
        let state = self.state.lock().expect("not poisoned");
        let known = state.tenants.get(&tenant);
        users
            .into_iter()
            .map(|user| {
                known
                    .and_then(|known| known.get(&user))
                    .is_some_and(|revision| *revision >= users_deleted)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DisplayName, Email, User, UserId, UserState};
    use cohort_shared::catalog::{Role, RoleSet};

    fn tenant() -> TenantId {
        TenantId(Uuid::now_v7())
    }

    fn set(tenant: TenantId, revision: Revision, changes: Vec<Change>) -> ChangeSet {
        ChangeSet {
            tenant_id: tenant,
            revision,
            commit_time: chrono::Utc::now(),
            actor: "test".into(),
            changes,
        }
    }

    fn upserted(tenant: TenantId, id: Uuid) -> Change {
        let user = User {
            id: UserId(id),
            tenant_id: tenant,
            display_name: DisplayName::parse("name", "Ada").unwrap(),
            email: Email::parse("email", "ada@example.test").unwrap(),
            roles: RoleSet::new([Role::GlobalAdminUser]).unwrap(),
            state: UserState::Active,
            create_time: chrono::Utc::now(),
            update_time: chrono::Utc::now(),
            revision: 1,
        };
        Change::UserUpserted { user }
    }

    #[test]
    fn a_created_user_is_known_until_a_later_deletion_in_its_tenant() {
        let (t, other) = (tenant(), tenant());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let known = KnownUsers::default();
        known.committed(&set(t, 5, vec![upserted(t, a), upserted(t, b)]));

        assert_eq!(known.known(t, 0, [a, b]), [true, true]);
        // A deletion at or before the creation says nothing about it.
        assert_eq!(known.known(t, 5, [a]), [true]);
        // A later deletion, maybe of this user by another process: probe again.
        assert_eq!(known.known(t, 6, [a]), [false]);
        // Another tenant never sees them.
        assert_eq!(known.known(other, 0, [a, b]), [false, false]);
    }

    #[test]
    fn a_user_deleted_by_this_process_is_forgotten_at_once() {
        let t = tenant();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let known = KnownUsers::default();
        known.committed(&set(t, 1, vec![upserted(t, a), upserted(t, b)]));
        known.committed(&set(t, 2, vec![Change::UserDeleted { user_id: UserId(a) }]));
        // Even when the deletion's revision is not read yet.
        assert_eq!(known.known(t, 0, [a, b]), [false, true]);
        assert_eq!(known.remembered(), 1);
    }

    #[test]
    fn a_probed_user_is_known_at_the_revision_it_was_found() {
        let t = tenant();
        let a = Uuid::now_v7();
        let known = KnownUsers::default();
        known.found(t, &[a], 9);
        assert_eq!(known.known(t, 9, [a]), [true]);
        assert_eq!(known.known(t, 10, [a]), [false]);
        // Seen again later, it is known at the later revision.
        known.found(t, &[a], 12);
        assert_eq!(known.known(t, 10, [a]), [true]);
    }

    #[test]
    fn past_its_capacity_nothing_more_is_remembered() {
        let t = tenant();
        let users: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let known = KnownUsers::with_capacity(2);
        known.found(t, &users, 1);
        assert_eq!(
            known.known(t, 0, users.iter().copied()),
            [true, true, false]
        );
        // A forgotten user makes room again.
        known.committed(&set(
            t,
            2,
            vec![Change::UserDeleted {
                user_id: UserId(users[0]),
            }],
        ));
        known.found(t, &users[2..], 2);
        assert_eq!(
            known.known(t, 0, users.iter().copied()),
            [false, true, true]
        );
    }
}
