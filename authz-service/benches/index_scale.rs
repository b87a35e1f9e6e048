//! The in-memory engine at scale: memory per membership for a tenant of 1,000,000
//! users, 100,000 groups and 3,000,000 memberships, and the cost of each kind of
//! answer next to the same answers on a tenant a hundred times smaller (the ratio
//! says whether a call's cost grows with the tenant).
//!
//! Run: `cargo bench -p cohort-authz --bench index_scale`

use std::time::{Duration, Instant};

use cohort_authz::domain::{
    check, lookup_groups_page, lookup_subjects_page, resolve, Change, Checker, GroupId, Holding,
    Resource, TenantState, UserId,
};
use cohort_shared::catalog::Role;
use uuid::Uuid;

const SAMPLES: usize = 20_000;

/// Resident memory of this process, from /proc (Linux).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// A deterministic pseudo-random sequence (no dependency needed for a benchmark).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// A tenant of the shape: `users` users, `groups` groups in
/// organizations of 100 (a tree four wide: levels of 1, 4, 16 and 79 groups),
/// three memberships per user, an inherited role on one group in ten, an
/// administrator per organization and per level-2 group.
struct Tenant {
    state: TenantState,
    users: Vec<UserId>,
    groups: Vec<GroupId>,
    memberships: usize,
    /// How long the changes took to apply in bulk, and ending bulk mode (handing
    /// out the memberships, building the indexes).
    applied_in: Duration,
    finished_in: Duration,
}

fn roles_of(i: usize) -> Vec<Role> {
    match i % 200 {
        0 => vec![Role::GlobalAdminAdmin, Role::LmsAdmin, Role::LmsUser],
        n if n % 50 == 1 => vec![
            Role::GlobalAdminGroupAdministrator,
            Role::LmsGroupAdministrator,
            Role::LmsUser,
        ],
        n if n % 10 == 2 => vec![Role::GlobalAdminUser, Role::LmsAuthor, Role::LmsUser],
        _ => vec![Role::GlobalAdminUser, Role::LmsUser, Role::ShareConsumer],
    }
}

fn build(users: usize, groups: usize) -> Tenant {
    let mut rng = Lcg(7);
    let mut state = TenantState::bulk();
    let user_ids: Vec<UserId> = (0..users).map(|_| UserId(Uuid::now_v7())).collect();
    let group_ids: Vec<GroupId> = (0..groups).map(|_| GroupId(Uuid::now_v7())).collect();
    let started = Instant::now();
    for (i, id) in user_ids.iter().enumerate() {
        state.apply(Change::UserUpserted {
            id: *id,
            roles: roles_of(i),
            suspended: false,
        });
    }
    for (i, id) in group_ids.iter().enumerate() {
        // Group i's parent is i / 4 within its organization's block of 100.
        let block = i / 100 * 100;
        let offset = i % 100;
        let parent = (offset > 0).then(|| group_ids[block + (offset - 1) / 4]);
        let inherited = match i % 20 {
            3 => vec![Role::LmsValidator],
            13 => vec![Role::LmsGroupAdministrator],
            _ => vec![],
        };
        state.apply(Change::GroupUpserted {
            id: *id,
            parent,
            is_organization: offset == 0,
            inherited,
        });
    }
    let mut memberships = 0;
    let mut revision = 1;
    for user in &user_ids {
        for _ in 0..3 {
            revision += 1;
            memberships += 1;
            state.apply(Change::MembershipAdded {
                group: group_ids[rng.below(groups)],
                user: *user,
                join_revision: revision,
            });
        }
    }
    let administrators: Vec<UserId> = user_ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 50 == 1)
        .map(|(_, u)| *u)
        .collect();
    for (i, group) in group_ids.iter().enumerate() {
        if i % 100 == 0 || (i % 100 >= 1 && i % 100 <= 4) {
            state.apply(Change::AdministratorsChanged {
                group: *group,
                users: vec![administrators[rng.below(administrators.len())]],
            });
        }
    }
    let applied_in = started.elapsed();
    let started = Instant::now();
    state.finish_bulk();
    Tenant {
        state,
        users: user_ids,
        groups: group_ids,
        memberships,
        applied_in,
        finished_in: started.elapsed(),
    }
}

fn per_call(samples: usize, mut call: impl FnMut(usize)) -> Duration {
    let started = Instant::now();
    for i in 0..samples {
        call(i);
    }
    started.elapsed() / samples as u32
}

/// A level-3 group of a random organization (offsets 5 to 20 of its block).
fn level_three(groups: &[GroupId], rng: &mut Lcg) -> GroupId {
    let block = rng.below(groups.len() / 100) * 100;
    groups[block + 5 + rng.below(16)]
}

