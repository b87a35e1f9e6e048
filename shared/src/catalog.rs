//! The role catalog: tools, roles, their permissions and the compatibility rules.
//!
//! This is the one definition of the catalog; the directory validates role
//! assignments with it and the authorization service resolves effective roles with
//! it. `docs/ROLES.md` is generated from it (see [`render_markdown`]) and a test
//! keeps the two equal.
//!
//! "Role A contains role B" is computed from the permission sets
//! ([`Role::contains`]), never listed by hand.

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

const fn grant(permission: &'static str, scope: ScopeKind) -> Grant {
    Grant { permission, scope }
}

use ScopeKind::{AdministeredGroups, MemberGroups, Own, Tenant};

// Permission names are `tool.object.action`. The sets follow the source documents:
// Global Admin ADMIN reaches Configuration, GROUP_ADMINISTRATOR the Users section of
// its groups ("you cannot have access to Configuration and Users at the same time").
const GA_COMMON: [Grant; 2] = [
    grant("global_admin.announcements.view", Tenant),
    grant("global_admin.notifications.view", Own),
];
const GA_ADMIN: [Grant; 4] = [
    grant("global_admin.configuration.access", Tenant),
    grant("global_admin.groups.manage", Tenant),
    GA_COMMON[0],
    GA_COMMON[1],
];
const GA_GROUP_ADMINISTRATOR: [Grant; 4] = [
    grant("global_admin.users.manage", AdministeredGroups),
    grant("global_admin.reports.view", AdministeredGroups),
    GA_COMMON[0],
    GA_COMMON[1],
];

// Every LMS role comes with USER's grants: taking courses, and access to the
// content catalogs of the organizations the user belongs to.
const LMS_USER: [Grant; 2] = [
    grant("lms.courses.take", Own),
    grant("lms.catalogs.access", MemberGroups),
];
const LMS_VALIDATOR: [Grant; 3] = [
    grant("lms.content.publish", MemberGroups),
    LMS_USER[0],
    LMS_USER[1],
];
const LMS_TEACHER: [Grant; 3] = [grant("lms.trainings.review", Own), LMS_USER[0], LMS_USER[1]];
const LMS_AUTHOR: [Grant; 5] = [
    grant("lms.content.create", Own),
    grant("lms.content.edit", Own),
    grant("lms.content.publish", Own),
    LMS_USER[0],
    LMS_USER[1],
];
const LMS_GROUP_ADMINISTRATOR: [Grant; 6] = [
    grant("lms.trainings.manage", AdministeredGroups),
    grant("lms.members.manage", AdministeredGroups),
    grant("lms.reports.view", AdministeredGroups),
    grant("lms.content.publish", AdministeredGroups),
    LMS_USER[0],
    LMS_USER[1],
];
const LMS_ADMIN: [Grant; 11] = [
    grant("lms.settings.manage", Tenant),
    grant("lms.trainings.manage", Tenant),
    grant("lms.members.manage", Tenant),
    grant("lms.reports.view", Tenant),
    grant("lms.content.create", Tenant),
    grant("lms.content.edit", Tenant),
    grant("lms.content.publish", Tenant),
    grant("lms.trainings.review", Tenant),
    grant("lms.courses.take", Tenant),
    grant("lms.catalogs.manage", Tenant),
    grant("lms.catalogs.access", Tenant),
];

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

const AUTHOR_REVIEWER: [Grant; 1] = [grant("author.reviews.perform", Own)];
const AUTHOR_AUTHOR: [Grant; 2] = [
    grant("author.units.edit", Own),
    grant("author.projects.view", Own),
];
const AUTHOR_MANAGER: [Grant; 3] = [
    grant("author.projects.manage", Own),
    grant("author.projects.view", Own),
    grant("author.reviews.perform", Own),
];
const AUTHOR_ADMINISTRATOR: [Grant; 4] = [
    grant("author.tenant.manage", Tenant),
    grant("author.projects.manage", Tenant),
    grant("author.projects.view", Tenant),
    grant("author.reviews.perform", Tenant),
];

const SHARE_CONSUMER: [Grant; 1] = [grant("share.playlists.consume", Tenant)];
const SHARE_AUTHOR: [Grant; 2] = [grant("share.playlists.create", Own), SHARE_CONSUMER[0]];
const SHARE_ADMIN: [Grant; 3] = [
    grant("share.content.approve", Tenant),
    grant("share.playlists.create", Tenant),
    SHARE_CONSUMER[0],
];

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

