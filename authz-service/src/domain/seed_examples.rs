//! The source documents' examples, as named tests of the resolution and checks.
//!
//! One file on purpose: every example of the source documents, in their order, so
//! that they can be read against them.

use cohort_shared::catalog::{Role, Tool};
use uuid::Uuid;

use super::*;

/// Builds a tenant state change by change.
struct World {
    state: TenantState,
    next_revision: Revision,
}

impl World {
    fn new() -> Self {
        World {
            state: TenantState::default(),
            next_revision: 1,
        }
    }

    fn user(&mut self, roles: &[Role]) -> UserId {
        let id = UserId(Uuid::now_v7());
        self.state.apply(Change::UserUpserted {
            id,
            roles: roles.to_vec(),
            suspended: false,
        });
        id
    }

    fn group(
        &mut self,
        parent: Option<GroupId>,
        organization: bool,
        inherited: &[Role],
    ) -> GroupId {
        let id = GroupId(Uuid::now_v7());
        self.state.apply(Change::GroupUpserted {
            id,
            parent,
            is_organization: organization,
            inherited: inherited.to_vec(),
        });
        id
    }

    fn join(&mut self, user: UserId, group: GroupId) {
        self.next_revision += 1;
        self.state.apply(Change::MembershipAdded {
            group,
            user,
            join_revision: self.next_revision,
        });
    }

    fn roles(&self, user: UserId, tool: Tool) -> Vec<Role> {
        resolve(&self.state, user)
            .unwrap()
            .tool(tool)
            .roles
            .iter()
            .map(|h| h.role)
            .collect()
    }

    fn suppressed(&self, user: UserId, tool: Tool) -> Vec<(Role, SuppressReason)> {
        resolve(&self.state, user)
            .unwrap()
            .tool(tool)
            .suppressed
            .iter()
            .map(|s| (s.role, s.reason))
            .collect()
    }

    fn allowed(&self, user: UserId, permission: &str, resource: Resource) -> bool {
        check(&self.state, user, permission, &resource, false)
            .unwrap()
            .allowed
    }
}

use Role::*;

#[test]
fn an_lms_author_joining_a_group_with_inherited_group_administrator_holds_both_the_latter_for_that_group_only(
) {
    let mut w = World::new();
    let author = w.user(&[GlobalAdminGroupAdministrator, LmsAuthor, LmsUser]);
    let org = w.group(None, true, &[]);
    let team = w.group(Some(org), false, &[LmsGroupAdministrator]);
    let other = w.group(Some(org), false, &[]);
    w.join(author, team);

    assert_eq!(
        w.roles(author, Tool::Lms),
        vec![LmsAuthor, LmsUser, LmsGroupAdministrator]
    );
    assert!(w.allowed(author, "lms.trainings.manage", Resource::Group(team)));
    assert!(
        !w.allowed(author, "lms.trainings.manage", Resource::Group(other)),
        "only for that group"
    );
    assert!(!w.allowed(author, "lms.trainings.manage", Resource::Group(org)));
    assert!(
        w.allowed(author, "lms.content.create", Resource::User(author)),
        "still an author of their own content"
    );
    let colleague = w.user(&[GlobalAdminUser, LmsAuthor, LmsUser]);
    w.join(colleague, team);
    assert!(
        !w.allowed(author, "lms.content.edit", Resource::User(colleague)),
        "not on the rest of the platform's content"
    );
}

