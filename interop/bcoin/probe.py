#!/usr/bin/env python3
"""Tiny raw-socket Bitcoin P2P v1 probe used to record bcoin's wire behaviour.

  probe.py connect HOST PORT   - dial bcoin, handshake, ping, getheaders(genesis)
  probe.py listen PORT [SECS]  - accept one connection from bcoin (dial-out test),
                                 answer its version/verack/ping, log what it sends

Every message is printed as "+<seconds> <direction> <command> <summary>".
Only the standard library; every wait is bounded.
Env knobs: PROBE_BIP339=1 (send wtxidrelay+sendaddrv2 before verack),
PROBE_SENDHEADERS=1, PROBE_GETDATA=1 (fetch tip block), PROBE_WAIT=secs
(linger after getheaders), PROBE_SERVICES=0x..; listen mode: PROBE_HOLD=secs
per connection (default 5), PROBE_ONCE=1 (stop after one connection).
"""
import hashlib
import os
import socket
import struct
import sys
import time

MAGIC = bytes.fromhex("fabfb5da")  # regtest
GENESIS = bytes.fromhex(
    "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206")[::-1]
T0 = time.monotonic()


def log(*a):
    print("+%.3f" % (time.monotonic() - T0), *a, flush=True)


def dsha(b):
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def varint(n):
    if n < 0xfd:
        return bytes([n])
    if n <= 0xffff:
        return b"\xfd" + struct.pack("<H", n)
    return b"\xfe" + struct.pack("<I", n)


def read_varint(b, o):
    x = b[o]
    if x < 0xfd:
        return x, o + 1
    if x == 0xfd:
        return struct.unpack_from("<H", b, o + 1)[0], o + 3
    if x == 0xfe:
        return struct.unpack_from("<I", b, o + 1)[0], o + 5
    return struct.unpack_from("<Q", b, o + 1)[0], o + 9


def frame(cmd, payload=b""):
    return (MAGIC + cmd.encode().ljust(12, b"\0") + struct.pack("<I", len(payload))
            + dsha(payload)[:4] + payload)


def netaddr(port=0):
    return struct.pack("<Q", 0) + bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1]) + struct.pack(">H", port)


def version_payload(height=0, version=70016, services=0):
    agent = b"/rust-probe:0.1/"
    services = int(os.environ.get("PROBE_SERVICES", str(services)), 0)
    return (struct.pack("<iQq", version, services, int(time.time())) + netaddr() + netaddr()
            + os.urandom(8) + varint(len(agent)) + agent + struct.pack("<i", height) + b"\x00")


def parse_version(p):
    ver, services, ts = struct.unpack_from("<iQq", p, 0)
    o = 20 + 26 + 26
    nonce = p[o:o + 8].hex()
    o += 8
    n, o = read_varint(p, o)
    agent = p[o:o + n].decode(errors="replace")
    o += n
    height = struct.unpack_from("<i", p, o)[0]
    relay = p[o + 4] if len(p) > o + 4 else None
    return ("version=%d services=0x%x agent=%r start_height=%d relay=%s nonce=%s len=%d"
            % (ver, services, agent, height, relay, nonce, len(p)))


def parse_headers(p):
    n, o = read_varint(p, 0)
    hashes = []
    for _ in range(n):
        hdr = p[o:o + 80]
        hashes.append(dsha(hdr)[::-1].hex())
        o += 81  # 80-byte header + tx count (always 0)
    return n, hashes


def summary(cmd, p):
    if cmd == "version":
        return parse_version(p)
    if cmd in ("ping", "pong"):
        return "nonce=%s" % p.hex()
    if cmd == "sendcmpct":
        return "announce=%d version=%d" % (p[0], struct.unpack_from("<Q", p, 1)[0])
    if cmd == "feefilter":
        return "feerate=%d sat/kvB" % struct.unpack("<Q", p)[0]
    if cmd == "headers":
        n, h = parse_headers(p)
        return "count=%d first=%s last=%s" % (n, h[0] if h else None, h[-1] if h else None)
    if cmd in ("getheaders", "getblocks"):
        ver = struct.unpack_from("<I", p)[0]
        n, o = read_varint(p, 4)
        loc = [p[o + 32 * i:o + 32 * i + 32][::-1].hex() for i in range(n)]
        stop = p[o + 32 * n:o + 32 * n + 32][::-1].hex()
        return "version=%d locator=%s stop=%s" % (ver, loc, stop)
    if cmd in ("inv", "getdata"):
        n, o = read_varint(p, 0)
        items = [(struct.unpack_from("<I", p, o + 36 * i)[0], p[o + 36 * i + 4:o + 36 * i + 36][::-1].hex())
                 for i in range(n)]
        return "items=%s" % items
    if cmd == "addr":
        return "count=%d raw=%s" % (p[0], p.hex())
    return "len=%d %s" % (len(p), p[:64].hex())


