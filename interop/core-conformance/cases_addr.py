"""Cases of Core's p2p_addr_relay.py and p2p_getaddr_caching.py.

Core's addr-relay test whitelists 127.0.0.1 with the `addr` permission (no rate limit) and moves
mock time to flush its 30-second addr trickle. verack has neither mock time nor a per-permission
whitelist (its --whitelist lifts every limit and protection), so these cases use what Core does
for an ordinary peer: one address per fresh inbound connection (its token bucket starts at 1),
and verack's immediate forwarding. Destination rotation over days needs mock time: not covered.
"""

import random
import threading
import time

from test_framework.messages import CAddress, msg_addr, msg_getaddr, msg_verack
from test_framework.p2p import P2PInterface, P2P_SERVICES
from harness import p2p_lock

from harness import Fail, case, check, describe, wait_for

_used = set()
_used_lock = threading.Lock()


def fresh_ips(n):
    """Routable IPv4 addresses never used before in this run (Core's 128-169.x.x.x range)."""
    out = []
    with _used_lock:
        while len(out) < n:
            ip = f"{random.randrange(128, 169)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
            if ip not in _used:
                _used.add(ip)
                out.append(ip)
    return out


def addr_msg(ips, when=None):
    msg = msg_addr()
    now = int(time.time())
    for i, ip in enumerate(ips):
        a = CAddress()
        a.time = when if when is not None else now + random.randrange(-100, 100)
        a.nServices = P2P_SERVICES
        a.ip = ip
        a.port = 8333 + (i % 10)
        msg.addrs.append(a)
    return msg


class AddrReceiver(P2PInterface):
    """Core's AddrReceiver: answers version with verack (and getaddr unless told not to);
    records every address it receives."""

    def __init__(self, send_getaddr=True):
        super().__init__()
        self.send_getaddr = send_getaddr
        self.addrs = []

    def on_addr(self, message):
        self.addrs.extend(a.ip for a in message.addrs)

    def on_addrv2(self, message):
        self.addrs.extend(str(a.ip) for a in message.addrs)

    def on_version(self, message):
        self.send_version()
        self.send_without_ping(msg_verack())
        if self.send_getaddr:
            self.send_without_ping(msg_getaddr())


class QuietSource(AddrReceiver):
    """A peer that only sends addresses (no getaddr), and records what it gets."""

    def __init__(self):
        super().__init__(send_getaddr=False)


def copies(peers, ip):
    with p2p_lock:
        return sum(p.addrs.count(ip) for p in peers)


def gone(ctx, peer, timeout=5):
    addr = ctx.addr_of(peer)
    peer.peer_disconnect()
    deadline = time.monotonic() + timeout
    while any(p.get("addr") == addr for p in ctx.rpc("getpeerinfo")):
        if time.monotonic() > deadline:
            raise Fail(f"{addr} still in getpeerinfo {timeout}s after it closed")
        time.sleep(0.05)


def processed(ctx, peer, total, timeout=2):
    """(addr_processed, addr_rate_limited) once verack has handled `total` addresses."""
    deadline = time.monotonic() + timeout
    while True:
        info = ctx.wait_peer_info(peer)
        p, r = info.get("addr_processed"), info.get("addr_rate_limited")
        if p is None or r is None:
            raise Fail("getpeerinfo lacks addr_processed/addr_rate_limited")
        if p + r >= total or time.monotonic() > deadline:
            return p, r
        time.sleep(0.05)


@case("addr_relay.oversized_addr")
def oversized_addr(ctx):
    peer = ctx.connect()
    peer.send_without_ping(addr_msg(fresh_ips(1010)))
    ctx.expect_disconnect(peer, "addr with 1010 entries")


@case("addr_relay.relay_to_two_peers")
def relay_to_two(ctx):
    """Every fresh address from a small addr message is forwarded to exactly two other peers,
    never back to its sender."""
    receivers = [ctx.connect(AddrReceiver()) for _ in range(6)]
    problems = []
    for _ in range(10):
        source = ctx.connect(QuietSource())
        [ip] = fresh_ips(1)
        peers = receivers + [source]
        source.send_without_ping(addr_msg([ip]))
        ctx.sync(source, "after sending one address")
        deadline = time.monotonic() + 3
        while copies(peers, ip) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # room for a third copy, which must not come
        n = copies(peers, ip)
        with p2p_lock:
            back = source.addrs.count(ip)
        if n != 2 or back:
            problems.append(f"{ip}: {n} copies (Core: 2), {back} back to its sender")
        gone(ctx, source)
    if problems:
        raise Fail("; ".join(problems))