#[test]
fn own_content_permissions_are_checked_on_their_owner_and_nothing_else() {
    let mut w = World::new();
    let admin = w.user(&[GlobalAdminAdmin, LmsAdmin, LmsUser, ShareAdmin]);
    let author = w.user(&[GlobalAdminUser, ShareAuthor]);
    let org = w.group(None, true, &[]);
    w.join(author, org);

    // An author creates their own playlists; an administrator anyone's.
    assert!(w.allowed(author, "share.playlists.create", Resource::User(author)));
    assert!(!w.allowed(author, "share.playlists.create", Resource::User(admin)));
    assert!(w.allowed(admin, "share.playlists.create", Resource::User(author)));
    // On anything but a user the question has no answer, for either of them:
    // a denial would be silent, so it is refused and says what to ask instead.
    for user in [admin, author] {
        for resource in [
            Resource::Tenant,
            Resource::Group(org),
            Resource::Catalog("cat".into()),
        ] {
            let refused = check(&w.state, user, "share.playlists.create", &resource, false);
            assert_eq!(
                refused,
                Err(CheckError::NotApplicable {
                    permission: "share.playlists.create".into(),
                    asked: resource.kind(),
                    applies_to: &[cohort_shared::catalog::ResourceKind::User],
                }),
                "{resource:?}"
            );
        }
    }
    let message = check(
        &w.state,
        author,
        "lms.courses.take",
        &Resource::Tenant,
        false,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "`lms.courses.take` is checked on a user only (own content: its owner), not on tenant"
    );
    // A permission some role grants on groups is a question about any kind.
    assert!(!w.allowed(author, "lms.content.publish", Resource::Tenant));
    assert!(w.allowed(admin, "lms.content.publish", Resource::Tenant));
    // The lookups ask about groups: the same refusal.
    assert!(matches!(
        super::lookup::lookup_groups(&w.state, author, "share.playlists.create"),
        Err(CheckError::NotApplicable { .. })
    ));
    assert!(matches!(
        super::lookup::lookup_subjects(
            &w.state,
            org,
            &super::lookup::Holding::Permission("lms.courses.take".into())
        ),
        Err(CheckError::NotApplicable { .. })
    ));
}

#[test]
fn an_author_inheriting_validator_keeps_creating_and_editing() {
    let mut w = World::new();
    let author = w.user(&[GlobalAdminUser, LmsAuthor, LmsUser]);
    let org = w.group(None, true, &[LmsValidator]);
    w.join(author, org);
    assert_eq!(
        w.roles(author, Tool::Lms),
        vec![LmsAuthor, LmsUser, LmsValidator]
    );
    assert!(w.allowed(author, "lms.content.create", Resource::User(author)));
    assert!(w.allowed(author, "lms.content.edit", Resource::User(author)));
    assert!(
        w.allowed(author, "lms.content.publish", Resource::Group(org)),
        "gains publishing in the group"
    );
}

#[test]
fn an_incompatible_inherited_role_never_downgrades() {
    let mut w = World::new();
    // Global Admin ADMIN in a group that passes on GROUP_ADMINISTRATOR: neither
    // contains the other, so ADMIN prevails.
    let admin = w.user(&[GlobalAdminAdmin]);
    let org = w.group(
        None,
        true,
        &[GlobalAdminGroupAdministrator, ShareConsumer, AuthorReviewer],
    );
    w.join(admin, org);
    assert_eq!(w.roles(admin, Tool::GlobalAdmin), vec![GlobalAdminAdmin]);
    assert_eq!(
        w.suppressed(admin, Tool::GlobalAdmin),
        vec![(
            GlobalAdminGroupAdministrator,
            SuppressReason::IncompatibleWith(GlobalAdminAdmin)
        )]
    );

    // A Share AUTHOR offered CONSUMER keeps AUTHOR; an Author MANAGER offered
    // REVIEWER keeps MANAGER (which contains it, but is not contained by it).
    let author = w.user(&[GlobalAdminUser, ShareAuthor, AuthorManager]);
    w.join(author, org);
    assert_eq!(w.roles(author, Tool::Share), vec![ShareAuthor]);
    assert_eq!(
        w.suppressed(author, Tool::Share),
        vec![(ShareConsumer, SuppressReason::IncompatibleWith(ShareAuthor))]
    );
    assert_eq!(w.roles(author, Tool::Author), vec![AuthorManager]);
    assert!(w.allowed(author, "share.playlists.create", Resource::User(author)));

    // A role that contains the held one replaces it: USER becomes GROUP_ADMINISTRATOR,
    // CONSUMER becomes AUTHOR.
    let plain = w.user(&[GlobalAdminUser, ShareConsumer]);
    let upgrade = w.group(None, true, &[GlobalAdminGroupAdministrator, ShareAuthor]);
    w.join(plain, upgrade);
    assert_eq!(
        w.roles(plain, Tool::GlobalAdmin),
        vec![GlobalAdminGroupAdministrator]
    );
    assert_eq!(w.roles(plain, Tool::Share), vec![ShareAuthor]);
}

