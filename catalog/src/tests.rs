//! The catalog's rules, and `docs/ROLES.md` kept equal to the catalog.
use crate::*;
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
    assert!(AuthorAdministrator.contains(AuthorManager) && AuthorManager.contains(AuthorReviewer));
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
        "docs/ROLES.md is out of date: run COHORT_WRITE_DOCS=1 cargo test -p cohort-catalog roles_doc"
    );
}
