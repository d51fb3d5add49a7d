"""Shared machinery for the conformance cases: Bitcoin Core's Python P2P test framework pointed
at a running verack node instead of a `TestNode`.

Core's functional tests drive `bitcoind` through `TestNode.add_p2p_connection`; there is no
bitcoind here, so `Ctx.connect` does the same by hand: `P2PInterface.peer_connect` towards
verack's listener on a `NetworkThread` we start ourselves, with the network set to regtest.
Verdicts are read off the wire (a disconnect, a reply, silence) and from verack's JSON-RPC.

Every wait here is bounded in time; every loop is bounded in count.
"""

import base64
import http.client
import json
import logging
import os
import random
import socket
import struct
import sys
import threading
import time

# The framework is imported by run.py after it has put Core's `functional/` folder on sys.path.
from test_framework import p2p as core_p2p
from test_framework.messages import (
    CBlockHeader,
    MAGIC_BYTES,
    msg_headers,
    msg_ping,
    msg_verack,
    msg_version,
    sha256,
)
from test_framework.p2p import (
    NetworkThread,
    P2PConnection,
    P2PInterface,
    P2P_SERVICES,
    P2P_SUBVERSION,
    P2P_VERSION_RELAY,
)
from test_framework.v2_p2p import EncryptedP2PState

# Core's framework guards peer state with one plain Lock; the cases read peer state from inside
# wait predicates that already hold it, so it becomes re-entrant (the framework looks the
# module global up at each use).
core_p2p.p2p_lock = threading.RLock()
p2p_lock = core_p2p.p2p_lock

NET = "regtest"
MAGIC = MAGIC_BYTES[NET]
NODE_P2P_V2 = 1 << 11
# Regtest's proof-of-work limit as compact bits (every header uses it: no retargeting).
REGTEST_BITS = 0x207FFFFF
# A version with the BIP9 top bits, above the BIP34/65/66 minimum of 4.
HEADER_VERSION = 0x20000000


class Fail(Exception):
    """A case's verdict: what verack did that Core would not have done (or the reverse)."""


def check(cond, message):
    if not cond:
        raise Fail(message)


class RpcError(Exception):
    def __init__(self, code, message):
        super().__init__(f"RPC error {code}: {message}")
        self.code = code
        self.message = message


def wait_for(predicate, timeout, what, interval=0.05):
    """Polls `predicate` (under p2p_lock) for at most `timeout` seconds; Fail(what) if it never
    holds."""
    deadline = time.monotonic() + timeout
    while True:
        with p2p_lock:
            if predicate():
                return
        if time.monotonic() >= deadline:
            raise Fail(what)
        time.sleep(interval)


