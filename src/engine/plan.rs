//! The pull plan journal: the listing, page by page, kept on disk beside the
//! destination so that a rerun after a crash or a partial failure works from
//! the same plan without listing the container again.
//!
//! File: `LOCAL_DIR/.hopstage-plan-<hash>.jsonl` (hash of account, container
//! and prefix), mode 0600. Line 1 is a header naming the source; each further
//! line is one listing page with its continuation marker. A page whose marker
//! is null ends the plan. A rerun replays the pages (bounded channel, one page
//! at a time) and, if the plan was cut short, lists on from the last marker.
//! A line torn by `kill -9` is cut off before appending. The journal is
//! removed when a run ends with nothing failed; a blob that changed since it
//! was planned (ETag mismatch) also discards it, so the next run lists afresh.
//! Completed files need no record here: they are skipped by size and mtime;
//! completed ranges of large files are in their range logs ([`super::resume`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::store::BlobEntry;

#[derive(Serialize, Deserialize)]
struct Entry {
    n: String,
    s: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    t: Option<i128>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    m5: Option<String>,
    #[serde(skip_serializing_if = "HashMap::is_empty", default)]
    md: HashMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Page {
    entries: Vec<Entry>,
    next: Option<String>,
}

fn to_entry(b: &BlobEntry) -> Entry {
    Entry {
        n: b.name.clone(),
        s: b.size,
        e: b.etag.clone(),
        t: b.last_modified.map(OffsetDateTime::unix_timestamp_nanos),
        m5: b
            .content_md5
            .as_ref()
            .map(|m| base64::engine::general_purpose::STANDARD.encode(m)),
        md: b.metadata.clone(),
    }
}

fn from_entry(e: Entry) -> BlobEntry {
    BlobEntry {
        name: e.n,
        size: e.s,
        etag: e.e,
        last_modified: e
            .t
            .and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t).ok()),
        content_md5: e
            .m5
            .and_then(|m| base64::engine::general_purpose::STANDARD.decode(m).ok()),
        metadata: e.md,
    }
}

/// Where the plan of a pull from `source` (account/container) and `prefix`
/// into `root` lives.
pub fn path(root: &Path, source: &str, prefix: &str) -> PathBuf {
    let h = xxhash_rust::xxh3::xxh3_64(format!("{source}\n{prefix}").as_bytes());
    root.join(format!("{}plan-{h:016x}.jsonl", super::local::TEMP_PREFIX))
}

fn header(source: &str, prefix: &str) -> String {
    serde_json::json!({"hopstage_plan": 1, "source": source, "prefix": prefix}).to_string()
}

/// Where a replay left off.
#[derive(Debug, PartialEq, Eq)]
pub enum Replayed {
    /// No usable journal: list from the start.
    Nothing,
    /// The plan is complete: no listing needed.
    Complete,
    /// Pages were replayed; list on from this marker.
    ContinueFrom(String),
}

/// An open journal to append pages to.
#[derive(Debug)]
pub struct Journal {
    file: File,
}

/// Replays the journal at `path` page by page through `emit`, stopping early
/// if `emit` returns false. Cuts off a torn last line. Returns where listing
/// should resume and the journal, opened for appending (created fresh with a
/// header when there was none).
pub fn open(
    path: &Path,
    source: &str,
    prefix: &str,
    emit: impl FnMut(Vec<BlobEntry>) -> bool,
) -> io::Result<(Replayed, Journal)> {
    let head = header(source, prefix);
    let (replayed, good_len) = scan(path, &head, emit)?;
    let file = if good_len > 0 {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(good_len)?;
        drop(f);
        OpenOptions::new().append(true).open(path)?
    } else {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(format!("{head}\n").as_bytes())?;
        drop(f);
        OpenOptions::new().append(true).open(path)?
    };
    Ok((replayed, Journal { file }))
}

/// Reads the plan at `path` without changing it (ranks other than 0 of a
/// sharded pull): pages go through `emit`; the answer says whether the plan
/// was complete.
pub fn replay(
    path: &Path,
    source: &str,
    prefix: &str,
    emit: impl FnMut(Vec<BlobEntry>) -> bool,
) -> io::Result<Replayed> {
    scan(path, &header(source, prefix), emit).map(|(r, _)| r)
}

/// True when the plan at `path` is complete (its last page has no marker).
pub fn is_complete(path: &Path, source: &str, prefix: &str) -> bool {
    matches!(
        replay(path, source, prefix, |_| true),
        Ok(Replayed::Complete)
    )
}

/// Replays the good lines of a journal; returns where it ended and the
/// length of the good part.
fn scan(
    path: &Path,
    head: &str,
    mut emit: impl FnMut(Vec<BlobEntry>) -> bool,
) -> io::Result<(Replayed, u64)> {
    let mut replayed = Replayed::Nothing;
    let mut good_len: u64 = 0;
    if let Ok(f) = File::open(path) {
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        if reader.read_line(&mut line)? > 0 && line.trim_end() == head && line.ends_with('\n') {
            good_len = line.len() as u64;
            loop {
                line.clear();
                let n = reader.read_line(&mut line)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                let Ok(page) = serde_json::from_str::<Page>(&line) else {
                    break;
                };
                good_len += n as u64;
                replayed = match page.next.clone() {
                    Some(m) => Replayed::ContinueFrom(m),
                    None => Replayed::Complete,
                };
                if !emit(page.entries.into_iter().map(from_entry).collect()) {
                    break;
                }
                if replayed == Replayed::Complete {
                    break;
                }
            }
        }
    }
    Ok((replayed, good_len))
}

impl Journal {
    /// Appends one listing page (one `write` of one line).
    pub fn append(&mut self, entries: &[BlobEntry], next: Option<&str>) -> io::Result<()> {
        let page = Page {
            entries: entries.iter().map(to_entry).collect(),
            next: next.map(str::to_string),
        };
        let mut line = serde_json::to_string(&page).map_err(io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> BlobEntry {
        BlobEntry {
            name: name.into(),
            size: 3,
            etag: Some("\"0x1\"".into()),
            last_modified: OffsetDateTime::from_unix_timestamp(1_700_000_000).ok(),
            content_md5: Some(vec![1; 16]),
            metadata: [("owner".to_string(), "5".to_string())].into(),
        }
    }

    #[test]
    fn replays_pages_resumes_from_marker_and_cuts_torn_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path(), "a/c", "proj/");
        let (r, mut j) = open(&p, "a/c", "proj/", |_| true).unwrap();
        assert_eq!(r, Replayed::Nothing);
        j.append(&[entry("proj/a"), entry("proj/b")], Some("m1"))
            .unwrap();
        drop(j);
        // A torn page from a killed run.
        OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"entries\":[{\"n\"")
            .unwrap();
        let mut seen = Vec::new();
        let (r, mut j) = open(&p, "a/c", "proj/", |page| {
            seen.extend(page.into_iter().map(|e| e.name));
            true
        })
        .unwrap();
        assert_eq!(r, Replayed::ContinueFrom("m1".into()));
        assert_eq!(seen, vec!["proj/a", "proj/b"]);
        j.append(&[entry("proj/c")], None).unwrap();
        drop(j);
        let mut all = Vec::new();
        let (r, _) = open(&p, "a/c", "proj/", |page| {
            all.extend(page);
            true
        })
        .unwrap();
        assert_eq!(r, Replayed::Complete);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].metadata["owner"], "5");
        assert_eq!(all[2].last_modified, entry("x").last_modified);
        // Another source never replays this plan.
        let (r, _) = open(&p, "a/other", "proj/", |_| true).unwrap();
        assert_eq!(r, Replayed::Nothing);
    }
}
