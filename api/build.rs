//! Compiles the contracts in `proto/` with protox (a pure-Rust protobuf compiler,
//! so no `protoc` is needed) and generates the tonic/prost code from them. The
//! encoded descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "cohort/catalog/v1/catalog.proto",
    "cohort/directory/v1/resources.proto",
    "cohort/directory/v1/directory_service.proto",
    "cohort/directory/v1/change_feed.proto",
    "cohort/authz/v1/authz_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let descriptors = protox::compile(PROTOS, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("cohort_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
