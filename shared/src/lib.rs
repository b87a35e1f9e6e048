//! Cohort's shared crate: what both services must agree on.
//!
//! - [`proto`]: the code generated from `proto/` (module tree mirrors the proto
//!   packages) and the encoded descriptor set for gRPC reflection.
//! - [`catalog`]: the role catalog (tools, roles, permissions, compatibility), the
//!   one definition both services use.
//! - [`catalog_api`]: the catalog served over gRPC (`cohort.catalog.v1.CatalogService`).
//! - [`convert`]: conversions between catalog types and their proto enums.
//! - [`auth`]: bearer credentials per calling service, tenant restrictions.
//! - [`call_log`]: one log line per call, request ids across services.
//! - [`malformed`]: undecodable requests answered as INVALID_ARGUMENT.
//! - [`page_token`]: opaque, request-bound page tokens (both services).
//! - [`metrics`]: Prometheus metrics and the listener that serves them.
//! - [`shed`]: load shedding (a bound on calls in flight).
//! - [`serving`]: what every server does alike (reflection, sockets, shutdown, logs).
//! - [`telemetry`]: OpenTelemetry traces (off unless an OTLP endpoint is set).
//! - [`log_writer`]: the log output, written out in batches by a background thread.

pub mod auth;
pub mod call_log;
pub mod catalog;
pub mod catalog_api;
pub mod convert;
pub mod log_writer;
pub mod malformed;
pub mod metrics;
pub mod page_token;
pub mod serving;
pub mod shed;
pub mod telemetry;

/// Generated gRPC code, one module per proto package.
pub mod proto {
    pub mod catalog {
        pub mod v1 {
            tonic::include_proto!("cohort.catalog.v1");
        }
    }
    pub mod directory {
        pub mod v1 {
            tonic::include_proto!("cohort.directory.v1");
        }
    }
    pub mod authz {
        pub mod v1 {
            tonic::include_proto!("cohort.authz.v1");
        }
    }

    /// The encoded `FileDescriptorSet` of every Cohort proto, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("cohort_descriptor");
}

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Reflection serves the contracts' comments (so `grpcurl describe`
    /// documents every service and RPC): the descriptor set keeps source info.
    #[test]
    fn the_descriptor_set_carries_the_contracts_comments() {
        let set = prost_types::FileDescriptorSet::decode(super::proto::FILE_DESCRIPTOR_SET)
            .expect("a descriptor set");
        let mut documented_services = 0;
        for file in set.file.iter().filter(|f| f.name().starts_with("cohort/")) {
            let Some(info) = &file.source_code_info else {
                panic!("{} has no source info", file.name());
            };
            for (index, _) in file.service.iter().enumerate() {
                // A service's path is [6 (FileDescriptorProto.service), index].
                let comment = info
                    .location
                    .iter()
                    .find(|l| l.path == [6, index as i32])
                    .and_then(|l| l.leading_comments.clone())
                    .unwrap_or_default();
                assert!(!comment.trim().is_empty(), "a service of {}", file.name());
                documented_services += 1;
            }
        }
        assert_eq!(documented_services, 4, "catalog, directory, feed, authz");
    }
}
