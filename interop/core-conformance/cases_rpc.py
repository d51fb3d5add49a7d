"""Cases of Core's p2p_disconnect_ban.py and p2p_eviction.py."""

import json
import os
import time

from test_framework.messages import msg_pong
from test_framework.p2p import NetworkThread, P2PInterface
from harness import p2p_lock

from harness import Fail, NET, case, check, describe, parse_v1_frames, v1_frame, version_msg, wait_for

ONION = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion"


def banned(ctx):
    return {b["address"]: b for b in ctx.rpc("listbanned")}


def wait_gone(ctx, peer, what, timeout=10):
    deadline = time.monotonic() + timeout
    while peer.is_connected and time.monotonic() < deadline:
        time.sleep(0.02)
    check(not peer.is_connected, f"{what}: still connected after {timeout}s")


# -- p2p_disconnect_ban ---------------------------------------------------------------------

@case("disconnect_ban.setban_disconnects")
def setban_disconnects(ctx):
    """Banning an address disconnects its peers and refuses new connections from it;
    clearbanned lifts it."""
    ctx.rpc("clearbanned")
    try:
        ip = ctx.next_ip()
        a, b = ctx.connect(ip=ip), ctx.connect(ip=ip)
        other = ctx.connect()
        ctx.rpc("setban", ip, "add")
        wait_gone(ctx, a, "first peer of the banned address")
        wait_gone(ctx, b, "second peer of the banned address")
        ctx.expect_kept(other, "a peer of another address when one is banned")
        bans = banned(ctx)
        check(list(bans) == [f"{ip}/32"], f"listbanned {list(bans)}, expected [{ip}/32]")
        raw = ctx.raw(ip=ip)
        try:
            raw.send(v1_frame("version", version_msg().serialize()))
        except OSError:
            pass
        closed = raw.wait_closed(3)
        frames, _ = parse_v1_frames(raw.buf)
        check(closed and not frames, f"a banned address could connect (closed={closed}, got {[c for c, _ in frames]})")
        ctx.rpc("clearbanned")
        check(ctx.rpc("listbanned") == [], "listbanned not empty after clearbanned")
        ctx.connect(ip=ip)
    finally:
        ctx.rpc("clearbanned")


@case("disconnect_ban.setban_errors")
def setban_errors(ctx):
    ctx.rpc("clearbanned")
    try:
        ctx.rpc("setban", "127.0.0.0/24", "add")
        check(len(ctx.rpc("listbanned")) == 1, "one subnet banned, listbanned disagrees")
        ctx.node.assert_rpc_error(-23, "IP/Subnet already banned", "setban", "127.0.0.1", "add")
        ctx.node.assert_rpc_error(-30, "Error: Invalid IP/Subnet", "setban", "127.0.0.1/42", "add")
        check(len(ctx.rpc("listbanned")) == 1, "a failed setban changed the ban list")
        ctx.node.assert_rpc_error(-8, "Error: Absolute timestamp is in the past",
                                  "setban", "127.27.0.1", "add", 123, True)
        ctx.node.assert_rpc_error(-30, "Error: Unban failed", "setban", "127.0.0.1", "remove")
        check(len(ctx.rpc("listbanned")) == 1, "a failed unban changed the ban list")
        ctx.rpc("setban", "127.0.0.0/24", "remove")
        check(ctx.rpc("listbanned") == [], "subnet still listed after setban remove")
    finally:
        ctx.rpc("clearbanned")


@case("disconnect_ban.ban_times_and_persistence")
def ban_times(ctx):
    """ban_duration/time_remaining for default, relative and absolute bans; a 1-second ban
    expires; bans are written to <datadir>/regtest/banlist.json."""
    ctx.rpc("clearbanned")
    try:
        now = int(time.time())
        ctx.rpc("setban", "127.0.0.0/32", "add")
        ctx.rpc("setban", "127.0.0.0/24", "add")
        ctx.rpc("setban", "192.168.0.1", "add", 1)
        ctx.rpc("setban", "2001:4d48:ac57:400:cacf:e9ff:fe1d:9c63/19", "add", 1000)
        ctx.rpc("setban", "192.168.0.2", "add", now + 120, True)
        bans = banned(ctx)
        check("192.168.0.1/32" in bans, f"192.168.0.1/32 not in listbanned {list(bans)}")
        six = [a for a in bans if a.endswith("/19")]
        check(len(six) == 1, f"IPv6 /19 ban not listed once: {list(bans)}")
        problems = []
        for addr, want in (("127.0.0.0/32", 86400), ("127.0.0.0/24", 86400), (six[0], 1000),
                           ("192.168.0.2/32", 120)):
            b = bans.get(addr)
            if b is None:
                problems.append(f"{addr} not listed")
                continue
            if abs(b["ban_duration"] - want) > 2:
                problems.append(f"{addr} ban_duration {b['ban_duration']}, expected {want}")
            if not (want - 5 <= b["time_remaining"] <= want):
                problems.append(f"{addr} time_remaining {b['time_remaining']}, expected about {want}")
        time.sleep(2.5)
        after = banned(ctx)
        if "192.168.0.1/32" in after:
            problems.append("the 1-second ban of 192.168.0.1 still listed after 2.5 s")
        if len(after) != 4:
            problems.append(f"{len(after)} bans listed after the short one expired, expected 4: {list(after)}")
        path = os.path.join(ctx.node.datadir, NET, "banlist.json")
        deadline = time.monotonic() + 3
        text = ""
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                text = ""
            if all(a.split("/")[0] in text for a in ("127.0.0.0/24", "192.168.0.2/32")):
                break
            time.sleep(0.1)
        else:
            problems.append(f"bans not written to {path}")
        if problems:
            raise Fail("; ".join(problems))
    finally:
        ctx.rpc("clearbanned")


