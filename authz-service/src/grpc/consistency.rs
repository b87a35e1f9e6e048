//! Read-your-writes: a read waits until the tenant's projection reaches the
//! revision its `Consistency` asks for (for `fully_consistent`, the directory's
//! current one, asked over gRPC) and gives up a little before the call's
//! deadline with DEADLINE_EXCEEDED, never with a stale answer.

use std::time::Duration;

use cohort_shared::auth::Principal;
use cohort_shared::call_log::REQUEST_ID_HEADER;
use cohort_shared::proto::authz::v1 as pb;
use cohort_shared::proto::directory::v1 as directory;
use cohort_shared::proto::directory::v1::directory_service_client::DirectoryServiceClient;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::Code;
use tracing::Instrument;

use super::error::ApiError;
use super::AuthzApi;
use crate::domain::{Revision, TenantId};
use crate::projection::SharedTenant;

impl AuthzApi {
    /// The tenant's state once it reflects what `consistency` asks for.
    pub(super) async fn read(
        &self,
        principal: &Principal,
        metadata: &MetadataMap,
        tenant: TenantId,
        consistency: Option<pb::Consistency>,
    ) -> Result<SharedTenant, ApiError> {
        use pb::consistency::Requirement;
        cohort_shared::call_log::record_tenant(tenant.0);
        principal
            .check_tenant_id(tenant.0)
            .map_err(ApiError::Denied)?;
        // Give up a little before the caller's deadline, so that it hears why
        // rather than cancelling first.
        let budget = deadline_of(metadata)
            .unwrap_or(self.max_wait)
            .min(self.max_wait * 12);
        let deadline = Instant::now() + budget - (budget / 10).min(Duration::from_millis(50));
        let wanted = match consistency.and_then(|c| c.requirement) {
            None | Some(Requirement::MinimizeLatency(_)) => None,
            Some(Requirement::AtLeastRevision(r)) if r < 0 => {
                return Err(ApiError::invalid(
                    "consistency.at_least_revision",
                    "must not be negative",
                ))
            }
            Some(Requirement::AtLeastRevision(r)) => Some(r),
            Some(Requirement::FullyConsistent(_)) => {
                let request_id = metadata.get(REQUEST_ID_HEADER).cloned();
                Some(
                    self.directory_revision(tenant, deadline, request_id)
                        .await?,
                )
            }
        };
        if let Some(wanted) = wanted {
            self.projection
                .wait_for(tenant, wanted, deadline)
                .await
                .map_err(ApiError::NotReached)?;
        }
        self.projection
            .tenant(tenant)
            .ok_or_else(|| ApiError::not_found("tenant", tenant))
    }

    /// The directory's current revision of the tenant, asked with the caller's
    /// request id, so that both services' logs name the same call.
    async fn directory_revision(
        &self,
        tenant: TenantId,
        deadline: Instant,
        request_id: Option<tonic::metadata::AsciiMetadataValue>,
    ) -> Result<Revision, ApiError> {
        let unavailable = |e: String| ApiError::DirectoryUnavailable(e);
        let ask = async {
            let mut client = DirectoryServiceClient::new(self.directory_channel.clone());
            let mut request = tonic::Request::new(directory::GetTenantRequest {
                tenant_id: tenant.to_string(),
            });
            if let Some(id) = request_id {
                request.metadata_mut().insert(REQUEST_ID_HEADER, id);
            }
            self.directory.authorize(&mut request);
            cohort_shared::telemetry::inject(request.metadata_mut());
            let reply = client.get_tenant(request).await;
            match reply {
                Ok(r) => Ok(r.into_inner().tenant.map(|t| t.revision).unwrap_or(0)),
                Err(status) if status.code() == Code::NotFound => {
                    Err(ApiError::not_found("tenant", tenant))
                }
                Err(status) => Err(unavailable(status.message().to_owned())),
            }
        };
        let span =
            cohort_shared::telemetry::client_span("cohort.directory.v1.DirectoryService/GetTenant");
        tokio::time::timeout_at(deadline, ask.instrument(span))
            .await
            .map_err(|_| unavailable("timed out".into()))?
    }
}

/// The call's deadline, from the `grpc-timeout` header.
fn deadline_of(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let value: u64 = value.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_read_from_grpc_timeout() {
        let mut metadata = MetadataMap::new();
        assert_eq!(deadline_of(&metadata), None);
        metadata.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(deadline_of(&metadata), Some(Duration::from_millis(250)));
        metadata.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(deadline_of(&metadata), Some(Duration::from_secs(3)));
    }
}
