//! The role catalog: tools, roles, their permissions and the compatibility rules.
//!
//! This is the one definition of the catalog; the directory validates role
//! assignments with it and the authorization service resolves effective roles with
//! it. `docs/ROLES.md` is generated from it (see [`render_markdown`]) and a test
//! keeps the two equal.
//!
//! "Role A contains role B" is computed from the permission sets
//! ([`Role::contains`]), never listed by hand.
//!
//! Layout (this file is long because every question asked of a role, tool or
//! scope sits next to the type it is asked of): this file holds the types
//! (tools, roles, scopes, resource kinds) and the questions asked of them; `grants.rs` the permission sets of every role;
//! `role_set.rs` the validation of a user's direct roles ([`RoleSet`]);
//! `markdown.rs` the rendering of `docs/ROLES.md`; `proto.rs` (feature `proto`)
//! the conversions to the API's enums. The crate depends on nothing of the
//! serving stack, so anything that needs the rules can take it alone.
//!
//! This file is long because the questions asked of the catalog (containment,
//! compatibility, reach) are answered next to the types they are about.

use std::fmt;
use std::str::FromStr;

/// A tool of the platform. Every role belongs to exactly one tool.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Tool {
    GlobalAdmin,
    Lms,
    Author,
    Share,
}

/// How the roles of one tool may be combined on one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    /// At most one role (Global Admin additionally requires exactly one).
    Exclusive,
    /// Any combination.
    Combinable,
    /// One designated role combines with any one of the others; the others exclude
    /// each other.
    OneCombinesWithAny(Role),
}

impl Tool {
    pub const ALL: [Tool; 4] = [Tool::GlobalAdmin, Tool::Lms, Tool::Author, Tool::Share];

    /// The tool's roles, highest first.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Tool::GlobalAdmin => &[
                GlobalAdminAdmin,
                GlobalAdminGroupAdministrator,
                GlobalAdminUser,
            ],
            Tool::Lms => &[
                LmsAdmin,
                LmsGroupAdministrator,
                LmsAuthor,
                LmsTeacher,
                LmsValidator,
                LmsUser,
            ],
            Tool::Author => &[
                AuthorAdministrator,
                AuthorManager,
                AuthorAuthor,
                AuthorReviewer,
            ],
            Tool::Share => &[ShareAdmin, ShareAuthor, ShareConsumer],
        }
    }

    pub fn compatibility(self) -> Compatibility {
        match self {
            Tool::GlobalAdmin | Tool::Share => Compatibility::Exclusive,
            Tool::Lms => Compatibility::Combinable,
            Tool::Author => Compatibility::OneCombinesWithAny(Role::AuthorAuthor),
        }
    }

    /// The role every holder of any of this tool's roles also holds, if any
    /// (LMS USER "comes with any LMS role").
    pub fn implied_role(self) -> Option<Role> {
        match self {
            Tool::Lms => Some(Role::LmsUser),
            _ => None,
        }
    }

    /// Stable name, used in storage and in the feed.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::GlobalAdmin => "GLOBAL_ADMIN",
            Tool::Lms => "LMS",
            Tool::Author => "AUTHOR",
            Tool::Share => "SHARE",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Tool::GlobalAdmin => "Global Admin",
            Tool::Lms => "LMS",
            Tool::Author => "Author",
            Tool::Share => "Share",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tool {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tool::ALL
            .into_iter()
            .find(|tool| tool.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A role, qualified by its tool.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Role {
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

/// Where a permission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeKind {
    /// The whole tenant.
    Tenant,
    /// The groups the user administers (or, for an inherited role, the group that
    /// grants it), with their subgroups.
    AdministeredGroups,
    /// The groups the user belongs to, with their subgroups.
    MemberGroups,
    /// The user's own content, projects or assigned trainings.
    Own,
}

impl ScopeKind {
    /// Whether a grant with this scope covers everything a grant with `other` does.
    pub fn covers(self, other: ScopeKind) -> bool {
        self == ScopeKind::Tenant || self == other
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Tenant => "tenant",
            ScopeKind::AdministeredGroups => "administered groups",
            ScopeKind::MemberGroups => "member groups",
            ScopeKind::Own => "own",
        }
    }
}

/// A permission with the scope a role grants it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant {
    pub permission: &'static str,
    pub scope: ScopeKind,
}

