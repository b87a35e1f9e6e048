//! The in-memory index at scale: memory for a tenant of 1,000,000 users, 100,000
//! groups and 2,000,000 memberships, and the cost of resolving and checking next
//! to the same calls on a tenant a hundred times smaller (the ratio says whether
//! a lookup's cost grows with the tenant).
//!
//! Run: `cargo bench -p cohort-authz --bench index_scale`

use std::time::{Duration, Instant};

use cohort_authz::domain::{check, resolve, Change, GroupId, Resource, TenantState, UserId};
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

/// `users` users, `groups` groups (one in a hundred an organization with three
/// levels below it), two memberships per user, an administrator per organization,
/// an inherited role on one group in ten.
fn build(users: usize, groups: usize) -> (TenantState, Vec<UserId>, Vec<GroupId>) {
    let mut rng = Lcg(7);
    let mut state = TenantState::default();
    let user_ids: Vec<UserId> = (0..users).map(|_| UserId(Uuid::new_v4())).collect();
    let group_ids: Vec<GroupId> = (0..groups).map(|_| GroupId(Uuid::new_v4())).collect();
    for (i, id) in user_ids.iter().enumerate() {
        let roles = if i % 50 == 0 {
            vec![
                Role::GlobalAdminGroupAdministrator,
                Role::LmsGroupAdministrator,
                Role::LmsUser,
            ]
        } else {
            vec![Role::GlobalAdminUser, Role::LmsAuthor, Role::LmsUser]
        };
        state.apply(Change::UserUpserted {
            id: *id,
            roles,
            suspended: false,
        });
    }
    for (i, id) in group_ids.iter().enumerate() {
        // Group i's parent is i / 4 within its organization's block of 100.
        let block = i / 100 * 100;
        let offset = i % 100;
        let parent = (offset > 0).then(|| group_ids[block + (offset - 1) / 4]);
        let inherited = if i % 10 == 3 {
            vec![Role::LmsValidator]
        } else {
            vec![]
        };
        state.apply(Change::GroupUpserted {
            id: *id,
            parent,
            is_organization: offset == 0,
            inherited,
        });
    }
    for (i, user) in user_ids.iter().enumerate() {
        for _ in 0..2 {
            let group = group_ids[rng.below(groups)];
            state.apply(Change::MembershipAdded {
                group,
                user: *user,
                join_revision: i as i64 + 1,
            });
        }
    }
    for block in (0..groups).step_by(100) {
        let admin = user_ids[rng.below(users / 50) * 50];
        state.apply(Change::AdministratorsChanged {
            group: group_ids[block],
            users: vec![admin],
        });
    }
    (state, user_ids, group_ids)
}

fn per_call(samples: usize, mut call: impl FnMut(usize)) -> Duration {
    let started = Instant::now();
    for i in 0..samples {
        call(i);
    }
    started.elapsed() / samples as u32
}

struct Figures {
    resolve: Duration,
    check: Duration,
    check_explained: Duration,
}

fn measure(state: &TenantState, users: &[UserId], groups: &[GroupId]) -> Figures {
    let mut rng = Lcg(11);
    let picks: Vec<(UserId, GroupId)> = (0..SAMPLES)
        .map(|_| {
            (
                users[rng.below(users.len())],
                groups[rng.below(groups.len())],
            )
        })
        .collect();
    let resolve = per_call(SAMPLES, |i| {
        std::hint::black_box(resolve(state, picks[i].0));
    });
    let check_one = |i: usize, explain: bool| {
        let (user, group) = picks[i];
        std::hint::black_box(
            check(
                state,
                user,
                "lms.reports.view",
                &Resource::Group(group),
                explain,
            )
            .unwrap(),
        );
    };
    let check = per_call(SAMPLES, |i| check_one(i, false));
    let check_explained = per_call(SAMPLES, |i| check_one(i, true));
    Figures {
        resolve,
        check,
        check_explained,
    }
}

fn main() {
    let small = build(10_000, 1_000);
    let before = resident_bytes();
    let started = Instant::now();
    let large = build(1_000_000, 100_000);
    let built = started.elapsed();
    let memory = resident_bytes().saturating_sub(before);
    println!(
        "large tenant (1,000,000 users, 100,000 groups, 2,000,000 memberships): built in {built:.1?}, resident memory +{} MiB",
        memory / (1024 * 1024)
    );

    let small_figures = measure(&small.0, &small.1, &small.2);
    let large_figures = measure(&large.0, &large.1, &large.2);
    println!("| call | 10k-user tenant | 1M-user tenant | large / small |");
    println!("|---|---|---|---|");
    for (name, s, l) in [
        (
            "resolve a user's effective roles",
            small_figures.resolve,
            large_figures.resolve,
        ),
        (
            "check lms.reports.view on a group",
            small_figures.check,
            large_figures.check,
        ),
        (
            "same check, with explanation",
            small_figures.check_explained,
            large_figures.check_explained,
        ),
    ] {
        println!(
            "| {name} | {s:.2?} | {l:.2?} | {:.2}x |",
            l.as_secs_f64() / s.as_secs_f64()
        );
    }
}
