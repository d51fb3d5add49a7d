//! Exposes the resolved `nakamoto-client` version (from Cargo.lock) to the binary as
//! `NAKAMOTO_CLIENT_VERSION`, so the JSON report names the exact version that was built.
use std::{env, fs, path::Path};

fn main() {
    let lock = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = fs::read_to_string(&lock).unwrap_or_default();
    let mut version = String::from("0.4");
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"nakamoto-client\"" {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                version = v.trim_matches('"').to_string();
            }
            break;
        }
    }
    println!("cargo:rustc-env=NAKAMOTO_CLIENT_VERSION={version}");
}