#[test]
fn held_means_direct_roles_then_inherited_ones_in_order_of_acquisition() {
    let mut w = World::new();
    let user = w.user(&[GlobalAdminUser]);
    let first = w.group(None, true, &[GlobalAdminGroupAdministrator]);
    let second = w.group(None, true, &[GlobalAdminAdmin]);
    w.join(user, first);
    w.join(user, second);
    // GROUP_ADMINISTRATOR came first and replaced USER; ADMIN does not contain it.
    assert_eq!(
        w.roles(user, Tool::GlobalAdmin),
        vec![GlobalAdminGroupAdministrator]
    );

    let other = w.user(&[GlobalAdminUser]);
    w.join(other, second);
    w.join(other, first);
    assert_eq!(w.roles(other, Tool::GlobalAdmin), vec![GlobalAdminAdmin]);

    // Leaving the group takes its roles away again.
    w.state.apply(Change::MembershipRemoved {
        group: second,
        user: other,
    });
    assert_eq!(
        w.roles(other, Tool::GlobalAdmin),
        vec![GlobalAdminGroupAdministrator]
    );
}

#[test]
fn an_inherited_lms_group_administrator_needs_global_admin_group_administrator() {
    let mut w = World::new();
    let plain = w.user(&[GlobalAdminUser, LmsAuthor, LmsUser]);
    let team = w.group(None, true, &[LmsGroupAdministrator]);
    w.join(plain, team);
    assert_eq!(
        w.suppressed(plain, Tool::Lms),
        vec![(
            LmsGroupAdministrator,
            SuppressReason::RequiresGlobalAdminGroupAdministrator
        )]
    );

    // ... which may itself be inherited, from any group.
    let promoting = w.group(None, true, &[GlobalAdminGroupAdministrator]);
    w.join(plain, promoting);
    assert!(w.roles(plain, Tool::Lms).contains(&LmsGroupAdministrator));
}

#[test]
fn membership_of_a_subgroup_counts_as_membership_of_every_ancestor() {
    let mut w = World::new();
    let user = w.user(&[GlobalAdminUser, LmsUser]);
    let org = w.group(None, true, &[LmsValidator]);
    let team = w.group(Some(org), false, &[]);
    let squad = w.group(Some(team), false, &[]);
    w.join(user, squad);
    let resolution = resolve(&w.state, user).unwrap();
    let validator = resolution
        .tool(Tool::Lms)
        .roles
        .iter()
        .find(|h| h.role == LmsValidator)
        .unwrap();
    assert_eq!(
        validator.sources,
        vec![Source::Inherited(Via {
            group: org,
            path: vec![squad, team, org]
        })]
    );
    assert!(
        w.allowed(user, "lms.content.publish", Resource::Group(org)),
        "a member of a subgroup is in the organization"
    );
}

