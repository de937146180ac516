//! Which items take part: `--include`/`--exclude` globs and the
//! `--overwrite` rule that decides whether an existing destination is replaced.
//!
//! Pure: decisions are made from sizes, times and hashes that callers supply.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// `--overwrite` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Overwrite {
    /// Always transfer.
    Always,
    /// Never replace an existing destination.
    Never,
    /// Replace when the source is newer.
    IfNewer,
    /// Replace when size or mtime differ (or content, with --checksum).
    IfChanged,
}

/// Include/exclude globs, matched against the path relative to the transfer root.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn build(globs: &[String]) -> Result<Option<GlobSet>, String> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g).map_err(|e| format!("invalid glob '{g}': {e}"))?);
    }
    b.build().map(Some).map_err(|e| e.to_string())
}

impl Filter {
    /// Builds a filter. A path is taken when it matches some include (or
    /// there are none) and no exclude. A glob without `/` also matches the
    /// file name alone, so `--include '*.dat'` works at any depth.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        Ok(Filter {
            include: build(include)?,
            exclude: build(exclude)?,
        })
    }

    /// True when `rel` is taken.
    pub fn accepts(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let hit = |s: &GlobSet| s.is_match(rel) || s.is_match(name);
        self.include.as_ref().is_none_or(hit) && !self.exclude.as_ref().is_some_and(hit)
    }
}

/// What is known about one side of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: Option<i64>,
    /// xxh3-128, when known.
    pub hash: Option<u128>,
}

/// Decides whether `src` should replace an existing `dst`. With `checksum`,
/// content hashes decide when both are known.
pub fn should_transfer(mode: Overwrite, checksum: bool, src: &Side, dst: &Side) -> bool {
    match mode {
        Overwrite::Always => true,
        Overwrite::Never => false,
        Overwrite::IfNewer => match (src.mtime, dst.mtime) {
            (Some(s), Some(d)) => s > d,
            _ => true,
        },
        Overwrite::IfChanged => {
            if src.size != dst.size {
                return true;
            }
            if checksum {
                return match (src.hash, dst.hash) {
                    (Some(a), Some(b)) => a != b,
                    _ => true,
                };
            }
            match (src.mtime, dst.mtime) {
                (Some(s), Some(d)) => s != d,
                _ => true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let f = Filter::new(&["*.dat".into()], &["tmp/**".into()]).unwrap();
        assert!(f.accepts("a/b/x.dat"));
        assert!(!f.accepts("a/b/x.txt"));
        assert!(!f.accepts("tmp/x.dat"));
        let all = Filter::new(&[], &[]).unwrap();
        assert!(all.accepts("anything"));
        assert!(Filter::new(&["a[".into()], &[]).is_err());
    }

    #[test]
    fn overwrite_rules() {
        let s = |size, mtime, hash| Side {
            size,
            mtime: Some(mtime),
            hash,
        };
        let a = s(10, 100, Some(1));
        assert!(!should_transfer(
            Overwrite::IfChanged,
            false,
            &a,
            &s(10, 100, Some(2))
        ));
        assert!(should_transfer(
            Overwrite::IfChanged,
            true,
            &a,
            &s(10, 100, Some(2))
        ));
        assert!(should_transfer(
            Overwrite::IfChanged,
            false,
            &a,
            &s(11, 100, None)
        ));
        assert!(should_transfer(
            Overwrite::IfChanged,
            false,
            &a,
            &s(10, 99, None)
        ));
        assert!(should_transfer(
            Overwrite::IfChanged,
            true,
            &a,
            &s(10, 100, None)
        ));
        assert!(!should_transfer(
            Overwrite::Never,
            false,
            &a,
            &s(1, 1, None)
        ));
        assert!(should_transfer(Overwrite::Always, false, &a, &a));
        assert!(should_transfer(
            Overwrite::IfNewer,
            false,
            &a,
            &s(10, 99, None)
        ));
        assert!(!should_transfer(
            Overwrite::IfNewer,
            false,
            &a,
            &s(10, 101, None)
        ));
    }
}