@case("addr_relay.inbound_blackhole")
def inbound_blackhole(ctx):
    """Core relays addresses only to inbound peers that sent addr, addrv2 or getaddr
    (`addr_relay_enabled`); a peer that never did gets none until it sends an addr."""
    receiver = ctx.connect(AddrReceiver())
    blackhole = ctx.connect(AddrReceiver(send_getaddr=False))
    r_info, b_info = ctx.wait_peer_info(receiver), ctx.wait_peer_info(blackhole)
    problems = []
    if r_info.get("addr_relay_enabled") is not True:
        problems.append(f"peer that sent getaddr: addr_relay_enabled {r_info.get('addr_relay_enabled')}")
    if b_info.get("addr_relay_enabled") is not False:
        problems.append(f"peer that sent no addr message: addr_relay_enabled {b_info.get('addr_relay_enabled')} (Core: false)")
    source = ctx.connect(QuietSource())
    [ip] = fresh_ips(1)
    source.send_without_ping(addr_msg([ip]))
    ctx.sync(source, "after sending an address")
    deadline = time.monotonic() + 3
    while copies([receiver], ip) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    if copies([receiver], ip) != 1:
        problems.append(f"the eligible peer got {copies([receiver], ip)} copies of {ip}, expected 1")
    if copies([blackhole], ip):
        problems.append(f"the peer that never sent an addr message got {ip} (Core: none)")
    gone(ctx, source)
    blackhole.send_without_ping(msg_addr())
    ctx.sync(blackhole, "after an empty addr")
    b_info = ctx.wait_peer_info(blackhole)
    if b_info.get("addr_relay_enabled") is not True:
        problems.append(f"after an empty addr: addr_relay_enabled {b_info.get('addr_relay_enabled')} (Core: true)")
    source = ctx.connect(QuietSource())
    [ip2] = fresh_ips(1)
    source.send_without_ping(addr_msg([ip2]))
    ctx.sync(source, "after sending an address")
    deadline = time.monotonic() + 3
    while copies([receiver, blackhole], ip2) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    if copies([blackhole], ip2) != 1 or copies([receiver], ip2) != 1:
        problems.append(f"after the empty addr, {ip2} reached receiver {copies([receiver], ip2)}x and "
                        f"former blackhole {copies([blackhole], ip2)}x (Core: once each)")
    if problems:
        raise Fail("; ".join(problems))


def fill_addrman(ctx, count, first_octet):
    """Core's technique: addpeeraddress, each address in its own /16 (one JSON-RPC batch)."""
    calls = [("addpeeraddress", (f"{first_octet + i // 256}.{i % 256}.1.1", 8333)) for i in range(count)]
    results = ctx.node.rpc_batch(calls)
    return sum(1 for r in results if isinstance(r, dict) and r.get("success"))


@case("addr_relay.getaddr_inbound_once")
def getaddr_once(ctx):
    """An inbound peer's getaddr is answered (Core: >100 of 1000 known addresses), once per
    connection."""
    added = fill_addrman(ctx, 1000, 40)
    check(added > 900, f"addpeeraddress added only {added} of 1000")
    ctx.expire_getaddr_cache()  # Core's getaddr_tests restart the node here
    peer = ctx.connect(AddrReceiver(send_getaddr=False))
    peer.send_without_ping(msg_getaddr())
    wait_for(lambda: len(peer.addrs) > 0, 5, "no addresses in answer to getaddr")
    time.sleep(0.5)
    with p2p_lock:
        first = len(peer.addrs)
    check(first > 100, f"getaddr answered with {first} addresses (Core: >100 of 1000 known)")
    peer.send_without_ping(msg_getaddr())
    ctx.sync(peer, "after a second getaddr")
    time.sleep(1)
    with p2p_lock:
        second = len(peer.addrs)
    check(second == first, f"a second getaddr was answered too ({second - first} more addresses; "
          "Core: 'Ignoring repeated getaddr')")


@case("addr_relay.outbound_getaddr")
def outbound_getaddr(ctx):
    """verack asks a peer it dialled for addresses, and does not answer that peer's getaddr
    (Core answers getaddr only from inbound peers)."""
    peer = ctx.dial_us(AddrReceiver(send_getaddr=False))
    wait_for(lambda: peer.message_count.get("getaddr", 0) > 0, 5,
             "verack sent no getaddr to the peer it dialled")
    with p2p_lock:
        before = len(peer.addrs)
    peer.send_without_ping(msg_getaddr())
    time.sleep(1)
    ctx.expect_kept(peer, "getaddr from an outbound peer")
    with p2p_lock:
        after = len(peer.addrs)
    check(after == before, f"answered an outbound peer's getaddr with {after - before} addresses")


