//! Authentication and tenant restrictions, on both services and the feed.

use std::str::FromStr;

use cohort_shared::auth::Credential;
use cohort_shared::proto::authz::v1 as authz;
use cohort_shared::proto::directory::v1 as dir;
use cohort_tests::{channel, test_auth, test_secret, Cluster, TEST_SECRET};
use prost::Message;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;

const LIMITED_SECRET: &str = "limited-secret-0123456789";

/// The code of a call that must have been refused.
fn denied<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.unwrap_err().code()
}

/// Every method of every Cohort service, from the descriptor set: (service, method, server streaming).
fn every_rpc() -> Vec<(String, String, bool)> {
    let set =
        prost_types::FileDescriptorSet::decode(cohort_shared::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in set.file {
        let package = file.package().to_owned();
        for service in &file.service {
            for method in &service.method {
                rpcs.push((
                    format!("{package}.{}", service.name()),
                    method.name().to_owned(),
                    method.server_streaming(),
                ));
            }
        }
    }
    rpcs
}

/// Calls an RPC with an empty message and the given `authorization` header value.
async fn call(
    addr: std::net::SocketAddr,
    service: &str,
    method: &str,
    streaming: bool,
    authorization: Option<&str>,
) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel(addr).await.unwrap());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_str(&format!("/{service}/{method}")).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut request = tonic::Request::new(());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let result = if streaming {
        grpc.server_streaming(request, path, codec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(request, path, codec).await.map(|_| ())
    };
    result.err().map(|s| s.code()).unwrap_or(Code::Ok)
}

