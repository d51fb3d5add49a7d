//! `verack-bench`: macro benchmarks of verack, each printing one JSON line per result with the
//! machine it ran on. `scripts/bench.sh` runs the suite and writes BENCHMARKS.md.
//!
//! Scenarios: `throughput`. Internal roles (the other process of a scenario): `recv`.
//! Also `handshake`, `many-peers` and `fanout`, whose other process is the internal `serve`.

mod fanout;
mod handshake;
mod machine;
mod many_peers;
mod process;
mod report;
mod serve;
mod throughput;

use clap::{Parser, Subcommand};

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
    },
    /// Handshakes per second and their latency against a verack server child or any node.
    Handshake(handshake::Args),
    /// Memory and idle CPU of thousands of idle peers, and ping round trips among them.
    ManyPeers(many_peers::Args),
    /// Time for a block announcement to reach every peer.
    Fanout(fanout::Args),
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
        Command::Throughput { runs, scale, case } => {
            throughput::run(runs, scale, case).map(|results| results.iter().for_each(|r| r.emit()))
        }
        Command::Recv { mode, case, count } => throughput::receive(mode, case, count),
        Command::Handshake(args) => {
            handshake::run(&args).map(|rs| rs.iter().for_each(|r| r.emit()))
        }
        Command::ManyPeers(args) => {
            many_peers::run(&args).map(|rs| rs.iter().for_each(|r| r.emit()))
        }
        Command::Fanout(args) => fanout::run(&args).map(|rs| rs.iter().for_each(|r| r.emit())),
        Command::Serve { max_pending } => serve::run(max_pending),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("verack-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
