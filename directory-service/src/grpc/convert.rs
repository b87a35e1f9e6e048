//! Domain to proto conversions (the way out), and the field parsers the handlers
//! use on the way in. Proto types stop here.

use chrono::{DateTime, Utc};
use cohort_shared::catalog::{Role, RoleSet};
use cohort_shared::convert::role_from_proto;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as pb;

use crate::domain::{
    CatalogAssignment, Etag, Group, GroupId, Membership, Tenant, User, UserId, UserState,
    ValidationError,
};

/// The most ids one call may name.
pub const MAX_IDS_PER_CALL: usize = 1000;

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn tenant(t: &Tenant) -> pb::Tenant {
    pb::Tenant {
        id: t.id.to_string(),
        display_name: t.display_name.as_str().to_owned(),
        revision: t.revision,
        create_time: Some(timestamp(t.create_time)),
    }
}

pub fn user(u: &User) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        tenant_id: u.tenant_id.to_string(),
        display_name: u.display_name.as_str().to_owned(),
        email: u.email.as_str().to_owned(),
        roles: u
            .roles
            .roles()
            .iter()
            .map(|r| catalog_pb::Role::from(*r) as i32)
            .collect(),
        state: match u.state {
            UserState::Active => pb::UserState::Active,
            UserState::Suspended => pb::UserState::Suspended,
        } as i32,
        create_time: Some(timestamp(u.create_time)),
        update_time: Some(timestamp(u.update_time)),
        etag: Etag::of(u.revision),
    }
}

pub fn group(g: &Group) -> pb::Group {
    pb::Group {
        id: g.id.to_string(),
        tenant_id: g.tenant_id.to_string(),
        display_name: g.display_name.as_str().to_owned(),
        parent_id: g.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        is_organization: g.is_organization,
        subgroup_count: g.subgroup_count,
        member_count: g.member_count,
        administrator_count: g.administrator_count,
        inherited_roles: g
            .inherited_roles
            .iter()
            .map(|(tool, role)| pb::InheritedRole {
                tool: catalog_pb::Tool::from(*tool) as i32,
                role: catalog_pb::Role::from(*role) as i32,
            })
            .collect(),
        create_time: Some(timestamp(g.create_time)),
        update_time: Some(timestamp(g.update_time)),
        etag: Etag::of(g.revision),
    }
}

pub fn membership(m: &Membership) -> pb::Membership {
    pb::Membership {
        group_id: m.group_id.to_string(),
        user_id: m.user_id.to_string(),
        join_revision: m.join_revision,
        join_time: Some(timestamp(m.join_time)),
    }
}

pub fn catalog_assignment(c: &CatalogAssignment) -> pb::CatalogAssignment {
    pb::CatalogAssignment {
        group_id: c.group_id.to_string(),
        catalog_id: c.catalog_id.as_str().to_owned(),
        assign_time: Some(timestamp(c.assign_time)),
    }
}

pub fn ids<T: ToString>(ids: &[T]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// Parses one role field.
pub fn parse_role(field: &str, value: i32) -> Result<Role, ValidationError> {
    role_from_proto(value).map_err(|e| ValidationError::new(field, e.to_string()))
}

/// Parses a repeated role field, each value named `field[i]`.
pub fn parse_roles(field: &str, values: &[i32]) -> Result<Vec<Role>, ValidationError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| parse_role(&format!("{field}[{i}]"), *v))
        .collect()
}

/// Parses and validates a user's direct roles against the catalog rules.
pub fn parse_role_set(field: &str, values: &[i32]) -> Result<RoleSet, ValidationError> {
    RoleSet::new(parse_roles(field, values)?)
        .map_err(|e| ValidationError::new(field, e.to_string()))
}

fn parse_id_list<T>(
    field: &str,
    raw: &[String],
    parse: impl Fn(&str, &str) -> Result<T, ValidationError>,
) -> Result<Vec<T>, ValidationError> {
    if raw.len() > MAX_IDS_PER_CALL {
        return Err(ValidationError::new(
            field,
            format!("names more than {MAX_IDS_PER_CALL} ids"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, id)| parse(&format!("{field}[{i}]"), id))
        .collect()
}

pub fn parse_user_ids(field: &str, raw: &[String]) -> Result<Vec<UserId>, ValidationError> {
    parse_id_list(field, raw, UserId::parse)
}

/// An optional group id: empty means none.
pub fn parse_optional_group(field: &str, raw: &str) -> Result<Option<GroupId>, ValidationError> {
    if raw.is_empty() {
        Ok(None)
    } else {
        GroupId::parse(field, raw).map(Some)
    }
}

/// A search needle: trimmed, lower-cased, at most 200 characters; empty means none.
pub fn parse_query(field: &str, raw: &str) -> Result<Option<String>, ValidationError> {
    let query = raw.trim();
    if query.chars().count() > 200 {
        return Err(ValidationError::new(field, "is longer than 200 characters"));
    }
    // No name or email holds one, and PostgreSQL refuses a NUL in text outright.
    if query.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok((!query.is_empty()).then(|| query.to_lowercase()))
}

/// The fields an update changes (AIP-134): those its `update_mask` names, or
/// without a mask those that are set.
pub struct UpdateMask(Option<Vec<String>>);

impl UpdateMask {
    /// Reads a mask whose paths must be among `updatable` (`*` meaning all).
    pub fn parse(
        mask: Option<&prost_types::FieldMask>,
        updatable: &[&str],
    ) -> Result<Self, ValidationError> {
        let Some(mask) = mask.filter(|m| !m.paths.is_empty()) else {
            return Ok(UpdateMask(None));
        };
        let mut paths = Vec::with_capacity(mask.paths.len());
        for path in &mask.paths {
            if path == "*" {
                paths.extend(updatable.iter().map(|p| p.to_string()));
            } else if updatable.contains(&path.as_str()) {
                paths.push(path.clone());
            } else {
                return Err(ValidationError::new(
                    "update_mask",
                    format!(
                        "`{path}` is not a field this update changes (it changes {}, or `*` for all)",
                        updatable.join(", ")
                    ),
                ));
            }
        }
        Ok(UpdateMask(Some(paths)))
    }

    /// Whether `field` changes; `set` says whether the request sets it (what
    /// decides when there is no mask).
    pub fn changes(&self, field: &str, set: bool) -> bool {
        match &self.0 {
            Some(paths) => paths.iter().any(|p| p == field),
            None => set,
        }
    }
}
