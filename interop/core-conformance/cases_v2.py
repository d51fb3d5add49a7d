"""Cases of Core's p2p_v2_misbehaving.py and p2p_v2_transport.py (BIP324)."""

import random
import time
from enum import Enum

from test_framework.messages import MAGIC_BYTES
from test_framework.p2p import P2PInterface
from harness import p2p_lock
from test_framework.util import random_bitflip
from test_framework.v2_p2p import EncryptedP2PState, MAX_GARBAGE_LEN

from harness import (
    Fail,
    closed_by_us,
    MAGIC,
    NODE_P2P_V2,
    case,
    check,
    describe,
    holds_for,
    parse_v1_frames,
    v1_frame,
    version_msg,
    wait_for,
)
from cases_handshake import HANDSHAKE_DEADLINE

V1_PREFIX = MAGIC + b"version\x00\x00\x00\x00\x00"


# -- p2p_v2_misbehaving (Core's classes, unchanged in substance) ----------------------------

class TestType(Enum):
    EARLY_KEY_RESPONSE = 0
    EXCESS_GARBAGE = 1
    WRONG_GARBAGE_TERMINATOR = 2
    WRONG_GARBAGE = 3
    SEND_NO_AAD = 4
    SEND_NON_EMPTY_VERSION_PACKET = 5


class EarlyKeyResponseState(EncryptedP2PState):
    def __init__(self, initiating, net):
        super().__init__(initiating=initiating, net=net)
        self.can_data_be_received = False

    def initiate_v2_handshake(self):
        self.generate_keypair_and_garbage()
        return b""


class ExcessGarbageState(EncryptedP2PState):
    def generate_keypair_and_garbage(self):
        garbage_len = MAX_GARBAGE_LEN + random.randrange(1, MAX_GARBAGE_LEN + 1)
        return super().generate_keypair_and_garbage(garbage_len)


