//! Opt-in loopback relay for `--force-node-network`.
//!
//! nakamoto 0.4 only asks an outbound peer for headers if that peer's `version` advertises
//! `NODE_NETWORK` (bit 0): `nakamoto-p2p-0.4.0/src/fsm/syncmgr.rs:247` returns early from
//! `peer_negotiated` otherwise, so the peer is never registered for sync (the constant is
//! `syncmgr::REQUIRED_SERVICES`, line 31, and no config field overrides it).
//!
//! This relay sits between nakamoto and the real peer on 127.0.0.1, copies bytes both ways
//! untouched, except that it sets bit 0 in the services field of the *first* message the
//! peer sends if that is a v1 `version` message (and recomputes its checksum). It exists
//! only to measure peers that do not (yet) advertise `NODE_NETWORK`; it adds one loopback hop.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use nakamoto_common::bitcoin_hashes::{sha256d, Hash};

/// Start the relay; returns the loopback address nakamoto should connect to.
pub fn start(upstream: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let local = listener.local_addr()?;
    thread::Builder::new()
        .name("relay-accept".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                thread::spawn(move || {
                    if let Err(e) = serve(client, upstream) {
                        eprintln!("nakamoto-sync: relay: {e}");
                    }
                });
            }
        })?;
    Ok(local)
}

fn serve(client: TcpStream, upstream: SocketAddr) -> io::Result<()> {
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(5))?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;

    // nakamoto -> peer: plain copy.
    let (mut c_rd, mut s_wr) = (client.try_clone()?, server.try_clone()?);
    thread::spawn(move || {
        let _ = io::copy(&mut c_rd, &mut s_wr);
        let _ = s_wr.shutdown(Shutdown::Write);
    });

    // peer -> nakamoto: patch the first message if it is `version`, then plain copy.
    let (mut s_rd, mut c_wr) = (server, client);
    let mut header = [0u8; 24];
    s_rd.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header[16..20].try_into().unwrap()) as usize;
    if len > 4_000_000 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "first message too large",
        ));
    }
    let mut payload = vec![0u8; len];
    s_rd.read_exact(&mut payload)?;
    if &header[4..16] == b"version\0\0\0\0\0" && payload.len() >= 12 {
        let before = u64::from_le_bytes(payload[4..12].try_into().unwrap());
        payload[4] |= 0x01; // NODE_NETWORK
        let checksum = sha256d::Hash::hash(&payload);
        header[20..24].copy_from_slice(&checksum[..4]);
        eprintln!(
            "nakamoto-sync: relay: peer services {before:#x} -> {:#x} (NODE_NETWORK forced)",
            before | 1
        );
    } else {
        eprintln!("nakamoto-sync: relay: first message is not a v1 version; not patched");
    }
    c_wr.write_all(&header)?;
    c_wr.write_all(&payload)?;
    let _ = io::copy(&mut s_rd, &mut c_wr);
    let _ = c_wr.shutdown(Shutdown::Write);
    Ok(())
}
