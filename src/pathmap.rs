//! Blob name → local path mapping, refusing anything that could land outside
//! the destination.
//!
//! Pure: no file system access. A blob name (relative to the remote prefix)
//! becomes a relative path only if every `/`-separated segment is a plain
//! file name: not empty (`a//b`, leading or trailing `/`), not `.` or `..`,
//! no NUL, no backslash (a Windows separator that would be a surprise as a
//! literal), at most 255 bytes; and the whole name is at most 4,096 bytes.
//! Symlinks already present in the destination are the engine's concern.

use std::path::PathBuf;

/// Why a blob name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// An empty segment (`a//b`, leading or trailing `/`).
    #[error("has an empty path segment (leading '/', trailing '/' or '//')")]
    EmptySegment,
    /// `.` or `..`.
    #[error("has a '.' or '..' segment that would leave the destination")]
    DotSegment,
    /// NUL byte.
    #[error("contains a NUL byte")]
    Nul,
    /// Backslash.
    #[error("contains a backslash; rename the blob or exclude it")]
    Backslash,
    /// Too long.
    #[error("has a segment longer than 255 bytes or is longer than 4096 bytes")]
    TooLong,
}

/// Maps `rel` (a blob name relative to the prefix) to a relative local path.
pub fn blob_to_relative(rel: &str) -> Result<PathBuf, PathError> {
    if rel.len() > 4096 {
        return Err(PathError::TooLong);
    }
    if rel.contains('\0') {
        return Err(PathError::Nul);
    }
    if rel.contains('\\') {
        return Err(PathError::Backslash);
    }
    let mut out = PathBuf::new();
    for seg in rel.split('/') {
        match seg {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            s if s.len() > 255 => return Err(PathError::TooLong),
            s => out.push(s),
        }
    }
    Ok(out)
}

/// Joins a remote prefix and a relative name with exactly one `/`.
pub fn join_blob(prefix: &str, rel: &str) -> String {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        rel.to_string()
    } else if rel.is_empty() {
        p.to_string()
    } else {
        format!("{p}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        assert_eq!(
            blob_to_relative("a/b c/%#?.txt").unwrap(),
            PathBuf::from("a/b c/%#?.txt")
        );
        assert_eq!(
            blob_to_relative("..a/b..").unwrap(),
            PathBuf::from("..a/b..")
        );
        assert!(blob_to_relative("ünïcödé/名前").is_ok());
    }

    #[test]
    fn refuses_escapes() {
        for bad in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/.",
            "a/",
            "",
        ] {
            assert!(blob_to_relative(bad).is_err(), "{bad}");
        }
        assert_eq!(blob_to_relative("a\\..\\b"), Err(PathError::Backslash));
        assert_eq!(blob_to_relative("a\0b"), Err(PathError::Nul));
        assert_eq!(blob_to_relative(&"x".repeat(256)), Err(PathError::TooLong));
        assert!(blob_to_relative(&format!("{}/{}", "x".repeat(255), "y".repeat(255))).is_ok());
    }

    #[test]
    fn join() {
        assert_eq!(join_blob("proj/", "a"), "proj/a");
        assert_eq!(join_blob("", "a"), "a");
        assert_eq!(join_blob("p", ""), "p");
    }
}
