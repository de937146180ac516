//! Lustre layouts as bytes: encoding of `lov_user_md_v1`/`v3` and
//! `lov_comp_md_v1` (PFL) for `LL_IOC_LOV_SETSTRIPE` and the `lustre.lov`
//! xattr, decoding of what `fgetxattr`/`GETSTRIPE` return, and validation.
//!
//! Pure and safe: structs are built and read field by field at fixed
//! offsets (little endian, packed), re-derived from the Lustre 2.15 uapi
//! facts in `shared/specs/lustre.md` §2-3; no header is vendored.

/// `statfs.f_type` of a Lustre client mount.
pub const LL_SUPER_MAGIC: u32 = 0x0BD0_0BD0;
/// Plain layout, 32-byte header.
pub const LOV_USER_MAGIC_V1: u32 = 0x0BD1_0BD0;
/// Plain layout with a pool name, 48-byte header.
pub const LOV_USER_MAGIC_V3: u32 = 0x0BD3_0BD0;
/// Composite (PFL) layout.
pub const LOV_USER_MAGIC_COMP_V1: u32 = 0x0BD6_0BD0;
/// RAID0 striping.
pub const LOV_PATTERN_RAID0: u32 = 0x1;
/// The file's data is released to the HSM backend (e.g. an unrestored blob import).
pub const LOV_PATTERN_F_RELEASED: u32 = 0x8000_0000;
/// "Let the MDS choose" for the stripe offset, and "all OSTs" for the count.
pub const LOV_ALL: u16 = 0xFFFF;
/// Extent end meaning end of file.
pub const LUSTRE_EOF: u64 = u64::MAX;
/// Stripe sizes are multiples of this.
pub const LOV_MIN_STRIPE_SIZE: u64 = 65536;
/// Largest stripe count a client may ask for.
pub const LOV_MAX_STRIPE_COUNT: i32 = 2000;
/// Longest pool name.
pub const LOV_MAXPOOLNAME: usize = 15;
/// `lcme_flags` bit: the component has objects.
pub const LCME_FL_INIT: u32 = 0x10;

/// A plain RAID0 layout (or one PFL component's striping).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Striping {
    /// Stripe size in bytes; 0 = file-system default.
    pub stripe_size: u64,
    /// Stripe count; 0 = default, -1 = all OSTs.
    pub stripe_count: i32,
    /// OST pool.
    pub pool: Option<String>,
}

/// One PFL component: covers `[previous end, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// Extent end (exclusive), or [`LUSTRE_EOF`].
    pub end: u64,
    /// Its striping.
    pub striping: Striping,
}

/// A layout to create, or one read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One striping for the whole file.
    Plain(Striping),
    /// Progressive file layout: contiguous components from 0 to EOF.
    Composite(Vec<Component>),
}

/// A layout read from a file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The layout (stripe offsets and objects dropped).
    pub layout: Layout,
    /// The released flag was set on some component (HSM-released file).
    pub released: bool,
}

fn put_u16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

impl Striping {
    /// Size of the encoded `lov_user_md` (no objects).
    pub fn encoded_len(&self) -> usize {
        if self.pool.is_some() {
            48
        } else {
            32
        }
    }

    /// Validates as `llapi_stripe_param_verify` does.
    pub fn validate(&self) -> Result<(), String> {
        if !self.stripe_size.is_multiple_of(LOV_MIN_STRIPE_SIZE) {
            return Err(format!(
                "stripe size {} is not a multiple of 64 KiB",
                self.stripe_size
            ));
        }
        if self.stripe_size >= 1 << 32 {
            return Err(format!(
                "stripe size {} must be below 4 GiB",
                self.stripe_size
            ));
        }
        if !(-1..=LOV_MAX_STRIPE_COUNT).contains(&self.stripe_count) {
            return Err(format!(
                "stripe count {} is outside [-1, {LOV_MAX_STRIPE_COUNT}]",
                self.stripe_count
            ));
        }
        if let Some(p) = &self.pool {
            let name = p.split_once('.').map_or(p.as_str(), |(_, n)| n);
            if name.is_empty() || name.len() > LOV_MAXPOOLNAME {
                return Err(format!(
                    "pool name '{p}' must be 1 to {LOV_MAXPOOLNAME} characters"
                ));
            }
        }
        Ok(())
    }

