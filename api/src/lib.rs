//! `cohort-api`: Cohort's gRPC contracts (`proto/`), compiled by `build.rs` with
//! protox (a pure-Rust protobuf compiler, so no `protoc` is needed) into prost
//! messages and tonic stubs, one module per proto package, and the encoded
//! descriptor set that the servers' reflection serves. It depends on nothing
//! else of Cohort, so a client needs only this crate (or `cohort-client`).

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

#[cfg(test)]
mod tests {
    use prost::Message;

    /// Reflection serves the contracts' comments (so `grpcurl describe`
    /// documents every service and RPC): the descriptor set keeps source info.
    #[test]
    fn the_descriptor_set_carries_the_contracts_comments() {
        let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
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
