"""Cases of Core's p2p_handshake.py, p2p_leak.py, p2p_timeouts.py, p2p_ping.py,
p2p_bip434_feature.py and p2p_sendtxrcncl.py, and a pending-handshake flood."""

import time

from test_framework.messages import (
    NODE_NONE,
    msg_generic,
    msg_getaddr,
    msg_ping,
    msg_pong,
    msg_sendtxrcncl,
    msg_verack,
    msg_wtxidrelay,
    ser_compact_size,
)
from test_framework.p2p import P2PInterface, P2P_SERVICES, P2P_SUBVERSION
from harness import p2p_lock

from harness import (
    Fail,
    closed_by_us,
    NODE_P2P_V2,
    case,
    check,
    describe,
    holds_for,
    received_list,
    version_msg,
    wait_for,
)

# verack's whole-handshake deadline (PeerConfig::handshake_timeout, 30 s; no flag shortens it)
# plus slack for a loaded machine.
HANDSHAKE_DEADLINE = 30 + 10


# -- p2p_handshake --------------------------------------------------------------------------

@case("handshake.redundant_verack")
def redundant_verack(ctx):
    """Core: "ignoring redundant verack message"."""
    conn = ctx.connect()
    conn.send_without_ping(msg_verack())
    ctx.expect_kept(conn, "redundant verack after the handshake")


@case("handshake.self_connection")
def self_connection(ctx):
    """Core: a connection to ourself is detected (version nonce) and dropped at once. verack is
    told to dial its own listener (`addnode onetry`); no connection to itself may remain.
    (That addnode onetry dials at all is shown by handshake.manual_outbound_any_services.)"""
    ctx.rpc("addnode", f"{ctx.host}:{ctx.p2p_port}", "onetry", False)
    own = f"{ctx.host}:{ctx.p2p_port}"
    deadline = time.monotonic() + 3
    seen = []
    while time.monotonic() < deadline:
        selves = [p for p in ctx.rpc("getpeerinfo")
                  if p.get("addr") == own or str(p.get("subver", "")).startswith("/verack:")]
        seen = [(p["addr"], p.get("inbound")) for p in selves]
        time.sleep(0.2)
    check(not seen, f"a connection to itself remained 3 s after addnode onetry: {seen}")


@case("handshake.manual_outbound_any_services")
def manual_outbound(ctx):
    """Core's add_outbound_p2p_connection technique: verack dials a Python listener. Core
    requires NETWORK|WITNESS only of automatic outbound peers, not of manual (`addnode`) ones:
    a manual peer offering no services stays."""
    peer = ctx.dial_us(P2PInterface(), services=NODE_NONE)
    check(holds_for(lambda: peer.is_connected, 1.0),
          f"verack dropped a manual outbound peer offering no services ({describe(peer)})")
    ctx.expect_kept(peer, "manual outbound peer with services 0")


# -- p2p_leak -------------------------------------------------------------------------------

class LazyPeer(P2PInterface):
    def __init__(self):
        super().__init__()
        self.unexpected = []
        self.ever_connected = False
        self.got_wtxidrelay = False
        self.got_sendaddrv2 = False
        self.got_feature = False

    def bad_message(self, message):
        self.unexpected.append(message.msgtype.decode())

    def on_open(self):
        self.ever_connected = True

    def on_version(self, message): self.bad_message(message)
    def on_verack(self, message): self.bad_message(message)
    def on_inv(self, message): self.bad_message(message)
    def on_addr(self, message): self.bad_message(message)
    def on_addrv2(self, message): self.bad_message(message)
    def on_getdata(self, message): self.bad_message(message)
    def on_getblocks(self, message): self.bad_message(message)
    def on_tx(self, message): self.bad_message(message)
    def on_block(self, message): self.bad_message(message)
    def on_getaddr(self, message): self.bad_message(message)
    def on_headers(self, message): self.bad_message(message)
    def on_getheaders(self, message): self.bad_message(message)
    def on_ping(self, message): self.bad_message(message)
    def on_mempool(self, message): self.bad_message(message)
    def on_pong(self, message): self.bad_message(message)
    def on_feefilter(self, message): self.bad_message(message)
    def on_sendheaders(self, message): self.bad_message(message)
    def on_sendcmpct(self, message): self.bad_message(message)
    def on_cmpctblock(self, message): self.bad_message(message)
    def on_getblocktxn(self, message): self.bad_message(message)
    def on_blocktxn(self, message): self.bad_message(message)
    def on_wtxidrelay(self, message): self.got_wtxidrelay = True
    def on_sendaddrv2(self, message): self.got_sendaddrv2 = True
    def on_feature(self, message): self.got_feature = True


