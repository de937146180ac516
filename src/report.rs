//! Run accounting: counters, the per-item error list, the final summary
//! (human or `--json`) and the exit code.
//!
//! Owns the rule that per-item failures never stop a run: they are printed
//! once (`hopstage: PATH: message`), counted, and turn the exit code to 1.
//! The error list kept for `--json` is bounded ([`MAX_ERRORS`]); the count is not.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::ExitCode;
use crate::redact::redact;
use crate::retry::RetryCounter;

/// Most errors kept in memory for the JSON summary.
pub const MAX_ERRORS: usize = 1000;

/// One failed item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemError {
    /// The path or blob name.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Counters shared by every worker.
#[derive(Debug)]
pub struct Stats {
    /// Files (and directory stubs) transferred.
    pub files_transferred: AtomicU64,
    /// Payload bytes transferred.
    pub bytes_transferred: AtomicU64,
    /// Items skipped (up to date, symlinks, special files).
    pub files_skipped: AtomicU64,
    /// Items failed.
    pub files_failed: AtomicU64,
    /// Items seen by the lister so far.
    pub files_seen: AtomicU64,
    /// Bytes seen by the lister so far.
    pub bytes_seen: AtomicU64,
    /// Set when the run was interrupted.
    pub interrupted: AtomicBool,
    /// Set on ranks other than 0 of a sharded run: rank 0 prints for all.
    pub silent: AtomicBool,
    /// Retries of storage requests.
    pub retries: Arc<RetryCounter>,
    errors: Mutex<Vec<ItemError>>,
    start: Instant,
    quiet: bool,
}

/// The `--json` summary.
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    /// `pull` or `push`.
    pub operation: String,
    /// Files transferred.
    pub files_transferred: u64,
    /// Bytes transferred.
    pub bytes_transferred: u64,
    /// Files skipped.
    pub files_skipped: u64,
    /// Files failed.
    pub files_failed: u64,
    /// Retries.
    pub retries: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// First failures.
    pub errors: Vec<ItemError>,
}

impl Stats {
    /// New counters.
    pub fn new(quiet: bool) -> Arc<Self> {
        Arc::new(Stats {
            files_transferred: AtomicU64::new(0),
            bytes_transferred: AtomicU64::new(0),
            files_skipped: AtomicU64::new(0),
            files_failed: AtomicU64::new(0),
            files_seen: AtomicU64::new(0),
            bytes_seen: AtomicU64::new(0),
            interrupted: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            retries: Arc::new(RetryCounter::default()),
            errors: Mutex::new(Vec::new()),
            start: Instant::now(),
            quiet,
        })
    }

    /// Records a failed item and prints it.
    pub fn fail(&self, path: &str, message: &str) {
        let message = redact(message);
        eprintln!("hopstage: {path}: {message}");
        tracing::info!(path = %path, error = %message, "failed");
        self.files_failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut errs) = self.errors.lock() {
            if errs.len() < MAX_ERRORS {
                errs.push(ItemError {
                    path: path.to_string(),
                    message,
                });
            }
        }
    }

    /// Records a skipped item, with a note unless quiet.
    pub fn skip(&self, path: &str, why: Option<&str>) {
        self.files_skipped.fetch_add(1, Ordering::Relaxed);
        if let Some(why) = why {
            if !self.quiet {
                eprintln!("hopstage: skipped {path}: {why}");
            }
        }
    }

    /// Records a transferred item.
    pub fn done(&self, bytes: u64) {
        self.files_transferred.fetch_add(1, Ordering::Relaxed);
        self.bytes_transferred.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds another rank's summary (its errors were printed by that rank).
    pub fn absorb(&self, s: &Summary) {
        self.files_transferred
            .fetch_add(s.files_transferred, Ordering::Relaxed);
        self.bytes_transferred
            .fetch_add(s.bytes_transferred, Ordering::Relaxed);
        self.files_skipped
            .fetch_add(s.files_skipped, Ordering::Relaxed);
        self.files_failed
            .fetch_add(s.files_failed, Ordering::Relaxed);
        self.retries.add(s.retries);
        if let Ok(mut errs) = self.errors.lock() {
            let room = MAX_ERRORS.saturating_sub(errs.len());
            errs.extend(s.errors.iter().take(room).cloned());
        }
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Builds the summary.
    pub fn summary(&self, operation: &str, dry_run: bool) -> Summary {
        Summary {
            operation: operation.to_string(),
            files_transferred: self.files_transferred.load(Ordering::Relaxed),
            bytes_transferred: self.bytes_transferred.load(Ordering::Relaxed),
            files_skipped: self.files_skipped.load(Ordering::Relaxed),
            files_failed: self.files_failed.load(Ordering::Relaxed),
            retries: self.retries.get(),
            seconds: self.elapsed(),
            dry_run,
            errors: self.errors.lock().map(|e| e.clone()).unwrap_or_default(),
        }
    }

    /// Prints the summary (JSON on stdout, or one line on stderr) and picks the exit code.
    pub fn finish(&self, operation: &str, dry_run: bool, json: bool) -> ExitCode {
        let s = self.summary(operation, dry_run);
        if self.silent.load(Ordering::Relaxed) {
            // Another rank prints the combined summary.
        } else if json {
            match serde_json::to_string(&s) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("hopstage: cannot encode summary: {e}"),
            }
        } else if !self.quiet {
            let rate = s.bytes_transferred as f64 / s.seconds.max(1e-9);
            eprintln!(
                "hopstage: {operation}{}: {} files ({}) transferred, {} skipped, {} failed, {} retries in {:.2} s ({}/s)",
                if dry_run { " (dry run)" } else { "" },
                s.files_transferred,
                crate::units::human_bytes(s.bytes_transferred),
                s.files_skipped,
                s.files_failed,
                s.retries,
                s.seconds,
                crate::units::human_bytes(rate as u64),
            );
        }
        if self.interrupted.load(Ordering::Relaxed) {
            ExitCode::Interrupted
        } else if s.files_failed > 0 {
            ExitCode::Partial
        } else {
            ExitCode::Success
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_failures() {
        let s = Stats::new(true);
        s.done(10);
        assert_eq!(s.finish("pull", false, false), ExitCode::Success);
        s.fail("a", "bad sig=SECRET");
        let sum = s.summary("pull", false);
        assert_eq!(sum.files_failed, 1);
        assert!(!sum.errors[0].message.contains("SECRET"));
        assert_eq!(s.finish("pull", false, false), ExitCode::Partial);
        s.interrupted.store(true, Ordering::Relaxed);
        assert_eq!(s.finish("pull", false, false), ExitCode::Interrupted);
    }
}
