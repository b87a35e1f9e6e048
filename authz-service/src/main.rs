//! `cohort-authz`: not serving yet; the service arrives with the change feed.

fn main() {
    eprintln!(
        "cohort-authz is not implemented yet (it will listen on {}); see the project's issues",
        cohort_authz::DEFAULT_LISTEN
    );
    std::process::exit(2);
}