class NoVerackIdlePeer(LazyPeer):
    """Sends version, never verack; on the node's version it tries to entice the node with a
    ping and a getaddr."""

    def __init__(self):
        self.version_received = False
        super().__init__()

    def on_verack(self, message): pass

    def on_version(self, message):
        self.version_received = True
        self.send_without_ping(msg_ping())
        self.send_without_ping(msg_getaddr())


@case("leak.no_messages_before_handshake")
def leak_before_handshake(ctx):
    """Before verack the node sends nothing but version/verack and feature negotiation, even
    when a new tip is announced meanwhile."""
    no_version = ctx.connect(LazyPeer(), send_version=False, wait_verack=False)
    no_verack = ctx.connect(NoVerackIdlePeer(), wait_verack=False)
    pre_wtxid = ctx.connect(NoVerackIdlePeer(), send_version=False, wait_verack=False)
    pre_wtxid.send_without_ping(version_msg(70015))
    wait_for(lambda: "verack" in no_verack.last_message, 5, "no verack for the no-verack peer")
    wait_for(lambda: "verack" in pre_wtxid.last_message, 5, "no verack for the 70015 peer")
    wait_for(lambda: no_version.ever_connected and no_verack.version_received
             and pre_wtxid.version_received, 5, "peers not set up")
    ctx.extend_tip(1)  # a new tip: handshaked peers get it announced, these must not
    time.sleep(3)
    with p2p_lock:
        check(not no_version.unexpected, f"peer that sent nothing received {no_version.unexpected}")
        check(not (no_version.got_wtxidrelay or no_version.got_sendaddrv2 or no_version.got_feature),
              "peer that sent nothing received feature negotiation")
        check(not no_verack.unexpected, f"peer without verack received {no_verack.unexpected}")
        check(no_verack.got_wtxidrelay and no_verack.got_sendaddrv2,
              "70017 peer did not get wtxidrelay and sendaddrv2 before verack")
        check(not pre_wtxid.unexpected, f"70015 peer without verack received {pre_wtxid.unexpected}")
        check(not (pre_wtxid.got_wtxidrelay or pre_wtxid.got_sendaddrv2 or pre_wtxid.got_feature),
              "70015 peer got feature negotiation (wtxidrelay/sendaddrv2/feature start at 70016)")


class P2PVersionStore(P2PInterface):
    version_received = None

    def on_version(self, msg):
        super().on_version(msg)
        self.version_received = msg


@case("leak.version_contents")
def leak_version(ctx):
    """The version does not leak the local address: addr_from is 0.0.0.0:0; the time is
    current, the start height is the tip, relay is set."""
    peer = ctx.connect(P2PVersionStore())
    ver = peer.version_received
    now = time.time()
    check(now - 3600 <= ver.nTime <= now + 3600, f"version nTime {ver.nTime} not within an hour of now")
    check(ver.addrFrom.port == 0, f"addr_from port {ver.addrFrom.port}, Core sends 0")
    check(ver.addrFrom.ip == "0.0.0.0", f"addr_from ip {ver.addrFrom.ip}, Core sends 0.0.0.0")
    height = ctx.rpc("getblockcount")
    check(ver.nStartingHeight == height, f"start height {ver.nStartingHeight}, tip height {height}")
    check(ver.relay == 1, f"relay {ver.relay}, Core sends 1")


@case("leak.old_version_disconnected")
def leak_old_version(ctx):
    peer = ctx.connect(send_version=False, wait_verack=False)
    peer.send_without_ping(version_msg(31799))
    ctx.expect_disconnect(peer, "version 31799 (below MIN_PEER_PROTO_VERSION 31800)")


# -- p2p_timeouts ---------------------------------------------------------------------------

class NoVerackConn(P2PInterface):
    def on_version(self, message):
        pass  # no verack in response


