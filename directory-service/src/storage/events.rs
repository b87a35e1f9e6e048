//! The stored form of change events (the outbox's `changes` column), kept apart
//! from the domain types so that renaming a Rust field or variant cannot change
//! what is written or make retained events unreadable.
//!
//! One file on purpose: every record of the stored format with its conversion
//! both ways, so that a change to one direction shows next to the other.
//!
//! Version 1 is a JSON array of changes, each an object tagged by `type`, in the
//! shape the directory has written since its first release (the records below
//! reproduce it field for field; a test reads a frozen sample). Reading
//! validates every value as the API does (names, emails, catalog ids, role
//! sets), so a stored event is never trusted more than a request.
//!
//! Version 2 is an object, `{"version":2,"changes":[...]}`: the records of
//! version 1 and one more, `memberships_added`, which holds a run of members
//! added to one group at one revision and time. A bulk `AddGroupMembers` of
//! 1,000 ids is ~40 KB in it instead of ~210 KB (version 1 repeats the group,
//! revision and time for every member), which the outbox's write paid for in
//! encoding, compression and WAL: a tenth of that call's cost. Version 2 is
//! written only for the change sets it shortens; every other set is still
//! written as version 1. A bare array is always version 1, so no stored row
//! needs rewriting.
//!
//! Never change a stored record: add a version.

use chrono::{DateTime, Utc};
use cohort_shared::catalog::{Role, RoleSet, Tool};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    CatalogId, Change, DisplayName, Email, Group, GroupId, Membership, Tenant, TenantId, User,
    UserId, UserState,
};
use crate::storage::{StoreError, StoreResult};

/// The changes of one change set, as stored.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct StoredChanges(Vec<ChangeV1>);

/// Encodes a change set's changes for the outbox: version 2 when it adds
/// several members to a group at once, version 1 otherwise.
pub(crate) fn encode(changes: &[Change]) -> StoreResult<String> {
    let text = match grouped(changes) {
        Some(records) => serde_json::to_string(&StoredV2 {
            version: 2,
            changes: records,
        }),
        None => serde_json::to_string(&changes.iter().map(ChangeV1::from).collect::<Vec<_>>()),
    };
    text.map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl StoredChanges {
    /// The domain changes, each value validated.
    pub(crate) fn decode(self) -> StoreResult<Vec<Change>> {
        self.0.into_iter().map(Change::try_from).collect()
    }
}

/// Decodes stored changes from their text, as the outbox holds them (either
/// version).
pub(crate) fn decode_text(text: &str) -> StoreResult<Vec<Change>> {
    let unreadable = |e: serde_json::Error| StoreError::Corrupt(format!("stored changes: {e}"));
    if !text.trim_start().starts_with('{') {
        return serde_json::from_str::<StoredChanges>(text)
            .map_err(unreadable)?
            .decode();
    }
    let stored: StoredV2 = serde_json::from_str(text).map_err(unreadable)?;
    if stored.version != 2 {
        return Err(corrupt("stored changes' version", stored.version));
    }
    let mut changes = Vec::with_capacity(stored.changes.len());
    for record in stored.changes {
        match record {
            ChangeV2::MembershipsAdded {
                group_id,
                join_revision,
                join_time,
                user_ids,
            } => {
                if user_ids.is_empty() {
                    return Err(corrupt("memberships_added", "without user_ids"));
                }
                // Each member read as version 1 reads one.
                for user_id in user_ids {
                    changes.push(Change::try_from(ChangeV1::MembershipAdded {
                        membership: MembershipV1 {
                            group_id,
                            user_id,
                            join_revision,
                            join_time,
                        },
                    })?);
                }
            }
            ChangeV2::V1(change) => changes.push(Change::try_from(change)?),
        }
    }
    Ok(changes)
}

/// A change set written as version 2.
#[derive(Debug, Serialize, Deserialize)]
struct StoredV2 {
    version: u32,
    changes: Vec<ChangeV2>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChangeV2 {
    /// Members added one after the other to one group, at one revision and time.
    MembershipsAdded {
        group_id: Uuid,
        join_revision: i64,
        join_time: DateTime<Utc>,
        user_ids: Vec<Uuid>,
    },
    /// Any other change, as version 1 writes it.
    #[serde(untagged)]
    V1(ChangeV1),
}

/// The membership `change` adds when it continues the run `previous` is in:
/// the same group, revision and time.
fn continues_run<'a>(previous: Option<&Change>, change: &'a Change) -> Option<&'a Membership> {
    match (previous, change) {
        (
            Some(Change::MembershipAdded { membership: before }),
            Change::MembershipAdded { membership },
        ) if before.group_id == membership.group_id
            && before.join_revision == membership.join_revision
            && before.join_time == membership.join_time =>
        {
            Some(membership)
        }
        _ => None,
    }
}