/// Permissions that are organization features: they reach a group, a user or a
/// catalog only through an organization whose flag is on (DOMAIN: "active only
/// while the flag is on").
pub const ORGANIZATION_FEATURES: [&str; 3] = [
    "global_admin.reports.view",
    "lms.reports.view",
    "lms.catalogs.access",
];

/// Every permission of the catalog, each once, in catalog order.
pub fn permissions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for role in Role::ALL {
        for grant in role.grants() {
            if !all.contains(&grant.permission) {
                all.push(grant.permission);
            }
        }
    }
    all
}

/// Whether a name is a permission of the catalog.
pub fn is_permission(name: &str) -> bool {
    applicable_kinds(name).is_some()
}

/// The kinds of resource a permission can be checked on ([`resource_kinds`]), or
/// `None` for a name that is no permission: one lookup in a map built once
/// (checks call this for every item of every request).
pub fn applicable_kinds(name: &str) -> Option<&'static [ResourceKind]> {
    static KINDS: std::sync::LazyLock<
        std::collections::HashMap<&'static str, &'static [ResourceKind]>,
    > = std::sync::LazyLock::new(|| {
        permissions()
            .into_iter()
            .map(|p| (p, resource_kinds(p)))
            .collect()
    });
    KINDS.get(name).copied()
}

/// The kinds of resource a check can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Tenant,
    Group,
    User,
    Catalog,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 4] = [
        ResourceKind::Tenant,
        ResourceKind::Group,
        ResourceKind::User,
        ResourceKind::Catalog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Tenant => "tenant",
            ResourceKind::Group => "group",
            ResourceKind::User => "user",
            ResourceKind::Catalog => "catalog",
        }
    }
}

/// The kinds of resource a permission can be checked on.
///
/// Decided here, as the sources leave it open: a permission that some role grants
/// on the user's own content (`Own`) is about a user's content, so it is checked
/// on a user (the content's owner) and on nothing else, even though the roles
/// that grant it tenant-wide would reach a group or the tenant too: "may this
/// user create playlists in the tenant?" has no answer that is true for an
/// author and means the same for an administrator. Every other permission can be
/// checked on any kind (a tenant or group scope reaches groups, users and
/// catalogs; the tenant itself only through a tenant scope, which is a real
/// question: "may they view reports tenant-wide?"). `lms.content.publish`, which
/// LMS AUTHOR grants on own content and VALIDATOR on groups, is about both
/// users and groups, so it applies to every kind too.
pub fn resource_kinds(permission: &str) -> &'static [ResourceKind] {
    const OWNER: &[ResourceKind] = &[ResourceKind::User];
    let scopes = || {
        Role::ALL
            .iter()
            .flat_map(|r| r.grants())
            .filter(move |g| g.permission == permission)
            .map(|g| g.scope)
    };
    let own = scopes().any(|s| s == ScopeKind::Own);
    let groups =
        scopes().any(|s| matches!(s, ScopeKind::AdministeredGroups | ScopeKind::MemberGroups));
    if own && !groups {
        OWNER
    } else {
        &ResourceKind::ALL
    }
}

/// Whether a permission is an organization feature.
pub fn is_organization_feature(permission: &str) -> bool {
    ORGANIZATION_FEATURES.contains(&permission)
}

impl Role {
    pub const ALL: [Role; 16] = [
        Role::GlobalAdminAdmin,
        Role::GlobalAdminGroupAdministrator,
        Role::GlobalAdminUser,
        Role::LmsAdmin,
        Role::LmsGroupAdministrator,
        Role::LmsAuthor,
        Role::LmsTeacher,
        Role::LmsValidator,
        Role::LmsUser,
        Role::AuthorAdministrator,
        Role::AuthorManager,
        Role::AuthorAuthor,
        Role::AuthorReviewer,
        Role::ShareAdmin,
        Role::ShareAuthor,
        Role::ShareConsumer,
    ];

    pub fn tool(self) -> Tool {
        use Role::*;
        match self {
            GlobalAdminAdmin | GlobalAdminGroupAdministrator | GlobalAdminUser => Tool::GlobalAdmin,
            LmsAdmin | LmsGroupAdministrator | LmsAuthor | LmsTeacher | LmsValidator | LmsUser => {
                Tool::Lms
            }
            AuthorAdministrator | AuthorManager | AuthorAuthor | AuthorReviewer => Tool::Author,
            ShareAdmin | ShareAuthor | ShareConsumer => Tool::Share,
        }
    }