@case("timeouts.handshake_timeout", slow=True)
def handshake_timeout(ctx):
    """Peers that never finish the handshake (v1 and v2: no verack, no version, nothing at all)
    stay connected for the first seconds, then are dropped by the handshake timeout. Core's test
    uses -peertimeout=3; verack's deadline is 30 s and no flag shortens it, so this waits."""
    started = time.monotonic()
    v1_no_verack = ctx.connect(NoVerackConn(), wait_verack=False)
    v1_no_send = ctx.connect(NoVerackConn(), send_version=False, wait_verack=False)
    v2_no_verack = ctx.connect(NoVerackConn(), v2=True, wait_verack=False)
    v2_no_version = ctx.connect(NoVerackConn(), v2=True, send_version=False, wait_verack=False)
    raw_no_send = ctx.raw()
    peers = {"v1 no verack": v1_no_verack, "v1 nothing sent": v1_no_send,
             "v2 no verack": v2_no_verack, "v2 no version": v2_no_version}
    wait_for(lambda: "version" in v1_no_verack.last_message, 5, "v1: no version from verack")
    wait_for(lambda: v2_no_verack.v2_state.tried_v2_handshake and "version" in v2_no_verack.last_message,
             5, "v2: no version from verack")
    wait_for(lambda: v2_no_version.v2_state.tried_v2_handshake, 5, "v2: key exchange incomplete")
    for second in (1, 2):
        time.sleep(max(0.0, started + second - time.monotonic()))
        for name, p in peers.items():
            check(p.is_connected, f"{name}: dropped after {time.monotonic() - started:.1f}s ({describe(p)})")
        check(not raw_no_send.pump(0.01), "silent TCP connection dropped within 2 s")
        v1_no_verack.send_without_ping(msg_ping())
        v2_no_verack.send_without_ping(msg_ping())
    times = {}
    deadline = started + HANDSHAKE_DEADLINE
    while time.monotonic() < deadline and len(times) < len(peers) + 1:
        for name, p in peers.items():
            if name not in times and not p.is_connected:
                times[name] = p.closed_at - started
        if "silent socket" not in times and raw_no_send.pump(0.1):
            times["silent socket"] = time.monotonic() - started
        time.sleep(0.1)
    left = [n for n in list(peers) + ["silent socket"] if n not in times]
    check(not left, f"still connected after {HANDSHAKE_DEADLINE}s: {left} (dropped: "
          + ", ".join(f"{n} at {t:.1f}s" for n, t in times.items()) + ")")
    early = {n: t for n, t in times.items() if t < 2}
    check(not early, f"dropped too early: {early}")
    for name, p in peers.items():
        closed_by_us(p, name)


def v2_without_version(ctx, peer):
    """A v2 connection whose key exchange is done but which has not sent its version yet.

    Over v1 a message before `version` cannot exist on a node with v2 enabled (verack's
    default): only the 16 bytes magic + "version" select v1, anything else is read as a v2
    key (Core does the same with -v2transport=1; Core's own tests run such cases against a
    v1-only node). So these cases speak v2, as Core's p2p_timeouts does under --v2transport."""
    ctx.connect(peer, v2=True, send_version=False, wait_verack=False)
    wait_for(lambda: peer.v2_state.tried_v2_handshake or not peer.is_connected, 5,
             f"v2 key exchange not completed ({describe(peer)})")
    check(peer.is_connected, f"verack closed during the v2 key exchange ({describe(peer)})")
    return peer


@case("timeouts.ping_before_version")
def ping_before_version(ctx):
    """Core ignores a non-version message before version ("non-version message before version
    handshake") and the handshake can still follow."""
    peer = v2_without_version(ctx, P2PInterface())
    peer.send_without_ping(msg_ping())
    if not holds_for(lambda: peer.is_connected, 1.0):
        raise Fail(f"ping before version: verack disconnected (Core ignores it; {describe(peer)})")
    peer.send_without_ping(version_msg(services=P2P_SERVICES | NODE_P2P_V2))
    wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, 5,
             f"no version/verack after the late version ({describe(peer)})")
    ctx.expect_kept(peer, "handshake after an early ping")


# -- p2p_ping -------------------------------------------------------------------------------

class NodeNoPong(P2PInterface):
    def on_ping(self, message):
        pass


