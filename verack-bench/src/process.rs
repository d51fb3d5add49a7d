//! Child processes of the bench (the other side of a loopback connection) and what the kernel
//! reports about a process: resident memory, CPU time, the open-file limit.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A child `verack-bench` process running an internal role; it prints `READY <addr>` once
/// listening, then JSON lines. Killed on drop.
pub struct Helper {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Helper {
    /// Starts `verack-bench <args>` and waits for its `READY` line; returns it and the
    /// announced address (whatever follows `READY `).
    pub fn start(args: &[String]) -> std::io::Result<(Helper, String)> {
        Helper::spawn(args, Stdio::null())
    }

    /// Spawns the child with `stdin` and reads its `READY` line.
    fn spawn(args: &[String], stdin: Stdio) -> std::io::Result<(Helper, String)> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut helper = Helper {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        let ready = helper.next_line()?;
        let addr = ready
            .strip_prefix("READY ")
            .ok_or_else(|| std::io::Error::other(format!("helper said {ready:?}, not READY")))?
            .to_string();
        Ok((helper, addr))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line the child printed; an error if it exited.
    pub fn next_line(&mut self) -> std::io::Result<String> {
        match self.lines.next() {
            Some(line) => line,
            None => Err(std::io::Error::other("helper exited")),
        }
    }

    /// The next line, parsed as JSON.
    pub fn next_json(&mut self) -> std::io::Result<serde_json::Value> {
        let line = self.next_line()?;
        serde_json::from_str(&line).map_err(|e| std::io::Error::other(format!("{e}: {line}")))
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of process `pid` in bytes (`VmRSS` of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) process `pid` has used, in seconds (/proc/PID/stat fields 14, 15).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Raises this process's soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the duration of both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

impl Helper {
    /// As [`start`](Self::start), with the child's stdin piped so that
    /// [`send_line`](Self::send_line) can drive it; the child sees EOF when the helper drops.
    pub fn start_piped(args: &[String]) -> std::io::Result<(Helper, String)> {
        Helper::spawn(args, Stdio::piped())
    }

    /// Writes `line` and a newline to the child's stdin and flushes.
    ///
    /// # Errors
    /// If stdin was not piped (see [`start_piped`](Self::start_piped)) or the child exited.
    pub fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        use std::io::Write as _;
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("helper stdin not piped"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Sends `line`, then returns the child's next line parsed as JSON (its reply).
    pub fn request(&mut self, line: &str) -> std::io::Result<serde_json::Value> {
        self.send_line(line)?;
        self.next_json()
    }
}

/// Connections the kernel dropped because a listen queue was full: `TcpExt: ListenOverflows`
/// of /proc/net/netstat (this network namespace, since boot; a dropped SYN is retried by the
/// client after 1 s).
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if names.starts_with("TcpExt:") {
            let i = names
                .split_whitespace()
                .position(|n| n == "ListenOverflows")?;
            return values.split_whitespace().nth(i)?.parse().ok();
        }
    }
    None
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released), for a
/// child that must be told its port.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// CPU time (user + system), in seconds, of this process's children that have ended and been
/// waited for (`getrusage(RUSAGE_CHILDREN)`); a difference around one child's wait is its CPU.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Makes glibc keep freed memory for reuse instead of returning it to the system at once:
/// allocations up to 32 MiB come from the heap (not a fresh `mmap` each), and up to 64 MiB
/// of free heap is kept before trimming. Without it, every 1 MB message buffer is new memory
/// whose pages fault in on first touch. A setting of the process embedding verack (as an
/// allocator choice is), reported beside the default.
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss_and_cpu() {
        let pid = std::process::id();
        let rss = rss_bytes(pid).unwrap();
        assert!(rss > 100 * 1024, "rss {rss}");
        let before = cpu_seconds(pid).unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(pid).unwrap() >= before);
    }
}
