//! POSIX attributes ⇄ blob metadata, in the form AMLFS's blob integration
//! imports and exports.
//!
//! Writes `owner`, `group` (numeric), `permissions` (`%04o`), `modtime`
//! (`2006-01-02 15:04:05 -0700`, the lemur copytool's Go layout) and, for
//! directory stubs, `hdi_isfolder=true`; plus `hopstage_xxh3` (xxh3-128 of the
//! content, 32 hex digits). Reads every form seen in the wild: keys in any
//! case, `posix_owner`/`posix_group` (AzCopy), octal or `rwxrwxrwx[t]` modes,
//! `modtime` in the lemur layout or RFC 3339, rclone's `mtime` (RFC 3339),
//! and Unix seconds or nanoseconds.

use std::collections::HashMap;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Metadata key of the content hash hopstage writes.
pub const HASH_KEY: &str = "hopstage_xxh3";
/// Metadata key of the tree hash: `BLOCK:HASH`, the xxh3-128 of the
/// concatenated little-endian xxh3-128 of each `BLOCK`-byte block. It lets a
/// ranged pull verify each range as it lands instead of re-reading the file.
pub const TREE_KEY: &str = "hopstage_xxh3_tree";
/// Metadata key of directory stubs.
pub const FOLDER_KEY: &str = "hdi_isfolder";

/// POSIX attributes carried in blob metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PosixMeta {
    /// Numeric owner.
    pub uid: Option<u32>,
    /// Numeric group.
    pub gid: Option<u32>,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: Option<u32>,
    /// Modification time.
    pub mtime: Option<OffsetDateTime>,
    /// A directory stub (`hdi_isfolder=true`).
    pub is_dir: bool,
    /// xxh3-128 of the content.
    pub xxh3: Option<u128>,
    /// Block size and tree hash (see [`TREE_KEY`]).
    pub tree: Option<(u64, u128)>,
}

const LEMUR: &[time::format_description::BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
);

impl PosixMeta {
    /// The metadata map to store on a blob.
    pub fn encode(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        if let Some(uid) = self.uid {
            m.insert("owner".into(), uid.to_string());
        }
        if let Some(gid) = self.gid {
            m.insert("group".into(), gid.to_string());
        }
        if let Some(mode) = self.mode {
            m.insert("permissions".into(), format!("{:04o}", mode & 0o7777));
        }
        if let Some(t) = self.mtime {
            if let Ok(s) = t.to_offset(UtcOffset::UTC).format(LEMUR) {
                m.insert("modtime".into(), s);
            }
        }
        if self.is_dir {
            m.insert(FOLDER_KEY.into(), "true".into());
        }
        if let Some(h) = self.xxh3 {
            m.insert(HASH_KEY.into(), format!("{h:032x}"));
        }
        if let Some((block, h)) = self.tree {
            m.insert(TREE_KEY.into(), format!("{block}:{h:032x}"));
        }
        m
    }

    /// Reads attributes from blob metadata; unknown or malformed values are ignored.
    pub fn decode(metadata: &HashMap<String, String>) -> Self {
        let get = |names: &[&str]| {
            metadata.iter().find_map(|(k, v)| {
                names
                    .iter()
                    .any(|n| k.eq_ignore_ascii_case(n))
                    .then(|| v.trim())
            })
        };
        PosixMeta {
            uid: get(&["owner", "posix_owner"]).and_then(parse_id),
            gid: get(&["group", "posix_group"]).and_then(parse_id),
            mode: get(&["permissions"]).and_then(parse_mode),
            mtime: get(&["modtime", "mtime"]).and_then(parse_time),
            is_dir: get(&[FOLDER_KEY]).is_some_and(|v| v.eq_ignore_ascii_case("true")),
            xxh3: get(&[HASH_KEY]).and_then(|v| u128::from_str_radix(v, 16).ok()),
            tree: get(&[TREE_KEY]).and_then(|v| {
                let (b, h) = v.split_once(':')?;
                Some((b.parse().ok()?, u128::from_str_radix(h, 16).ok()?))
            }),
        }
    }
}

fn parse_id(v: &str) -> Option<u32> {
    if v.contains("superuser") || v.contains("supergroup") || v == "root" {
        return Some(0);
    }
    v.parse().ok()
}

