#!/usr/bin/env bash
# CI: quick framing regression guard. Times verack's v1 codec against rust-bitcoin's own
# consensus encoding in the same process (decode and encode of a 1 MB frame, decode of a
# 1-entry inv) and fails when verack is more than 3x slower. Ratios, not absolute times, so a
# slow CI machine does not fail it; a few seconds after the bench profile is built.
# See verack/benches/framing.rs (VERACK_BENCH_GUARD).
set -euo pipefail
cd "$(dirname "$0")/.."

VERACK_BENCH_GUARD=1 cargo bench -p verack --bench framing
