//! Finding peers: Bitcoin Core's DNS seeds and fixed seeds per network, and the schedule that
//! decides when each is used.
//!
//! - [`dns_seeds`]: Core's DNS seed host names per network.
//! - [`dns`](mod@dns): asking one seed as Core does (the `x9` service-filtered name, at most 32
//!   answers aged 3–7 days, addr-fetch by name when the filtered name answers nothing).
//! - [`fixed_seeds`](mod@fixed_seeds): Core's fixed seed nodes (generated from Core's
//!   `chainparamsseeds.h`, source commit in [`SOURCE_COMMIT`]), decoded as BIP155 addresses.
//! - [`seeding`]: the pure DNS-then-fixed-seeds schedule ([`Seeding`]).
//!
//! Only [`dns::system_lookup`] does I/O (the system resolver); everything else is plain
//! decisions and tables, and a node (or a crawler) fills its address manager with the results,
//! for example through the server's addr-fetch connections.

pub mod dns;
mod dns_seeds;
pub mod fixed_seeds;
mod fixed_seeds_table;
pub mod seeding;

pub use dns::{
    filtered_seed_host, query_dns_seed, seed_entries, seeds_assumed_service_flags,
    seeds_service_flags, system_lookup, SeedQuery, MAX_IPS_PER_SEED,
};
pub use dns_seeds::dns_seeds;
pub use fixed_seeds::{
    decode_seed, fixed_seeds, raw_fixed_seeds, seed_messages, seed_services, FixedSeed,
    SeedDecodeError, SOURCE_COMMIT,
};
pub use seeding::{SeedSources, SeedStep, Seeding, SeedingPolicy};
