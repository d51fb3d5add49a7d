#!/usr/bin/env bash
# Start an isolated bcoin regtest node in the foreground (reference launcher;
# the Rust interop test may equally spawn the same `node ...` command itself).
#
#   run-regtest.sh PREFIX_DIR P2P_PORT RPC_PORT [extra bcoin --flags...]
#
# RPC auth: HTTP Basic, any user name, password = $API_KEY (default "interop").
# Extra flags are appended, e.g. --only=127.0.0.1:29444 to make it dial us.
# NB: bcoin itself reads every BCOIN_* environment variable as a config key,
# so this script takes positional arguments and clears BCOIN_* before exec.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
prefix=$1 p2p=$2 rpc=$3
shift 3
for v in $(compgen -e | grep '^BCOIN_' || true); do unset "$v"; done
mkdir -p "$prefix"
exec node "$here/node_modules/bcoin/bin/node" \
  --network=regtest \
  --prefix="$prefix" \
  --no-wallet \
  --workers=false \
  --log-level="${LOG_LEVEL:-debug}" \
  --log-file=false \
  --listen \
  --host=127.0.0.1 --port="$p2p" \
  --public-host=1.2.3.4 \
  --seeds=, \
  --max-outbound=1 \
  --http-host=127.0.0.1 --http-port="$rpc" \
  --api-key="${API_KEY:-interop}" \
  "$@"
