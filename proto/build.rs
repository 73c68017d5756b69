//! Compile `proto/paymentswitch/v1/*.proto` with protox (pure Rust: no `protoc` on
//! the machine) and generate tonic clients and servers. The descriptor set is
//! kept for gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "common",
        "teller",
        "admin",
        "simulator",
        "bank",
        "biller",
        "merchant",
        "bills",
        "settlement",
    ]
    .map(|f| format!("proto/paymentswitch/v1/{f}.proto"));
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("switch_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
