//! How the projection is written down: protobuf messages (prost), versioned, with
//! ids as 16 raw bytes and roles and tools as the contract's enum numbers
//! (`cohort.directory.v1.Role`, `Tool`), which never change meaning.
//!
//! - A [`Page`] of a base holds a part of a tenant's state column by column
//!   (users, groups, memberships, administrator sets, catalogs): a million
//!   memberships decode without a million allocations. A base's pages apply in
//!   any order (every change in them adds or sets).
//! - A [`LogEntry`] holds one change set, in order.
//!
//! A reader refuses another [`FORMAT`]; the service then rebuilds its projection
//! from the directory.
//!
//! One file on purpose: the encoder and the decoder of each message sit side by side,
//! so a change to the format is made, and reviewed, in one place.

use cohort_shared::catalog::Role;
use cohort_shared::convert::{role_from_proto, tool_from_proto};
use cohort_shared::proto::catalog::v1 as catalog_pb;
use prost::Message;
use uuid::Uuid;

use crate::domain::{Change, GroupId, UserId};

use super::{StoreError, StoreResult};

/// The version of this encoding, stored in every page and log entry.
pub const FORMAT: u32 = 1;

/// A part of a tenant's state, column by column.
#[derive(Clone, PartialEq, Message)]
pub struct Page {
    #[prost(uint32, tag = "1")]
    pub format: u32,
    /// Users: ids (16 bytes each), suspension, and per user the number of its
    /// roles, the roles following in `user_roles`.
    #[prost(bytes = "vec", tag = "2")]
    pub user_ids: Vec<u8>,
    #[prost(bool, repeated, tag = "3")]
    pub user_suspended: Vec<bool>,
    #[prost(uint32, repeated, tag = "4")]
    pub user_role_counts: Vec<u32>,
    #[prost(int32, repeated, tag = "5")]
    pub user_roles: Vec<i32>,
    /// Groups: ids, parents (16 zero bytes for a top-level group), organization
    /// flags, and per group the number of inherited roles, following in
    /// `group_inherited`.
    #[prost(bytes = "vec", tag = "6")]
    pub group_ids: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub group_parents: Vec<u8>,
    #[prost(bool, repeated, tag = "8")]
    pub group_organization: Vec<bool>,
    #[prost(uint32, repeated, tag = "9")]
    pub group_inherited_counts: Vec<u32>,
    #[prost(int32, repeated, tag = "10")]
    pub group_inherited: Vec<i32>,
    /// Memberships: group and user ids (16 bytes each), join revisions.
    #[prost(bytes = "vec", tag = "11")]
    pub membership_groups: Vec<u8>,
    #[prost(bytes = "vec", tag = "12")]
    pub membership_users: Vec<u8>,
    #[prost(int64, repeated, tag = "13")]
    pub membership_revisions: Vec<i64>,
    /// Administrator sets: group ids, per group the number of administrators,
    /// their ids following in `administrators`.
    #[prost(bytes = "vec", tag = "14")]
    pub administered_groups: Vec<u8>,
    #[prost(uint32, repeated, tag = "15")]
    pub administrator_counts: Vec<u32>,
    #[prost(bytes = "vec", tag = "16")]
    pub administrators: Vec<u8>,
    /// Catalog assignments: group ids and catalog ids.
    #[prost(bytes = "vec", tag = "17")]
    pub catalog_groups: Vec<u8>,
    #[prost(string, repeated, tag = "18")]
    pub catalog_ids: Vec<String>,
}

