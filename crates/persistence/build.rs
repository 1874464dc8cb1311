//! `embed_migrations!` reads the migrations directory when this crate compiles. Cargo does not
//! know that, so a migration added to an already built tree would be left out of the binary
//! until something else changed here. This tells it.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