    /// The permissions this role grants, each with its scope.
    pub fn grants(self) -> &'static [Grant] {
        use Role::*;
        match self {
            GlobalAdminAdmin => &GA_ADMIN,
            GlobalAdminGroupAdministrator => &GA_GROUP_ADMINISTRATOR,
            GlobalAdminUser => &GA_COMMON,
            LmsAdmin => &LMS_ADMIN,
            LmsGroupAdministrator => &LMS_GROUP_ADMINISTRATOR,
            LmsAuthor => &LMS_AUTHOR,
            LmsTeacher => &LMS_TEACHER,
            LmsValidator => &LMS_VALIDATOR,
            LmsUser => &LMS_USER,
            AuthorAdministrator => &AUTHOR_ADMINISTRATOR,
            AuthorManager => &AUTHOR_MANAGER,
            AuthorAuthor => &AUTHOR_AUTHOR,
            AuthorReviewer => &AUTHOR_REVIEWER,
            ShareAdmin => &SHARE_ADMIN,
            ShareAuthor => &SHARE_AUTHOR,
            ShareConsumer => &SHARE_CONSUMER,
        }
    }

    /// Whether this role's permission set is a superset of `other`'s: every grant
    /// of `other` is covered by a grant of this role for the same permission.
    pub fn contains(self, other: Role) -> bool {
        other.grants().iter().all(|wanted| {
            self.grants()
                .iter()
                .any(|held| held.permission == wanted.permission && held.scope.covers(wanted.scope))
        })
    }

    /// Whether one user may hold both roles at once, by the rules of their tool.
    /// Roles of different tools are always compatible.
    pub fn is_compatible_with(self, other: Role) -> bool {
        if self.tool() != other.tool() || self == other {
            return true;
        }
        match self.tool().compatibility() {
            Compatibility::Exclusive => false,
            Compatibility::Combinable => true,
            Compatibility::OneCombinesWithAny(joker) => self == joker || other == joker,
        }
    }

    /// Stable name (the proto enum value without its `ROLE_` prefix), used in
    /// storage and in the feed.
    pub fn as_str(self) -> &'static str {
        use Role::*;
        match self {
            GlobalAdminAdmin => "GLOBAL_ADMIN_ADMIN",
            GlobalAdminGroupAdministrator => "GLOBAL_ADMIN_GROUP_ADMINISTRATOR",
            GlobalAdminUser => "GLOBAL_ADMIN_USER",
            LmsAdmin => "LMS_ADMIN",
            LmsGroupAdministrator => "LMS_GROUP_ADMINISTRATOR",
            LmsAuthor => "LMS_AUTHOR",
            LmsTeacher => "LMS_TEACHER",
            LmsValidator => "LMS_VALIDATOR",
            LmsUser => "LMS_USER",
            AuthorAdministrator => "AUTHOR_ADMINISTRATOR",
            AuthorManager => "AUTHOR_MANAGER",
            AuthorAuthor => "AUTHOR_AUTHOR",
            AuthorReviewer => "AUTHOR_REVIEWER",
            ShareAdmin => "SHARE_ADMIN",
            ShareAuthor => "SHARE_AUTHOR",
            ShareConsumer => "SHARE_CONSUMER",
        }
    }

    /// The role's name within its tool, as the source documents write it.
    pub fn short_name(self) -> &'static str {
        let full = self.as_str();
        &full[self.tool().as_str().len() + 1..]
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A tool or role name that is not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown catalog name `{0}`")]
pub struct UnknownName(pub String);

/// How a tool's roles combine, in words (errors and `docs/ROLES.md`).
pub(crate) fn compatibility_rule(tool: Tool) -> &'static str {
    match tool.compatibility() {
        Compatibility::Exclusive => "exclude each other",
        Compatibility::Combinable => "combine freely",
        Compatibility::OneCombinesWithAny(_) => "other than AUTHOR exclude each other",
    }
}

mod grants;
mod markdown;
#[cfg(feature = "proto")]
pub mod proto;
mod role_set;

use grants::*;
pub use markdown::render_markdown;
pub use role_set::{RoleSet, RoleSetError};

#[cfg(test)]
mod tests;
