//! Connections to the services under test: one HTTP/2 connection per channel,
//! every call carrying the bearer credential.

use std::time::Duration;

use cohort_shared::proto::authz::v1::authz_service_client::AuthzServiceClient;
use cohort_shared::proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use cohort_shared::proto::directory::v1::change_feed_service_client::ChangeFeedServiceClient;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;

/// Adds `authorization: Bearer <secret>` to every call: the client crate's.
pub use cohort_client::Bearer;

pub type Authed = InterceptedService<Channel, Bearer>;

/// The clients of one connection.
#[derive(Clone)]
pub struct Clients {
    pub directory: DirectoryServiceClient<Authed>,
    pub feed: ChangeFeedServiceClient<Authed>,
    pub authz: AuthzServiceClient<Authed>,
    pub catalog: CatalogServiceClient<Authed>,
    pub health: HealthClient<Channel>,
}

/// Opens one connection to `target` (an `http://host:port` address).
pub async fn connect(target: &str, bearer: &Bearer) -> anyhow::Result<Clients> {
    let channel = Endpoint::from_shared(target.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {target}: {e}"))?;
    let authed = InterceptedService::new(channel.clone(), bearer.clone());
    let limit = 64 * 1024 * 1024;
    Ok(Clients {
        directory: DirectoryServiceClient::new(authed.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        feed: ChangeFeedServiceClient::new(authed.clone()).max_decoding_message_size(limit),
        catalog: CatalogServiceClient::new(authed.clone()),
        authz: AuthzServiceClient::new(authed)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
        health: HealthClient::new(channel),
    })
}
