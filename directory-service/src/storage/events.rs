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
//! sets), so a stored event is never trusted more than a request. A later
//! version is written as an object `{"version": 2, ...}`: a bare array is always
//! version 1, so no stored row needs rewriting.
//!
//! Never change a `V1` record: add a version.

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

/// Encodes a change set's changes for the outbox (version 1).
pub(crate) fn encode(changes: &[Change]) -> StoreResult<String> {
    let records: Vec<ChangeV1> = changes.iter().map(ChangeV1::from).collect();
    serde_json::to_string(&records).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl StoredChanges {
    /// The domain changes, each value validated.
    pub(crate) fn decode(self) -> StoreResult<Vec<Change>> {
        self.0.into_iter().map(Change::try_from).collect()
    }
}

/// Decodes stored changes from their text, as the outbox holds them.
pub(crate) fn decode_text(text: &str) -> StoreResult<Vec<Change>> {
    serde_json::from_str::<StoredChanges>(text)
        .map_err(|e| StoreError::Corrupt(format!("stored changes: {e}")))?
        .decode()
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
