#!/usr/bin/env bash
# Run verack without internet: a local bcoin regtest node mines a few hundred blocks, verack
# syncs their headers over P2P, and both tips are printed. Everything stays on 127.0.0.1 and
# in a temporary directory; both processes are stopped at the end.
#
#   bash scripts/regtest-demo.sh [BLOCKS]      (default 300)
set -euo pipefail
cd "$(dirname "$0")/.."
blocks=${1:-300}
work=$(mktemp -d)
bcoin_p2p=28444 bcoin_rpc=28332 verack_p2p=28445 verack_rpc=28453
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

echo "== installing bcoin (npm) and building verack"
(cd interop/bcoin && npm ci --no-audit --no-fund --loglevel=error)
cargo build --release -p verack-node -q

echo "== starting bcoin regtest on 127.0.0.1:$bcoin_p2p"
LOG_LEVEL=warning bash interop/bcoin/run-regtest.sh "$work/bcoin" $bcoin_p2p $bcoin_rpc --memory >/dev/null 2>&1 &
pids+=($!)
bcoin() { curl -s -u x:interop -d "{\"method\":\"$1\",\"params\":${2:-[]}}" "http://127.0.0.1:$bcoin_rpc/"; }
for _ in $(seq 100); do bcoin getblockcount | grep -q '"result"' && break; sleep 0.1; done

echo "== mining $blocks blocks"
bcoin generatetoaddress "[$blocks,\"rb1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpefl3jh\"]" >/dev/null

echo "== starting verack --network regtest --connect 127.0.0.1:$bcoin_p2p"
./target/release/verack --network regtest --datadir "$work/verack" --connect "127.0.0.1:$bcoin_p2p" --v1-only "127.0.0.1:$bcoin_p2p" \
  --listen "127.0.0.1:$verack_p2p" --rpc-port $verack_rpc --log-level warn &
pids+=($!)
cookie="$work/verack/regtest/.cookie"
verack() { curl -s --user "$(cat "$cookie")" -d "{\"method\":\"$1\",\"params\":[]}" "http://127.0.0.1:$verack_rpc/"; }
for _ in $(seq 300); do
  [ -f "$cookie" ] && verack getblockcount | grep -q "\"result\":$blocks" && break
  sleep 0.1
done
echo "bcoin  tip: $(bcoin getblockcount) $(bcoin getbestblockhash)"
echo "verack tip: $(verack getblockcount) $(verack getbestblockhash)"
if [ "$(bcoin getbestblockhash | sed 's/.*"result":"\([0-9a-f]*\)".*/\1/')" = "$(verack getbestblockhash | sed 's/.*"result":"\([0-9a-f]*\)".*/\1/')" ]; then
  echo "== verack's tip equals bcoin's"
else
  echo "== tips differ" >&2; exit 1
fi
