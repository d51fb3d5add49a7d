"""Cases of Core's p2p_sendheaders.py: how new tips are announced (inv, or headers after
BIP130 sendheaders), null locators, reorg announcements, unconnecting headers. verack keeps
headers only (no blocks), so Core's block download parts (getdata, direct fetch) do not apply.
New tips are made by handing verack freshly mined regtest headers from another peer."""

import random
import time

from test_framework.messages import (
    CInv,
    MSG_BLOCK,
    msg_getheaders,
    msg_headers,
    msg_inv,
    msg_sendheaders,
)
from test_framework.p2p import P2PInterface
from harness import p2p_lock

from harness import Fail, build_headers, case, check, describe, wait_for


class BaseNode(P2PInterface):
    """Records announcements (no getdata for announced blocks: verack has none)."""

    def __init__(self):
        super().__init__()
        self.invs = []      # lists of block hashes per inv message
        self.headers = []   # lists of headers per headers message

    def on_inv(self, message):
        self.invs.append([i.hash for i in message.inv if i.type & 0xFF == MSG_BLOCK])

    def on_headers(self, message):
        self.headers.append(list(message.headers))

    def announced_headers(self):
        with p2p_lock:
            return [h.hash_int for batch in self.headers for h in batch]

    def announced_invs(self):
        with p2p_lock:
            return [h for batch in self.invs for h in batch]


def fresh_tip(ctx):
    """Makes sure verack's tip is recent (it announces only when synced: tip < 24 h old)."""
    tip_hash, tip, height, tip_time = ctx.tip()
    if tip_time < time.time() - 3600 or height < 20:
        ctx.extend_tip(max(1, 20 - height))


def headers_peer(ctx):
    """A peer that sent sendheaders and a getheaders from the tip (so, as in Core, the node
    knows the peer has the tip and may announce a new one with headers)."""
    peer = ctx.connect(BaseNode())
    peer.send_without_ping(msg_sendheaders())
    gh = msg_getheaders()
    gh.locator.vHave = [int(ctx.rpc("getbestblockhash"), 16)]
    peer.send_without_ping(gh)
    ctx.sync(peer, "after sendheaders")
    time.sleep(0.2)
    return peer


@case("sendheaders.null_locator")
def null_locator(ctx):
    """getheaders with an empty locator returns just the hashstop header when known, nothing
    when unknown."""
    fresh_tip(ctx)
    peer = ctx.connect(BaseNode())
    tip = int(ctx.rpc("getbestblockhash"), 16)
    gh = msg_getheaders()
    gh.locator.vHave = []
    gh.hashstop = tip
    peer.send_without_ping(gh)
    wait_for(lambda: len(peer.headers) > 0, 5, "no headers reply to a null locator with a known hashstop")
    with p2p_lock:
        got = [h.hash_int for h in peer.headers[-1]]
        count = len(peer.headers)
    check(got == [tip], f"null locator, hashstop = tip: got {len(got)} headers, Core sends only the tip")
    gh.hashstop = random.getrandbits(256)
    peer.send_without_ping(gh)
    ctx.sync(peer, "after getheaders with an unknown hashstop")
    time.sleep(0.3)
    with p2p_lock:
        extra = peer.headers[count:]
    check(not extra, f"null locator with an unknown hashstop answered with {[len(b) for b in extra]} "
          "header(s) (Core sends no headers message)")


@case("sendheaders.inv_without_sendheaders")
def inv_without_sendheaders(ctx):
    """A peer that did not send sendheaders learns of a new tip by inv."""
    fresh_tip(ctx)
    peer = ctx.connect(BaseNode())
    [new] = ctx.extend_tip(1)
    wait_for(lambda: new.hash_int in peer.announced_invs(), 10,
             f"new tip not announced by inv to a peer without sendheaders ({describe(peer)})")
    check(new.hash_int not in peer.announced_headers(),
          "new tip announced by headers to a peer that did not send sendheaders")


@case("sendheaders.headers_after_sendheaders")
def headers_after_sendheaders(ctx):
    fresh_tip(ctx)
    peer = headers_peer(ctx)
    [new] = ctx.extend_tip(1)
    wait_for(lambda: new.hash_int in peer.announced_headers(), 10,
             f"new tip not announced by headers after sendheaders ({describe(peer)})")
    with p2p_lock:
        batch = next(b for b in peer.headers if new.hash_int in [h.hash_int for h in b])
    check(len(batch) == 1, f"announcement of one new block had {len(batch)} headers")
    check(new.hash_int not in peer.announced_invs(), "tip announced by inv as well")


