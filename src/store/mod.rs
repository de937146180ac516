//! Blob storage access: the [`BlobStore`] client over Microsoft's
//! `azure_storage_blob` crate, the [`BlobEntry`] listing record and the typed
//! [`Error`] every caller matches on.
//!
//! Owns: every request to the Blob service and its mapping from HTTP status to
//! an error kind. Invariants: every request goes through [`crate::retry`]; no
//! error message carries a URL query, key or token (everything is passed
//! through [`crate::redact`]); listings are fetched one page at a time so that
//! callers can stream them.

mod azure;

pub use azure::{parse_list_page, BlobEntry, BlobStore, DEFAULT_READ_TIMEOUT};

use std::time::Duration;

/// A storage failure, classified so callers never match on message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The container does not exist.
    #[error("container '{container}' not found in account '{account}': create it, or check the alias and --account")]
    ContainerNotFound {
        /// Account name.
        account: String,
        /// Container name.
        container: String,
    },
    /// The blob does not exist.
    #[error("blob '{name}' not found")]
    NotFound {
        /// Blob name.
        name: String,
    },
    /// The credential was refused (401/403).
    #[error("access denied ({status} {code}) to {target}: check the account name, key, SAS expiry and permissions, or the identity's 'Storage Blob Data' role")]
    Auth {
        /// `account 'a', container 'c'`.
        target: String,
        /// HTTP status.
        status: u16,
        /// Service error code.
        code: String,
    },
    /// The blob changed while it was being read (ETag mismatch).
    #[error("blob '{name}' changed during the transfer (ETag mismatch); run again to copy the new version")]
    Changed {
        /// Blob name.
        name: String,
    },
    /// A transient failure: throttling, a 5xx, a cut connection, a short body.
    #[error("{op}: {detail}")]
    Transient {
        /// The request.
        op: String,
        /// What happened.
        detail: String,
        /// The server's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The account endpoint could not be reached at all (DNS, refused).
    #[error("cannot reach {endpoint}: {detail}: check --blob-endpoint / the account name and the network")]
    Unreachable {
        /// The endpoint, without query.
        endpoint: String,
        /// What happened.
        detail: String,
    },
    /// Any other failure.
    #[error("{op}: {detail}")]
    Other {
        /// The request.
        op: String,
        /// What happened.
        detail: String,
    },
}

impl Error {
    /// True for failures worth retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transient { .. } | Error::Unreachable { .. })
    }

    /// The server's requested delay, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// True when the whole run should stop (no later request can succeed).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::Auth { .. } | Error::ContainerNotFound { .. } | Error::Unreachable { .. }
        )
    }
}