def ping_fields(ctx, peer):
    info = ctx.wait_peer_info(peer)
    return info.get("pingtime"), info.get("minping"), info.get("pingwait")


def no_pong_peer(ctx):
    peer = ctx.connect(NodeNoPong())
    wait_for(lambda: "ping" in peer.last_message, 5, "verack sent no ping after the handshake")
    return peer


@case("ping.initial_ping")
def ping_initial(ctx):
    """A ping (nonce != 0) follows the handshake; getpeerinfo shows pingwait while unanswered."""
    peer = no_pong_peer(ctx)
    check(peer.last_message["ping"].nonce != 0, "verack's ping has nonce 0")
    time.sleep(0.5)
    pingtime, minping, pingwait = ping_fields(ctx, peer)
    check(pingtime is None and minping is None, f"pingtime {pingtime}/minping {minping} without a pong")
    check(pingwait is not None and 0.3 <= pingwait < 10, f"pingwait {pingwait}, expected ~0.5 s")


def late_pong_measured(ctx, peer, nonce):
    """Answers the outstanding ping correctly now; returns pingtime afterwards (None when the
    ping had already been cancelled)."""
    peer.send_without_ping(msg_pong(nonce))
    ctx.sync(peer, "after the matching pong")
    time.sleep(0.1)
    return ping_fields(ctx, peer)[0]


@case("ping.short_pong_cancels")
def ping_short_pong(ctx):
    """Core: a pong without nonce ("Short payload") cancels the outstanding ping, so the
    matching pong that follows measures nothing."""
    peer = no_pong_peer(ctx)
    nonce = peer.last_message["ping"].nonce
    peer.send_without_ping(msg_generic(b"pong", b""))
    ctx.expect_kept(peer, "pong with an empty payload")
    pingtime, minping, pingwait = ping_fields(ctx, peer)
    check(pingwait is None, f"pingwait {pingwait} after an empty pong: the ping was not cancelled")
    check(pingtime is None, f"pingtime {pingtime} measured from an empty pong")
    late = late_pong_measured(ctx, peer, nonce)
    check(late is None, f"the matching pong after an empty one was measured ({late}): the empty pong "
          "did not cancel the ping")


@case("ping.unsolicited_pong")
def ping_unsolicited(ctx):
    """A pong without an outstanding ping changes nothing."""
    peer = ctx.connect()
    wait_for(lambda: peer.message_count.get("ping", 0) >= 1, 5, "no ping from verack")
    deadline = time.monotonic() + 5
    while ping_fields(ctx, peer)[0] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    before = ping_fields(ctx, peer)
    check(before[0] is not None and before[2] is None, f"first ping not measured: {before}")
    peer.send_without_ping(msg_pong(0x1234567))
    ctx.expect_kept(peer, "unsolicited pong")
    after = ping_fields(ctx, peer)
    check(after == before, f"ping fields changed by an unsolicited pong: {before} -> {after}")


@case("ping.wrong_nonce_keeps_ping")
def ping_wrong_nonce(ctx):
    """A pong with another nonce does not cancel the ping ("Nonce mismatch"): pingwait stays,
    and the matching pong afterwards is measured."""
    peer = no_pong_peer(ctx)
    nonce = peer.last_message["ping"].nonce
    peer.send_without_ping(msg_pong((nonce - 1) % (1 << 64)))
    ctx.expect_kept(peer, "pong with a wrong nonce")
    pingtime, minping, pingwait = ping_fields(ctx, peer)
    problems = []
    if pingwait is None:
        problems.append("getpeerinfo shows no pingwait for the still outstanding ping")
    if pingtime is not None:
        problems.append(f"pingtime {pingtime} measured from a wrong nonce")
    late = late_pong_measured(ctx, peer, nonce)
    if late is None:
        problems.append("the matching pong after a wrong one was not measured: the wrong nonce cancelled the ping")
    if problems:
        raise Fail("; ".join(problems))


