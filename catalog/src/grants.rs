//! The grants of every role: which permissions it gives, and in which scope.
//!
//! Permission names are `tool.object.action`. Roles that contain others repeat
//! their grants here; containment is computed from these sets
//! ([`crate::Role::contains`]), never listed by hand.

use crate::{Grant, ScopeKind};

pub(crate) const fn grant(permission: &'static str, scope: ScopeKind) -> Grant {
    Grant { permission, scope }
}

use ScopeKind::{AdministeredGroups, MemberGroups, Own, Tenant};

// Permission names are `tool.object.action`. The sets follow the source documents:
// Global Admin ADMIN reaches Configuration, GROUP_ADMINISTRATOR the Users section of
// its groups ("you cannot have access to Configuration and Users at the same time").
pub(crate) const GA_COMMON: [Grant; 2] = [
    grant("global_admin.announcements.view", Tenant),
    grant("global_admin.notifications.view", Own),
];
pub(crate) const GA_ADMIN: [Grant; 4] = [
    grant("global_admin.configuration.access", Tenant),
    grant("global_admin.groups.manage", Tenant),
    GA_COMMON[0],
    GA_COMMON[1],
];
pub(crate) const GA_GROUP_ADMINISTRATOR: [Grant; 4] = [
    grant("global_admin.users.manage", AdministeredGroups),
    grant("global_admin.reports.view", AdministeredGroups),
    GA_COMMON[0],
    GA_COMMON[1],
];

// Every LMS role comes with USER's grants: taking courses, and access to the
// content catalogs of the organizations the user belongs to.
pub(crate) const LMS_USER: [Grant; 2] = [
    grant("lms.courses.take", Own),
    grant("lms.catalogs.access", MemberGroups),
];
pub(crate) const LMS_VALIDATOR: [Grant; 3] = [
    grant("lms.content.publish", MemberGroups),
    LMS_USER[0],
    LMS_USER[1],
];
pub(crate) const LMS_TEACHER: [Grant; 3] =
    [grant("lms.trainings.review", Own), LMS_USER[0], LMS_USER[1]];
pub(crate) const LMS_AUTHOR: [Grant; 5] = [
    grant("lms.content.create", Own),
    grant("lms.content.edit", Own),
    grant("lms.content.publish", Own),
    LMS_USER[0],
    LMS_USER[1],
];
pub(crate) const LMS_GROUP_ADMINISTRATOR: [Grant; 6] = [
    grant("lms.trainings.manage", AdministeredGroups),
    grant("lms.members.manage", AdministeredGroups),
    grant("lms.reports.view", AdministeredGroups),
    grant("lms.content.publish", AdministeredGroups),
    LMS_USER[0],
    LMS_USER[1],
];
pub(crate) const LMS_ADMIN: [Grant; 11] = [
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

pub(crate) const AUTHOR_REVIEWER: [Grant; 1] = [grant("author.reviews.perform", Own)];
pub(crate) const AUTHOR_AUTHOR: [Grant; 2] = [
    grant("author.units.edit", Own),
    grant("author.projects.view", Own),
];
pub(crate) const AUTHOR_MANAGER: [Grant; 3] = [
    grant("author.projects.manage", Own),
    grant("author.projects.view", Own),
    grant("author.reviews.perform", Own),
];
pub(crate) const AUTHOR_ADMINISTRATOR: [Grant; 4] = [
    grant("author.tenant.manage", Tenant),
    grant("author.projects.manage", Tenant),
    grant("author.projects.view", Tenant),
    grant("author.reviews.perform", Tenant),
];

pub(crate) const SHARE_CONSUMER: [Grant; 1] = [grant("share.playlists.consume", Tenant)];
pub(crate) const SHARE_AUTHOR: [Grant; 2] =
    [grant("share.playlists.create", Own), SHARE_CONSUMER[0]];
pub(crate) const SHARE_ADMIN: [Grant; 3] = [
    grant("share.content.approve", Tenant),
    grant("share.playlists.create", Tenant),
    SHARE_CONSUMER[0],
];