#[test]
fn turning_an_organization_off_removes_reports_and_catalogs_and_on_again_restores_them() {
    let mut w = World::new();
    let manager = w.user(&[
        GlobalAdminGroupAdministrator,
        LmsGroupAdministrator,
        LmsUser,
    ]);
    let learner = w.user(&[GlobalAdminUser, LmsUser]);
    let org = w.group(None, true, &[]);
    let team = w.group(Some(org), false, &[]);
    w.state.apply(Change::AdministratorsChanged {
        group: org,
        users: vec![manager],
    });
    w.join(learner, team);
    w.state.apply(Change::CatalogAssigned {
        group: org,
        catalog: "cat-1".into(),
    });

    let reports = |w: &World| w.allowed(manager, "lms.reports.view", Resource::User(learner));
    let catalog = |w: &World| {
        w.allowed(
            learner,
            "lms.catalogs.access",
            Resource::Catalog("cat-1".into()),
        )
    };
    assert!(reports(&w) && catalog(&w));

    let set_flag = |w: &mut World, on: bool| {
        w.state.apply(Change::GroupUpserted {
            id: org,
            parent: None,
            is_organization: on,
            inherited: vec![],
        })
    };
    set_flag(&mut w, false);
    assert!(!reports(&w) && !catalog(&w));
    assert!(
        w.allowed(manager, "lms.members.manage", Resource::User(learner)),
        "administration itself stays"
    );
    assert_eq!(
        w.state.catalogs.get("cat-1").map(Vec::len),
        Some(1),
        "assignments are kept"
    );
    set_flag(&mut w, true);
    assert!(reports(&w) && catalog(&w));
}

#[test]
fn explanations_follow_the_decision() {
    let mut w = World::new();
    let manager = w.user(&[
        GlobalAdminGroupAdministrator,
        LmsGroupAdministrator,
        LmsUser,
    ]);
    let org = w.group(None, true, &[]);
    let other = w.group(None, true, &[]);
    w.state.apply(Change::AdministratorsChanged {
        group: org,
        users: vec![manager],
    });
    let yes = check(
        &w.state,
        manager,
        "lms.trainings.manage",
        &Resource::Group(org),
        true,
    )
    .unwrap();
    assert!(yes.allowed);
    assert_eq!(yes.explanation.last().map(String::as_str), Some("allowed"));
    let no = check(
        &w.state,
        manager,
        "lms.trainings.manage",
        &Resource::Group(other),
        true,
    )
    .unwrap();
    assert!(!no.allowed);
    assert!(
        no.explanation
            .iter()
            .any(|l| l.contains("under none of those groups")),
        "{:?}",
        no.explanation
    );
    let quiet = check(
        &w.state,
        manager,
        "lms.trainings.manage",
        &Resource::Group(org),
        false,
    )
    .unwrap();
    assert!(quiet.explanation.is_empty());
    assert_eq!(
        check(&w.state, manager, "lms.nope", &Resource::Tenant, false),
        Err(CheckError::UnknownPermission("lms.nope".into()))
    );
}

#[test]
fn a_suspended_user_is_granted_nothing() {
    let mut w = World::new();
    let admin = w.user(&[GlobalAdminAdmin, LmsAdmin, LmsUser]);
    assert!(w.allowed(admin, "lms.settings.manage", Resource::Tenant));
    w.state.apply(Change::UserUpserted {
        id: admin,
        roles: vec![GlobalAdminAdmin, LmsAdmin, LmsUser],
        suspended: true,
    });
    assert!(!w.allowed(admin, "lms.settings.manage", Resource::Tenant));
    assert!(resolve(&w.state, admin).unwrap().suspended);
}

