//! The `--stripe` policy: parsing and the size-tiered `auto` choice.
//!
//! Pure. `auto` tiers (stripe size 4 MiB above the first tier, offset -1):
//!
//! | file size      | layout                | why |
//! |----------------|-----------------------|-----|
//! | < 1 GiB        | inherit (no ioctl)    | AMLFS's default already puts it on one OST; skipping the ioctl saves an MDS round trip per small file |
//! | 1 – 16 GiB     | count min(4, OSTs)    | Lustre wiki: 1 MiB–1 GiB c=1–4, > 1 GiB from one client c=4–8 |
//! | 16 – 256 GiB   | count min(8, OSTs)    | enough OSTs for one client's parallel ranges without lock spread |
//! | > 256 GiB      | count -1 (all OSTs)   | many writers (multi-node pulls) need the whole file system |
//!
//! 4 MiB stripes: Lustre 2.15 defaults to 1 MiB, HPE and the wiki call 1–4 MiB right, and 4 MiB
//! divides hopstage's 8 MiB blocks, so each range maps onto whole stripes of two OST objects.

use super::layout::{Component, Layout, Striping, LUSTRE_EOF};

/// What `--stripe` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripePolicy {
    /// Leave the directory default (no layout call).
    Inherit,
    /// Size-tiered (see the module docs).
    Auto,
    /// Copy the source file's layout (local copies between Lustre trees).
    Mirror,
    /// One explicit layout for every file.
    Explicit(Layout),
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn size(text: &str) -> Result<u64, String> {
    if text.eq_ignore_ascii_case("eof") || text == "-1" {
        return Ok(LUSTRE_EOF);
    }
    crate::units::parse_size(text)
}

fn striping(parts: &[&str]) -> Result<Striping, String> {
    let mut s = Striping::default();
    for p in parts.iter().filter(|p| !p.is_empty()) {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("'{p}': expected count=N, size=S or pool=P"))?;
        match k {
            "count" | "c" => {
                s.stripe_count = v
                    .parse()
                    .map_err(|_| format!("stripe count '{v}' is not a number"))?
            }
            "size" | "S" => s.stripe_size = crate::units::parse_size(v)?,
            "pool" | "p" => s.pool = Some(v.to_string()),
            other => {
                return Err(format!(
                    "unknown stripe setting '{other}' (use count, size, pool)"
                ))
            }
        }
    }
    Ok(s)
}

/// Parses `inherit`, `auto`, `mirror`, `count=N,size=S[,pool=P]`, or
/// `pfl:END/count=N[/size=S],...,eof/count=N` (END like 64M, 1G, eof).
/// Every value is validated before anything is created.
pub fn parse(text: &str) -> Result<StripePolicy, String> {
    let policy = match text {
        "inherit" => StripePolicy::Inherit,
        "auto" => StripePolicy::Auto,
        "mirror" => StripePolicy::Mirror,
        t if t.starts_with("pfl:") => {
            let mut comps = Vec::new();
            for c in t[4..].split(',') {
                let mut it = c.split('/');
                let end = size(it.next().unwrap_or(""))?;
                let rest: Vec<&str> = it.collect();
                comps.push(Component {
                    end,
                    striping: striping(&rest)?,
                });
            }
            StripePolicy::Explicit(Layout::Composite(comps))
        }
        t => StripePolicy::Explicit(Layout::Plain(striping(&t.split(',').collect::<Vec<_>>())?)),
    };
    if let StripePolicy::Explicit(l) = &policy {
        l.validate().map_err(|e| format!("--stripe {text}: {e}"))?;
    }
    Ok(policy)
}

/// The layout `auto` picks for a file of `size` bytes on a file system with
/// `osts` OSTs (0 when unknown). `None` means inherit.
pub fn auto(size: u64, osts: u32) -> Option<Layout> {
    let cap = |n: i32| if osts == 0 { n } else { n.min(osts as i32) };
    let count = match size {
        s if s < GIB => return None,
        s if s < 16 * GIB => cap(4),
        s if s < 256 * GIB => cap(8),
        _ => -1,
    };
    Some(Layout::Plain(Striping {
        stripe_size: 4 * MIB,
        stripe_count: count,
        pool: None,
    }))
}

/// Range size for parallel I/O into a file with this layout: `preferred`
/// rounded up to a multiple of the stripe size, so concurrent ranges never
/// share a stripe (and so never an OST object's extent lock).
pub fn aligned_block(preferred: u64, stripe_size: u64) -> u64 {
    if stripe_size == 0 {
        return preferred;
    }
    preferred.div_ceil(stripe_size).max(1) * stripe_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("inherit").unwrap(), StripePolicy::Inherit);
        assert_eq!(parse("auto").unwrap(), StripePolicy::Auto);
        assert_eq!(parse("mirror").unwrap(), StripePolicy::Mirror);
        assert_eq!(
            parse("count=4,size=4M,pool=flash").unwrap(),
            StripePolicy::Explicit(Layout::Plain(Striping {
                stripe_size: 4 * MIB,
                stripe_count: 4,
                pool: Some("flash".into())
            }))
        );
        match parse("pfl:64M/count=1,1G/count=4,eof/count=-1/size=4M").unwrap() {
            StripePolicy::Explicit(Layout::Composite(c)) => {
                assert_eq!(c.len(), 3);
                assert_eq!(c[2].end, LUSTRE_EOF);
                assert_eq!(c[2].striping.stripe_count, -1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_values_with_a_reason() {
        for (bad, why) in [
            ("count=4,size=100000", "64 KiB"),
            ("count=3000", "outside"),
            ("size=4G", "4 GiB"),
            ("pool=waytoolongpoolname", "pool"),
            ("pfl:64M/count=1", "eof"),
            ("colour=red", "unknown"),
            ("count=x", "number"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn auto_tiers() {
        assert_eq!(auto(100 * MIB, 16), None);
        let count = |s, n| match auto(s, n) {
            Some(Layout::Plain(st)) => st.stripe_count,
            other => panic!("{other:?}"),
        };
        assert_eq!(count(2 * GIB, 16), 4);
        assert_eq!(count(2 * GIB, 2), 2);
        assert_eq!(count(20 * GIB, 16), 8);
        assert_eq!(count(300 * GIB, 16), -1);
        assert_eq!(count(300 * GIB, 0), -1);
    }

    #[test]
    fn blocks_align_to_stripes() {
        assert_eq!(aligned_block(8 * MIB, 4 * MIB), 8 * MIB);
        assert_eq!(aligned_block(8 * MIB, 3 * MIB), 9 * MIB);
        assert_eq!(aligned_block(MIB, 4 * MIB), 4 * MIB);
        assert_eq!(aligned_block(8 * MIB, 0), 8 * MIB);
    }
}
