//! A real SOCKS5 server for the proxy tests: `microsocks` (Debian package `microsocks`,
//! installed by `.ci/run`) on `127.0.0.1:<free port>`, its outgoing connections bound to
//! [`MICROSOCKS_SOURCE_IP`] so that a peer (Bitcoin Core's `getpeerinfo`) tells a proxied
//! connection from a direct one (from 127.0.0.1).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, scratch_dir, wait_for};

/// Where microsocks's outgoing connections come from (`-b`).
pub const MICROSOCKS_SOURCE_IP: &str = "127.0.0.2";

/// How long microsocks may take to accept connections: 5 s.
pub const MICROSOCKS_START_TIMEOUT: Duration = Duration::from_secs(5);

/// A running microsocks, killed (and its scratch directory removed) when dropped.
pub struct Microsocks {
    child: Child,
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    log: PathBuf,
    dir: PathBuf,
}

impl Microsocks {
    /// Starts microsocks with `extra` arguments (e.g. `["-u", "user", "-P", "password"]` to
    /// require RFC 1929 authentication) and waits up to [`MICROSOCKS_START_TIMEOUT`] for it to
    /// accept connections.
    ///
    /// # Panics
    /// When microsocks is not installed (the message says what to install) or does not
    /// listen in time.
    pub async fn start(extra: &[&str]) -> Microsocks {
        if let Err(e) = Command::new("microsocks").arg("-h").output() {
            panic!("cannot run microsocks ({e}): install it (Debian: apt-get install microsocks; .ci/run does)");
        }
        let dir = scratch_dir("microsocks");
        let log = dir.join("microsocks.log");
        let port = free_port().await;
        let child = Command::new("microsocks")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-b",
                MICROSOCKS_SOURCE_IP,
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Its log (unbuffered stderr): one `client[N] IP: connected to HOST:PORT` line per
            // tunnel.
            .stderr(std::fs::File::create(&log).expect("microsocks log file"))
            .spawn()
            .expect("microsocks starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let proxy = Microsocks {
            child,
            addr,
            log,
            dir,
        };
        wait_for("microsocks to listen", MICROSOCKS_START_TIMEOUT, || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        proxy
    }

    /// What microsocks printed so far: one `client[N] IP: connected to HOST:PORT` line per
    /// tunnel.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
