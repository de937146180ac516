//! Block-level resume records.
//!
//! A ranged download keeps, beside its temporary file, a small append-only
//! log (`.hopstage-<hash>.ranges`) whose first line identifies the source
//! (ETag, size, range size) and whose other lines name each range already
//! written, with its xxh3-128 when the blob carries a tree hash. A rerun of
//! the same pull after a crash or `kill -9` reads the log, keeps the
//! temporary file, and fetches only the missing ranges; a different ETag,
//! size or range size starts the file over. The log is removed once the file
//! is renamed into place. (Uploads need no local record: block ids are
//! deterministic and the service's uncommitted block list is the record.)

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The log beside a temporary file.
pub fn log_path(tmp: &Path) -> PathBuf {
    tmp.with_extension("ranges")
}

/// The header that identifies one source version and range size.
pub fn header(etag: Option<&str>, size: u64, block: u64) -> String {
    format!(
        "hopstage-ranges v1 {} {size} {block}",
        etag.unwrap_or("-").replace(char::is_whitespace, "")
    )
}

/// An open range log.
#[derive(Debug)]
pub struct RangeLog {
    file: Mutex<File>,
}

/// Ranges already done: index → hash (when one was recorded).
pub type Done = HashMap<u64, Option<u128>>;

impl RangeLog {
    /// Reads the ranges recorded at `path` under the same `header`; `None`
    /// when there is no log or it belongs to another source version.
    pub fn existing(path: &Path, header: &str) -> Option<Done> {
        let mut text = String::new();
        File::open(path).ok()?.read_to_string(&mut text).ok()?;
        let mut lines = text.split_inclusive('\n');
        if lines.next().map(str::trim_end) != Some(header) {
            return None;
        }
        let mut done = Done::new();
        for line in lines {
            // A line cut by a crash has no newline: ignore it.
            let Some(line) = line.strip_suffix('\n') else {
                break;
            };
            let mut it = line.split(' ');
            let idx = it.next().and_then(|s| s.parse::<u64>().ok());
            let hash = it.next().and_then(|s| u128::from_str_radix(s, 16).ok());
            if let Some(i) = idx {
                done.insert(i, hash);
            }
        }
        Some(done)
    }

    /// Opens the log for appending (after [`RangeLog::existing`] said it matches).
    pub fn append(path: &Path) -> io::Result<RangeLog> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(RangeLog {
            file: Mutex::new(file),
        })
    }

    /// Starts a new log with `header`, replacing any old one.
    pub fn create(path: &Path, header: &str) -> io::Result<RangeLog> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(format!("{header}\n").as_bytes())?;
        drop(f);
        Self::append(path)
    }

    /// Records range `index` as written (one `write` call per line).
    pub fn record(&self, index: u64, hash: Option<u128>) -> io::Result<()> {
        let line = match hash {
            Some(h) => format!("{index} {h:032x}\n"),
            None => format!("{index}\n"),
        };
        let mut f = self
            .file
            .lock()
            .map_err(|_| io::Error::other("range log lock poisoned"))?;
        f.write_all(line.as_bytes())
    }
}

/// Removes a log, ignoring a missing one.
pub fn remove(path: &Path) {
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_keeps_ranges_only_for_same_header() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.ranges");
        let h = header(Some("\"0x1\""), 100, 10);
        assert!(RangeLog::existing(&p, &h).is_none());
        let log = RangeLog::create(&p, &h).unwrap();
        log.record(0, Some(7)).unwrap();
        log.record(3, None).unwrap();
        drop(log);
        // A torn last line is ignored.
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"5 ab").unwrap();
        let done = RangeLog::existing(&p, &h).unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(done[&0], Some(7));
        assert_eq!(done[&3], None);
        assert!(RangeLog::existing(&p, &header(Some("\"0x2\""), 100, 10)).is_none());
        let log = RangeLog::create(&p, &h).unwrap();
        drop(log);
        assert!(RangeLog::existing(&p, &h).unwrap().is_empty());
    }
}
