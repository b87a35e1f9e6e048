//! `docs/ROLES.md`, rendered from the catalog.

use crate::{
    permissions, resource_kinds, Compatibility, ResourceKind, Tool, ORGANIZATION_FEATURES,
};

/// Renders the catalog as the Markdown document `docs/ROLES.md`.
pub fn render_markdown() -> String {
    let mut out = String::from(
        "# The role catalog\n\n\
         Generated from `catalog/src/` by \
         `COHORT_WRITE_DOCS=1 cargo test -p cohort-catalog roles_doc`; a test fails when \
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
