//! hopstage moves data between Azure Blob Storage and POSIX file systems
//! (Azure Managed Lustre in particular) for HPC clusters.
//!
//! The binary is a thin shell over this library: [`cli`] parses, [`config`]
//! resolves accounts and credentials, [`engine`] moves bytes through
//! [`store`], and [`report`] turns the outcome into a summary and an exit code.
//! See `ARCHITECTURE.md` for the data flow and the code map.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod engine;
pub mod error;
pub mod filter;
pub mod lustre;
pub mod meta;
pub mod pathmap;
pub mod progress;
pub mod redact;
pub mod remote;
pub mod report;
pub mod retry;
pub mod run;
pub mod shard;
pub mod slurm;
pub mod store;
pub mod units;
pub mod verify;
pub mod walk;

pub use run::run;