@case("ping.zero_nonce_cancels")
def ping_zero_nonce(ctx):
    """Core: a pong with nonce 0 cancels the ping without a measurement ("Nonce zero"), so the
    matching pong that follows measures nothing."""
    peer = no_pong_peer(ctx)
    nonce = peer.last_message["ping"].nonce
    peer.send_without_ping(msg_pong(0))
    ctx.expect_kept(peer, "pong with nonce 0")
    pingtime, minping, pingwait = ping_fields(ctx, peer)
    check(pingwait is None, f"pingwait {pingwait} after a zero-nonce pong: the ping was not cancelled")
    check(pingtime is None, f"pingtime {pingtime} measured from a zero-nonce pong")
    late = late_pong_measured(ctx, peer, nonce)
    check(late is None, f"the matching pong after a zero-nonce one was measured ({late}): nonce 0 did "
          "not cancel the ping")


@case("ping.rpc_reporting")
def ping_rpc(ctx):
    """A pong after ~0.6 s: pingtime and minping report it, pingwait is gone."""
    peer = no_pong_peer(ctx)
    received = time.monotonic()
    time.sleep(0.6)
    peer.send_without_ping(msg_pong(peer.last_message["ping"].nonce))
    ctx.sync(peer, "after the pong")
    waited = time.monotonic() - received
    pingtime, minping, pingwait = ping_fields(ctx, peer)
    check(pingwait is None, f"pingwait {pingwait} after the matching pong")
    check(pingtime is not None and 0.5 <= pingtime <= waited + 0.5,
          f"pingtime {pingtime}, expected about 0.6 s")
    check(minping == pingtime, f"minping {minping} != pingtime {pingtime} after one measurement")


# -- p2p_bip434_feature ---------------------------------------------------------------------

PRE_FEATURE_VERSION = 70016
FEATURE_VERSION = 70017


class RawFeature:
    msgtype = b"feature"

    def __init__(self, payload):
        self.payload = payload

    def serialize(self):
        return self.payload

    def __repr__(self):
        return f"RawFeature(payload_len={len(self.payload)})"


def feature_wire(feature_id, feature_data, *, trailing=b""):
    if isinstance(feature_id, str):
        feature_id = feature_id.encode()
    return (ser_compact_size(len(feature_id)) + feature_id
            + ser_compact_size(len(feature_data)) + feature_data + trailing)


class FeaturePeer(P2PInterface):
    def __init__(self):
        super().__init__()
        self.got_feature_count = 0

    def on_feature(self, message):
        self.got_feature_count += 1


class FeaturePeerNoVerack(FeaturePeer):
    """Stays between version and verack, where feature messages belong."""

    def on_version(self, message):
        self.nServices = message.nServices


def silent_peer(ctx, nversion=FEATURE_VERSION):
    peer = ctx.connect(FeaturePeerNoVerack(), send_version=False, wait_verack=False)
    peer.send_without_ping(version_msg(nversion))
    wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, 5,
             f"no version/verack for a {nversion} peer ({describe(peer)})")
    check(peer.is_connected, f"disconnected a {nversion} peer in the handshake ({describe(peer)})")
    return peer


def feature_accepted(ctx, payload, what, nversion=FEATURE_VERSION):
    """Returns None if a feature with `payload` is accepted (the handshake then completes),
    else why not."""
    peer = silent_peer(ctx, nversion)
    peer.send_without_ping(RawFeature(payload))
    if nversion >= 70016:
        peer.send_without_ping(msg_wtxidrelay())
    peer.send_without_ping(msg_verack())
    try:
        ctx.expect_kept(peer, what)
    except Fail as e:
        return str(e)
    return None


def feature_rejected(ctx, payload, what, nversion=FEATURE_VERSION):
    peer = silent_peer(ctx, nversion)
    peer.send_without_ping(RawFeature(payload))
    try:
        ctx.expect_disconnect(peer, what, timeout=3)
    except Fail as e:
        return str(e)
    return None


def all_ok(problems):
    problems = [p for p in problems if p]
    if problems:
        raise Fail("; ".join(problems))


@case("feature.advertised_version")
def feature_version(ctx):
    """Core's protocol version is 70017 (BIP434 feature negotiation)."""
    peer = ctx.connect(FeaturePeer())
    got = peer.last_message["version"].nVersion
    check(got == FEATURE_VERSION, f"verack's version message says {got}, Core says {FEATURE_VERSION}")


@case("feature.none_to_pre_70017_peer")
def feature_none_old(ctx):
    peer = ctx.connect(FeaturePeer(), send_version=False, wait_verack=False)
    peer.send_without_ping(version_msg(PRE_FEATURE_VERSION))
    wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, 5, "no verack")
    ctx.sync(peer, "after the handshake")
    check(peer.got_feature_count == 0, f"{peer.got_feature_count} feature messages sent to a 70016 peer")


