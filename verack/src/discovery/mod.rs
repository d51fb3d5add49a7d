//! Finding peers: Bitcoin Core's DNS seeds and fixed seeds per network, and the schedule that
//! decides when each is used.
//!
//! - [`dns_seeds`]: Core's DNS seed host names per network.
//! - [`fixed_seeds`](mod@fixed_seeds): Core's fixed seed nodes (generated from Core's
//!   `chainparamsseeds.h`, source commit in [`SOURCE_COMMIT`]), decoded as BIP155 addresses.
//! - [`seeding`]: the pure DNS-then-fixed-seeds schedule ([`Seeding`]).
//!
//! Nothing here does I/O; a node resolves the names and fills its address manager.

mod dns_seeds;
pub mod fixed_seeds;
mod fixed_seeds_table;
pub mod seeding;

pub use dns_seeds::dns_seeds;
pub use fixed_seeds::{
    decode_seed, fixed_seeds, raw_fixed_seeds, seed_messages, seed_services, FixedSeed,
    SeedDecodeError, SOURCE_COMMIT,
};
pub use seeding::{SeedSources, SeedStep, Seeding, SeedingPolicy};