/// One change set, in order.
#[derive(Clone, PartialEq, Message)]
pub struct LogEntry {
    #[prost(uint32, tag = "1")]
    pub format: u32,
    #[prost(message, repeated, tag = "2")]
    pub changes: Vec<StoredChange>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredChange {
    #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(message, tag = "1")]
    UserUpserted(StoredUser),
    #[prost(bytes = "vec", tag = "2")]
    UserDeleted(Vec<u8>),
    #[prost(message, tag = "3")]
    GroupUpserted(StoredGroup),
    #[prost(bytes = "vec", tag = "4")]
    GroupDeleted(Vec<u8>),
    #[prost(message, tag = "5")]
    MembershipAdded(StoredMembership),
    #[prost(message, tag = "6")]
    MembershipRemoved(StoredMembership),
    #[prost(message, tag = "7")]
    AdministratorsChanged(StoredAdministrators),
    #[prost(message, tag = "8")]
    InheritedRoleChanged(StoredInheritedRole),
    #[prost(message, tag = "9")]
    CatalogAssigned(StoredCatalog),
    #[prost(message, tag = "10")]
    CatalogUnassigned(StoredCatalog),
    #[prost(message, tag = "11")]
    AdministratorsAdded(StoredAdministrators),
    #[prost(message, tag = "12")]
    AdministratorsRemoved(StoredAdministrators),
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredUser {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    #[prost(int32, repeated, tag = "2")]
    pub roles: Vec<i32>,
    #[prost(bool, tag = "3")]
    pub suspended: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredGroup {
    #[prost(bytes = "vec", tag = "1")]
    pub id: Vec<u8>,
    /// Empty for a top-level group.
    #[prost(bytes = "vec", tag = "2")]
    pub parent: Vec<u8>,
    #[prost(bool, tag = "3")]
    pub organization: bool,
    #[prost(int32, repeated, tag = "4")]
    pub inherited: Vec<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredMembership {
    #[prost(bytes = "vec", tag = "1")]
    pub group: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub user: Vec<u8>,
    #[prost(int64, tag = "3")]
    pub join_revision: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredAdministrators {
    #[prost(bytes = "vec", tag = "1")]
    pub group: Vec<u8>,
    /// 16 bytes per user.
    #[prost(bytes = "vec", tag = "2")]
    pub users: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredInheritedRole {
    #[prost(bytes = "vec", tag = "1")]
    pub group: Vec<u8>,
    #[prost(int32, tag = "2")]
    pub tool: i32,
    /// 0 (ROLE_UNSPECIFIED) when the setting is cleared.
    #[prost(int32, tag = "3")]
    pub role: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct StoredCatalog {
    #[prost(bytes = "vec", tag = "1")]
    pub group: Vec<u8>,
    #[prost(string, tag = "2")]
    pub catalog: String,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn role_numbers(roles: &[Role]) -> Vec<i32> {
    roles
        .iter()
        .map(|r| catalog_pb::Role::from(*r) as i32)
        .collect()
}

fn roles(numbers: &[i32]) -> StoreResult<Vec<Role>> {
    numbers
        .iter()
        .map(|n| role_from_proto(*n).map_err(corrupt))
        .collect()
}

fn id(bytes: &[u8]) -> StoreResult<Uuid> {
    Uuid::from_slice(bytes).map_err(|_| corrupt("an id is not 16 bytes"))
}

/// 16-byte ids, concatenated.
fn ids(bytes: &[u8]) -> StoreResult<impl Iterator<Item = Uuid> + '_> {
    if bytes.len() % 16 != 0 {
        return Err(corrupt("a column of ids is not a multiple of 16 bytes"));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| Uuid::from_slice(c).expect("16 bytes")))
}

fn check_format(format: u32) -> StoreResult<()> {
    if format == FORMAT {
        Ok(())
    } else {
        Err(StoreError::Format(format))
    }
}

impl Page {
    /// A page of `changes`, which must all add or set (a base's changes do).
    pub fn encode(changes: &[Change]) -> Vec<u8> {
        let mut page = Page {
            format: FORMAT,
            ..Page::default()
        };
        for change in changes {
            match change {
                Change::UserUpserted {
                    id,
                    roles,
                    suspended,
                } => {
                    page.user_ids.extend_from_slice(id.0.as_bytes());
                    page.user_suspended.push(*suspended);
                    page.user_role_counts.push(roles.len() as u32);
                    page.user_roles.extend(role_numbers(roles));
                }
                Change::GroupUpserted {
                    id,
                    parent,
                    is_organization,
                    inherited,
                } => {
                    page.group_ids.extend_from_slice(id.0.as_bytes());
                    page.group_parents
                        .extend_from_slice(parent.map_or(Uuid::nil(), |p| p.0).as_bytes());
                    page.group_organization.push(*is_organization);
                    page.group_inherited_counts.push(inherited.len() as u32);
                    page.group_inherited.extend(role_numbers(inherited));
                }
                Change::MembershipAdded {
                    group,
                    user,
                    join_revision,
                } => {
                    page.membership_groups.extend_from_slice(group.0.as_bytes());
                    page.membership_users.extend_from_slice(user.0.as_bytes());
                    page.membership_revisions.push(*join_revision);
                }
                Change::AdministratorsChanged { group, users }
                | Change::AdministratorsAdded { group, users } => {
                    page.administered_groups
                        .extend_from_slice(group.0.as_bytes());
                    page.administrator_counts.push(users.len() as u32);
                    for user in users {
                        page.administrators.extend_from_slice(user.0.as_bytes());
                    }
                }
                Change::CatalogAssigned { group, catalog } => {
                    page.catalog_groups.extend_from_slice(group.0.as_bytes());
                    page.catalog_ids.push(catalog.clone());
                }
                other => unreachable!("a base holds only additions, not {other:?}"),
            }
        }
        page.encode_to_vec()
    }

    /// Decodes a page and hands its changes to `apply`.
    pub fn decode_into(bytes: &[u8], mut apply: impl FnMut(Change)) -> StoreResult<()> {
        let page = Page::decode(bytes).map_err(corrupt)?;
        check_format(page.format)?;
        let mut role_at = 0;
        for (i, id) in ids(&page.user_ids)?.enumerate() {
            let count = *page
                .user_role_counts
                .get(i)
                .ok_or_else(|| corrupt("user columns"))? as usize;
            let numbers = page
                .user_roles
                .get(role_at..role_at + count)
                .ok_or_else(|| corrupt("user roles"))?;
            role_at += count;
            apply(Change::UserUpserted {
                id: UserId(id),
                roles: roles(numbers)?,
                suspended: *page
                    .user_suspended
                    .get(i)
                    .ok_or_else(|| corrupt("user columns"))?,
            });
        }
        let mut role_at = 0;
        let parents: Vec<Uuid> = ids(&page.group_parents)?.collect();
        for (i, id) in ids(&page.group_ids)?.enumerate() {
            let count = *page
                .group_inherited_counts
                .get(i)
                .ok_or_else(|| corrupt("group columns"))? as usize;
            let numbers = page
                .group_inherited
                .get(role_at..role_at + count)
                .ok_or_else(|| corrupt("group roles"))?;
            role_at += count;
            let parent = *parents.get(i).ok_or_else(|| corrupt("group columns"))?;
            apply(Change::GroupUpserted {
                id: GroupId(id),
                parent: (!parent.is_nil()).then_some(GroupId(parent)),
                is_organization: *page
                    .group_organization
                    .get(i)
                    .ok_or_else(|| corrupt("group columns"))?,
                inherited: roles(numbers)?,
            });
        }
        let users: Vec<Uuid> = ids(&page.membership_users)?.collect();
        for (i, group) in ids(&page.membership_groups)?.enumerate() {
            apply(Change::MembershipAdded {
                group: GroupId(group),
                user: UserId(*users.get(i).ok_or_else(|| corrupt("membership columns"))?),
                join_revision: *page
                    .membership_revisions
                    .get(i)
                    .ok_or_else(|| corrupt("membership columns"))?,
            });
        }
        let administrators: Vec<Uuid> = ids(&page.administrators)?.collect();
        let mut at = 0;
        for (i, group) in ids(&page.administered_groups)?.enumerate() {
            let count = *page
                .administrator_counts
                .get(i)
                .ok_or_else(|| corrupt("administrator columns"))? as usize;
            let users = administrators
                .get(at..at + count)
                .ok_or_else(|| corrupt("administrators"))?;
            at += count;
            // Additions: a set may span pages, and a base starts from nothing.
            apply(Change::AdministratorsAdded {
                group: GroupId(group),
                users: users.iter().map(|u| UserId(*u)).collect(),
            });
        }
        for (i, group) in ids(&page.catalog_groups)?.enumerate() {
            apply(Change::CatalogAssigned {
                group: GroupId(group),
                catalog: page
                    .catalog_ids
                    .get(i)
                    .ok_or_else(|| corrupt("catalog columns"))?
                    .clone(),
            });
        }
        Ok(())
    }
}

impl LogEntry {
    pub fn encode(changes: &[Change]) -> Vec<u8> {
        LogEntry {
            format: FORMAT,
            changes: changes.iter().map(stored).collect(),
        }
        .encode_to_vec()
    }

    pub fn decode_into(bytes: &[u8], mut apply: impl FnMut(Change)) -> StoreResult<()> {
        let entry = LogEntry::decode(bytes).map_err(corrupt)?;
        check_format(entry.format)?;
        for change in entry.changes {
            apply(restored(change)?);
        }
        Ok(())
    }
}

fn bytes(id: Uuid) -> Vec<u8> {
    id.as_bytes().to_vec()
}

fn stored(change: &Change) -> StoredChange {
    let kind = match change {
        Change::UserUpserted {
            id,
            roles,
            suspended,
        } => Kind::UserUpserted(StoredUser {
            id: bytes(id.0),
            roles: role_numbers(roles),
            suspended: *suspended,
        }),
        Change::UserDeleted { id } => Kind::UserDeleted(bytes(id.0)),
        Change::GroupUpserted {
            id,
            parent,
            is_organization,
            inherited,
        } => Kind::GroupUpserted(StoredGroup {
            id: bytes(id.0),
            parent: parent.map(|p| bytes(p.0)).unwrap_or_default(),
            organization: *is_organization,
            inherited: role_numbers(inherited),
        }),
        Change::GroupDeleted { id } => Kind::GroupDeleted(bytes(id.0)),
        Change::MembershipAdded {
            group,
            user,
            join_revision,
        } => Kind::MembershipAdded(StoredMembership {
            group: bytes(group.0),
            user: bytes(user.0),
            join_revision: *join_revision,
        }),
        Change::MembershipRemoved { group, user } => Kind::MembershipRemoved(StoredMembership {
            group: bytes(group.0),
            user: bytes(user.0),
            join_revision: 0,
        }),
        Change::AdministratorsChanged { group, users } => {
            Kind::AdministratorsChanged(stored_administrators(group, users))
        }
        Change::AdministratorsAdded { group, users } => {
            Kind::AdministratorsAdded(stored_administrators(group, users))
        }
        Change::AdministratorsRemoved { group, users } => {
            Kind::AdministratorsRemoved(stored_administrators(group, users))
        }
        Change::InheritedRoleChanged { group, tool, role } => {
            Kind::InheritedRoleChanged(StoredInheritedRole {
                group: bytes(group.0),
                tool: catalog_pb::Tool::from(*tool) as i32,
                role: role.map_or(catalog_pb::Role::Unspecified as i32, |r| {
                    catalog_pb::Role::from(r) as i32
                }),
            })
        }
        Change::CatalogAssigned { group, catalog } => Kind::CatalogAssigned(StoredCatalog {
            group: bytes(group.0),
            catalog: catalog.clone(),
        }),
        Change::CatalogUnassigned { group, catalog } => Kind::CatalogUnassigned(StoredCatalog {
            group: bytes(group.0),
            catalog: catalog.clone(),
        }),
    };
    StoredChange { kind: Some(kind) }
}

fn stored_administrators(group: &GroupId, users: &[UserId]) -> StoredAdministrators {
    StoredAdministrators {
        group: bytes(group.0),
        users: users.iter().flat_map(|u| *u.0.as_bytes()).collect(),
    }
}

fn restored(change: StoredChange) -> StoreResult<Change> {
    Ok(
        match change.kind.ok_or_else(|| corrupt("an empty change"))? {
            Kind::UserUpserted(u) => Change::UserUpserted {
                id: UserId(id(&u.id)?),
                roles: roles(&u.roles)?,
                suspended: u.suspended,
            },
            Kind::UserDeleted(u) => Change::UserDeleted {
                id: UserId(id(&u)?),
            },
            Kind::GroupUpserted(g) => Change::GroupUpserted {
                id: GroupId(id(&g.id)?),
                parent: if g.parent.is_empty() {
                    None
                } else {
                    Some(GroupId(id(&g.parent)?))
                },
                is_organization: g.organization,
                inherited: roles(&g.inherited)?,
            },
            Kind::GroupDeleted(g) => Change::GroupDeleted {
                id: GroupId(id(&g)?),
            },
            Kind::MembershipAdded(m) => Change::MembershipAdded {
                group: GroupId(id(&m.group)?),
                user: UserId(id(&m.user)?),
                join_revision: m.join_revision,
            },
            Kind::MembershipRemoved(m) => Change::MembershipRemoved {
                group: GroupId(id(&m.group)?),
                user: UserId(id(&m.user)?),
            },
            Kind::AdministratorsChanged(a) => Change::AdministratorsChanged {
                group: GroupId(id(&a.group)?),
                users: ids(&a.users)?.map(UserId).collect(),
            },
            Kind::AdministratorsAdded(a) => Change::AdministratorsAdded {
                group: GroupId(id(&a.group)?),
                users: ids(&a.users)?.map(UserId).collect(),
            },
            Kind::AdministratorsRemoved(a) => Change::AdministratorsRemoved {
                group: GroupId(id(&a.group)?),
                users: ids(&a.users)?.map(UserId).collect(),
            },
            Kind::InheritedRoleChanged(r) => Change::InheritedRoleChanged {
                group: GroupId(id(&r.group)?),
                tool: tool_from_proto(r.tool).map_err(corrupt)?,
                role: if r.role == catalog_pb::Role::Unspecified as i32 {
                    None
                } else {
                    Some(role_from_proto(r.role).map_err(corrupt)?)
                },
            },
            Kind::CatalogAssigned(c) => Change::CatalogAssigned {
                group: GroupId(id(&c.group)?),
                catalog: c.catalog,
            },
            Kind::CatalogUnassigned(c) => Change::CatalogUnassigned {
                group: GroupId(id(&c.group)?),
                catalog: c.catalog,
            },
        },
    )
}

/// Whether a change may go into a base page.
pub fn is_addition(change: &Change) -> bool {
    matches!(
        change,
        Change::UserUpserted { .. }
            | Change::GroupUpserted { .. }
            | Change::MembershipAdded { .. }
            | Change::AdministratorsChanged { .. }
            | Change::AdministratorsAdded { .. }
            | Change::CatalogAssigned { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cohort_shared::catalog::Tool;

    fn every_kind() -> Vec<Change> {
        let (u, v, g, h) = (
            UserId(Uuid::new_v4()),
            UserId(Uuid::new_v4()),
            GroupId(Uuid::new_v4()),
            GroupId(Uuid::new_v4()),
        );
        vec![
            Change::UserUpserted {
                id: u,
                roles: vec![
                    Role::GlobalAdminGroupAdministrator,
                    Role::LmsAuthor,
                    Role::LmsUser,
                ],
                suspended: true,
            },
            Change::GroupUpserted {
                id: g,
                parent: None,
                is_organization: true,
                inherited: vec![Role::LmsValidator],
            },
            Change::GroupUpserted {
                id: h,
                parent: Some(g),
                is_organization: false,
                inherited: vec![],
            },
            Change::MembershipAdded {
                group: h,
                user: v,
                join_revision: 1 << 40,
            },
            Change::AdministratorsAdded {
                group: g,
                users: vec![u, v],
            },
            Change::CatalogAssigned {
                group: g,
                catalog: "cat-1".into(),
            },
            Change::InheritedRoleChanged {
                group: g,
                tool: Tool::Lms,
                role: None,
            },
            Change::InheritedRoleChanged {
                group: g,
                tool: Tool::Share,
                role: Some(Role::ShareAdmin),
            },
            Change::CatalogUnassigned {
                group: g,
                catalog: "cat-1".into(),
            },
            Change::MembershipRemoved { group: h, user: v },
            Change::AdministratorsRemoved {
                group: g,
                users: vec![v],
            },
            Change::AdministratorsChanged {
                group: h,
                users: vec![u],
            },
            Change::GroupDeleted { id: h },
            Change::UserDeleted { id: u },
        ]
    }

    #[test]
    fn a_log_entry_keeps_every_change_in_order() {
        let changes = every_kind();
        let mut back = Vec::new();
        LogEntry::decode_into(&LogEntry::encode(&changes), |c| back.push(c)).unwrap();
        assert_eq!(back, changes);
    }

    #[test]
    fn a_page_keeps_every_addition() {
        let additions: Vec<Change> = every_kind().into_iter().filter(is_addition).collect();
        let mut back = Vec::new();
        Page::decode_into(&Page::encode(&additions), |c| back.push(c)).unwrap();
        // Column by column: users, groups, memberships, administrators, catalogs;
        // a set comes back as an addition (a base starts from nothing).
        let column = |c: &Change| match c {
            Change::UserUpserted { .. } => 0,
            Change::GroupUpserted { .. } => 1,
            Change::MembershipAdded { .. } => 2,
            Change::AdministratorsAdded { .. } => 3,
            _ => 4,
        };
        let mut expected: Vec<Change> = additions
            .into_iter()
            .map(|c| match c {
                Change::AdministratorsChanged { group, users } => {
                    Change::AdministratorsAdded { group, users }
                }
                other => other,
            })
            .collect();
        expected.sort_by_key(column);
        assert_eq!(back, expected);
    }

    #[test]
    fn another_format_is_refused_and_garbage_is_corrupt() {
        let entry = LogEntry {
            format: FORMAT + 1,
            changes: Vec::new(),
        }
        .encode_to_vec();
        assert!(matches!(
            LogEntry::decode_into(&entry, |_| {}),
            Err(StoreError::Format(_))
        ));
        assert!(matches!(
            Page::decode_into(&[0xff, 0xff, 0xff], |_| {}),
            Err(StoreError::Corrupt(_))
        ));
    }
}