@case("feature.none_announced")
def feature_none_modern(ctx):
    """Core announces no features yet (count 0) to a 70017 peer."""
    peer = ctx.connect(FeaturePeer())
    check(peer.got_feature_count == 0, f"{peer.got_feature_count} feature messages announced")


@case("feature.after_verack_disconnects")
def feature_after_verack(ctx):
    peer = ctx.connect(FeaturePeer())
    peer.send_without_ping(RawFeature(feature_wire(b"abcd", b"")))
    ctx.expect_disconnect(peer, "feature after verack")


@case("feature.before_version_is_ignored")
def feature_before_version(ctx):
    """Core ignores a feature before any version, like every non-version message, and the
    handshake can still follow (verack ignores up to 100 such messages). Over v2, see
    v2_without_version."""
    peer = v2_without_version(ctx, FeaturePeer())
    peer.send_without_ping(RawFeature(feature_wire(b"abcd", b"")))
    if not holds_for(lambda: peer.is_connected, 1.0):
        raise Fail(f"feature before version: verack disconnected (Core ignores it; {describe(peer)})")
    peer.send_without_ping(version_msg(services=P2P_SERVICES | NODE_P2P_V2))
    wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, 5,
             f"no version/verack after the late version ({describe(peer)})")
    ctx.expect_kept(peer, "handshake after an early feature")


@case("feature.id_length_bounds")
def feature_id_length(ctx):
    """feature_id of 4..80 bytes is accepted; 0, 3 and 81 disconnect."""
    problems = []
    for length, accept in [(0, False), (3, False), (4, True), (80, True), (81, False)]:
        payload = feature_wire(b"a" * length, b"")
        if accept:
            problems.append(feature_accepted(ctx, payload, f"feature_id of {length} bytes"))
        else:
            problems.append(feature_rejected(ctx, payload, f"feature_id of {length} bytes"))
    all_ok(problems)


@case("feature.data_length_bounds")
def feature_data_length(ctx):
    """feature_data up to 512 bytes is accepted; 513 disconnects."""
    problems = []
    for length, accept in [(0, True), (512, True), (513, False)]:
        payload = feature_wire(b"abcd", b"\x00" * length)
        if accept:
            problems.append(feature_accepted(ctx, payload, f"feature_data of {length} bytes"))
        else:
            problems.append(feature_rejected(ctx, payload, f"feature_data of {length} bytes"))
    all_ok(problems)


@case("feature.trailing_bytes_disconnect")
def feature_trailing(ctx):
    all_ok([feature_rejected(ctx, feature_wire(b"abcd", b"", trailing=b"\x00"),
                             "feature with a trailing byte")])


@case("feature.truncated_id_disconnect")
def feature_truncated_id(ctx):
    all_ok([feature_rejected(ctx, ser_compact_size(10) + b"abcde", "feature with a truncated id")])


@case("feature.truncated_data_disconnect")
def feature_truncated_data(ctx):
    all_ok([feature_rejected(ctx, ser_compact_size(4) + b"abcd" + ser_compact_size(10) + b"xx",
                             "feature with truncated data")])


@case("feature.non_ascii_id_accepted")
def feature_non_ascii(ctx):
    all_ok([feature_accepted(ctx, feature_wire(b"\x00\xff\x01\x7f", b""), "feature with a non-ASCII id")])


@case("feature.many_features_accepted")
def feature_many(ctx):
    peer = silent_peer(ctx)
    for i in range(16):
        peer.send_without_ping(RawFeature(feature_wire(f"feat{i:04d}".encode(), b"")))
    peer.send_without_ping(msg_wtxidrelay())
    peer.send_without_ping(msg_verack())
    ctx.expect_kept(peer, "16 unknown features before verack")


@case("feature.from_pre_70017_peer_disconnects")
def feature_old_peer(ctx):
    """Core: "feature received with incompatible version" from a 70016 peer disconnects."""
    all_ok([feature_rejected(ctx, feature_wire(b"abcd", b""), "feature from a 70016 peer",
                             nversion=PRE_FEATURE_VERSION)])