class Conn:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""

    def send(self, cmd, payload=b""):
        log(">>", cmd, summary(cmd, payload) if payload else "")
        self.s.sendall(frame(cmd, payload))

    def recv(self, timeout):
        """Return (cmd, payload) or None on timeout/EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 24:
                assert self.buf[:4] == MAGIC, "bad magic %s" % self.buf[:4].hex()
                ln = struct.unpack_from("<I", self.buf, 16)[0]
                if len(self.buf) >= 24 + ln:
                    cmd = self.buf[4:16].rstrip(b"\0").decode()
                    p = self.buf[24:24 + ln]
                    assert dsha(p)[:4] == self.buf[20:24], "bad checksum"
                    self.buf = self.buf[24 + ln:]
                    log("<<", cmd, summary(cmd, p))
                    return cmd, p
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                return None
            if not d:
                log("-- EOF")
                return None
            self.buf += d

    def until(self, want, timeout, auto=True):
        """Read until command `want` arrives; answer pings meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.recv(deadline - time.monotonic())
            if m is None:
                return None
            if auto and m[0] == "ping":
                self.send("pong", m[1])
            if m[0] == want:
                return m
        return None

    def drain(self, secs):
        got = []
        end = time.monotonic() + secs
        while time.monotonic() < end:
            m = self.recv(end - time.monotonic())
            if m is None:
                break
            got.append(m)
            if m[0] == "ping":
                self.send("pong", m[1])
        return got


def do_connect(host, port):
    s = socket.create_connection((host, port), timeout=5)
    log("-- connected to %s:%d" % (host, port))
    c = Conn(s)
    # Observe whether bcoin speaks first (it does: version on accept).
    c.drain(0.5)
    c.send("version", version_payload())
    if os.environ.get("PROBE_BIP339"):
        # 70016 peers announce these between version and verack (BIP339/BIP155)
        c.send("wtxidrelay")
        c.send("sendaddrv2")
    c.drain(1.0)
    c.send("verack")
    if os.environ.get("PROBE_SENDHEADERS"):
        c.send("sendheaders")
    c.drain(1.5)  # what it sends after the handshake (sendcmpct, getaddr, feefilter...)
    nonce = os.urandom(8)
    c.send("ping", nonce)
    m = c.until("pong", 5)
    log("-- pong matches ping nonce:", bool(m and m[1] == nonce))
    gh = struct.pack("<I", 70016) + varint(1) + GENESIS + bytes(32)
    c.send("getheaders", gh)
    m = c.until("headers", 5)
    if m is None:
        log("-- NO headers reply within 5s")
        return 1
    n, hashes = parse_headers(m[1])
    log("-- headers count=%d" % n)
    for i, h in enumerate(hashes, 1):
        log("   height %d %s" % (i, h))
    if os.environ.get("PROBE_GETDATA") and hashes:
        # request the tip block as MSG_BLOCK (2) and as MSG_WITNESS_BLOCK (0x40000002)
        for t in (2, 0x40000002):
            c.send("getdata", varint(1) + struct.pack("<I", t) + bytes.fromhex(hashes[-1])[::-1])
            m = c.until("block", 5)
            log("-- block reply for type 0x%x:" % t,
                "none" if m is None else "len=%d hash=%s" % (len(m[1]), dsha(m[1][:80])[::-1].hex()))
    # PROBE_WAIT=N: stay connected N more seconds to watch block announcements
    c.drain(float(os.environ.get("PROBE_WAIT", "1")))
    s.close()
    return 0


def do_listen(port, secs):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(4)
    srv.settimeout(secs)
    log("-- listening on 127.0.0.1:%d for %ss" % (port, secs))
    end = time.monotonic() + secs
    accepted = 0
    while time.monotonic() < end:
        srv.settimeout(max(0.1, end - time.monotonic()))
        try:
            s, addr = srv.accept()
        except socket.timeout:
            break
        accepted += 1
        log("-- accepted connection #%d from %s:%d at epoch %.3f" % (accepted, addr[0], addr[1], time.time()))
        c = Conn(s)
        m = c.until("version", 5)
        if m is None:
            s.close()
            continue
        # bcoin drops outbound peers lacking NODE_NETWORK|NODE_WITNESS (0x9)
        c.send("version", version_payload(services=0x9))
        c.send("verack")
        hold = float(os.environ.get("PROBE_HOLD", "5"))
        c.drain(min(hold, max(0.1, end - time.monotonic())))
        s.close()
        log("-- closed connection #%d" % accepted)
        if os.environ.get("PROBE_ONCE"):
            break
    log("-- done, accepted=%d" % accepted)
    return 0 if accepted else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "connect":
        sys.exit(do_connect(a[1], int(a[2])))
    if len(a) >= 2 and a[0] == "listen":
        sys.exit(do_listen(int(a[1]), float(a[2]) if len(a) > 2 else 30.0))
    print(__doc__)
    sys.exit(2)