/// The changes as version 2 records, each run of members added to one group at
/// one revision and time in one record; `None` when that shortens nothing (no
/// two such additions follow each other), and version 1 is written. Checked
/// before anything is converted: most change sets (every single write) are
/// written as version 1.
fn grouped(changes: &[Change]) -> Option<Vec<ChangeV2>> {
    if !changes
        .windows(2)
        .any(|pair| continues_run(Some(&pair[0]), &pair[1]).is_some())
    {
        return None;
    }
    let mut records: Vec<ChangeV2> = Vec::new();
    let mut previous = None;
    for change in changes {
        match (continues_run(previous, change), records.last_mut(), change) {
            (Some(m), Some(ChangeV2::MembershipsAdded { user_ids, .. }), _) => {
                user_ids.push(m.user_id.0)
            }
            (_, _, Change::MembershipAdded { membership: m }) => {
                records.push(ChangeV2::MembershipsAdded {
                    group_id: m.group_id.0,
                    join_revision: m.join_revision,
                    join_time: m.join_time,
                    user_ids: vec![m.user_id.0],
                })
            }
            _ => records.push(ChangeV2::V1(ChangeV1::from(change))),
        }
        previous = Some(change);
    }
    Some(records)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChangeV1 {
    TenantCreated {
        tenant: TenantV1,
    },
    UserUpserted {
        user: UserV1,
    },
    UserDeleted {
        user_id: Uuid,
    },
    GroupUpserted {
        group: GroupV1,
    },
    GroupDeleted {
        group_id: Uuid,
    },
    MembershipAdded {
        membership: MembershipV1,
    },
    MembershipRemoved {
        group_id: Uuid,
        user_id: Uuid,
    },
    AdministratorsChanged {
        group_id: Uuid,
        administrator_ids: Vec<Uuid>,
    },
    AdministratorsAdded {
        group_id: Uuid,
        administrator_ids: Vec<Uuid>,
    },
    AdministratorsRemoved {
        group_id: Uuid,
        administrator_ids: Vec<Uuid>,
    },
    InheritedRoleSet {
        group_id: Uuid,
        tool: ToolV1,
        role: RoleV1,
    },
    InheritedRoleCleared {
        group_id: Uuid,
        tool: ToolV1,
    },
    CatalogAssigned {
        group_id: Uuid,
        catalog_id: String,
    },
    CatalogUnassigned {
        group_id: Uuid,
        catalog_id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct TenantV1 {
    id: Uuid,
    display_name: String,
    revision: i64,
    create_time: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct UserV1 {
    id: Uuid,
    tenant_id: Uuid,
    display_name: String,
    email: String,
    roles: Vec<RoleV1>,
    state: UserStateV1,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    revision: i64,
}

#[derive(Debug, Serialize, Deserialize)]
enum UserStateV1 {
    Active,
    Suspended,
}

#[derive(Debug, Serialize, Deserialize)]
struct GroupV1 {
    id: Uuid,
    tenant_id: Uuid,
    display_name: String,
    parent_id: Option<Uuid>,
    is_organization: bool,
    inherited_roles: Vec<(ToolV1, RoleV1)>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
    revision: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct MembershipV1 {
    group_id: Uuid,
    user_id: Uuid,
    join_revision: i64,
    join_time: DateTime<Utc>,
}

/// Tools and roles by the names version 1 writes (the catalog's Rust variant
/// names when it was defined), mapped explicitly both ways.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum ToolV1 {
    GlobalAdmin,
    Lms,
    Author,
    Share,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum RoleV1 {
    GlobalAdminAdmin,
    GlobalAdminGroupAdministrator,
    GlobalAdminUser,
    LmsAdmin,
    LmsGroupAdministrator,
    LmsAuthor,
    LmsTeacher,
    LmsValidator,
    LmsUser,
    AuthorAdministrator,
    AuthorManager,
    AuthorAuthor,
    AuthorReviewer,
    ShareAdmin,
    ShareAuthor,
    ShareConsumer,
}

macro_rules! both_ways {
    ($stored:ident <-> $domain:ident: $($variant:ident),*) => {
        impl From<$domain> for $stored {
            fn from(value: $domain) -> Self {
                match value { $($domain::$variant => $stored::$variant),* }
            }
        }
        impl From<$stored> for $domain {
            fn from(value: $stored) -> Self {
                match value { $($stored::$variant => $domain::$variant),* }
            }
        }
    };
}

both_ways!(ToolV1 <-> Tool: GlobalAdmin, Lms, Author, Share);
both_ways!(RoleV1 <-> Role: GlobalAdminAdmin, GlobalAdminGroupAdministrator, GlobalAdminUser,
    LmsAdmin, LmsGroupAdministrator, LmsAuthor, LmsTeacher, LmsValidator, LmsUser,
    AuthorAdministrator, AuthorManager, AuthorAuthor, AuthorReviewer, ShareAdmin, ShareAuthor,
    ShareConsumer);
both_ways!(UserStateV1 <-> UserState: Active, Suspended);

fn ids(raw: Vec<Uuid>) -> Vec<UserId> {
    raw.into_iter().map(UserId).collect()
}

fn raw(ids: &[UserId]) -> Vec<Uuid> {
    ids.iter().map(|id| id.0).collect()
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("stored change, {what}: {detail}"))
}

impl From<&Change> for ChangeV1 {
    fn from(change: &Change) -> Self {
        match change {
            Change::TenantCreated { tenant } => ChangeV1::TenantCreated {
                tenant: TenantV1 {
                    id: tenant.id.0,
                    display_name: tenant.display_name.as_str().to_owned(),
                    revision: tenant.revision,
                    create_time: tenant.create_time,
                },
            },
            Change::UserUpserted { user } => ChangeV1::UserUpserted {
                user: UserV1 {
                    id: user.id.0,
                    tenant_id: user.tenant_id.0,
                    display_name: user.display_name.as_str().to_owned(),
                    email: user.email.as_str().to_owned(),
                    roles: user
                        .roles
                        .roles()
                        .iter()
                        .map(|r| RoleV1::from(*r))
                        .collect(),
                    state: user.state.into(),
                    create_time: user.create_time,
                    update_time: user.update_time,
                    revision: user.revision,
                },
            },
            Change::UserDeleted { user_id } => ChangeV1::UserDeleted { user_id: user_id.0 },
            Change::GroupUpserted { group } => ChangeV1::GroupUpserted {
                group: GroupV1 {
                    id: group.id.0,
                    tenant_id: group.tenant_id.0,
                    display_name: group.display_name.as_str().to_owned(),
                    parent_id: group.parent_id.map(|p| p.0),
                    is_organization: group.is_organization,
                    inherited_roles: group
                        .inherited_roles
                        .iter()
                        .map(|(t, r)| ((*t).into(), (*r).into()))
                        .collect(),
                    create_time: group.create_time,
                    update_time: group.update_time,
                    revision: group.revision,
                },
            },
            Change::GroupDeleted { group_id } => ChangeV1::GroupDeleted {
                group_id: group_id.0,
            },
            Change::MembershipAdded { membership } => ChangeV1::MembershipAdded {
                membership: MembershipV1 {
                    group_id: membership.group_id.0,
                    user_id: membership.user_id.0,
                    join_revision: membership.join_revision,
                    join_time: membership.join_time,
                },
            },
            Change::MembershipRemoved { group_id, user_id } => ChangeV1::MembershipRemoved {
                group_id: group_id.0,
                user_id: user_id.0,
            },
            Change::AdministratorsChanged {
                group_id,
                administrator_ids,
            } => ChangeV1::AdministratorsChanged {
                group_id: group_id.0,
                administrator_ids: raw(administrator_ids),
            },
            Change::AdministratorsAdded {
                group_id,
                administrator_ids,
            } => ChangeV1::AdministratorsAdded {
                group_id: group_id.0,
                administrator_ids: raw(administrator_ids),
            },
            Change::AdministratorsRemoved {
                group_id,
                administrator_ids,
            } => ChangeV1::AdministratorsRemoved {
                group_id: group_id.0,
                administrator_ids: raw(administrator_ids),
            },
            Change::InheritedRoleSet {
                group_id,
                tool,
                role,
            } => ChangeV1::InheritedRoleSet {
                group_id: group_id.0,
                tool: (*tool).into(),
                role: (*role).into(),
            },
            Change::InheritedRoleCleared { group_id, tool } => ChangeV1::InheritedRoleCleared {
                group_id: group_id.0,
                tool: (*tool).into(),
            },
            Change::CatalogAssigned {
                group_id,
                catalog_id,
            } => ChangeV1::CatalogAssigned {
                group_id: group_id.0,
                catalog_id: catalog_id.as_str().to_owned(),
            },
            Change::CatalogUnassigned {
                group_id,
                catalog_id,
            } => ChangeV1::CatalogUnassigned {
                group_id: group_id.0,
                catalog_id: catalog_id.as_str().to_owned(),
            },
        }
    }
}

impl TryFrom<ChangeV1> for Change {
    type Error = StoreError;

    fn try_from(change: ChangeV1) -> StoreResult<Change> {
        let name = |raw: &str| {
            DisplayName::parse("display_name", raw).map_err(|e| corrupt("display name", e))
        };
        let catalog =
            |raw: &str| CatalogId::parse("catalog_id", raw).map_err(|e| corrupt("catalog id", e));
        Ok(match change {
            ChangeV1::TenantCreated { tenant } => Change::TenantCreated {
                tenant: Tenant {
                    id: TenantId(tenant.id),
                    display_name: name(&tenant.display_name)?,
                    revision: tenant.revision,
                    create_time: tenant.create_time,
                },
            },
            ChangeV1::UserUpserted { user } => Change::UserUpserted {
                user: User {
                    id: UserId(user.id),
                    tenant_id: TenantId(user.tenant_id),
                    display_name: name(&user.display_name)?,
                    email: Email::parse("email", &user.email).map_err(|e| corrupt("email", e))?,
                    roles: RoleSet::from_stored(user.roles.into_iter().map(Role::from))
                        .map_err(|e| corrupt("roles", e))?,
                    state: user.state.into(),
                    create_time: user.create_time,
                    update_time: user.update_time,
                    revision: user.revision,
                },
            },
            ChangeV1::UserDeleted { user_id } => Change::UserDeleted {
                user_id: UserId(user_id),
            },
            ChangeV1::GroupUpserted { group } => Change::GroupUpserted {
                group: Group {
                    id: GroupId(group.id),
                    tenant_id: TenantId(group.tenant_id),
                    display_name: name(&group.display_name)?,
                    parent_id: group.parent_id.map(GroupId),
                    is_organization: group.is_organization,
                    subgroup_count: 0,
                    member_count: 0,
                    administrator_count: 0,
                    inherited_roles: group
                        .inherited_roles
                        .into_iter()
                        .map(|(t, r)| (t.into(), r.into()))
                        .collect(),
                    create_time: group.create_time,
                    update_time: group.update_time,
                    revision: group.revision,
                },
            },
            ChangeV1::GroupDeleted { group_id } => Change::GroupDeleted {
                group_id: GroupId(group_id),
            },
            ChangeV1::MembershipAdded { membership } => Change::MembershipAdded {
                membership: Membership {
                    group_id: GroupId(membership.group_id),
                    user_id: UserId(membership.user_id),
                    join_revision: membership.join_revision,
                    join_time: membership.join_time,
                },
            },
            ChangeV1::MembershipRemoved { group_id, user_id } => Change::MembershipRemoved {
                group_id: GroupId(group_id),
                user_id: UserId(user_id),
            },
            ChangeV1::AdministratorsChanged {
                group_id,
                administrator_ids,
            } => Change::AdministratorsChanged {
                group_id: GroupId(group_id),
                administrator_ids: ids(administrator_ids),
            },
            ChangeV1::AdministratorsAdded {
                group_id,
                administrator_ids,
            } => Change::AdministratorsAdded {
                group_id: GroupId(group_id),
                administrator_ids: ids(administrator_ids),
            },
            ChangeV1::AdministratorsRemoved {
                group_id,
                administrator_ids,
            } => Change::AdministratorsRemoved {
                group_id: GroupId(group_id),
                administrator_ids: ids(administrator_ids),
            },
            ChangeV1::InheritedRoleSet {
                group_id,
                tool,
                role,
            } => Change::InheritedRoleSet {
                group_id: GroupId(group_id),
                tool: tool.into(),
                role: role.into(),
            },
            ChangeV1::InheritedRoleCleared { group_id, tool } => Change::InheritedRoleCleared {
                group_id: GroupId(group_id),
                tool: tool.into(),
            },
            ChangeV1::CatalogAssigned {
                group_id,
                catalog_id,
            } => Change::CatalogAssigned {
                group_id: GroupId(group_id),
                catalog_id: catalog(&catalog_id)?,
            },
            ChangeV1::CatalogUnassigned {
                group_id,
                catalog_id,
            } => Change::CatalogUnassigned {
                group_id: GroupId(group_id),
                catalog_id: catalog(&catalog_id)?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by the directory before this module existed (the serde form of
    /// the domain types): every kind of change, as the outbox holds them.
    const WRITTEN_BEFORE: &str = r#"[
        {"type":"tenant_created","tenant":{"id":"0192d3a0-0000-7000-8000-000000000001","display_name":"Acme","revision":1,"create_time":"2026-11-20T10:00:00Z"}},
        {"type":"user_upserted","user":{"id":"0192d3a0-0000-7000-8000-000000000002","tenant_id":"0192d3a0-0000-7000-8000-000000000001","display_name":"Ada","email":"Ada@Acme.test","roles":["GlobalAdminGroupAdministrator","LmsGroupAdministrator","LmsUser"],"state":"Active","create_time":"2026-11-20T10:00:00Z","update_time":"2026-11-20T10:00:00.123456Z","revision":0}},
        {"type":"user_deleted","user_id":"0192d3a0-0000-7000-8000-000000000002"},
        {"type":"group_upserted","group":{"id":"0192d3a0-0000-7000-8000-000000000003","tenant_id":"0192d3a0-0000-7000-8000-000000000001","display_name":"Org","parent_id":null,"is_organization":true,"inherited_roles":[["Lms","LmsValidator"]],"create_time":"2026-11-20T10:00:00Z","update_time":"2026-11-20T10:00:00Z","revision":0}},
        {"type":"group_deleted","group_id":"0192d3a0-0000-7000-8000-000000000003"},
        {"type":"membership_added","membership":{"group_id":"0192d3a0-0000-7000-8000-000000000003","user_id":"0192d3a0-0000-7000-8000-000000000002","join_revision":0,"join_time":"2026-11-20T10:00:00Z"}},
        {"type":"membership_removed","group_id":"0192d3a0-0000-7000-8000-000000000003","user_id":"0192d3a0-0000-7000-8000-000000000002"},
        {"type":"administrators_changed","group_id":"0192d3a0-0000-7000-8000-000000000003","administrator_ids":["0192d3a0-0000-7000-8000-000000000002"]},
        {"type":"administrators_added","group_id":"0192d3a0-0000-7000-8000-000000000003","administrator_ids":[]},
        {"type":"administrators_removed","group_id":"0192d3a0-0000-7000-8000-000000000003","administrator_ids":["0192d3a0-0000-7000-8000-000000000002"]},
        {"type":"inherited_role_set","group_id":"0192d3a0-0000-7000-8000-000000000003","tool":"Share","role":"ShareConsumer"},
        {"type":"inherited_role_cleared","group_id":"0192d3a0-0000-7000-8000-000000000003","tool":"Author"},
        {"type":"catalog_assigned","group_id":"0192d3a0-0000-7000-8000-000000000003","catalog_id":"cat-1"},
        {"type":"catalog_unassigned","group_id":"0192d3a0-0000-7000-8000-000000000003","catalog_id":"cat-1"}
    ]"#;

    #[test]
    fn events_written_by_the_previous_format_are_read_and_written_back_the_same() {
        let changes = decode_text(WRITTEN_BEFORE).unwrap();
        assert_eq!(changes.len(), 14);
        let Change::UserUpserted { user } = &changes[1] else {
            panic!("{:?}", changes[1]);
        };
        assert_eq!(user.email.as_str(), "Ada@Acme.test");
        assert!(user.roles.contains(Role::LmsGroupAdministrator));
        let Change::GroupUpserted { group } = &changes[3] else {
            panic!("{:?}", changes[3]);
        };
        assert_eq!(group.inherited_roles, [(Tool::Lms, Role::LmsValidator)]);
        // Writing them again gives the same JSON, value for value.
        let again: serde_json::Value = serde_json::from_str(&encode(&changes).unwrap()).unwrap();
        let before: serde_json::Value = serde_json::from_str(WRITTEN_BEFORE).unwrap();
        assert_eq!(again, before);
    }

    /// Version 2 as written by the directory that introduced it: a run of
    /// members added to one group, then a group's own change between two runs.
    const WRITTEN_AS_VERSION_2: &str = r#"{"version":2,"changes":[
        {"type":"memberships_added","group_id":"0192d3a0-0000-7000-8000-000000000003","join_revision":7,"join_time":"2026-11-20T10:00:00Z","user_ids":["0192d3a0-0000-7000-8000-000000000002","0192d3a0-0000-7000-8000-000000000004"]},
        {"type":"catalog_assigned","group_id":"0192d3a0-0000-7000-8000-000000000003","catalog_id":"cat-1"},
        {"type":"memberships_added","group_id":"0192d3a0-0000-7000-8000-000000000003","join_revision":7,"join_time":"2026-11-20T10:00:00Z","user_ids":["0192d3a0-0000-7000-8000-000000000005"]}
    ]}"#;

    fn added(group: u128, user: u128, revision: i64, second: i64) -> Change {
        Change::MembershipAdded {
            membership: Membership {
                group_id: GroupId(Uuid::from_u128(group)),
                user_id: UserId(Uuid::from_u128(user)),
                join_revision: revision,
                join_time: DateTime::from_timestamp(second, 0).unwrap(),
            },
        }
    }

    #[test]
    fn version_2_is_read_in_order_and_written_back_the_same() {
        let changes = decode_text(WRITTEN_AS_VERSION_2).unwrap();
        let group = 0x0192d3a0_0000_7000_8000_000000000003;
        let at = DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
            .unwrap()
            .timestamp();
        assert_eq!(changes.len(), 4);
        assert_eq!(
            changes[0],
            added(group, 0x0192d3a0_0000_7000_8000_000000000002, 7, at)
        );
        assert_eq!(
            changes[1],
            added(group, 0x0192d3a0_0000_7000_8000_000000000004, 7, at)
        );
        assert!(matches!(changes[2], Change::CatalogAssigned { .. }));
        assert_eq!(
            changes[3],
            added(group, 0x0192d3a0_0000_7000_8000_000000000005, 7, at)
        );
        let again: serde_json::Value = serde_json::from_str(&encode(&changes).unwrap()).unwrap();
        let before: serde_json::Value = serde_json::from_str(WRITTEN_AS_VERSION_2).unwrap();
        assert_eq!(again, before);
    }

    #[test]
    fn version_2_is_written_only_when_it_shortens_the_set() {
        // Every change apart: version 1, readable by a directory that knows only it.
        let apart = vec![added(1, 2, 5, 0), added(3, 2, 5, 0), added(1, 4, 6, 0)];
        assert!(encode(&apart).unwrap().starts_with('['));
        // A bulk addition: version 2, a fraction of the bytes.
        let bulk: Vec<Change> = (0..1000).map(|u| added(1, u + 10, 5, 0)).collect();
        let text = encode(&bulk).unwrap();
        assert!(text.starts_with(r#"{"version":2"#), "{}", &text[..40]);
        let as_version_1 =
            serde_json::to_string(&bulk.iter().map(ChangeV1::from).collect::<Vec<_>>()).unwrap();
        assert!(
            text.len() * 4 < as_version_1.len(),
            "{} against {}",
            text.len(),
            as_version_1.len()
        );
    }

    /// Random change sets of memberships (few groups, revisions and times, so that
    /// runs form and break) and other changes: read back, each is the set written.
    #[test]
    fn any_set_of_changes_is_read_back_as_written() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for _ in 0..500 {
            let changes: Vec<Change> = (0..rng.random_range(0..40))
                .map(|_| match rng.random_range(0..6) {
                    0 => Change::MembershipRemoved {
                        group_id: GroupId(Uuid::from_u128(rng.random_range(1..3))),
                        user_id: UserId(Uuid::from_u128(rng.random_range(10..20))),
                    },
                    _ => added(
                        rng.random_range(1..3),
                        rng.random_range(10..20),
                        rng.random_range(5..7),
                        rng.random_range(0..2),
                    ),
                })
                .collect();
            let text = encode(&changes).unwrap();
            assert_eq!(decode_text(&text).unwrap(), changes, "{text}");
        }
    }

    #[test]
    fn a_version_2_record_without_users_or_an_unknown_version_is_refused() {
        let no_users = r#"{"version":2,"changes":[{"type":"memberships_added","group_id":"0192d3a0-0000-7000-8000-000000000003","join_revision":7,"join_time":"2026-11-20T10:00:00Z","user_ids":[]}]}"#;
        assert!(matches!(decode_text(no_users), Err(StoreError::Corrupt(_))));
        let version_3 = WRITTEN_AS_VERSION_2.replace(r#""version":2"#, r#""version":3"#);
        assert!(matches!(
            decode_text(&version_3),
            Err(StoreError::Corrupt(_))
        ));
        let unknown_type = WRITTEN_AS_VERSION_2.replace("catalog_assigned", "catalog_stolen");
        assert!(matches!(
            decode_text(&unknown_type),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn stored_values_are_validated_on_reading() {
        let blank_name =
            WRITTEN_BEFORE.replace(r#""display_name":"Org""#, r#""display_name":"  ""#);
        assert!(matches!(
            decode_text(&blank_name),
            Err(StoreError::Corrupt(_))
        ));
        let no_global_admin_role = WRITTEN_BEFORE.replace(
            r#"["GlobalAdminGroupAdministrator","LmsGroupAdministrator","LmsUser"]"#,
            r#"["LmsUser"]"#,
        );
        assert!(matches!(
            decode_text(&no_global_admin_role),
            Err(StoreError::Corrupt(_))
        ));
        let unknown_role = WRITTEN_BEFORE.replace("ShareConsumer", "ShareViewer");
        assert!(decode_text(&unknown_role).is_err());
    }
}