def holds_for(predicate, seconds, interval=0.05):
    """True if `predicate` stays true for `seconds` (polled under p2p_lock)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with p2p_lock:
            if not predicate():
                return False
        time.sleep(interval)
    with p2p_lock:
        return predicate()


# ---------------------------------------------------------------------------------------------
# Framework adjustments (in this process only; Core's files are not edited).
# ---------------------------------------------------------------------------------------------

def _peer_connect(self, dstaddr, dstport, *, net, timeout_factor, supports_v2_p2p):
    """P2PConnection.peer_connect, plus an optional source address (`self.local_ip`).

    verack limits established connections per IP address (5, as dcrd; README "admission
    checkpoints"), which Core does not: the harness gives every connection its own loopback
    source address (127.a.b.1) so Core's many-peers techniques keep working."""
    self.peer_connect_helper(dstaddr, dstport, net, timeout_factor)
    if supports_v2_p2p:
        self.v2_state = EncryptedP2PState(initiating=True, net=net)
    loop = NetworkThread.network_event_loop
    local_ip = getattr(self, "local_ip", None)
    local = (local_ip, 0) if local_ip else None
    coroutine = loop.create_connection(
        lambda: self, host=self.dstaddr, port=self.dstport, local_addr=local
    )
    return lambda: loop.call_soon_threadsafe(loop.create_task, coroutine)


_orig_data_received = P2PConnection.data_received
_orig_connection_made = P2PConnection.connection_made
_orig_connection_lost = P2PConnection.connection_lost
_orig_on_message = P2PInterface.on_message


def _data_received(self, t):
    if len(t) > 0:
        self.bytes_in = getattr(self, "bytes_in", 0) + len(t)
    try:
        _orig_data_received(self, t)
    except Exception as e:  # recorded for the verdict, then the framework's own handling
        errors = getattr(self, "errors", None)
        if errors is None:
            errors = self.errors = []
        errors.append(repr(e))
        raise


def _connection_made(self, transport):
    self.opened_at = time.monotonic()
    sock = transport.get_extra_info("socket")
    self.sockname = sock.getsockname() if sock else None
    _orig_connection_made(self, transport)


def _connection_lost(self, exc):
    self.closed_at = time.monotonic()
    _orig_connection_lost(self, exc)


def _on_message(self, message):
    received = getattr(self, "received", None)
    if received is None:
        received = self.received = []
    received.append(message.msgtype.decode("ascii", "replace"))
    _orig_on_message(self, message)


P2PConnection.peer_connect = _peer_connect
P2PConnection.data_received = _data_received
P2PConnection.connection_made = _connection_made
P2PConnection.connection_lost = _connection_lost
P2PInterface.on_message = _on_message


def quiet_framework(verbose):
    """The framework logs every connection loss and decoding error; verdicts carry what matters."""
    level = logging.DEBUG if verbose else logging.CRITICAL
    logging.basicConfig(stream=sys.stderr, level=level)
    for name in ("TestFramework.p2p", "TestFramework.utils", "asyncio"):
        logging.getLogger(name).setLevel(level)


def received_list(peer):
    with p2p_lock:
        return list(getattr(peer, "received", []))


def describe(peer):
    """What the peer saw, for failure messages."""
    seen = received_list(peer)
    text = f"received {seen[-12:]}" if seen else "received nothing"
    errs = getattr(peer, "errors", None)
    if errs:
        text += f"; framework errors {errs[-2:]}"
    return text


def closed_by_us(peer, what):
    """A disconnect is verack's verdict only if Core's framework did not drop the connection
    itself after failing to read what verack sent."""
    errs = getattr(peer, "errors", None)
    if errs:
        raise Fail(f"{what}: the connection ended after the framework rejected verack's bytes "
                   f"({errs[-1][:300]}), not by verack's decision")


# ---------------------------------------------------------------------------------------------
# Peers.
# ---------------------------------------------------------------------------------------------

class SilentVersionPeer(P2PInterface):
    """Sends `version` (from `peer_connect`) but never answers the node's `version` with a
    `verack`; records what arrives."""

    def on_version(self, message):
        self.nServices = message.nServices


def version_msg(nversion=core_p2p.P2P_VERSION, services=P2P_SERVICES, relay=P2P_VERSION_RELAY):
    v = msg_version()
    v.nVersion = nversion
    v.strSubVer = P2P_SUBVERSION
    v.nServices = services
    v.relay = relay
    v.addrFrom.ip = "0.0.0.0"
    v.addrFrom.port = 0
    return v


class Raw:
    """A protocol-free TCP connection (Core's p2p_v2_transport uses plain sockets the same way)."""

    def __init__(self, ctx, ip=None, rcvbuf=None, timeout=5):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((ip or ctx.next_ip(), 0))
        self.sock.settimeout(timeout)
        self.sock.connect((ctx.host, ctx.p2p_port))
        self.buf = b""
        self.eof = False

    @property
    def addr(self):
        ip, port = self.sock.getsockname()
        return f"{ip}:{port}"

    def send(self, data):
        self.sock.sendall(data)

    def pump(self, seconds):
        """Reads whatever arrives for up to `seconds`; returns True if the remote closed."""
        deadline = time.monotonic() + seconds
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.sock.settimeout(min(left, 0.2))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self.buf += data
        return self.eof

    def wait_closed(self, seconds):
        return self.pump(seconds)

    def read_until(self, pred, seconds):
        deadline = time.monotonic() + seconds
        while not pred(self.buf) and not self.eof and time.monotonic() < deadline:
            self.pump(min(0.2, max(0.0, deadline - time.monotonic())))
        return pred(self.buf)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def v1_frame(msgtype, payload):
    if isinstance(msgtype, str):
        msgtype = msgtype.encode()
    return (MAGIC + msgtype + b"\x00" * (12 - len(msgtype)) + len(payload).to_bytes(4, "little")
            + sha256(sha256(payload))[:4] + payload)


def parse_v1_frames(buf):
    """Splits complete v1 frames off `buf`: ([(command, payload)], rest)."""
    out = []
    while len(buf) >= 24 and buf[:4] == MAGIC:
        length = struct.unpack("<I", buf[16:20])[0]
        if len(buf) < 24 + length:
            break
        out.append((buf[4:16].rstrip(b"\x00").decode("ascii", "replace"), buf[24:24 + length]))
        buf = buf[24 + length:]
    return out, buf


# ---------------------------------------------------------------------------------------------
# Headers (regtest proof of work is trivial: about every second nonce works).
# ---------------------------------------------------------------------------------------------

def target_of(bits):
    return (bits & 0xFFFFFF) << (8 * ((bits >> 24) - 3))


def solve(header):
    target = target_of(header.nBits)
    for _ in range(1_000_000):
        if header.hash_int <= target:
            return header
        header.nNonce += 1
    raise Fail("could not solve a regtest header in 1,000,000 tries")


def unsolve(header):
    """Makes the header's hash miss its target (invalid proof of work)."""
    target = target_of(header.nBits)
    for _ in range(1_000_000):
        if header.hash_int > target:
            return header
        header.nNonce += 1
    raise Fail("could not make an invalid header")


def build_headers(prev_hash, prev_time, count, *, start_time=None):
    """`count` valid regtest headers on top of (prev_hash, prev_time), one second apart."""
    out = []
    t = max(prev_time + 1, start_time or 0)
    for _ in range(count):
        h = CBlockHeader()
        h.nVersion = HEADER_VERSION
        h.hashPrevBlock = prev_hash
        h.hashMerkleRoot = random.getrandbits(256)
        h.nTime = t
        h.nBits = REGTEST_BITS
        h.nNonce = 0
        solve(h)
        out.append(h)
        prev_hash = h.hash_int
        t += 1
    return out


# ---------------------------------------------------------------------------------------------
# The per-run context.
# ---------------------------------------------------------------------------------------------

class Node:
    """What every case shares: the node's addresses, the RPC and the source-address pool."""

    def __init__(self, host, p2p_port, rpc_port, datadir, max_inbound, getaddr_cache_secs=None):
        self.host = host
        self.p2p_port = p2p_port
        self.rpc_port = rpc_port
        self.datadir = datadir
        self.max_inbound = max_inbound
        self.getaddr_cache_secs = getaddr_cache_secs
        self._ip_lock = threading.Lock()
        self._ip_counter = 0
        self._rpc_id = 0

    # -- RPC ---------------------------------------------------------------------------------

    def _auth(self):
        path = os.path.join(self.datadir, NET, ".cookie")
        with open(path) as f:
            cookie = f.read().strip()
        return "Basic " + base64.b64encode(cookie.encode()).decode()

    def _post(self, body, timeout=30):
        conn = http.client.HTTPConnection(self.host, self.rpc_port, timeout=timeout)
        try:
            conn.request("POST", "/", body=json.dumps(body),
                         headers={"Authorization": self._auth(), "Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        try:
            return json.loads(data)
        except ValueError:
            raise RpcError(-1, f"HTTP {resp.status}: {data[:200]!r}")

    def rpc(self, method, *params):
        self._rpc_id += 1
        reply = self._post({"jsonrpc": "1.0", "id": self._rpc_id, "method": method,
                            "params": list(params)})
        if reply.get("error"):
            raise RpcError(reply["error"].get("code"), reply["error"].get("message"))
        return reply.get("result")

    def rpc_batch(self, calls):
        """Core's JSON-RPC batch: one request, many calls; returns the results in order."""
        body = [{"jsonrpc": "1.0", "id": i, "method": m, "params": list(p)}
                for i, (m, p) in enumerate(calls)]
        replies = self._post(body, timeout=120)
        check(isinstance(replies, list), f"batch reply is not a list: {str(replies)[:200]}")
        by_id = {r.get("id"): r for r in replies}
        return [by_id.get(i, {}).get("result") for i in range(len(calls))]

    def rpc_error(self, method, *params):
        """The (code, message) of a call expected to fail; Fail if it succeeds."""
        try:
            result = self.rpc(method, *params)
        except RpcError as e:
            return e.code, e.message
        raise Fail(f"{method}{list(params)} succeeded ({result!r}) where Core returns an error")

    def assert_rpc_error(self, code, substring, method, *params):
        """Core's assert_raises_rpc_error: the code matches and the message contains `substring`."""
        got_code, message = self.rpc_error(method, *params)
        check(got_code == code and substring in (message or ""),
              f"{method}{list(params)}: got error {got_code} {message!r}, Core gives {code} "
              f"containing {substring!r}")

    # -- addresses ---------------------------------------------------------------------------

    def next_ip(self):
        """A loopback source address not used before in this run, each in its own /24 (so
        verack's per-IP and per-/24 pending limits never couple two connections)."""
        with self._ip_lock:
            self._ip_counter += 1
            n = self._ip_counter
        a, b = 10 + n // 250, 1 + n % 250
        check(a < 255, "source address pool exhausted")
        return f"127.{a}.{b}.1"


class Ctx:
    """One case's view: the shared node plus the connections this case opened (closed after)."""

    def __init__(self, node, name):
        self.node = node
        self.name = name
        self.host = node.host
        self.p2p_port = node.p2p_port
        self.peers = []
        self.raws = []
        self.listeners = []

    # shortcuts
    def rpc(self, method, *params):
        return self.node.rpc(method, *params)

    def next_ip(self):
        return self.node.next_ip()

    def expire_getaddr_cache(self):
        """Waits until every cached getaddr answer has expired, standing in for Core's
        `setmocktime` past the cache lifetime (or its `restart_node`): every connection of the
        earlier cases asked getaddr (P2PInterface does), so the answer cached then, from a
        near-empty address manager, would otherwise be served for about a day, as Core does."""
        secs = self.node.getaddr_cache_secs
        if secs is None:
            raise Fail("needs --getaddr-cache-secs N and the node started with "
                       "VERACK_TEST_GETADDR_CACHE_SECS=N (the getaddr cache lasts 21 h otherwise)")
        time.sleep(secs + 1)
        return secs

    # -- connections -------------------------------------------------------------------------

    def connect(self, peer=None, *, v2=False, send_version=True, wait_verack=True,
                ip=None, services=None, timeout=10):
        """Core's `add_p2p_connection`: an inbound connection to verack, from a fresh source
        address unless `ip` is given."""
        peer = peer or P2PInterface()
        peer.local_ip = ip or self.next_ip()
        kwargs = {}
        if services is not None:
            kwargs["services"] = services
        elif v2:
            kwargs["services"] = P2P_SERVICES | NODE_P2P_V2
        peer.peer_connect(dstaddr=self.host, dstport=self.p2p_port, send_version=send_version,
                          net=NET, timeout_factor=1.0, supports_v2_p2p=v2, **kwargs)()
        self.peers.append(peer)
        wait_for(lambda: getattr(peer, "opened_at", None) is not None, timeout,
                 f"TCP connection to verack not established within {timeout}s")
        if not (send_version or wait_verack):
            return peer  # the caller judges what happens next (it may already be closed)
        if v2 and wait_verack:
            wait_for(lambda: peer.v2_state is not None and peer.v2_state.tried_v2_handshake or not peer.is_connected,
                     timeout, f"v2 handshake not completed within {timeout}s ({describe(peer)})")
            check(peer.is_connected, f"verack closed during the v2 handshake ({describe(peer)})")
        if send_version:
            wait_for(lambda: not peer.on_connection_send_msg or not peer.is_connected, timeout,
                     "our version was not sent")
        if wait_verack:
            wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, timeout,
                     f"no verack from verack within {timeout}s ({describe(peer)})")
            check(peer.is_connected, f"verack closed the connection during the handshake ({describe(peer)})")
            self.sync(peer, "after the handshake")
        return peer

    def sync(self, peer, when, timeout=10):
        """Core's sync_with_ping: two pings, wait for the second pong."""
        if not peer.is_connected:
            raise Fail(f"disconnected {when} ({describe(peer)})")
        nonce = peer.ping_counter
        peer.send_without_ping(msg_ping(nonce=0))
        peer.send_without_ping(msg_ping(nonce=nonce))
        wait_for(lambda: (peer.last_message.get("pong") is not None
                          and peer.last_message["pong"].nonce == nonce) or not peer.is_connected,
                 timeout, f"no pong within {timeout}s {when} ({describe(peer)})")
        if not peer.is_connected:
            raise Fail(f"verack disconnected {when} ({describe(peer)})")
        peer.ping_counter += 1

    def expect_disconnect(self, peer, what, timeout=5):
        deadline = time.monotonic() + timeout
        while peer.is_connected and time.monotonic() < deadline:
            time.sleep(0.02)
        if peer.is_connected:
            raise Fail(f"{what}: verack kept the connection for {timeout}s "
                       f"(Core disconnects; {describe(peer)})")
        closed_by_us(peer, what)

    def expect_kept(self, peer, what, timeout=10):
        """The connection survives `what`: a ping afterwards is answered."""
        if not peer.is_connected:
            raise Fail(f"{what}: verack disconnected (Core keeps the connection; {describe(peer)})")
        nonce = peer.ping_counter
        peer.send_without_ping(msg_ping(nonce=0))
        peer.send_without_ping(msg_ping(nonce=nonce))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with p2p_lock:
                pong = peer.last_message.get("pong")
                if pong is not None and pong.nonce == nonce:
                    peer.ping_counter += 1
                    return
                if not peer.is_connected:
                    break
            time.sleep(0.02)
        if not peer.is_connected:
            raise Fail(f"{what}: verack disconnected (Core keeps the connection; {describe(peer)})")
        raise Fail(f"{what}: no pong within {timeout}s ({describe(peer)})")

    def raw(self, ip=None, rcvbuf=None, timeout=5):
        r = Raw(self, ip=ip, rcvbuf=rcvbuf, timeout=timeout)
        self.raws.append(r)
        return r

    def listen(self, peer, services=P2P_SERVICES, v2=False):
        """A listening P2PInterface (Core's `add_outbound_p2p_connection`); returns its port.
        verack is then asked to dial it with `addnode ... onetry`."""
        P2PConnection.peer_connect_helper(peer, "0", 0, NET, 1.0)
        if v2:
            peer.v2_state = EncryptedP2PState(initiating=False, net=NET)
        peer.peer_connect_send_version(services)
        got = {}

        def done(addr, port):
            got["port"] = port

        NetworkThread.listen(peer, done, port=0, addr="127.0.0.1")
        wait_for(lambda: "port" in got, 5, "listener did not start")
        self.peers.append(peer)
        self.listeners.append(got["port"])
        peer.listen_port = got["port"]
        return got["port"]

    def dial_us(self, peer, services=P2P_SERVICES, timeout=10):
        """verack dials a fresh Python listener over v1 (`addnode <addr> onetry false`) and the
        handshake completes; returns the peer."""
        port = self.listen(peer, services=services)
        self.rpc("addnode", f"127.0.0.1:{port}", "onetry", False)
        wait_for(lambda: peer.is_connected, timeout,
                 f"verack did not dial 127.0.0.1:{port} within {timeout}s after addnode onetry")
        wait_for(lambda: "verack" in peer.last_message or not peer.is_connected, timeout,
                 f"outbound handshake incomplete ({describe(peer)})")
        check(peer.is_connected, f"verack dropped its outbound connection ({describe(peer)})")
        return peer

    # -- RPC views ---------------------------------------------------------------------------

    def peer_info(self, peer):
        """getpeerinfo's entry for this connection (matched by our source address:port)."""
        addr = self.addr_of(peer)
        if addr is None:
            return None
        for p in self.rpc("getpeerinfo"):
            if p.get("addr") == addr:
                return p
        return None

    def addr_of(self, peer):
        """How verack's getpeerinfo names this connection."""
        if isinstance(peer, Raw):
            return peer.addr
        port = getattr(peer, "listen_port", None)
        if port is not None:
            return f"127.0.0.1:{port}"  # verack dialled our listener
        sockname = getattr(peer, "sockname", None)
        if sockname is None:
            return None
        return f"{sockname[0]}:{sockname[1]}"

    def wait_peer_info(self, peer, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.peer_info(peer)
            if info is not None:
                return info
            time.sleep(0.05)
        raise Fail(f"connection {self.addr_of(peer)} not in getpeerinfo within {timeout}s")

    def tip(self):
        """(hash as int, header, height, time) of verack's best header."""
        best = self.rpc("getbestblockhash")
        verbose = self.rpc("getblockheader", best, True)
        raw = bytes.fromhex(self.rpc("getblockheader", best, False))
        h = CBlockHeader()
        from io import BytesIO
        h.deserialize(BytesIO(raw))
        check(h.hash_hex == best, "getblockheader hex does not hash to the requested block")
        return h.hash_int, h, verbose["height"], verbose["time"]

    def extend_tip(self, count, via=None):
        """Builds `count` headers on verack's tip and delivers them from a fresh peer (or
        `via`); waits until verack's tip is the last one. Returns the headers."""
        tip_hash, _, height, tip_time = self.tip()
        now = int(time.time())
        headers = build_headers(tip_hash, tip_time, count, start_time=now - 3600)
        self.deliver(headers, via=via)
        return headers

    def wait_tip(self, want_hex, what, timeout=10):
        """verack's message handler runs after its reader answers pings, so a pong does not
        mean earlier headers were processed: poll the best header."""
        deadline = time.monotonic() + timeout
        while True:
            best = self.rpc("getbestblockhash")
            if best == want_hex:
                return
            if time.monotonic() > deadline:
                raise Fail(f"verack did not accept {what} within {timeout}s (best {best}, expected {want_hex})")
            time.sleep(0.05)

    def deliver(self, headers, via=None, expect_tip=True):
        feeder = via or self.connect()
        for i in range(0, len(headers), 2000):
            feeder.send_without_ping(msg_headers(headers[i:i + 2000]))
        self.sync(feeder, "after sending headers")
        if expect_tip:
            self.wait_tip(headers[-1].hash_hex, f"{len(headers)} valid headers")
        if via is None:
            feeder.peer_disconnect()
            wait_for(lambda: not feeder.is_connected, 5, "feeder did not close")
        return headers

    # -- cleanup -----------------------------------------------------------------------------

    def close(self):
        for p in self.peers:
            if p.is_connected:
                p.peer_disconnect()
        for r in self.raws:
            r.close()
        deadline = time.monotonic() + 5
        while any(p.is_connected for p in self.peers) and time.monotonic() < deadline:
            time.sleep(0.02)
        # Let verack notice, so the next case starts from a quiet node.
        ours = set()
        for p in self.peers:
            a = self.addr_of(p)
            if a:
                ours.add(a)
        for r in self.raws:
            try:
                ours.add(r.addr)
            except OSError:
                pass
        while time.monotonic() < deadline + 5:
            try:
                left = [p for p in self.node.rpc("getpeerinfo") if p.get("addr") in ours]
            except Exception:
                break
            if not left:
                break
            time.sleep(0.05)


def honest_check(node):
    """After every case: a fresh honest peer completes version/verack and a ping/pong."""
    ctx = Ctx(node, "honest")
    try:
        peer = ctx.connect(timeout=10)
        ctx.sync(peer, "honest ping")
    finally:
        ctx.close()


# ---------------------------------------------------------------------------------------------
# The case registry.
# ---------------------------------------------------------------------------------------------

REGISTRY = []


def case(name, slow=False):
    """Registers a case. `slow` cases wait out one of verack's timeouts; the runner starts them
    together, before the others, so their waits overlap."""

    def register(fn):
        REGISTRY.append((name, fn, slow))
        return fn

    return register
