#!/usr/bin/env python3
"""Bitcoin Core's P2P functional-test cases, put to a running verack node.

Usage:
  run.py --p2p-port P --rpc-port R --datadir D [--max-inbound N] [--case NAME ...]
         [--core-dir DIR] [--list] [--verbose]

The node must run on regtest with its RPC cookie in <datadir>/regtest/.cookie. Prints one line
per case (`PASS name` or `FAIL name: reason`) and `N passed, M failed`; exits 1 on any failure.
`--case` takes a case name or a prefix ending in `.` (e.g. `--case v2_transport.`).
"""

import argparse
import os
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def core_dir(explicit):
    """Where Core's functional tests live: --core-dir, $VERACK_CORE_DIR, <repo>/../shared/
    bitcoin-core, /work/shared/bitcoin-core."""
    candidates = [explicit, os.environ.get("VERACK_CORE_DIR"),
                  os.path.join(HERE, "..", "..", "..", "shared", "bitcoin-core"),
                  "/work/shared/bitcoin-core"]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "functional", "test_framework", "p2p.py")):
            return os.path.abspath(c)
    sys.exit("error: Bitcoin Core's functional test framework not found (looked in "
             + ", ".join(str(c) for c in candidates if c)
             + "); set VERACK_CORE_DIR to the folder holding functional/test_framework")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--p2p-port", type=int)
    ap.add_argument("--rpc-port", type=int)
    ap.add_argument("--datadir")
    ap.add_argument("--max-inbound", type=int, default=114,
                    help="the node's --max-inbound (the eviction case fills every slot)")
    ap.add_argument("--getaddr-cache-secs", type=int,
                    help="the node's getaddr cache lifetime (VERACK_TEST_GETADDR_CACHE_SECS in its "
                         "environment); the getaddr cases wait it out, as Core's move mock time")
    ap.add_argument("--case", action="append", default=[], help="run only this case (repeatable)")
    ap.add_argument("--core-dir")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--verbose", action="store_true", help="timings and tracebacks")
    ap.add_argument("--debug", action="store_true", help="the framework's debug log on stderr")
    args = ap.parse_args()

    sys.path.insert(0, os.path.join(core_dir(args.core_dir), "functional"))
    sys.path.insert(0, HERE)
    import harness
    import cases_messages, cases_handshake, cases_v2, cases_addr, cases_headers, cases_rpc  # noqa: F401 (register)
    from test_framework.p2p import NetworkThread

    cases = harness.REGISTRY
    if args.list:
        for name, _, slow in cases:
            print(name + ("  (slow)" if slow else ""))
        return 0
    if args.case:
        def wanted(name):
            return any(name == c or (c.endswith(".") and name.startswith(c)) for c in args.case)
        cases = [c for c in cases if wanted(c[0])]
        if not cases:
            sys.exit(f"error: no case matches {args.case} (see --list)")
    for needed in ("p2p_port", "rpc_port", "datadir"):
        if getattr(args, needed) is None:
            sys.exit(f"error: --{needed.replace('_', '-')} is required")

    harness.quiet_framework(args.debug)
    node = harness.Node(args.host, args.p2p_port, args.rpc_port, args.datadir, args.max_inbound,
                        args.getaddr_cache_secs)
    network = NetworkThread()
    network.daemon = True
    network.start()
    deadline = time.monotonic() + 5
    while NetworkThread.network_event_loop is None or not NetworkThread.network_event_loop.is_running():
        if time.monotonic() > deadline:
            sys.exit("error: network thread did not start")
        time.sleep(0.01)

    results = {}

    def run_case(name, fn):
        ctx = harness.Ctx(node, name)
        started = time.monotonic()
        try:
            fn(ctx)
            verdict = None
        except harness.Fail as e:
            verdict = str(e)
        except Exception as e:  # a bug in the case or the framework, reported as a failure
            verdict = f"unexpected {type(e).__name__}: {e}"
            if args.verbose:
                traceback.print_exc()
        finally:
            try:
                ctx.close()
            except Exception as e:
                verdict = verdict or f"cleanup failed: {e!r}"
        return verdict, time.monotonic() - started

    def report(name, verdict, seconds):
        results[name] = verdict
        line = f"PASS {name}" if verdict is None else f"FAIL {name}: {verdict}"
        if args.verbose:
            line += f"  [{seconds:.1f}s]"
        print(line, flush=True)

    def honest(after):
        try:
            harness.honest_check(node)
            return None
        except Exception as e:
            return f"after this case an honest peer could not complete version/verack and ping/pong: {e}"

    # Slow cases first, together (each waits out a timeout of verack's).
    slow = [(n, f) for n, f, s in cases if s]
    outcomes = {}

    def slow_runner(name, fn):
        outcomes[name] = run_case(name, fn)

    threads = [threading.Thread(target=slow_runner, args=c, daemon=True) for c in slow]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    after = honest("slow cases") if slow else None
    for name, _ in slow:
        verdict, seconds = outcomes.get(name, ("did not finish within 180 s", 180.0))
        report(name, verdict or after, seconds)

    for name, fn, is_slow in cases:
        if is_slow:
            continue
        verdict, seconds = run_case(name, fn)
        report(name, verdict or honest(name), seconds)

    failed = sum(1 for v in results.values() if v is not None)
    print(f"{len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