fn measure(t: &Tenant) -> Vec<(&'static str, Duration)> {
    let state = &t.state;
    let mut rng = Lcg(11);
    let picks: Vec<(UserId, GroupId)> = (0..SAMPLES)
        .map(|_| {
            (
                t.users[rng.below(t.users.len())],
                level_three(&t.groups, &mut rng),
            )
        })
        .collect();
    let administrators: Vec<UserId> = t
        .users
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 50 == 1)
        .map(|(_, u)| *u)
        .collect();
    let reports = "lms.reports.view";
    let mut figures = vec![
        (
            "resolve a user's effective roles (with provenance)",
            per_call(SAMPLES, |i| {
                std::hint::black_box(resolve(state, picks[i].0));
            }),
        ),
        (
            "check lms.reports.view on a level-3 group",
            per_call(SAMPLES, |i| {
                let (user, group) = picks[i];
                std::hint::black_box(
                    check(state, user, reports, &Resource::Group(group), false).unwrap(),
                );
            }),
        ),
        (
            "same check, with explanation",
            per_call(SAMPLES, |i| {
                let (user, group) = picks[i];
                std::hint::black_box(
                    check(state, user, reports, &Resource::Group(group), true).unwrap(),
                );
            }),
        ),
    ];
    figures.push((
        "bulk check of 100 items (10 users, 10 groups each)",
        per_call(SAMPLES / 100, |i| {
            let mut checker = Checker::new(state);
            for j in 0..100 {
                let (user, _) = picks[(i * 10 + j / 10) % SAMPLES];
                let (_, group) = picks[(i * 100 + j) % SAMPLES];
                std::hint::black_box(
                    checker
                        .check(user, reports, &Resource::Group(group), false)
                        .unwrap(),
                );
            }
        }),
    ));
    let holding = Holding::Permission(reports.to_owned());
    figures.push((
        "LookupSubjects lms.reports.view on a level-3 group, page of 100",
        per_call(SAMPLES / 10, |i| {
            let (_, group) = picks[i];
            std::hint::black_box(lookup_subjects_page(state, group, &holding, None, 100).unwrap());
        }),
    ));
    let holding = Holding::Permission("lms.catalogs.access".to_owned());
    figures.push((
        "LookupSubjects lms.catalogs.access (every member of the organization), page of 100",
        per_call(SAMPLES / 10, |i| {
            let (_, group) = picks[i];
            std::hint::black_box(lookup_subjects_page(state, group, &holding, None, 100).unwrap());
        }),
    ));
    figures.push((
        "LookupGroups lms.reports.view of an administrator, page of 100",
        per_call(SAMPLES / 10, |i| {
            let user = administrators[i % administrators.len()];
            std::hint::black_box(lookup_groups_page(state, user, reports, None, 100).unwrap());
        }),
    ));
    figures.push((
        "LookupGroups lms.catalogs.access of a member, page of 100",
        per_call(SAMPLES / 10, |i| {
            let (user, _) = picks[i];
            std::hint::black_box(
                lookup_groups_page(state, user, "lms.catalogs.access", None, 100).unwrap(),
            );
        }),
    ));
    figures
}

/// The cost of applying changes one by one to a built tenant.
fn measure_changes(t: &mut Tenant) -> Vec<(&'static str, Duration)> {
    let mut rng = Lcg(13);
    let picks: Vec<(UserId, GroupId)> = (0..SAMPLES)
        .map(|_| {
            (
                t.users[rng.below(t.users.len())],
                t.groups[rng.below(t.groups.len())],
            )
        })
        .collect();
    let state = &mut t.state;
    let add = per_call(SAMPLES, |i| {
        let (user, group) = picks[i];
        state.apply(Change::MembershipAdded {
            group,
            user,
            join_revision: 10_000_000 + i as i64,
        });
    });
    let remove = per_call(SAMPLES, |i| {
        let (user, group) = picks[i];
        state.apply(Change::MembershipRemoved { group, user });
    });
    let create = per_call(SAMPLES, |i| {
        state.apply(Change::UserUpserted {
            id: UserId(Uuid::now_v7()),
            roles: roles_of(i),
            suspended: false,
        });
    });
    vec![
        ("apply: add a membership", add),
        ("apply: remove a membership", remove),
        ("apply: create a user", create),
    ]
}

fn main() {
    let small = build(10_000, 1_000);
    let before = resident_bytes();
    let started = Instant::now();
    let mut large = build(1_000_000, 100_000);
    let built = started.elapsed();
    let memory = resident_bytes().saturating_sub(before);
    println!(
        "large tenant ({} users, {} groups, {} memberships): built in bulk in {built:.1?} \
         (applying {:.1?}, ending bulk mode {:.1?}), resident memory +{} MiB = {:.1} bytes per membership",
        large.users.len(),
        large.groups.len(),
        large.memberships,
        large.applied_in,
        large.finished_in,
        memory / (1024 * 1024),
        memory as f64 / large.memberships as f64
    );

    let small_figures = measure(&small);
    let large_figures = measure(&large);
    println!("| call | 10k-user tenant | 1M-user tenant | large / small |");
    println!("|---|---|---|---|");
    for ((name, s), (_, l)) in small_figures.iter().zip(&large_figures) {
        println!(
            "| {name} | {s:.2?} | {l:.2?} | {:.2}x |",
            l.as_secs_f64() / s.as_secs_f64()
        );
    }
    println!();
    println!("| change, applied to the 1M-user tenant | per change |");
    println!("|---|---|");
    for (name, d) in measure_changes(&mut large) {
        println!("| {name} | {d:.2?} |");
    }
}
