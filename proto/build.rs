//! Generates the edge gRPC contract from `proto/edge.proto`: prost messages plus tonic server and
//! client, and the encoded file descriptor set that `FILE_DESCRIPTOR_SET` embeds for gRPC
//! reflection. The proto is compiled by protox (pure Rust), so no system `protoc` is needed.

use std::error::Error;
use std::path::PathBuf;

use protox::prost::Message;

const INCLUDE: &str = "proto";
const PROTO: &str = "proto/edge.proto";
/// Read back by `tonic::include_file_descriptor_set!("edge_descriptor")`.
const DESCRIPTOR_FILE: &str = "edge_descriptor.bin";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile([PROTO], [INCLUDE])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join(DESCRIPTOR_FILE), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
