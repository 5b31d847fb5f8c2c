//! Compiles `proto/` with protox, so building needs no system `protoc`: the events with prost, and the control
//! API (`ladder.v1.Control`) with tonic's server and client on top.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [root.join("ladder/v1/events.proto"), root.join("ladder/v1/control.proto")];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    let mut config = prost_build::Config::new();
    // Serialize only: `ladder events --json` prints events as JSON; the wire format stays protobuf.
    config.type_attribute(".", "#[derive(serde::Serialize)]");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
