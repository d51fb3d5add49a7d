#!/usr/bin/env bash
# Time nakamoto header syncs against bcoin and (optionally) a verack node, all on loopback.
#
#   run-interop.sh [HEIGHT=200] [RUNS=3]
#
# 1. starts bcoin regtest (interop/bcoin, needs `npm ci` there) and mines HEIGHT blocks;
# 2. starts target/release/verack (build it first: cargo build --release -p verack-node),
#    connected only to bcoin, and waits until it has HEIGHT blocks (skip with WITH_VERACK=0);
# 3. runs nakamoto-sync RUNS times against each; one JSON line per run on stdout.
# If verack does not advertise NODE_NETWORK, its runs use --force-node-network (see
# src/relay.rs) and say so in the JSON. Ports: env BCOIN_P2P BCOIN_RPC VERACK_P2P VERACK_RPC.
# Every wait is bounded; all processes started here are stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
N=${1:-200}
RUNS=${2:-3}
BCOIN_P2P=${BCOIN_P2P:-28444} BCOIN_RPC=${BCOIN_RPC:-28332}
VERACK_P2P=${VERACK_P2P:-28555} VERACK_RPC=${VERACK_RPC:-28556}
VERACK_BIN=${VERACK_BIN:-$repo/target/release/verack}
WITH_VERACK=${WITH_VERACK:-1}
SYNC=$here/target/release/nakamoto-sync
ADDR=rb1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpefl3jh # bcoin regtest P2WPKH, see interop/bcoin/FINDINGS.md

[ -x "$SYNC" ] || (cd "$here" && cargo build --release --quiet)
tmp=$(mktemp -d /tmp/nakamoto-interop-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

rpc() { # rpc PORT AUTH METHOD PARAMS
  curl -s -m 30 -u "$2" -H 'Content-Type: application/json' \
    -d "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"$3\",\"params\":$4}" "http://127.0.0.1:$1/"
}
wait_for() { # wait_for SECS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "run-interop: timed out after ${secs}s waiting for $what" >&2
  exit 1
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
count_is() { rpc "$1" "$2" getblockcount '[]' | grep -q "\"result\":$3[,}]"; }

# --- bcoin ---
LOG_LEVEL=warning API_KEY=interop "$repo/interop/bcoin/run-regtest.sh" "$tmp/bcoin" \
  "$BCOIN_P2P" "$BCOIN_RPC" --memory >"$tmp/bcoin.log" 2>&1 &
pids+=($!)
wait_for 30 "bcoin RPC" count_is "$BCOIN_RPC" x:interop 0
wait_for 30 "bcoin P2P" port_open "$BCOIN_P2P"
left=$N
while [ "$left" -gt 0 ]; do
  n=$((left > 1000 ? 1000 : left))
  rpc "$BCOIN_RPC" x:interop generatetoaddress "[$n,\"$ADDR\"]" >/dev/null
  left=$((left - n))
done
wait_for 10 "bcoin height $N" count_is "$BCOIN_RPC" x:interop "$N"
echo "run-interop: bcoin at height $N on 127.0.0.1:$BCOIN_P2P" >&2

# --- verack ---
if [ "$WITH_VERACK" = 1 ]; then
  "$VERACK_BIN" --network regtest --datadir "$tmp/verack" --connect "127.0.0.1:$BCOIN_P2P" \
    --listen "127.0.0.1:$VERACK_P2P" --rpc-port "$VERACK_RPC" --rpc-user u --rpc-password p \
    --log-level warn >"$tmp/verack.log" 2>&1 &
  pids+=($!)
  t0=$(date +%s.%N)
  wait_for 300 "verack height $N" count_is "$VERACK_RPC" u:p "$N"
  echo "run-interop: verack synced $N blocks from bcoin in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s (incl. startup, 0.2s polling)" >&2
  hex=$(rpc "$VERACK_RPC" u:p getnetworkinfo '[]' | grep -o '"localservices":"[0-9a-fA-F]*"' | cut -d'"' -f4)
  force=()
  if [ $((16#${hex:-0} & 1)) -eq 0 ]; then
    echo "run-interop: verack localservices=0x${hex:-?} lacks NODE_NETWORK; using --force-node-network" >&2
    force=(--force-node-network)
  fi
fi

rc=0
for _ in $(seq 1 "$RUNS"); do
  "$SYNC" --connect "127.0.0.1:$BCOIN_P2P" --height "$N" --timeout-secs 60 2>>"$tmp/sync.log" || rc=1
done
if [ "$WITH_VERACK" = 1 ]; then
  for _ in $(seq 1 "$RUNS"); do
    "$SYNC" --connect "127.0.0.1:$VERACK_P2P" --height "$N" --timeout-secs 60 "${force[@]}" \
      2>>"$tmp/sync.log" || rc=1
  done
fi
[ "$rc" = 0 ] || { echo "run-interop: a run failed; nakamoto-sync stderr:" >&2; cat "$tmp/sync.log" >&2; }
exit "$rc"
