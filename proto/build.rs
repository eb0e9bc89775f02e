//! Generates the Rust code of `mq.v1` and `mq.internal.v1` with a vendored protoc, so the build
//! needs no system protobuf compiler.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        // Keys, values and Raft payloads are `Bytes`: decoding slices the request buffer
        // instead of copying every record.
        .bytes(".")
        .file_descriptor_set_path(out_dir.join("mq_descriptor.bin"))
        .compile_with_config(
            config,
            &["mq/v1/mq.proto", "mq/internal/v1/internal.proto"],
            &["."],
        )?;
    Ok(())
}