    /// Encodes a V1 (or V3 with a pool) `lov_user_md` with offset -1 and no objects.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        let magic = if self.pool.is_some() {
            LOV_USER_MAGIC_V3
        } else {
            LOV_USER_MAGIC_V1
        };
        put_u32(&mut b, magic);
        put_u32(&mut b, LOV_PATTERN_RAID0);
        b.extend_from_slice(&[0u8; 16]); // lmm_oi
        put_u32(&mut b, self.stripe_size as u32);
        put_u16(&mut b, self.stripe_count as i16 as u16);
        put_u16(&mut b, LOV_ALL); // stripe_offset: MDS chooses
        if let Some(p) = &self.pool {
            let name = p.split_once('.').map_or(p.as_str(), |(_, n)| n);
            let mut pool = [0u8; 16];
            for (d, s) in pool.iter_mut().zip(name.bytes().take(LOV_MAXPOOLNAME)) {
                *d = s;
            }
            b.extend_from_slice(&pool);
        }
        b
    }
}

impl Layout {
    /// Validates the whole layout (PFL rules of `llapi_layout_sanity`).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Layout::Plain(s) => s.validate(),
            Layout::Composite(comps) => {
                if comps.is_empty() {
                    return Err("a PFL layout needs at least one component".into());
                }
                let mut start = 0u64;
                for (i, c) in comps.iter().enumerate() {
                    c.striping.validate()?;
                    if c.end <= start {
                        return Err(format!(
                            "PFL component {} ends at {} before it starts",
                            i + 1,
                            c.end
                        ));
                    }
                    if c.end != LUSTRE_EOF {
                        if c.end % LOV_MIN_STRIPE_SIZE != 0 {
                            return Err(format!(
                                "PFL component end {} is not a multiple of 64 KiB",
                                c.end
                            ));
                        }
                        if c.striping.stripe_size != 0 && c.end % c.striping.stripe_size != 0 {
                            return Err(format!(
                                "PFL component end {} is not a multiple of its stripe size {}",
                                c.end, c.striping.stripe_size
                            ));
                        }
                    }
                    start = c.end;
                }
                if start != LUSTRE_EOF {
                    return Err("the last PFL component must extend to eof".into());
                }
                Ok(())
            }
        }
    }

    /// Encodes for `LL_IOC_LOV_SETSTRIPE` (plain) or the `lustre.lov` xattr (composite).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Layout::Plain(s) => s.encode(),
            Layout::Composite(comps) => {
                let n = comps.len();
                let bodies: Vec<Vec<u8>> = comps.iter().map(|c| c.striping.encode()).collect();
                let total = 32 + 48 * n + bodies.iter().map(Vec::len).sum::<usize>();
                let mut b = Vec::with_capacity(total);
                put_u32(&mut b, LOV_USER_MAGIC_COMP_V1);
                put_u32(&mut b, total as u32);
                put_u32(&mut b, 0); // layout_gen
                put_u16(&mut b, 0); // flags
                put_u16(&mut b, n as u16);
                put_u16(&mut b, 0); // mirror_count
                b.extend_from_slice(&[0u8; 14]); // padding to 32
                let mut offset = 32 + 48 * n;
                let mut start = 0u64;
                for (c, body) in comps.iter().zip(&bodies) {
                    put_u32(&mut b, 0); // id
                    put_u32(&mut b, 0); // flags
                    put_u64(&mut b, start);
                    put_u64(&mut b, c.end);
                    put_u32(&mut b, offset as u32);
                    put_u32(&mut b, body.len() as u32);
                    put_u32(&mut b, 0); // layout_gen
                    put_u64(&mut b, 0); // timestamp
                    put_u32(&mut b, 0); // padding
                    offset += body.len();
                    start = c.end;
                }
                for body in bodies {
                    b.extend_from_slice(&body);
                }
                b
            }
        }
    }

    /// The stripe size that governs I/O at `offset` (0 when the default applies).
    pub fn stripe_size_at(&self, offset: u64) -> u64 {
        match self {
            Layout::Plain(s) => s.stripe_size,
            Layout::Composite(comps) => {
                let mut start = 0;
                for c in comps {
                    if offset >= start && offset < c.end {
                        return c.striping.stripe_size;
                    }
                    start = c.end;
                }
                0
            }
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, String> {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or_else(|| format!("layout truncated at byte {o}"))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32, String> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| format!("layout truncated at byte {o}"))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64, String> {
    b.get(o..o + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| format!("layout truncated at byte {o}"))
}

fn decode_plain(b: &[u8]) -> Result<(Striping, bool), String> {
    let magic = u32_at(b, 0)?;
    let pattern = u32_at(b, 4)?;
    let stripe_size = u32_at(b, 24)? as u64;
    let count = u16_at(b, 28)?;
    let pool = match magic {
        LOV_USER_MAGIC_V1 => None,
        LOV_USER_MAGIC_V3 | 0x0BD5_0BD0 => {
            let raw = b.get(32..48).ok_or("V3 layout truncated")?;
            let end = raw.iter().position(|&c| c == 0).unwrap_or(16);
            let name = String::from_utf8_lossy(&raw[..end]).into_owned();
            (!name.is_empty()).then_some(name)
        }
        other => return Err(format!("unknown layout magic 0x{other:08x}")),
    };
    Ok((
        Striping {
            stripe_size,
            stripe_count: if count == LOV_ALL { -1 } else { count as i32 },
            pool,
        },
        pattern & LOV_PATTERN_F_RELEASED != 0,
    ))
}

/// Decodes a layout as returned by `fgetxattr("lustre.lov")` or `GETSTRIPE`.
pub fn decode(b: &[u8]) -> Result<Decoded, String> {
    match u32_at(b, 0)? {
        LOV_USER_MAGIC_COMP_V1 => {
            let size = u32_at(b, 4)? as usize;
            if size > b.len() {
                return Err(format!(
                    "composite layout claims {size} bytes, has {}",
                    b.len()
                ));
            }
            let n = u16_at(b, 14)? as usize;
            let mut comps = Vec::with_capacity(n.min(1024));
            let mut released = false;
            for i in 0..n {
                let e = 32 + 48 * i;
                let end = u64_at(b, e + 16)?;
                let off = u32_at(b, e + 24)? as usize;
                let len = u32_at(b, e + 28)? as usize;
                let body = b
                    .get(off..off.saturating_add(len))
                    .ok_or_else(|| format!("component {i} body out of range"))?;
                let (striping, rel) = decode_plain(body)?;
                released |= rel;
                comps.push(Component { end, striping });
            }
            Ok(Decoded {
                layout: Layout::Composite(comps),
                released,
            })
        }
        _ => {
            let (s, released) = decode_plain(b)?;
            Ok(Decoded {
                layout: Layout::Plain(s),
                released,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The golden PFL blob from shared/specs/lustre.md (appendix), built in C
    /// from the Lustre 2.15.5 header structs.
    const GOLDEN: &str = concat!(
        "d00bd60b1001000000000000000003000000000000000000000000000000000000000000000000000000000000000000",
        "0000000400000000b0000000200000000000000000000000000000000000000000000000000000000000000400000000",
        "0000004000000000d0000000200000000000000000000000000000000000000000000000000000000000004000000000",
        "fffffffffffffffff00000002000000000000000000000000000000000000000d00bd10b010000000000000000000000",
        "0000000000000000000000000100ffffd00bd10b0100000000000000000000000000000000000000000000000400ffff",
        "d00bd10b010000000000000000000000000000000000000000000000ffffffff",
    );

    fn golden_layout() -> Layout {
        let c = |end, count| Component {
            end,
            striping: Striping {
                stripe_size: 0,
                stripe_count: count,
                pool: None,
            },
        };
        Layout::Composite(vec![c(64 * MIB, 1), c(1 << 30, 4), c(LUSTRE_EOF, -1)])
    }

    #[test]
    fn pfl_matches_golden_vector_byte_for_byte() {
        let b = golden_layout().encode();
        assert_eq!(b.len(), 272);
        assert_eq!(hex(&b), GOLDEN);
        let d = decode(&b).unwrap();
        assert_eq!(d.layout, golden_layout());
        assert!(!d.released);
    }

    #[test]
    fn plain_v1_and_v3_offsets() {
        let s = Striping {
            stripe_size: 4 * MIB,
            stripe_count: 4,
            pool: None,
        };
        let b = s.encode();
        assert_eq!(b.len(), 32);
        assert_eq!(u32_at(&b, 0).unwrap(), LOV_USER_MAGIC_V1);
        assert_eq!(u32_at(&b, 4).unwrap(), LOV_PATTERN_RAID0);
        assert_eq!(u32_at(&b, 24).unwrap(), 4 << 20);
        assert_eq!(u16_at(&b, 28).unwrap(), 4);
        assert_eq!(u16_at(&b, 30).unwrap(), 0xFFFF);
        let v3 = Striping {
            stripe_size: MIB,
            stripe_count: -1,
            pool: Some("lustre.flash".into()),
        };
        let b = v3.encode();
        assert_eq!(b.len(), 48);
        assert_eq!(u32_at(&b, 0).unwrap(), LOV_USER_MAGIC_V3);
        assert_eq!(u16_at(&b, 28).unwrap(), 0xFFFF);
        assert_eq!(&b[32..37], b"flash");
        assert!(b[37..48].iter().all(|&x| x == 0));
        let d = decode(&b).unwrap();
        assert_eq!(
            d.layout,
            Layout::Plain(Striping {
                stripe_size: MIB,
                stripe_count: -1,
                pool: Some("flash".into())
            })
        );
    }

    #[test]
    fn validation_table() {
        let s = |size, count, pool: Option<&str>| Striping {
            stripe_size: size,
            stripe_count: count,
            pool: pool.map(str::to_string),
        };
        assert!(
            s(0, 0, None).validate().is_ok(),
            "all defaults (sanity 27d)"
        );
        assert!(s(64 << 10, 1, None).validate().is_ok());
        assert!(s(4 * MIB, -1, Some("p")).validate().is_ok());
        assert!(
            s(100_000, 1, None).validate().is_err(),
            "not 64 KiB aligned (sanity 27f)"
        );
        assert!(s(4 << 30, 1, None).validate().is_err(), "4 GiB");
        assert!(s(MIB, 2001, None).validate().is_err());
        assert!(s(MIB, -2, None).validate().is_err());
        assert!(s(MIB, 1, Some("sixteen_chars_xx")).validate().is_err());
        let comp = |ends: &[(u64, u64)]| {
            Layout::Composite(
                ends.iter()
                    .map(|&(end, size)| Component {
                        end,
                        striping: s(size, 1, None),
                    })
                    .collect(),
            )
        };
        assert!(comp(&[(64 * MIB, 0), (LUSTRE_EOF, 0)]).validate().is_ok());
        assert!(comp(&[(64 * MIB, 0), (32 * MIB, 0), (LUSTRE_EOF, 0)])
            .validate()
            .is_err());
        assert!(comp(&[(64 * MIB, 0)]).validate().is_err(), "must reach eof");
        assert!(
            comp(&[(MIB, 4 * MIB), (LUSTRE_EOF, 0)]).validate().is_err(),
            "sanity-pfl 0d"
        );
        assert!(comp(&[(100_000, 0), (LUSTRE_EOF, 0)]).validate().is_err());
    }

    #[test]
    fn decode_reads_objects_and_released_flag() {
        // A V1 layout as read back: 2 objects after the header, released bit set.
        let mut b = Striping {
            stripe_size: MIB,
            stripe_count: 2,
            pool: None,
        }
        .encode();
        b[4..8].copy_from_slice(&(LOV_PATTERN_RAID0 | LOV_PATTERN_F_RELEASED).to_le_bytes());
        b.extend_from_slice(&[7u8; 48]);
        let d = decode(&b).unwrap();
        assert!(d.released);
        assert!(decode(&[1, 2, 3]).is_err());
        assert!(decode(&0xdeadbeefu32.to_le_bytes().repeat(8)).is_err());
    }

    #[test]
    fn stripe_size_at_offsets() {
        let l = Layout::Composite(vec![
            Component {
                end: 64 * MIB,
                striping: Striping {
                    stripe_size: MIB,
                    stripe_count: 1,
                    pool: None,
                },
            },
            Component {
                end: LUSTRE_EOF,
                striping: Striping {
                    stripe_size: 4 * MIB,
                    stripe_count: -1,
                    pool: None,
                },
            },
        ]);
        assert_eq!(l.stripe_size_at(0), MIB);
        assert_eq!(l.stripe_size_at(64 * MIB), 4 * MIB);
    }
}