@case("addr_relay.rate_limiting")
def rate_limiting(ctx):
    """Core's token bucket: an inbound peer may send 1 address, a peer we sent getaddr to 1001;
    the rest are counted as rate limited (getpeerinfo addr_processed/addr_rate_limited)."""
    problems = []
    inbound = ctx.connect(AddrReceiver())
    outbound = ctx.dial_us(AddrReceiver(send_getaddr=False))
    wait_for(lambda: outbound.message_count.get("getaddr", 0) > 0, 5, "no getaddr to the outbound peer")
    for name, peer, tokens in (("inbound", inbound, 1), ("outbound", outbound, 1001)):
        total = 0
        for n in (600, 600, 10):
            total += n
            peer.send_without_ping(addr_msg(fresh_ips(n)))
            ctx.sync(peer, f"after {total} addresses")
            got = processed(ctx, peer, total)
            want = (min(total, tokens), max(0, total - tokens))
            if got != want:
                problems.append(f"{name} after {total}: processed/rate-limited {got}, Core {want}")
    if problems:
        raise Fail("; ".join(problems))


@case("addr_relay.rate_limit_on_the_wire")
def rate_limit_wire(ctx):
    """The token bucket seen on the wire: a new inbound peer has one token, so of two fresh
    addresses in its first addr message only one is relayed (Core shuffles the message first,
    so either may be the one); the other is dropped."""
    receivers = [ctx.connect(AddrReceiver()) for _ in range(3)]
    source = ctx.connect(QuietSource())
    pair = fresh_ips(2)
    source.send_without_ping(addr_msg(pair))
    ctx.sync(source, "after two addresses")
    deadline = time.monotonic() + 3
    while max(copies(receivers, ip) for ip in pair) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    got = {ip: copies(receivers, ip) for ip in pair}
    relayed = [ip for ip, n in got.items() if n]
    check(len(relayed) == 1 and got[relayed[0]] == 2,
          f"copies relayed per address {got} (Core: one address to 2 peers, the other rate limited)")
    dropped = next(ip for ip in pair if ip not in relayed)
    known = {a["address"] for a in ctx.rpc("getnodeaddresses", 0)}
    check(dropped not in known, f"the rate-limited address {dropped} was stored")


class CachingReceiver(P2PInterface):
    def __init__(self):
        super().__init__()
        self.addrs = []

    def on_addr(self, message):
        self.addrs.extend(a.ip for a in message.addrs)


@case("getaddr_caching.same_response")
def getaddr_caching(ctx):
    """Core caches its getaddr answer (per local address, for about a day): peers asking within
    a short time all get the same 1000 addresses. The node runs with a short cache lifetime
    (VERACK_TEST_GETADDR_CACHE_SECS), waited out first so that the answer is computed from the
    filled address manager; that a new answer follows expiry is not checked."""
    known = len(ctx.rpc("getnodeaddresses", 0))
    if known < 5000:
        fill_addrman(ctx, 6000, 44)
        known = len(ctx.rpc("getnodeaddresses", 0))
    check(known > 4347, f"only {known} addresses known; 1000/23% needed for a full answer")
    lifetime = ctx.expire_getaddr_cache()
    started = time.monotonic()
    responses = []
    for i in range(5):
        peer = ctx.connect(CachingReceiver())  # P2PInterface sends getaddr after verack
        wait_for(lambda: len(peer.addrs) > 0, 5, f"no answer to getaddr #{i + 1}")
        last, still = -1, 0
        for _ in range(40):
            with p2p_lock:
                n = len(peer.addrs)
            still = still + 1 if n == last else 0
            last = n
            if still >= 5:
                break
            time.sleep(0.05)
        with p2p_lock:
            responses.append(list(peer.addrs))
        peer.peer_disconnect()
    took = time.monotonic() - started
    check(took < lifetime, f"the five getaddr answers took {took:.1f}s, longer than the cache "
          f"lifetime of {lifetime}s: inconclusive")
    sizes = [len(r) for r in responses]
    check(all(s == 1000 for s in sizes), f"answer sizes {sizes}, Core sends 1000 (MAX_ADDR_TO_SEND)")
    differing = [i + 1 for i, r in enumerate(responses[1:], 1) if r != responses[0]]
    check(not differing, f"answers {differing} differ from the first (Core serves one cached answer)")