def fork(ctx, depth, count):
    """`count` headers forking off `depth` blocks below the tip (a reorg when count > depth)."""
    height = ctx.rpc("getblockcount")
    base = ctx.rpc("getblockhash", height - depth)
    base_time = ctx.rpc("getblockheader", base, True)["time"]
    return build_headers(int(base, 16), base_time, count)


@case("sendheaders.reorg_announcements")
def reorg_announcements(ctx):
    """A reorg of up to 8 new blocks is announced with all their headers; with more than 8
    (Core's MAX_BLOCKS_TO_ANNOUNCE) Core announces the new tip by inv instead."""
    fresh_tip(ctx)
    peer = headers_peer(ctx)
    short = fork(ctx, 7, 8)
    ctx.deliver(short)
    wanted = [h.hash_int for h in short]
    wait_for(lambda: any([h.hash_int for h in b] == wanted for b in peer.headers), 10,
             f"7-block reorg (8 new blocks) not announced with the 8 headers ({describe(peer)})")
    before_h, before_i = len(peer.announced_headers()), len(peer.announced_invs())
    long = fork(ctx, 8, 9)
    ctx.deliver(long)
    tip = long[-1].hash_int
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if tip in peer.announced_invs()[before_i:] or tip in peer.announced_headers()[before_h:]:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    new_headers = peer.announced_headers()[before_h:]
    new_invs = peer.announced_invs()[before_i:]
    check(tip in new_invs, f"8-block reorg (9 new blocks): tip not announced by inv "
          f"({len(new_headers)} headers announced instead; Core falls back to inv beyond 8)")
    check(not new_headers, f"8-block reorg: {len(new_headers)} headers announced as well as the inv")


def wait_getheaders(peer, count_before, tip_int, what):
    """A new getheaders whose locator starts at verack's tip (Core: wait_for_getheaders)."""
    wait_for(lambda: peer.message_count.get("getheaders", 0) > count_before or not peer.is_connected, 5,
             f"no getheaders {what} ({describe(peer)})")
    check(peer.is_connected, f"disconnected {what}")
    with p2p_lock:
        first = peer.last_message["getheaders"].locator.vHave[0]
    check(first == tip_int, f"getheaders {what} does not start from the tip")


@case("sendheaders.unconnecting_headers")
def unconnecting_headers(ctx):
    """A header that does not connect is answered with getheaders, and the chain that then
    fills the gap is accepted (Core part 5a, 10 rounds); then unconnecting headers, each after
    an empty headers message closing the previous request, get a getheaders every time, without
    a penalty (part 5b, 10 rounds)."""
    fresh_tip(ctx)
    peer = ctx.connect(BaseNode())
    for i in range(10):
        tip_hash, _, _, tip_time = ctx.tip()
        chain = build_headers(tip_hash, tip_time, 2)
        before = peer.message_count.get("getheaders", 0)
        peer.send_without_ping(msg_headers([chain[1]]))
        wait_getheaders(peer, before, tip_hash, f"after unconnecting header (round {i + 1})")
        peer.send_without_ping(msg_headers(chain))
        ctx.wait_tip(chain[1].hash_hex, f"the chain filling the gap (round {i + 1})")
    tip_hash, _, _, tip_time = ctx.tip()
    strays = build_headers(tip_hash, tip_time, 11)
    for i in range(1, 11):
        before = peer.message_count.get("getheaders", 0)
        peer.send_without_ping(msg_headers([]))  # the failed answer to the previous getheaders
        peer.send_without_ping(msg_headers([strays[i]]))
        wait_getheaders(peer, before, tip_hash, f"after unconnecting header #{i} of part 5b")
    ctx.expect_kept(peer, "ten unconnecting headers")


@case("sendheaders.inv_triggers_getheaders")
def inv_triggers_getheaders(ctx):
    """A block inv for an unknown block is followed up with getheaders."""
    fresh_tip(ctx)
    peer = ctx.connect(BaseNode())
    before = peer.message_count.get("getheaders", 0)
    peer.send_without_ping(msg_inv([CInv(MSG_BLOCK, random.getrandbits(256))]))
    wait_for(lambda: peer.message_count.get("getheaders", 0) > before, 5,
             f"no getheaders after an inv of an unknown block ({describe(peer)})")
