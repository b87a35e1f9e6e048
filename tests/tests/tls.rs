//! TLS (rustls): a directory serving TLS with a certificate from a test CA, a
//! plaintext client refused, a client trusting the CA served, and the
//! authorization service following that directory over TLS.

use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::catalog::v1 as catalog_pb;
use cohort_shared::proto::directory::v1 as dir;
use cohort_shared::serving::TlsFiles;
use cohort_tests::{AuthzProcess, DirectoryProcess, TEST_SECRET};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A CA and a certificate for `localhost` signed by it, written as PEM files.
fn certificates(dir: &std::path::Path) -> TlsFiles {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        client_ca: None,
        require_client_cert: false,
    }
}

#[tokio::test]
async fn the_services_speak_tls_and_the_authorization_service_follows_over_it() {
    if cohort_tests::skip_against_external(
        "the_services_speak_tls_and_the_authorization_service_follows_over_it",
    ) {
        return;
    }
    let scratch =
        std::env::temp_dir().join(format!("cohort-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch).unwrap();
    let tls = certificates(&scratch);
    let directory_db = cohort_tests::fresh_directory_database().await.unwrap();
    let directory_url = directory_db.url().to_owned();
    let mut directory = DirectoryProcess::start_with(
        cohort_directory::config::Database::Postgres(directory_url),
        "127.0.0.1:0".parse().unwrap(),
        cohort_tests::test_auth(Vec::new()),
        Some(tls),
    )
    .await
    .unwrap();
    let https = format!("https://localhost:{}", directory.addr.port());

    // Plaintext is not spoken.
    let plaintext = cohort_tests::channel(directory.addr).await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(channel) => dir::directory_service_client::DirectoryServiceClient::with_interceptor(
            channel,
            cohort_tests::bearer(TEST_SECRET),
        )
        .list_tenants(dir::ListTenantsRequest::default())
        .await
        .is_err(),
    };
    assert!(refused, "a plaintext client must not be served");

    // A client that trusts the CA is served.
    let ca = std::fs::read(scratch.join("ca.pem")).unwrap();
    let channel = Endpoint::from_shared(https.clone())
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut d = dir::directory_service_client::DirectoryServiceClient::with_interceptor(
        channel,
        cohort_tests::bearer(TEST_SECRET),
    );
    let created = cohort_tests::create_tenant(&mut d, "Secure").await.unwrap();

    // The authorization service follows it over TLS.
    let authz_db = cohort_tests::fresh_authz_database().await.unwrap();
    let authz_url = authz_db.url().to_owned();
    let mut authz = AuthzProcess::start_following_tls(&https, &authz_url, &scratch.join("ca.pem"))
        .await
        .unwrap();
    authz.wait_until_serving().await.unwrap();
    let reply = authz
        .client()
        .await
        .unwrap()
        .get_effective_roles(authz::GetEffectiveRolesRequest {
            tenant_id: created.tenant.unwrap().id,
            user_id: created.admin.unwrap().id,
            consistency: Some(authz::Consistency {
                requirement: Some(authz::consistency::Requirement::AtLeastRevision(
                    created.revision,
                )),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.tools[0].roles[0].role,
        catalog_pb::Role::GlobalAdminAdmin as i32
    );

    authz.stop().await.unwrap();
    directory.stop().await.unwrap();
    directory_db.drop_now().await.unwrap();
    authz_db.drop_now().await.unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}