#[test]
fn lookups_find_holders_through_administration_inheritance_and_subgroups() {
    let mut w = World::new();
    let admin = w.user(&[GlobalAdminAdmin, LmsAdmin, LmsUser]);
    let manager = w.user(&[
        GlobalAdminGroupAdministrator,
        LmsGroupAdministrator,
        LmsUser,
    ]);
    let promoted = w.user(&[GlobalAdminGroupAdministrator, LmsUser]);
    let bystander = w.user(&[GlobalAdminUser, LmsUser]);
    let org = w.group(None, true, &[]);
    let team = w.group(Some(org), false, &[LmsGroupAdministrator]);
    let squad = w.group(Some(team), false, &[]);
    w.state.apply(Change::AdministratorsChanged {
        group: org,
        users: vec![manager],
    });
    w.join(promoted, squad);
    w.join(bystander, org);

    let mut expected = vec![admin, manager, promoted];
    expected.sort();
    let holders = lookup_subjects(
        &w.state,
        squad,
        &Holding::Permission("lms.trainings.manage".into()),
    )
    .unwrap();
    assert_eq!(holders, expected);
    let on_org = lookup_subjects(
        &w.state,
        org,
        &Holding::Permission("lms.trainings.manage".into()),
    )
    .unwrap();
    assert!(
        !on_org.contains(&promoted),
        "inherited administration applies to the granting group's subtree only"
    );
    let mut manager_groups = vec![org, team, squad];
    manager_groups.sort();
    assert_eq!(
        lookup_groups(&w.state, manager, "lms.trainings.manage").unwrap(),
        manager_groups
    );
    let role_holders =
        lookup_subjects(&w.state, squad, &Holding::Role(LmsGroupAdministrator)).unwrap();
    let mut expected = vec![manager, promoted];
    expected.sort();
    assert_eq!(role_holders, expected);
}

/// Where a held role reaches, per kind of scope, with its permissions.
fn reaches(w: &World, user: UserId, role: Role) -> Vec<(ScopeKind, Reach, Vec<&'static str>)> {
    resolve(&w.state, user)
        .unwrap()
        .tool(role.tool())
        .roles
        .iter()
        .find(|h| h.role == role)
        .unwrap()
        .reaches
        .as_ref()
        .expect("resolve works out reaches")
        .by_kind
        .iter()
        .map(|r| (r.kind, r.reach.clone(), r.permissions.to_vec()))
        .collect()
}

use cohort_shared::catalog::ScopeKind;

#[test]
fn effective_roles_say_where_each_permission_reaches() {
    let mut w = World::new();
    let org = w.group(None, true, &[]);
    let team = w.group(Some(org), false, &[]);
    let author = w.user(&[
        GlobalAdminGroupAdministrator,
        LmsAuthor,
        LmsUser,
        ShareAuthor,
    ]);
    w.join(author, team);

    // Share AUTHOR consumes playlists tenant-wide but creates only its own.
    assert_eq!(
        reaches(&w, author, ShareAuthor),
        [
            (
                ScopeKind::Tenant,
                Reach::Tenant,
                vec!["share.playlists.consume"]
            ),
            (ScopeKind::Own, Reach::Own, vec!["share.playlists.create"]),
        ]
    );
    // LMS AUTHOR: catalogs of the groups the user is in (the team and its
    // organization), content and courses of their own.
    let mut member_of = vec![org, team];
    member_of.sort();
    assert_eq!(
        reaches(&w, author, LmsAuthor),
        [
            (
                ScopeKind::MemberGroups,
                Reach::Groups(member_of),
                vec!["lms.catalogs.access"]
            ),
            (
                ScopeKind::Own,
                Reach::Own,
                vec![
                    "lms.content.create",
                    "lms.content.edit",
                    "lms.content.publish",
                    "lms.courses.take"
                ]
            ),
        ]
    );
    // A Global Admin GROUP_ADMINISTRATOR who administers nothing: the group part
    // is empty, the tenant-wide and own parts are not.
    assert_eq!(
        reaches(&w, author, GlobalAdminGroupAdministrator),
        [
            (
                ScopeKind::Tenant,
                Reach::Tenant,
                vec!["global_admin.announcements.view"]
            ),
            (
                ScopeKind::AdministeredGroups,
                Reach::Groups(Vec::new()),
                vec!["global_admin.reports.view", "global_admin.users.manage"]
            ),
            (
                ScopeKind::Own,
                Reach::Own,
                vec!["global_admin.notifications.view"]
            ),
        ]
    );
    w.state.apply(Change::AdministratorsChanged {
        group: team,
        users: vec![author],
    });
    assert_eq!(
        reaches(&w, author, GlobalAdminGroupAdministrator)[1].1,
        Reach::Groups(vec![team])
    );
}
