//! The `verack` node binary.
//!
//! The node (peer set, header sync, RPC, metrics) is built by later work on top of the
//! `verack` library; until then this binary says so and points at the working example.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "verack {}: the node is not built yet. The peer library works today: \
         `cargo run --release --example handshake -- --network regtest 127.0.0.1:18444`",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
