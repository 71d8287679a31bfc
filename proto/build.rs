//! Compiles the `.proto` files with `protox` (a protobuf compiler written in Rust), so builds
//! need no `protoc` on the machine.

#[cfg(feature = "grpc")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["nacos_grpc_service.proto", "cluster.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // No `connect` constructors: callers build their channel (and pick the tonic features).
        .build_transport(false)
        .codec_path("crate::codec::LeanCodec")
        .compile_fds(descriptors)?;
    Ok(())
}

/// Without the `grpc` feature there is nothing to compile (only `contract`).
#[cfg(not(feature = "grpc"))]
fn main() {}
