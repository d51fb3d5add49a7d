#!/usr/bin/env bash
# The handshake part of the benchmark suite (scripts/bench.sh runs it; it also runs alone):
# prints one JSON result line per result on stdout, progress on stderr.
#
#   scripts/bench-handshake.sh [RUNS]                  # default 3 runs of each target
#   scripts/bench-handshake.sh 3 | target/release/verack-bench report -
#
# 1. The library's server: `verack-bench handshake` against its own `serve` child.
# 2. Speed against Bitcoin Core: the `verack` node and Bitcoin Core, both on regtest on
#    127.0.0.1 with their connection limits lifted for loopback, loaded by the same client in
#    the same run, runs interleaved, plus the bare tokio floor (`--floor`). Both nodes trust
#    loopback the same way:
#      verack: --whitelist 127.0.0.0/8 (no per-IP, per-group pending or inbound limits);
#      Core:   -maxconnections=1000 -whitelist=noban@127.0.0.0/8 (Core has no per-IP or
#              pending limits; 1000 lifts max inbound; noban exempts from discouragement and
#              eviction, like verack's trust).
#    Core is located through $VERACK_CORE_DIR, ../shared/bitcoin-core or
#    /work/shared/bitcoin-core (bin/bitcoind) and started only as its README says (regtest,
#    loopback-only flags, own data directory); without it the node is compared with the floor
#    alone.
# 3. A single-IP burst against a `verack` node with its default limits: 64 in flight (share
#    of handshakes completed, and share admitted: `--await-admission` waits for the node's
#    first message after the handshake or its close), and 8 in flight (admitted).
#
# Both nodes are stopped and their data directories removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
if [ "${SKIP_BUILD:-}" != 1 ]; then
  cargo build --release -p verack-bench -p verack-node >&2
fi
bench=target/release/verack-bench
verack=target/release/verack

core_dir=
for d in "${VERACK_CORE_DIR:-}" ../shared/bitcoin-core /work/shared/bitcoin-core; do
  if [ -n "$d" ] && [ -x "$d/bin/bitcoind" ]; then
    core_dir=$d
    break
  fi
done

tmp=$(mktemp -d)
pids=()
core_rpc=()
cleanup() {
  if [ ${#core_rpc[@]} -gt 0 ]; then
    "${core_rpc[@]}" stop >/dev/null 2>&1 || true
  fi
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# Free loopback ports (bound to port 0, then released).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Waits until something accepts connections on 127.0.0.1:$1 (at most 30 s).
wait_listening() {
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "nothing listening on 127.0.0.1:$1" >&2
  return 1
}

# start_verack NAME P2P_PORT RPC_PORT [FLAGS...]: a regtest node on loopback; sets $started.
start_verack() {
  local name=$1 p2p=$2 rpc=$3
  shift 3
  mkdir -p "$tmp/$name"
  "$verack" --network regtest --datadir "$tmp/$name" --listen "127.0.0.1:$p2p" \
    --rpc-port "$rpc" "$@" >"$tmp/$name.log" 2>&1 </dev/null &
  started=$!
  pids+=("$started")
  wait_listening "$p2p"
}

echo "== handshake: library server (serve child)" >&2
"$bench" handshake --runs "$runs"

read -r vp vr dp dr cp cr < <(free_ports 6)
start_verack verack "$vp" "$vr" --whitelist 127.0.0.0/8
verack_pid=$started

compare=(--connect "127.0.0.1:$vp" --pid "$verack_pid" --label "verack node")
if [ -n "$core_dir" ]; then
  core_version=$("$core_dir/bin/bitcoind" -version | head -n1 | sed 's/.*version \(v[^ ]*\).*/\1/')
  mkdir -p "$tmp/core"
  core_rpc=("$core_dir/bin/bitcoin-cli" -regtest -datadir="$tmp/core" -rpcport="$cr"
    -rpcuser=bench -rpcpassword=bench)
  "$core_dir/bin/bitcoind" -regtest -datadir="$tmp/core" -port="$cp" -bind="127.0.0.1:$cp" \
    -rpcport="$cr" -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 -rpcuser=bench -rpcpassword=bench \
    -dnsseed=0 -fixedseeds=0 -discover=0 -listenonion=0 -natpmp=0 -printtoconsole=0 -daemon=0 \
    -connect=0 -listen=1 -maxconnections=1000 -whitelist=noban@127.0.0.0/8 >"$tmp/core.log" 2>&1 </dev/null &
  core_pid=$!
  pids+=("$core_pid")
  timeout 60 "${core_rpc[@]}" -rpcwait getnetworkinfo >/dev/null
  compare+=(--baseline "127.0.0.1:$cp" --baseline-pid "$core_pid"
    --baseline-name "Bitcoin Core $core_version" --target-ratio 3)
else
  echo "== Bitcoin Core not found (\$VERACK_CORE_DIR, ../shared/bitcoin-core, /work/shared/bitcoin-core): node vs floor only" >&2
fi
echo "== handshake: verack node vs Bitcoin Core and the bare tokio floor, loopback trusted" >&2
# Short runs, three times as many: adjacent 1 s runs of the three targets see about the same
# load from the machine's other tenants.
"$bench" handshake "${compare[@]}" --floor --runs $((runs * 3)) --duration 1

start_verack default "$dp" "$dr"
default_pid=$started
burst() {
  local in_flight=$1 what=$2
  shift 2
  echo "== handshake: one source IP, $in_flight in flight, verack node with default limits ($what)" >&2
  "$bench" handshake --connect "127.0.0.1:$dp" --pid "$default_pid" --sources 1 \
    --in-flight "$in_flight" --runs "$runs" --brief "$@" \
    --label "default limits, one IP, $in_flight in flight"
}
burst 64 "handshakes completed"
burst 64 "admitted" --await-admission
burst 8 "admitted" --await-admission
