//! Generates the prost/tonic code and the reflection descriptor set from
//! `proto/layerlens/v1/*.proto` with protox, so no system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/layerlens/v1/common.proto",
        "proto/layerlens/v1/models.proto",
        "proto/layerlens/v1/explain.proto",
        "proto/layerlens/v1/generate.proto",
        "proto/layerlens/v1/daemon.proto",
        "proto/layerlens/v1/training.proto",
        "proto/layerlens/v1/text.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let file_descriptor_set = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("layerlens_descriptor.bin"), prost::Message::encode_to_vec(&file_descriptor_set))?;
    tonic_prost_build::configure().compile_fds(file_descriptor_set)?;
    Ok(())
}
