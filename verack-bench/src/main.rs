//! `verack-bench`: macro benchmarks of verack, each printing one JSON line per result with the
//! machine it ran on. `scripts/bench.sh` runs the suite and writes BENCHMARKS.md.
//!
//! Scenarios: `throughput`, `handshake`, `many-peers`, `headers`, `fanout`, `scale`; `report` turns
//! their output into markdown. Internal roles (the other process of a scenario): `recv`, `serve`,
//! `floor`.
//! Also `handshake`, `many-peers` and `fanout`, whose other process is the internal `serve`.
//! And `headers`: a header sync from a local verack node, verack vs the nakamoto client.

mod fanout;
mod floor;
mod handshake;
mod headers;
mod heap;
mod machine;
mod many_peers;
mod markdown;
mod process;
mod regtest_chain;
mod report;
mod scale;
mod serve;
mod throughput;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One-way throughput between two verack processes vs a checksum-only plain-TCP baseline.
    Throughput {
        /// Runs per case; the result is the median.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Multiplies the message counts (400 × 1 MB, 2,000,000 × inv at 1.0).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Only this case (default: both).
        #[arg(long, value_enum)]
        case: Option<throughput::Case>,
        /// Both processes keep freed memory for reuse (glibc `mallopt`; see
        /// `process::keep_freed_memory`); results are labelled so.
        #[arg(long)]
        keep_freed_memory: bool,
    },
    /// Internal: the receiving process of `throughput`.
    #[command(hide = true)]
    Recv {
        #[arg(long, value_enum)]
        mode: throughput::Mode,
        #[arg(long, value_enum)]
        case: throughput::Case,
        #[arg(long)]
        count: u64,
        #[arg(long)]
        keep_freed_memory: bool,
    },
    /// Handshakes per second and their latency against a verack server child or any node.
    Handshake(handshake::Args),
    /// Internal: the bare tokio server of `handshake --floor` (canned replies).
    #[command(hide = true)]
    Floor(floor::Args),
    /// Memory and idle CPU of thousands of idle peers, and ping round trips among them.
    ManyPeers(many_peers::Args),
    /// Time for a block announcement to reach every peer.
    Fanout(fanout::Args),
    /// Time for a fresh verack node to sync regtest headers from a local verack node, vs nakamoto.
    Headers(headers::Args),
    /// The node at mainnet scale (900,000 headers): RSS, memory per header, start-up from the
    /// store, store bytes per header, against issue 13's goals.
    Scale(scale::Args),
    /// Reads result JSON lines (from a file, or `-` for stdin) and prints the markdown tables.
    Report {
        /// The JSON-lines file the scenarios' output was collected in.
        results: std::path::PathBuf,
    },
    /// Internal: the verack server of `handshake`, `many-peers` and `fanout`, driven by stdin.
    #[command(hide = true)]
    Serve {
        /// Inbound handshakes in progress at once.
        #[arg(long, default_value_t = 512)]
        max_pending: usize,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Throughput {
            runs,
            scale,
            case,
            keep_freed_memory,
        } => throughput::run(runs, scale, case, keep_freed_memory)
            .map(|results| results.iter().for_each(|r| r.emit())),
        Command::Recv {
            mode,
            case,
            count,
            keep_freed_memory,
        } => {
            if keep_freed_memory {
                process::keep_freed_memory();
            }
            throughput::receive(mode, case, count)
        }
        Command::Handshake(args) => {
            handshake::run(&args).map(|rs| rs.iter().for_each(|r| r.emit()))
        }
        Command::Floor(args) => floor::run(&args),
        Command::ManyPeers(args) => {
            many_peers::run(&args).map(|rs| rs.iter().for_each(|r| r.emit()))
        }
        Command::Fanout(args) => fanout::run(&args).map(|rs| rs.iter().for_each(|r| r.emit())),
        Command::Headers(args) => headers::run(&args).map(|rs| rs.iter().for_each(|r| r.emit())),
        Command::Scale(args) => scale::run(&args).map(|rs| rs.iter().for_each(|r| r.emit())),
        Command::Serve { max_pending } => serve::run(max_pending),
        Command::Report { results } => report_file(&results),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verack-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints the markdown tables for the result lines in `path` (non-JSON lines are skipped).
fn report_file(path: &std::path::Path) -> std::io::Result<()> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path)?
    };
    let results: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("scenario").is_some())
        .collect();
    print!("{}", markdown::tables(&results));
    Ok(())
}