/// Why a set of direct roles is not a valid assignment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleSetError {
    #[error("a user must hold exactly one Global Admin role")]
    MissingGlobalAdminRole,
    #[error("{first} and {second} are incompatible: {tool} roles {rule}")]
    Incompatible {
        tool: &'static str,
        first: Role,
        second: Role,
        rule: &'static str,
    },
    #[error("{role} requires the Global Admin role GROUP_ADMINISTRATOR")]
    RequiresGlobalAdminGroupAdministrator { role: Role },
}

/// A valid set of direct roles: sorted, without duplicates, with implied roles
/// added.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RoleSet(Vec<Role>);

impl RoleSet {
    /// Validates a user's direct roles against the catalog rules. Duplicates are
    /// folded and implied roles (LMS USER) are added.
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Result<Self, RoleSetError> {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        for tool in Tool::ALL {
            if let Some(implied) = tool.implied_role() {
                if roles.iter().any(|r| r.tool() == tool) && !roles.contains(&implied) {
                    roles.push(implied);
                }
            }
        }
        roles.sort();
        roles.dedup();

        for (i, &first) in roles.iter().enumerate() {
            if let Some(&second) = roles[i + 1..]
                .iter()
                .find(|&&r| !first.is_compatible_with(r))
            {
                return Err(RoleSetError::Incompatible {
                    tool: first.tool().title(),
                    first,
                    second,
                    rule: compatibility_rule(first.tool()),
                });
            }
        }
        if !roles.iter().any(|r| r.tool() == Tool::GlobalAdmin) {
            return Err(RoleSetError::MissingGlobalAdminRole);
        }
        if roles.contains(&Role::LmsGroupAdministrator)
            && !roles.contains(&Role::GlobalAdminGroupAdministrator)
        {
            return Err(RoleSetError::RequiresGlobalAdminGroupAdministrator {
                role: Role::LmsGroupAdministrator,
            });
        }
        Ok(RoleSet(roles))
    }

    /// Rebuilds a set that was valid when it was stored, without re-checking the
    /// compatibility rules (so that a later catalog change cannot make stored users
    /// unreadable). It still requires the Global Admin role every user holds.
    pub fn from_stored(roles: impl IntoIterator<Item = Role>) -> Result<Self, RoleSetError> {
        let mut roles: Vec<Role> = roles.into_iter().collect();
        roles.sort();
        roles.dedup();
        if !roles.iter().any(|r| r.tool() == Tool::GlobalAdmin) {
            return Err(RoleSetError::MissingGlobalAdminRole);
        }
        Ok(RoleSet(roles))
    }

    pub fn roles(&self) -> &[Role] {
        &self.0
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    /// The user's one Global Admin role.
    pub fn global_admin_role(&self) -> Role {
        self.0
            .iter()
            .copied()
            .find(|r| r.tool() == Tool::GlobalAdmin)
            .expect("a RoleSet always holds a Global Admin role")
    }
}

fn compatibility_rule(tool: Tool) -> &'static str {
    match tool.compatibility() {
        Compatibility::Exclusive => "exclude each other",
        Compatibility::Combinable => "combine freely",
        Compatibility::OneCombinesWithAny(_) => "other than AUTHOR exclude each other",
    }
}

