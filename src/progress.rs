//! The progress bar: an indicatif bar on stderr, drawn only on a TTY and never
//! with `--quiet` or `--json`, refreshed from the [`Stats`] counters.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::Stats;

/// A running progress bar; finishes when dropped.
pub struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar when stderr is a terminal and output is not suppressed.
    pub fn start(stats: &Arc<Stats>, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Progress {
                bar: None,
                task: None,
            };
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        let b = bar.clone();
        let stats = Arc::clone(stats);
        let task = tokio::spawn(async move {
            loop {
                b.set_length(stats.bytes_seen.load(Ordering::Relaxed));
                b.set_position(stats.bytes_transferred.load(Ordering::Relaxed));
                b.set_message(format!(
                    "{} files, {} skipped, {} failed",
                    stats.files_transferred.load(Ordering::Relaxed),
                    stats.files_skipped.load(Ordering::Relaxed),
                    stats.files_failed.load(Ordering::Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Progress {
            bar: Some(bar),
            task: Some(task),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
