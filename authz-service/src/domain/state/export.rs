//! A tenant's state written out as the changes that rebuild it, page by page.

use super::*;

impl TenantState {
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