/// Renders the catalog as the Markdown document `docs/ROLES.md`.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# The role catalog\n\n\
         Generated from `shared/src/catalog.rs` by \
         `COHORT_WRITE_DOCS=1 cargo test -p cohort-shared roles_doc`; a test fails when \
         this file and the code disagree.\n\n\
         \"Contains\" is computed from the permission sets: role A contains role B when \
         every permission of B is granted by A in the same or a wider scope (tenant \
         covers every scope).\n\n\
         ## Tools\n\n| tool | roles, highest first | compatibility |\n|---|---|---|\n",
    );
    for tool in Tool::ALL {
        let roles: Vec<&str> = tool.roles().iter().map(|r| r.short_name()).collect();
        let rule = match tool.compatibility() {
            Compatibility::Exclusive if tool == Tool::GlobalAdmin => {
                "exactly one role per user".to_owned()
            }
            Compatibility::Exclusive => "at most one role".to_owned(),
            Compatibility::Combinable => "combinable".to_owned(),
            Compatibility::OneCombinesWithAny(joker) => format!(
                "{} combines with any one of the others; the others exclude each other",
                joker.short_name()
            ),
        };
        let implied = tool
            .implied_role()
            .map(|r| format!("; {} comes with any role", r.short_name()))
            .unwrap_or_default();
        out += &format!(
            "| {} | {} | {rule}{implied} |\n",
            tool.title(),
            roles.join(", ")
        );
    }
    out += "\nLMS GROUP_ADMINISTRATOR requires Global Admin GROUP_ADMINISTRATOR.\n";
    out += "\nPermissions granted on own content are checked on a user (the content's owner) \
            and only on a user: ";
    out += &permissions()
        .into_iter()
        .filter(|p| resource_kinds(p) == [ResourceKind::User])
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ");
    out += ". Every other permission can be checked on the tenant, a group, a user or a catalog.\n";
    out += &format!(
        "\nOrganization features (granted only through an organization whose flag is on): {}.\n",
        ORGANIZATION_FEATURES.map(|p| format!("`{p}`")).join(", ")
    );
    for tool in Tool::ALL {
        out += &format!(
            "\n## {}\n\n| role | permission | scope |\n|---|---|---|\n",
            tool.title()
        );
        for role in tool.roles() {
            for g in role.grants() {
                out += &format!(
                    "| {} | `{}` | {} |\n",
                    role.short_name(),
                    g.permission,
                    g.scope.as_str()
                );
            }
        }
        out += "\n| role | contains |\n|---|---|\n";
        for role in tool.roles() {
            let contained: Vec<&str> = tool
                .roles()
                .iter()
                .filter(|other| **other != *role && role.contains(**other))
                .map(|r| r.short_name())
                .collect();
            let contained = if contained.is_empty() {
                "-".to_owned()
            } else {
                contained.join(", ")
            };
            out += &format!("| {} | {contained} |\n", role.short_name());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert!(role.tool().roles().contains(&role));
        }
        for tool in Tool::ALL {
            assert_eq!(tool.as_str().parse::<Tool>().unwrap(), tool);
        }
        assert_eq!(LmsGroupAdministrator.short_name(), "GROUP_ADMINISTRATOR");
        assert!("LMS_NOPE".parse::<Role>().is_err());
    }

    #[test]
    fn global_admin_admin_and_group_administrator_contain_neither_other() {
        assert!(!GlobalAdminAdmin.contains(GlobalAdminGroupAdministrator));
        assert!(!GlobalAdminGroupAdministrator.contains(GlobalAdminAdmin));
        assert!(GlobalAdminAdmin.contains(GlobalAdminUser));
        assert!(GlobalAdminGroupAdministrator.contains(GlobalAdminUser));
    }

    #[test]
    fn lms_admin_contains_every_lms_role() {
        for role in Tool::Lms.roles() {
            assert!(LmsAdmin.contains(*role), "{role}");
        }
        assert!(
            !LmsAuthor.contains(LmsValidator),
            "validator publishes in member groups"
        );
        assert!(!LmsValidator.contains(LmsAuthor));
    }

    #[test]
    fn roles_are_ordered_highest_first_where_they_contain_each_other() {
        for tool in Tool::ALL {
            let roles = tool.roles();
            for (i, higher) in roles.iter().enumerate() {
                for lower in &roles[i + 1..] {
                    assert!(
                        !lower.contains(*higher) || higher.contains(*lower),
                        "{lower} above {higher}"
                    );
                }
            }
        }
        assert!(ShareAdmin.contains(ShareAuthor) && ShareAuthor.contains(ShareConsumer));
        assert!(
            AuthorAdministrator.contains(AuthorManager) && AuthorManager.contains(AuthorReviewer)
        );
        assert!(
            !AuthorAdministrator.contains(AuthorAuthor),
            "only the Author edits units"
        );
    }

    #[test]
    fn role_set_requires_exactly_one_global_admin_role() {
        assert_eq!(
            RoleSet::new([LmsAuthor]),
            Err(RoleSetError::MissingGlobalAdminRole)
        );
        assert_eq!(RoleSet::new([]), Err(RoleSetError::MissingGlobalAdminRole));
        assert!(matches!(
            RoleSet::new([GlobalAdminAdmin, GlobalAdminGroupAdministrator]),
            Err(RoleSetError::Incompatible { .. })
        ));
        assert!(matches!(
            RoleSet::new([GlobalAdminUser, GlobalAdminAdmin]),
            Err(RoleSetError::Incompatible { .. })
        ));
        assert_eq!(
            RoleSet::new([GlobalAdminUser, GlobalAdminUser])
                .unwrap()
                .roles(),
            &[GlobalAdminUser]
        );
    }

    #[test]
    fn role_set_adds_lms_user_with_any_lms_role() {
        let set = RoleSet::new([GlobalAdminUser, LmsTeacher]).unwrap();
        assert_eq!(set.roles(), &[GlobalAdminUser, LmsTeacher, LmsUser]);
        let no_lms = RoleSet::new([GlobalAdminUser]).unwrap();
        assert!(!no_lms.contains(LmsUser));
    }

    #[test]
    fn lms_roles_combine() {
        assert!(RoleSet::new([
            GlobalAdminUser,
            LmsAuthor,
            LmsValidator,
            LmsTeacher,
            LmsAdmin
        ])
        .is_ok());
    }

    #[test]
    fn author_tool_roles_combine_only_with_author() {
        assert!(RoleSet::new([GlobalAdminUser, AuthorAuthor, AuthorManager]).is_ok());
        assert!(RoleSet::new([GlobalAdminUser, AuthorAuthor, AuthorReviewer]).is_ok());
        assert!(matches!(
            RoleSet::new([GlobalAdminUser, AuthorManager, AuthorReviewer]),
            Err(RoleSetError::Incompatible {
                first: AuthorManager,
                second: AuthorReviewer,
                ..
            })
        ));
        assert!(matches!(
            RoleSet::new([
                GlobalAdminUser,
                AuthorAuthor,
                AuthorAdministrator,
                AuthorManager
            ]),
            Err(RoleSetError::Incompatible { .. })
        ));
    }

    #[test]
    fn share_roles_exclude_each_other() {
        assert!(RoleSet::new([GlobalAdminUser, ShareConsumer]).is_ok());
        assert!(matches!(
            RoleSet::new([GlobalAdminUser, ShareAdmin, ShareConsumer]),
            Err(RoleSetError::Incompatible { .. })
        ));
    }

    #[test]
    fn lms_group_administrator_requires_global_admin_group_administrator() {
        assert_eq!(
            RoleSet::new([GlobalAdminUser, LmsGroupAdministrator]),
            Err(RoleSetError::RequiresGlobalAdminGroupAdministrator {
                role: LmsGroupAdministrator
            })
        );
        assert_eq!(
            RoleSet::new([GlobalAdminAdmin, LmsGroupAdministrator]),
            Err(RoleSetError::RequiresGlobalAdminGroupAdministrator {
                role: LmsGroupAdministrator
            })
        );
        let ok = RoleSet::new([
            GlobalAdminGroupAdministrator,
            LmsGroupAdministrator,
            LmsAuthor,
        ])
        .unwrap();
        assert_eq!(ok.global_admin_role(), GlobalAdminGroupAdministrator);
    }

    #[test]
    fn organization_features_are_catalog_permissions() {
        for feature in ORGANIZATION_FEATURES {
            assert!(permissions().contains(&feature), "{feature}");
        }
        assert!(is_organization_feature("lms.reports.view"));
        assert!(permissions().iter().all(|p| is_permission(p)));
        assert!(!is_permission("lms.nope"));
        assert!(!is_organization_feature("lms.content.edit"));
    }

    #[test]
    fn own_content_permissions_apply_to_users_only_and_mixed_ones_to_everything() {
        use ResourceKind::*;
        for own in [
            "share.playlists.create",
            "lms.content.create",
            "lms.courses.take",
            "lms.trainings.review",
            "global_admin.notifications.view",
            "author.projects.view",
        ] {
            assert_eq!(resource_kinds(own), [User], "{own}");
        }
        for any in [
            "lms.content.publish",
            "lms.reports.view",
            "share.playlists.consume",
            "lms.catalogs.access",
        ] {
            assert_eq!(resource_kinds(any), ResourceKind::ALL, "{any}");
        }
    }

    #[test]
    fn compatibility_is_symmetric() {
        for a in Role::ALL {
            for b in Role::ALL {
                assert_eq!(a.is_compatible_with(b), b.is_compatible_with(a), "{a} {b}");
            }
        }
    }

    #[test]
    fn roles_doc_matches_catalog() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ROLES.md");
        let rendered = render_markdown();
        if std::env::var_os("COHORT_WRITE_DOCS").is_some() {
            std::fs::write(path, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/ROLES.md is out of date: run COHORT_WRITE_DOCS=1 cargo test -p cohort-shared roles_doc"
        );
    }
}