# -- p2p_sendtxrcncl ------------------------------------------------------------------------
# verack does not implement BIP330 (Erlay), so Core's behaviour to compare with is Core's
# default, without -txreconciliation: it never sends sendtxrcncl and ignores every one it
# receives ("ignored, as our node does not have txreconciliation enabled").

class SendTxrcnclReceiver(P2PInterface):
    def __init__(self):
        super().__init__()
        self.sendtxrcncl_msg_received = None

    def on_sendtxrcncl(self, message):
        self.sendtxrcncl_msg_received = message


class PeerNoVerack(P2PInterface):
    def __init__(self, wtxidrelay=True):
        super().__init__(wtxidrelay=wtxidrelay)

    def on_version(self, message):
        self.send_version()
        if message.nVersion >= 70016 and self.wtxidrelay:
            self.send_without_ping(msg_wtxidrelay())


def sendtxrcncl(version=1, salt=2):
    m = msg_sendtxrcncl()
    m.version = version
    m.salt = salt
    return m


@case("sendtxrcncl.not_sent")
def txrcncl_not_sent(ctx):
    peer = ctx.connect(SendTxrcnclReceiver())
    check(peer.sendtxrcncl_msg_received is None, "verack sent sendtxrcncl (it has no Erlay support)")


@case("sendtxrcncl.before_verack_ignored")
def txrcncl_ignored(ctx):
    """sendtxrcncl (twice, and with version 0) between version and verack is ignored."""
    peer = ctx.connect(PeerNoVerack(), wait_verack=False)
    wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, 5, "no verack from verack")
    peer.send_without_ping(sendtxrcncl())
    peer.send_without_ping(sendtxrcncl())
    peer.send_without_ping(sendtxrcncl(version=0))
    peer.send_without_ping(msg_verack())
    ctx.expect_kept(peer, "sendtxrcncl before verack")


@case("sendtxrcncl.from_pre_70016_peer_ignored")
def txrcncl_old_peer(ctx):
    peer = ctx.connect(PeerNoVerack(), send_version=False, wait_verack=False)
    peer.send_without_ping(version_msg(70015))
    wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, 5, "no verack from verack")
    peer.send_without_ping(sendtxrcncl())
    peer.send_without_ping(msg_verack())
    ctx.expect_kept(peer, "sendtxrcncl from a 70015 peer")


@case("sendtxrcncl.after_verack_ignored")
def txrcncl_after_verack(ctx):
    """Core without -txreconciliation ignores sendtxrcncl even after verack (the "received
    after verack" disconnect only applies with txreconciliation enabled)."""
    peer = ctx.connect()
    peer.send_without_ping(sendtxrcncl())
    ctx.expect_kept(peer, "sendtxrcncl after verack")


# -- pending handshakes ---------------------------------------------------------------------

@case("pending.silent_flood")
def silent_flood(ctx):
    """60 connections from 127.0.0.1 that send nothing must not keep an honest peer (from
    127.0.0.1 or elsewhere) out of the handshake."""
    raws = [ctx.raw(ip="127.0.0.1") for _ in range(60)]
    time.sleep(0.5)
    started = time.monotonic()
    try:
        same_ip = ctx.connect(ip="127.0.0.1", timeout=5)
    except Fail as e:
        raise Fail(f"honest peer from 127.0.0.1 behind 60 silent connections: {e}")
    try:
        other = ctx.connect(timeout=5)
    except Fail as e:
        raise Fail(f"honest peer from another address behind 60 silent connections: {e}")
    check(time.monotonic() - started < 10, "honest handshakes took over 10 s")
    ctx.sync(same_ip, "with the flood open")
    ctx.sync(other, "with the flood open")


@case("pending.silent_flood_many_sources")
def silent_flood_many(ctx):
    """60 silent connections, each from its own /24 (more than verack's 50 handshake slots):
    an honest peer still completes its handshake promptly."""
    raws = [ctx.raw() for _ in range(60)]
    time.sleep(0.5)
    try:
        honest = ctx.connect(timeout=5)
    except Fail as e:
        raise Fail(f"honest peer behind 60 silent connections from 60 /24s: {e}")
    ctx.sync(honest, "with the flood open")
    still_open = sum(1 for r in raws if not r.pump(0.01))
    check(still_open > 0, "every silent connection was dropped at once (expected only room to be made)")
