//! Compiles the calendar proto without a system `protoc`: protox parses it (with the well-known
//! types it imports) into a descriptor set, which tonic-prost-build turns into messages, the
//! server and the client, and which is also written out whole for server reflection.

use std::{env, error::Error, fs, path::PathBuf};

use prost::Message as _;

const PROTO: &str = "proto/herald/calendar/v1/calendar.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto");
    // `compile` includes the imported files (google/protobuf/*.proto), so a reflection-only
    // client can resolve every type, and source info, so it also sees the comments.
    let descriptors = protox::compile([PROTO], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("calendar_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure().emit_rerun_if_changed(false).compile_fds(descriptors)?;
    Ok(())
}
