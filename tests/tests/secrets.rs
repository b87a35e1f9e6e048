//! The development credential is announced in the log by the file that keeps it,
//! never by its secret: logs travel to aggregators that the credential file's
//! mode 0600 does not protect.

use clap::Parser;

#[test]
fn the_development_credential_is_announced_by_its_file_and_its_secret_is_never_logged() {
    let captured = cohort_tests::CapturedLog::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .json()
        .init();
    let data =
        std::env::temp_dir().join(format!("cohort-secrets-{}", uuid::Uuid::new_v4().simple()));
    let file = data.join("dev-token");
    // Named on the command line, so that no environment of the test run (no
    // COHORT_AUTH_TOKENS, no COHORT_DEV_TOKEN_FILE) changes what is tested.
    let settings = cohort_directory::config::Settings::try_parse_from([
        "cohort-directory",
        "--data-dir",
        &data.display().to_string(),
        "--auth-tokens=",
        "--dev-token-file",
        &file.display().to_string(),
    ])
    .unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let _auth = settings.serving.auth(&file).unwrap();
    let secret = std::fs::read_to_string(&file).unwrap();
    assert!(secret.trim().len() >= 16, "a generated secret");

    let logged = captured.text();
    assert!(
        logged.contains("development credential"),
        "the credential is announced: {logged}"
    );
    assert!(
        logged.contains(&file.display().to_string()),
        "by its file: {logged}"
    );
    assert!(
        !logged.contains(secret.trim()),
        "and never by its secret: {logged}"
    );
    let _ = std::fs::remove_dir_all(&data);
}

#[test]
fn settings_print_their_credentials_and_database_urls_redacted() {
    let password = "hunter2-database-password";
    let token = "directory-token-0123456789abcdef";
    let directory = cohort_directory::config::Settings::try_parse_from([
        "cohort-directory",
        "--database-url",
        &format!("postgres://cohort:{password}@db:5432/cohort"),
        "--auth-tokens",
        &format!("ops:{token}"),
    ])
    .unwrap();
    let authz = cohort_authz::config::Settings::try_parse_from([
        "cohort-authz",
        "--database-url",
        &format!("postgres://cohort:{password}@db:5432/authz"),
        "--directory-token",
        token,
        "--auth-tokens",
        &format!("ops:{token}"),
    ])
    .unwrap();
    let printed = format!(
        "{directory:?} {authz:?} {:?}",
        directory.database().unwrap()
    );
    assert!(!printed.contains(password), "{printed}");
    assert!(!printed.contains(token), "{printed}");
    // The settings still carry them.
    assert_eq!(
        directory.database().unwrap(),
        cohort_directory::config::Database::Postgres(format!(
            "postgres://cohort:{password}@db:5432/cohort"
        ))
    );
}