class WrongGarbageTerminatorState(EncryptedP2PState):
    def generate_keypair_and_garbage(self):
        garbage_len = random.randrange(MAX_GARBAGE_LEN // 2)
        return super().generate_keypair_and_garbage(garbage_len)

    def complete_handshake(self, response):
        length, handshake_bytes = super().complete_handshake(response)
        wrong_garbage_terminator = random_bitflip(handshake_bytes[:16])
        return length, wrong_garbage_terminator + handshake_bytes[16:]


class WrongGarbageState(EncryptedP2PState):
    def generate_keypair_and_garbage(self):
        garbage_len = random.randrange(1, MAX_GARBAGE_LEN)
        ellswift_garbage_bytes = super().generate_keypair_and_garbage(garbage_len)
        return ellswift_garbage_bytes[:64] + random_bitflip(ellswift_garbage_bytes[64:])


class NoAADState(EncryptedP2PState):
    def generate_keypair_and_garbage(self):
        garbage_len = random.randrange(1, MAX_GARBAGE_LEN)
        return super().generate_keypair_and_garbage(garbage_len)

    def complete_handshake(self, response):
        self.sent_garbage = b""
        return super().complete_handshake(response)


class NonEmptyVersionPacketState(EncryptedP2PState):
    def complete_handshake(self, response):
        self.transport_version = random.randbytes(5)
        return super().complete_handshake(response)


STATES = {
    TestType.EARLY_KEY_RESPONSE: EarlyKeyResponseState,
    TestType.EXCESS_GARBAGE: ExcessGarbageState,
    TestType.WRONG_GARBAGE_TERMINATOR: WrongGarbageTerminatorState,
    TestType.WRONG_GARBAGE: WrongGarbageState,
    TestType.SEND_NO_AAD: NoAADState,
    TestType.SEND_NON_EMPTY_VERSION_PACKET: NonEmptyVersionPacketState,
}


class MisbehavingV2Peer(P2PInterface):
    def __init__(self, test_type):
        super().__init__()
        self.test_type = test_type
        self.early_bytes = 0  # bytes received while they were not allowed (EARLY_KEY_RESPONSE)
        self.later_bytes = 0

    def connection_made(self, transport):
        self.v2_state = STATES[self.test_type](initiating=True, net="regtest")
        super().connection_made(transport)

    def data_received(self, t):
        if self.test_type == TestType.EARLY_KEY_RESPONSE:
            # Core asserts here; counting keeps the verdict in the case.
            if self.v2_state.can_data_be_received:
                self.later_bytes += len(t)
            else:
                self.early_bytes += len(t)
        else:
            super().data_received(t)


def misbehaving(ctx, test_type, **kw):
    return ctx.connect(MisbehavingV2Peer(test_type), v2=True, send_version=False, wait_verack=False, **kw)


@case("v2_misbehaving.early_key_response", slow=True)
def early_key_response(ctx):
    """A v2 key whose first 4 bytes equal the network magic: the responder must wait for the
    first byte that differs from the 16-byte v1 prefix before answering with its own key (and
    so treat the connection as v2), then drop it at the handshake timeout."""
    peer = misbehaving(ctx, TestType.EARLY_KEY_RESPONSE)
    wait_for(lambda: peer.v2_state.ellswift_ours is not None, 5, "key not generated")
    peer.send_raw_message(MAGIC)
    time.sleep(1)
    with p2p_lock:
        early = peer.early_bytes
    check(early == 0, f"verack answered {early} bytes after only the 4 magic bytes (Core waits for "
          "a byte that differs from the v1 prefix)")
    check(peer.is_connected, "verack closed the connection after the 4 magic bytes")
    with p2p_lock:
        peer.v2_state.can_data_be_received = True
    started = time.monotonic()
    peer.send_raw_message(peer.v2_state.ellswift_ours[4:] + peer.v2_state.sent_garbage)
    wait_for(lambda: peer.later_bytes >= 64 or not peer.is_connected, 5,
             "no key from verack after the rest of our key and garbage")
    check(peer.later_bytes >= 64,
          f"verack closed the connection instead of answering with its v2 key "
          f"(got {peer.later_bytes} bytes): a key starting with the magic was taken for v1")
    deadline = started + HANDSHAKE_DEADLINE
    while peer.is_connected and time.monotonic() < deadline:
        time.sleep(0.1)
    check(not peer.is_connected, f"no garbage terminator ever sent, yet still connected after "
          f"{HANDSHAKE_DEADLINE}s (Core: V2 handshake timeout)")
    closed_by_us(peer, "key starting with the magic")


@case("v2_misbehaving.excess_garbage")
def excess_garbage(ctx):
    peer = misbehaving(ctx, TestType.EXCESS_GARBAGE)
    ctx.expect_disconnect(peer, "more than 4095 bytes of garbage (Core: missing garbage terminator)")


@case("v2_misbehaving.wrong_garbage_terminator", slow=True)
def wrong_garbage_terminator(ctx):
    """Core drops this peer at the v2 handshake timeout."""
    started = time.monotonic()
    peer = misbehaving(ctx, TestType.WRONG_GARBAGE_TERMINATOR)
    deadline = started + HANDSHAKE_DEADLINE
    while peer.is_connected and time.monotonic() < deadline:
        time.sleep(0.1)
    check(not peer.is_connected, f"wrong garbage terminator, still connected after {HANDSHAKE_DEADLINE}s")
    closed_by_us(peer, "wrong garbage terminator")
    check(not peer.last_message, f"messages arrived over a handshake that never completed: {describe(peer)}")


@case("v2_misbehaving.wrong_garbage")
def wrong_garbage(ctx):
    peer = misbehaving(ctx, TestType.WRONG_GARBAGE)
    ctx.expect_disconnect(peer, "garbage altered in transit (Core: packet decryption failure)")


@case("v2_misbehaving.send_no_aad")
def send_no_aad(ctx):
    peer = misbehaving(ctx, TestType.SEND_NO_AAD)
    ctx.expect_disconnect(peer, "first packet not authenticating the garbage (Core: decryption failure)")


@case("v2_misbehaving.non_empty_version_packet")
def non_empty_version_packet(ctx):
    """A non-empty transport version packet is ignored; the handshake completes."""
    ctx.connect(MisbehavingV2Peer(TestType.SEND_NON_EMPTY_VERSION_PACKET), v2=True)


# -- p2p_v2_transport -----------------------------------------------------------------------

@case("v2_transport.local_services")
def local_services(ctx):
    info = ctx.rpc("getnetworkinfo")
    check(int(info["localservices"], 16) & NODE_P2P_V2 == NODE_P2P_V2,
          f"localservices {info['localservices']} lacks NODE_P2P_V2")
    check("P2P_V2" in info["localservicesnames"], f"localservicesnames {info['localservicesnames']}")


@case("v2_transport.v2_session")
def v2_session(ctx):
    """A v2 connection: getpeerinfo says v2 and the BIP324 session id both sides derived."""
    peer = ctx.connect(v2=True)
    info = ctx.wait_peer_info(peer)
    check(info.get("transport_protocol_type") == "v2",
          f"transport_protocol_type {info.get('transport_protocol_type')!r} for a v2 connection")
    ours = peer.v2_state.peer["session_id"].hex()
    check(info.get("session_id") == ours, f"session_id {info.get('session_id')!r}, we derived {ours}")


@case("v2_transport.v1_session")
def v1_session(ctx):
    peer = ctx.connect()
    info = ctx.wait_peer_info(peer)
    check(info.get("transport_protocol_type") == "v1",
          f"transport_protocol_type {info.get('transport_protocol_type')!r} for a v1 connection")
    check(info.get("session_id") == "", f"session_id {info.get('session_id')!r} for v1, Core gives ''")


@case("v2_transport.v1_prefix_detection")
def v1_prefix_detection(ctx):
    """15 bytes of the v1 prefix decide nothing (no answer, no close); the 16th makes it v1."""
    raw = ctx.raw()
    frame = v1_frame("version", version_msg().serialize())
    check(frame[:16] == V1_PREFIX, "bad v1 frame")
    raw.send(frame[:15])
    closed = raw.pump(0.7)
    check(not closed, "verack closed the connection after 15 bytes of the v1 prefix")
    check(raw.buf == b"", f"verack answered {len(raw.buf)} bytes to 15 bytes of the v1 prefix "
          "(still undecided in Core)")
    raw.send(frame[15:])
    ok = raw.read_until(lambda b: any(c == "version" for c, _ in parse_v1_frames(b)[0]), 5)
    check(ok, f"no v1 version after the complete prefix (eof={raw.eof}, {len(raw.buf)} bytes: "
          f"{raw.buf[:8].hex()})")


@case("v2_transport.key_matching_15_prefix_bytes")
def key_matching_prefix(ctx):
    """A v2 key whose first 15 bytes equal the v1 prefix and whose 16th differs is v2: the
    responder answers with its own 64-byte key, not with v1 (or a close)."""
    raw = ctx.raw()
    key = V1_PREFIX[:15] + bytes([V1_PREFIX[15] ^ 0x01]) + random.randbytes(48)
    raw.send(key)
    raw.read_until(lambda b: len(b) >= 64, 5)
    check(len(raw.buf) >= 64, f"{len(raw.buf)} bytes back (eof={raw.eof}); expected verack's "
          "64-byte v2 key: the 16-byte prefix rule was not applied")
    check(raw.buf[:4] != MAGIC, "verack answered with a v1 message")
    check(not raw.eof, "verack closed the connection")


@case("v2_transport.wrong_network_magic")
def wrong_network_magic(ctx):
    """Another network's magic followed by "version": Core drops it at once ("V1 peer with
    wrong MessageStart")."""
    raw = ctx.raw()
    raw.send(MAGIC_BYTES["signet"] + V1_PREFIX[4:] + b"somepayload")
    check(raw.wait_closed(2), "a v1 version with signet's magic was not dropped within 2 s")


@case("v2_transport.missing_garbage_terminator")
def missing_garbage_terminator(ctx):
    """64 + 4095 + 16 bytes without a garbage terminator disconnect, one byte fewer does not."""
    limit = 64 + 4095 + 16
    raw = ctx.raw()
    raw.send(b"\x00" * (limit - 1))
    check(not raw.pump(1.0), "disconnected one byte before the garbage limit")
    raw.send(b"\x00")
    check(raw.wait_closed(3), "not disconnected after 4,175 bytes without a garbage terminator")


class MagicPrefixedKeyState(EncryptedP2PState):
    """A genuine v2 initiator whose ElligatorSwift public key starts with the network magic
    (about 1 in 2^32 keys; BIP324 does not ask initiators to avoid them). The encoding is
    u || t with u chosen to begin with the magic and t solved for our real public key, so the
    whole handshake and the session that follows are genuine."""

    def generate_keypair_and_garbage(self, garbage_len=None):
        from test_framework.crypto.ellswift import xswiftec_inv
        from test_framework.crypto.secp256k1 import FE, G, GE
        for _ in range(1000):  # each try succeeds with probability about 1/8
            priv = random.randrange(1, GE.ORDER)
            u = FE(int.from_bytes(MAGIC + random.randbytes(28), "big"))
            t = xswiftec_inv((priv * G).x, u, random.randrange(8))
            if t is not None:
                break
        else:
            raise Fail("could not encode a key starting with the magic in 1000 tries")
        self.privkey_ours = priv.to_bytes(32, "big")
        self.ellswift_ours = u.to_bytes() + t.to_bytes()
        assert self.ellswift_ours[:4] == MAGIC
        if garbage_len is None:
            garbage_len = random.randrange(MAX_GARBAGE_LEN + 1)
        self.sent_garbage = random.randbytes(garbage_len)
        return self.ellswift_ours + self.sent_garbage


class MagicPrefixedKeyPeer(P2PInterface):
    def connection_made(self, transport):
        self.v2_state = MagicPrefixedKeyState(initiating=True, net="regtest")
        super().connection_made(transport)


@case("v2_transport.key_starting_with_the_magic_completes")
def key_starting_with_the_magic_completes(ctx):
    """Beyond Core's EARLY_KEY_RESPONSE (which never finishes its handshake): a real initiator
    whose key starts with the magic completes BIP324, version/verack and ping over v2, and
    verack reports the same session id."""
    peer = ctx.connect(MagicPrefixedKeyPeer(), v2=True)
    check(peer.v2_state.ellswift_ours[:4] == MAGIC, "the key did not start with the magic")
    info = ctx.wait_peer_info(peer)
    check(info.get("transport_protocol_type") == "v2",
          f"verack reports {info.get('transport_protocol_type')}, not v2")
    ours = peer.v2_state.peer["session_id"].hex()
    check(info.get("session_id") == ours,
          f"session ids differ: verack {info.get('session_id')}, ours {ours}")