@case("disconnect_ban.onion_ban")
def onion_ban(ctx):
    """Core bans Tor v3 addresses by name. verack differs on purpose (README "Choices"): its
    bans are IP addresses and subnets, since it connects over IP only, so `setban <v3>.onion`
    is refused with Core's own error for an invalid address (-30 "Invalid IP/Subnet") and
    nothing is banned."""
    ctx.rpc("clearbanned")
    try:
        ctx.node.assert_rpc_error(-30, "Invalid IP/Subnet", "setban", ONION, "add")
        check(not banned(ctx), f"listbanned not empty: {list(banned(ctx))}")
    finally:
        ctx.rpc("clearbanned")


@case("disconnect_ban.disconnectnode")
def disconnectnode(ctx):
    peer = ctx.connect()
    info = ctx.wait_peer_info(peer)
    ctx.node.assert_rpc_error(-32602, "Only one of address and nodeid should be provided.",
                              "disconnectnode", info["addr"], info["id"])
    ctx.node.assert_rpc_error(-29, "Node not found in connected nodes", "disconnectnode", "221B Baker Street")
    ctx.rpc("disconnectnode", info["addr"])
    wait_gone(ctx, peer, "disconnectnode by address")
    check(info["addr"] not in [p["addr"] for p in ctx.rpc("getpeerinfo")], "still in getpeerinfo")
    peer2 = ctx.connect()
    info2 = ctx.wait_peer_info(peer2)
    ctx.rpc("disconnectnode", "", info2["id"])
    wait_gone(ctx, peer2, "disconnectnode by node id")
    check(info2["id"] not in [p["id"] for p in ctx.rpc("getpeerinfo")], "still in getpeerinfo")


# -- p2p_eviction ---------------------------------------------------------------------------

class SlowP2PInterface(P2PInterface):
    """Answers pings after 150 ms (Core sleeps 0.1 s in the network thread; a timer keeps the
    other connections' pongs prompt)."""

    def on_ping(self, message):
        NetworkThread.network_event_loop.call_later(
            0.15, lambda: self.is_connected and self.send_without_ping(msg_pong(message.nonce)))


@case("eviction.protect_fast_pingers")
def eviction(ctx):
    """With every inbound slot taken, a newcomer makes the node evict exactly one peer, never
    one of the 8 with the lowest ping. (Core also protects peers that sent novel blocks and
    transactions; verack keeps neither, and all peers share the loopback netgroup, as in Core's
    test.) Uses the node's --max-inbound (runner flag --max-inbound)."""
    slots = ctx.node.max_inbound
    existing = [p for p in ctx.rpc("getpeerinfo") if p.get("inbound")]
    free = slots - len(existing)
    check(free >= 9, f"only {free} free inbound slots of {slots}")
    peers = [ctx.connect(SlowP2PInterface()) for _ in range(free - 8)]
    peers += [ctx.connect(P2PInterface()) for _ in range(8)]
    addrs = {ctx.addr_of(p): p for p in peers}
    deadline = time.monotonic() + 15
    while True:
        info = {p["addr"]: p for p in ctx.rpc("getpeerinfo") if p["addr"] in addrs}
        pinged = [a for a, p in info.items() if "minping" in p]
        if len(pinged) == len(addrs):
            break
        if time.monotonic() > deadline:
            raise Fail(f"only {len(pinged)} of {len(addrs)} peers have a ping time after 15 s")
        time.sleep(0.1)
    protected = set(sorted(info, key=lambda a: info[a]["minping"])[:8])
    newcomer = ctx.connect(SlowP2PInterface())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        evicted = [a for a, p in addrs.items() if not p.is_connected]
        if evicted:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    evicted = [a for a, p in addrs.items() if not p.is_connected]
    check(len(evicted) == 1, f"{len(evicted)} peers evicted for one newcomer (Core: exactly 1)")
    check(evicted[0] not in protected,
          f"evicted {evicted[0]} (minping {info[evicted[0]]['minping']}), one of the 8 lowest-ping peers")
    ctx.expect_kept(newcomer, "the newcomer that triggered eviction")
