//! Crate-level error type and the exit-code contract.
//!
//! Exit codes are part of the interface that scripts and Slurm hooks rely on:
//! 0 everything done, 1 some items failed (the rest completed), 2 usage,
//! configuration or authentication error (nothing done), 130 interrupted.

use crate::{config, store};

/// The process exit codes hopstage promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// Everything requested was done (or correctly skipped).
    Success = 0,
    /// Some items failed; every other item completed.
    Partial = 1,
    /// Usage, configuration or authentication error: nothing was done.
    Fatal = 2,
    /// Interrupted by a signal.
    Interrupted = 130,
}

impl ExitCode {
    /// The exit code for a fatal error.
    pub fn from_error(err: &Error) -> i32 {
        match err {
            Error::Interrupted => ExitCode::Interrupted as i32,
            _ => ExitCode::Fatal as i32,
        }
    }
}

/// A fatal error: the run could not start or could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line was wrong.
    #[error("{0}")]
    Usage(String),
    /// The configuration could not be resolved.
    #[error(transparent)]
    Config(#[from] config::Error),
    /// The storage service refused or failed a request that the whole run depends on.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A local file or directory the whole run depends on failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The run was interrupted (SIGINT/SIGTERM).
    #[error("interrupted")]
    Interrupted,
}

/// Crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