/// Parses `0755`, `755`, `1777` or `rwxr-xr-x` / `rwxrwxrwxt`.
pub fn parse_mode(v: &str) -> Option<u32> {
    let b = v.as_bytes();
    if (3..=4).contains(&b.len()) && b.iter().all(|c| (b'0'..=b'7').contains(c)) {
        let m = u32::from_str_radix(v, 8).ok()?;
        return (m <= 0o7777).then_some(m);
    }
    let (perm, sticky) = match v.len() {
        9 => (v, false),
        10 if v.ends_with('t') => (&v[..9], true),
        _ => return None,
    };
    let mut mode = 0u32;
    for (i, c) in perm.chars().enumerate() {
        let expect = ['r', 'w', 'x'][i % 3];
        mode <<= 1;
        if c == expect {
            mode |= 1;
        } else if c != '-' {
            return None;
        }
    }
    Some(if sticky { mode | 0o1000 } else { mode })
}

/// Parses the lemur layout, RFC 3339, or Unix seconds / nanoseconds.
pub fn parse_time(v: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(v, LEMUR) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Some(t);
    }
    let n: i128 = v.parse().ok()?;
    if n.abs() > 100_000_000_000 {
        OffsetDateTime::from_unix_timestamp_nanos(n).ok()
    } else {
        OffsetDateTime::from_unix_timestamp(n as i64).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn encode_is_amlfs_form() {
        let m = PosixMeta {
            uid: Some(1000),
            gid: Some(100),
            mode: Some(0o1755),
            mtime: OffsetDateTime::from_unix_timestamp(1_700_000_000).ok(),
            is_dir: true,
            xxh3: Some(0xabc),
            tree: Some((8 << 20, 5)),
        }
        .encode();
        assert_eq!(m[TREE_KEY], "8388608:00000000000000000000000000000005");
        assert_eq!(m["owner"], "1000");
        assert_eq!(m["group"], "100");
        assert_eq!(m["permissions"], "1755");
        assert_eq!(m["modtime"], "2023-11-14 22:13:20 +0000");
        assert_eq!(m["hdi_isfolder"], "true");
        assert_eq!(m[HASH_KEY], "00000000000000000000000000000abc");
    }

    #[test]
    fn round_trip() {
        let p = PosixMeta {
            uid: Some(5),
            gid: Some(6),
            mode: Some(0o640),
            mtime: OffsetDateTime::from_unix_timestamp(1_600_000_000).ok(),
            is_dir: false,
            xxh3: Some(u128::MAX),
            tree: Some((4 << 20, 1)),
        };
        assert_eq!(PosixMeta::decode(&p.encode()), p);
    }

    #[test]
    fn decodes_wild_forms() {
        let m = PosixMeta::decode(&map(&[
            ("Owner", "0"),
            ("posix_group", "42"),
            ("Permissions", "rwxr-x---"),
            ("mtime", "2024-03-01T10:00:00.123456789+01:00"),
            ("Hdi_isfolder", "True"),
        ]));
        assert_eq!(m.uid, Some(0));
        assert_eq!(m.gid, Some(42));
        assert_eq!(m.mode, Some(0o750));
        assert_eq!(m.mtime.unwrap().unix_timestamp(), 1_709_283_600);
        assert!(m.is_dir);
        assert_eq!(parse_mode("rwxrwxrwxt"), Some(0o1777));
        assert_eq!(parse_mode("755"), Some(0o755));
        assert_eq!(parse_mode("0999"), None);
        assert_eq!(parse_mode("rwxrwxrwz"), None);
        assert_eq!(
            parse_time("2024-01-02 03:04:05 -0700")
                .unwrap()
                .unix_timestamp(),
            1_704_189_845
        );
        assert_eq!(
            parse_time("1700000000").unwrap().unix_timestamp(),
            1_700_000_000
        );
        assert_eq!(
            parse_time("1700000000000000000").unwrap().unix_timestamp(),
            1_700_000_000
        );
        let s = PosixMeta::decode(&map(&[("owner", "$superuser")]));
        assert_eq!(s.uid, Some(0));
        let bad = PosixMeta::decode(&map(&[("owner", "alice"), ("modtime", "yesterday")]));
        assert_eq!(bad.uid, None);
        assert_eq!(bad.mtime, None);
    }
}
