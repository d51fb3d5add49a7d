#!/usr/bin/env bash
# Runs the benchmark suite (release build; under 10 minutes on the project's 2-core machine once
# built) and writes BENCHMARKS.md: the tables from this run, then verack-bench/NOTES.md (the
# analysis, by hand). Raw JSON lines are kept in target/bench-results.jsonl.
#
#   scripts/bench.sh            # whole suite, medians of several runs
#   QUICK=1 scripts/bench.sh    # one short run of each (a smoke test; numbers not for quoting)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p verack-bench -p verack-node
(cd verack-bench/nakamoto-client && cargo build --release)

bench=target/release/verack-bench
results=target/bench-results.jsonl
micro=target/bench-micro.txt
: >"$results"
started=$(date +%s)

if [ "${QUICK:-}" = 1 ]; then
  runs=1 scale=0.2 peers=1000 headers=20000 scale_headers=100000
else
  runs=3 scale=1 peers=10000 headers=100000 scale_headers=900000
fi

run() {
  echo "== $*" >&2
  "$bench" "$@" | tee -a "$results"
}

run throughput --runs "$runs" --scale "$scale"
run throughput --runs "$runs" --scale "$scale" --keep-freed-memory
# The library's server, the verack node against Bitcoin Core and the bare tokio floor, and a
# single-IP burst against default limits; see the script.
echo "== handshake: scripts/bench-handshake.sh" >&2
SKIP_BUILD=1 scripts/bench-handshake.sh "$runs" | tee -a "$results"
run many-peers --peers "$peers"
run headers --runs "$runs" --headers "$headers"
run fanout --runs $((runs + 2))
run scale --runs "$runs" --headers "$scale_headers"

echo "== micro: framing vs bitcoin::consensus (criterion, then the CI guard's quick mode)" >&2
cargo bench -q -p verack --bench framing 2>/dev/null | python3 scripts/criterion-table.py >target/bench-criterion.md
cat target/bench-criterion.md >&2
VERACK_BENCH_GUARD=1 cargo bench -q -p verack --bench framing 2>/dev/null | grep '^bench-guard' | tee "$micro"

{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d) ($(git rev-parse --short HEAD)), $(( $(date +%s) - started )) s."
  echo "Medians of the runs shown; ratios are verack / baseline measured in the same run."
  echo "Raw results: one JSON line per result, \`target/bench-results.jsonl\`."
  echo
  echo "## Macro benchmarks (\`verack-bench\`)"
  echo
  "$bench" report "$results"
  echo
  echo "## Micro benchmarks: frame encode/decode vs \`bitcoin::consensus\` alone"
  echo
  echo "Criterion (\`cargo bench -p verack --bench framing\`), median time per frame; the same"
  echo "frame encoded or decoded by verack's codec and by rust-bitcoin's \`RawNetworkMessage\` alone."
  echo
  cat target/bench-criterion.md
  echo
  echo "Quick mode, as CI runs it (\`.ci/bench-guard.sh\`; it fails above 3x):"
  echo
  echo '```'
  cat "$micro"
  echo '```'
  echo
  cat verack-bench/NOTES.md
} >BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
