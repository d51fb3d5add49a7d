//! Traffic counters and the stats snapshot.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bitcoin::p2p::ServiceFlags;
use tokio::time::Instant;

use super::command_bytes::{command_index, CommandBytes};
use super::{Direction, PeerId};
use crate::transport::Transport;

pub use super::command_bytes::OTHER_COMMAND;

/// Counters updated on every frame; shared between the peer's tasks and its handles.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) connected_at: Instant,
    pub(crate) connected_at_wall: SystemTime,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    messages_sent: AtomicU64,
    messages_received: AtomicU64,
    /// Milliseconds since `connected_at` plus one (0 = never).
    last_send_ms: AtomicU64,
    last_receive_ms: AtomicU64,
    sent_per_command: CommandBytes,
    received_per_command: CommandBytes,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            connected_at: Instant::now(),
            connected_at_wall: SystemTime::now(),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            last_send_ms: AtomicU64::new(0),
            last_receive_ms: AtomicU64::new(0),
            sent_per_command: CommandBytes::new(),
            received_per_command: CommandBytes::new(),
        }
    }

    fn stamp(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.connected_at).as_millis() as u64 + 1
    }

    pub(crate) fn record_sent(&self, command: &str, bytes: usize, now: Instant) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.last_send_ms.store(self.stamp(now), Ordering::Relaxed);
        self.sent_per_command.add(command_index(command), bytes);
    }

    pub(crate) fn record_received(&self, command: &str, bytes: usize, now: Instant) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.touch_received(now);
        self.received_per_command.add(command_index(command), bytes);
    }

    /// Bytes written that carried no message (v2 key exchange, garbage, terminator, version
    /// and decoy packets).
    pub(crate) fn record_overhead_sent(&self, bytes: usize, now: Instant) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_send_ms.store(self.stamp(now), Ordering::Relaxed);
    }

    /// Bytes read that carried no message (as [`record_overhead_sent`](Self::record_overhead_sent)).
    pub(crate) fn record_overhead_received(&self, bytes: usize, now: Instant) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.touch_received(now);
    }

    /// Marks the connection as alive without a message (used when reading resumes after
    /// backpressure, so the pause does not count towards the idle timeout).
    pub(crate) fn touch_received(&self, now: Instant) {
        self.last_receive_ms
            .store(self.stamp(now), Ordering::Relaxed);
    }

    /// Frames received so far, handshake included.
    pub(crate) fn messages_received(&self) -> u64 {
        self.messages_received.load(Ordering::Relaxed)
    }

    /// When anything was last received (the connection start if never).
    pub(crate) fn last_received(&self) -> Instant {
        match self.last_receive_ms.load(Ordering::Relaxed) {
            0 => self.connected_at,
            ms => self.connected_at + Duration::from_millis(ms - 1),
        }
    }

    fn wall(&self, ms: u64) -> Option<SystemTime> {
        (ms != 0).then(|| self.connected_at_wall + Duration::from_millis(ms - 1))
    }

    pub(crate) fn fill(&self, s: &mut PeerStats) {
        s.bytes_sent = self.bytes_sent.load(Ordering::Relaxed);
        s.bytes_received = self.bytes_received.load(Ordering::Relaxed);
        s.messages_sent = self.messages_sent.load(Ordering::Relaxed);
        s.messages_received = self.messages_received.load(Ordering::Relaxed);
        s.connected_at = self.connected_at_wall;
        s.last_send = self.wall(self.last_send_ms.load(Ordering::Relaxed));
        s.last_receive = self.wall(self.last_receive_ms.load(Ordering::Relaxed));
        s.bytes_sent_per_command = self.sent_per_command.snapshot();
        s.bytes_received_per_command = self.received_per_command.snapshot();
    }
}

/// A point-in-time view of a peer, from [`PeerHandle::stats`](super::PeerHandle::stats).
///
/// Byte counts are bytes on the wire: v1 counts the 24-byte header of every frame and the
/// handshake's messages; v2 counts whole packets (3 length + 1 header + contents + 16 tag) per
/// message, and also the key exchange, garbage, terminator, version and decoy packets, which
/// carry no message and so appear in the totals but in no per-command entry.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PeerStats {
    /// The peer's id, unique within the process.
    pub id: PeerId,
    /// The remote socket address. For a Tor, I2P or CJDNS peer reached through a proxy this is
    /// its [stand-in](crate::address::PeerAddr::stand_in) in `fd87:d87e:eb43::/48`;
    /// [`PeerAddr::from_stand_in`](crate::address::PeerAddr::from_stand_in) gives the real
    /// address (e.g. `xxx.onion:8333`).
    pub remote: SocketAddr,
    /// Our end of the socket (Core's `addrbind`), when the stream is TCP: a
    /// [`tokio::net::TcpStream`] or a server [`Connection`](crate::server::Connection) over
    /// one. `None` for other streams.
    pub local: Option<SocketAddr>,
    /// Our address as the remote reported it in its `version` (Core's `addrlocal`); see
    /// [`Negotiated::addr_local`](super::Negotiated::addr_local).
    pub addr_local: Option<SocketAddr>,
    /// Who opened the connection.
    pub direction: Direction,
    /// Services the remote advertised.
    pub services: ServiceFlags,
    /// The remote's user agent.
    pub user_agent: String,
    /// The negotiated protocol version: the lower of ours and the remote's.
    pub protocol_version: u32,
    /// The protocol version the remote announced (Core's `getpeerinfo.version`).
    pub remote_version: u32,
    /// The remote's height from its `version`.
    pub start_height: i32,
    /// The highest block height the remote is known to have announced; starts at
    /// `start_height`, never decreases (see
    /// [`PeerHandle::update_last_block_height`](super::PeerHandle::update_last_block_height)).
    pub last_block_height: i32,
    /// Bytes written to the socket, headers included (v2: see above).
    pub bytes_sent: u64,
    /// Bytes read from the socket that formed frames, headers included (v2: see above).
    pub bytes_received: u64,
    /// Frames written.
    pub messages_sent: u64,
    /// Frames read (undecodable ones included, under [`OTHER_COMMAND`]).
    pub messages_received: u64,
    /// Bytes written per command: Core's message types, anything else under
    /// [`OTHER_COMMAND`] (as Core's `bytessent_per_msg`).
    pub bytes_sent_per_command: BTreeMap<String, u64>,
    /// Bytes read per command: Core's message types; other commands and frames that failed to
    /// decode count under [`OTHER_COMMAND`] (as Core's `bytesrecv_per_msg`).
    pub bytes_received_per_command: BTreeMap<String, u64>,
    /// When the peer was created (wall clock).
    pub connected_at: SystemTime,
    /// When a frame was last written, if ever.
    pub last_send: Option<SystemTime>,
    /// When a frame was last read, if ever.
    pub last_receive: Option<SystemTime>,
    /// Round-trip time of the last answered ping.
    pub last_ping: Option<Duration>,
    /// Smallest ping round-trip seen.
    pub min_ping: Option<Duration>,
    /// How long the ping in flight has been waiting for its pong (Core's `pingwait`); `None`
    /// when no ping is in flight.
    pub ping_wait: Option<Duration>,
    /// Remote clock minus ours at the handshake, in seconds.
    pub time_offset: i64,
    /// The transport: v1, or v2 with its BIP324 session id (Core's `transport_protocol_type`
    /// and `session_id`).
    pub transport: Transport,
}