#[tokio::test]
async fn every_rpc_refuses_a_missing_or_wrong_credential() {
    let cluster = Cluster::start().await.unwrap();
    let rpcs = every_rpc();
    assert!(rpcs.len() > 35, "{rpcs:?}");
    for (service, method, streaming) in &rpcs {
        let addr = if service.starts_with("cohort.authz") {
            cluster.authz.addr
        } else {
            cluster.directory.addr
        };
        let secret = test_secret();
        for authorization in [
            None,
            Some("Bearer not-a-secret-we-know"),
            Some(secret.as_str()),
        ] {
            let code = call(addr, service, method, *streaming, authorization).await;
            assert_eq!(
                code,
                Code::Unauthenticated,
                "{service}/{method} with {authorization:?}"
            );
        }
        // With the credential, the same empty call gets past authentication.
        let code = call(
            addr,
            service,
            method,
            *streaming,
            Some(&format!("Bearer {}", test_secret())),
        )
        .await;
        assert_ne!(code, Code::Unauthenticated, "{service}/{method}");
    }
    // Health needs no credential.
    let code = call(
        cluster.directory.addr,
        "grpc.health.v1.Health",
        "Check",
        false,
        None,
    )
    .await;
    assert_ne!(code, Code::Unauthenticated);
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn a_credential_limited_to_a_tenant_reaches_no_other() {
    if cohort_tests::skip_against_external("a_credential_limited_to_a_tenant_reaches_no_other") {
        return;
    }
    let mut cluster = Cluster::start().await.unwrap();
    let mut d = cluster.directory.client().await.unwrap();
    let tenant = |name: &str| dir::CreateTenantRequest {
        display_name: name.into(),
        admin_display_name: "Admin".into(),
        admin_email: format!("admin@{}.test", name.to_lowercase()),
        request_id: String::new(),
    };
    let a = d.create_tenant(tenant("A")).await.unwrap().into_inner();
    let b = d.create_tenant(tenant("B")).await.unwrap().into_inner();
    let (a_id, a_admin) = (a.tenant.unwrap().id, a.admin.unwrap().id);
    let (b_id, b_admin) = (b.tenant.unwrap().id, b.admin.unwrap().id);

    // Both services now also accept a credential limited to tenant A.
    let limited = Credential::parse(&format!("limited:{LIMITED_SECRET}:{a_id}")).unwrap();
    cluster
        .directory
        .restart_with(test_auth(vec![limited]))
        .await
        .unwrap();
    cluster.authz.set_auth_tokens(format!(
        "test:{TEST_SECRET};limited:{LIMITED_SECRET}:{a_id}"
    ));
    cluster.authz.restart().await.unwrap();
    cluster.authz.wait_until_serving().await.unwrap();

    let mut d = cluster.directory.client_with(LIMITED_SECRET).await.unwrap();

    // Its own tenant: reads and writes work, and the write is recorded as its own.
    d.get_tenant(dir::GetTenantRequest {
        tenant_id: a_id.clone(),
    })
    .await
    .unwrap();
    let group = d
        .create_group(dir::CreateGroupRequest {
            tenant_id: a_id.clone(),
            display_name: "Mine".into(),
            is_organization: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Any other tenant, or all of them: PERMISSION_DENIED.
    assert_eq!(
        denied(
            d.get_tenant(dir::GetTenantRequest {
                tenant_id: b_id.clone()
            })
            .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        denied(
            d.get_user(dir::GetUserRequest {
                tenant_id: b_id.clone(),
                user_id: b_admin.clone()
            })
            .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        denied(
            d.list_users(dir::ListUsersRequest {
                tenant_id: b_id.clone(),
                ..Default::default()
            })
            .await
        ),
        Code::PermissionDenied
    );
    let write = d
        .create_group(dir::CreateGroupRequest {
            tenant_id: b_id.clone(),
            display_name: "Theirs".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(denied(write), Code::PermissionDenied);
    let delete = d
        .delete_user(dir::DeleteUserRequest {
            tenant_id: b_id.clone(),
            user_id: b_admin.clone(),
            etag: String::new(),
        })
        .await;
    assert_eq!(denied(delete), Code::PermissionDenied);
    assert_eq!(
        denied(d.list_tenants(dir::ListTenantsRequest::default()).await),
        Code::PermissionDenied
    );
    assert_eq!(
        denied(d.create_tenant(tenant("C")).await),
        Code::PermissionDenied
    );

    // The feed: its tenant only, never all tenants.
    let mut feed = cluster.directory.feed_with(LIMITED_SECRET).await.unwrap();
    let cursor = |t: &str| dir::TenantCursor {
        tenant_id: t.into(),
        revision: 0,
    };
    let mut own = feed
        .watch(dir::WatchRequest {
            cursors: vec![cursor(&a_id)],
            all_tenants: false,
        })
        .await
        .unwrap()
        .into_inner();
    let first = own.message().await.unwrap().unwrap();
    assert!(matches!(
        first.event,
        Some(dir::watch_response::Event::SnapshotBegin(_))
    ));
    let theirs = feed
        .watch(dir::WatchRequest {
            cursors: vec![cursor(&a_id), cursor(&b_id)],
            all_tenants: false,
        })
        .await;
    assert_eq!(theirs.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        feed.watch(dir::WatchRequest {
            cursors: vec![],
            all_tenants: true
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );

    // The authorization service: the same.
    let mut a = cluster.authz.client_with(LIMITED_SECRET).await.unwrap();
    let check = |tenant: &str, user: &str| {
        cohort_tests::tenant_check(
            tenant,
            user,
            "global_admin.groups.manage",
            Some(authz::consistency::Requirement::AtLeastRevision(
                group.revision,
            )),
        )
    };
    assert!(
        a.check(check(&a_id, &a_admin))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    assert_eq!(
        a.check(check(&b_id, &b_admin)).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let roles = a
        .get_effective_roles(authz::GetEffectiveRolesRequest {
            tenant_id: b_id.clone(),
            user_id: b_admin.clone(),
            consistency: None,
            ..Default::default()
        })
        .await;
    assert_eq!(roles.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        a.get_sync_status(authz::GetSyncStatusRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    a.get_sync_status(authz::GetSyncStatusRequest {
        tenant_id: a_id.clone(),
    })
    .await
    .unwrap();

    // The write above was recorded under the credential's name.
    let mut audit = cluster.directory.feed_with(TEST_SECRET).await.unwrap();
    let mut events = audit
        .watch(dir::WatchRequest {
            cursors: vec![dir::TenantCursor {
                tenant_id: a_id.clone(),
                revision: group.revision - 1,
            }],
            all_tenants: false,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(dir::watch_response::Event::Change(event)) =
        events.message().await.unwrap().unwrap().event
    else {
        panic!("a change")
    };
    assert_eq!(
        (event.revision, event.actor.as_str()),
        (group.revision, "limited")
    );
    cluster.finish().await.unwrap();
}

#[tokio::test]
async fn a_malformed_message_is_refused_with_a_clear_error() {
    let cluster = Cluster::start().await.unwrap();
    // Field 1 of CreateTenantRequest is a string; these bytes are not UTF-8.
    // (prost encodes a Vec<u8> as BytesValue: field 1, length-delimited.)
    let malformed: Vec<u8> = vec![0xff, 0xfe, 0xfd];
    let mut grpc = tonic::client::Grpc::new(channel(cluster.directory.addr).await.unwrap());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static("/cohort.directory.v1.DirectoryService/CreateTenant");
    let codec = tonic_prost::ProstCodec::<Vec<u8>, ()>::default();
    let mut request = tonic::Request::new(malformed);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", test_secret()).parse().unwrap(),
    );
    let status = grpc.unary(request, path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("display_name"),
        "the message names the field: {status:?}"
    );
    cluster.finish().await.unwrap();
}
