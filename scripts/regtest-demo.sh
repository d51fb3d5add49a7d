#!/usr/bin/env bash
# verack without internet, in one command: the bundled Bitcoin Core starts on regtest (loopback
# only, as ../shared/bitcoin-core/README.md requires, and -connect=0 so it dials nobody), mines
# a chain, verack syncs its headers over P2P (BIP324 v2), follows new blocks, and answers Core's
# own bitcoin-cli. Everything stays on 127.0.0.1 and in a temporary directory; both processes
# are stopped at the end.
#
#   bash scripts/regtest-demo.sh [BLOCKS]      (default 300)
#
# Core is looked for in $VERACK_CORE_DIR, ../shared/bitcoin-core, /work/shared/bitcoin-core.
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=${1:-300}

core_dir="${VERACK_CORE_DIR:-}"
if [ -z "$core_dir" ]; then
  for d in "$(pwd)/../shared/bitcoin-core" /work/shared/bitcoin-core; do
    if [ -x "$d/bin/bitcoind" ]; then core_dir="$d"; break; fi
  done
fi
if [ -z "$core_dir" ] || [ ! -x "$core_dir/bin/bitcoind" ]; then
  echo "error: Bitcoin Core not found; set VERACK_CORE_DIR to the folder holding bin/bitcoind" >&2
  exit 1
fi

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
core_p2p=$(free_port) core_rpc=$(free_port) verack_p2p=$(free_port) verack_rpc=$(free_port)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

core_cli() { "$core_dir/bin/bitcoin-cli" -regtest -datadir="$work/core" -rpcport="$core_rpc" -rpcuser=demo -rpcpassword=demo "$@"; }
# verack answers Core's bitcoin-cli: same cookie path (<datadir>/regtest/.cookie), its own port.
verack_cli() { "$core_dir/bin/bitcoin-cli" -regtest -datadir="$work/verack" -rpcport="$verack_rpc" "$@"; }
field() { python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[int(k)] if isinstance(v,list) else v[k]
print(v)' "$@"; }

echo "== building verack (release)"
cargo build --release -p verack-node -q

echo "== Bitcoin Core $("$core_dir/bin/bitcoind" -version | head -n 1 | sed 's/.*version //') on regtest, 127.0.0.1:$core_p2p"
mkdir -p "$work/core"
"$core_dir/bin/bitcoind" -regtest -datadir="$work/core" -port="$core_p2p" -bind="127.0.0.1:$core_p2p" \
  -rpcport="$core_rpc" -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 -rpcuser=demo -rpcpassword=demo \
  -dnsseed=0 -fixedseeds=0 -discover=0 -listenonion=0 -natpmp=0 -printtoconsole=0 -daemon=0 \
  -connect=0 -listen=1 &
pids+=($!)
core_cli -rpcwait -rpcwaittimeout=30 getblockcount >/dev/null
core_cli generatetodescriptor "$blocks" "raw(51)" >/dev/null
echo "   mined $(core_cli getblockcount) blocks, tip $(core_cli getbestblockhash)"

echo "== verack --network regtest --connect 127.0.0.1:$core_p2p"
./target/release/verack --network regtest --datadir "$work/verack" --connect "127.0.0.1:$core_p2p" \
  --listen "127.0.0.1:$verack_p2p" --rpc-port "$verack_rpc" --log-level info 2>"$work/verack.log" &
pids+=($!)
target=$(core_cli getbestblockhash)
synced=""
for _ in $(seq 300); do
  if [ -f "$work/verack/regtest/.cookie" ] && [ "$(verack_cli getbestblockhash 2>/dev/null)" = "$target" ]; then
    synced=yes; break
  fi
  sleep 0.1
done
[ -n "$synced" ] || {
  sed -e 's/^/   | /' "$work/verack.log" | tail -n 20
  echo "error: verack did not reach Core's tip within 30 s" >&2
  exit 1
}

echo "== Core mines 10 more; verack follows"
core_cli generatetodescriptor 10 "raw(51)" >/dev/null
target=$(core_cli getbestblockhash)
for _ in $(seq 100); do
  [ "$(verack_cli getbestblockhash)" = "$target" ] && break
  sleep 0.1
done
# The progress reporter samples once a second: give it a moment to say it is synced.
for _ in $(seq 50); do
  grep -q "synced at height" "$work/verack.log" && break
  sleep 0.1
done
echo "   what verack printed (log level info):"
sed -e 's/^/   | /' "$work/verack.log" | head -n 20

echo "== bitcoin-cli getblockchaininfo, asked of verack"
info=$(verack_cli getblockchaininfo)
printf '   chain %s, blocks %s, headers %s\n   best block %s\n' \
  "$(echo "$info" | field chain)" "$(echo "$info" | field blocks)" \
  "$(echo "$info" | field headers)" "$(echo "$info" | field bestblockhash)"
if [ "$(echo "$info" | field bestblockhash)" = "$target" ]; then
  echo "   equal to Core's tip at height $(core_cli getblockcount)"
else
  echo "error: verack's tip differs from Core's ($target)" >&2; exit 1
fi

echo "== bitcoin-cli getpeerinfo, asked of verack"
peers=$(verack_cli getpeerinfo)
n=$(echo "$peers" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
for i in $(seq 0 $((n - 1))); do
  printf '   peer %s: %s %s, %s transport (session %s…), synced headers %s\n' \
    "$(echo "$peers" | field "$i" id)" "$(echo "$peers" | field "$i" addr)" \
    "$(echo "$peers" | field "$i" subver)" "$(echo "$peers" | field "$i" transport_protocol_type)" \
    "$(echo "$peers" | field "$i" session_id | cut -c1-16)" "$(echo "$peers" | field "$i" synced_headers)"
done
echo "== Core's view of verack"
core_cli getpeerinfo | python3 -c 'import json,sys
for p in json.load(sys.stdin):
    print("   %s %s, services %s, %s" % (p["addr"], p["subver"], ",".join(p["servicesnames"]) or "none", p["transport_protocol_type"]))'
echo "== done: verack synced $blocks + 10 headers from Bitcoin Core over loopback"
