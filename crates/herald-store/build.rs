//! `sqlx::migrate!` embeds the migrations at compile time: rebuild when one is added or changed
//! (as sqlx's documentation asks), or a new migration would be missing from the binary.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
