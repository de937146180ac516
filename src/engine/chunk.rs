//! Pure block arithmetic: block size per file, the ranges of a file, and
//! deterministic fixed-width block ids.

/// Most blocks one blob may have (service limit).
pub const MAX_BLOCKS: u64 = 50_000;
/// Largest block the service accepts (4000 MiB).
pub const MAX_BLOCK_SIZE: u64 = 4000 << 20;

/// The block size for a file of `size` bytes: `preferred`, doubled until the
/// file needs at most [`MAX_BLOCKS`] blocks (so it stays a multiple of
/// `preferred` and of any stripe size `preferred` is a multiple of).
pub fn block_size_for(size: u64, preferred: u64) -> u64 {
    let mut b = preferred.clamp(1, MAX_BLOCK_SIZE);
    while size.div_ceil(b) > MAX_BLOCKS && b < MAX_BLOCK_SIZE {
        b = (b * 2).min(MAX_BLOCK_SIZE);
    }
    b
}

/// `(offset, len)` of each block of a `size`-byte file.
pub fn ranges(size: u64, block: u64) -> impl Iterator<Item = (u64, u64)> {
    let block = block.max(1);
    (0..size.div_ceil(block)).map(move |i| {
        let off = i * block;
        (off, block.min(size - off))
    })
}

/// The id of block `index` for a file cut into `block`-byte blocks: 32
/// ASCII bytes, the file's `fingerprint` (16 hex digits: identity and
/// version of the source file), the block size in KiB (6 hex digits) and the
/// index (10 digits). Deterministic, so a rerun finds the blocks it already
/// staged in the service's uncommitted block list, and a changed file (new
/// fingerprint) never reuses a stale block; fixed width, as the service
/// requires within one blob.
pub fn block_id(fingerprint: u64, index: u64, block: u64) -> Vec<u8> {
    format!(
        "{fingerprint:016x}{:06x}{index:010}",
        (block >> 10) & 0xff_ffff
    )
    .into_bytes()
}

/// Identity and version of a local file: device, inode, size and mtime.
pub fn fingerprint(dev: u64, ino: u64, size: u64, mtime: i64, mtime_nsec: i64) -> u64 {
    let mut b = [0u8; 40];
    b[..8].copy_from_slice(&dev.to_le_bytes());
    b[8..16].copy_from_slice(&ino.to_le_bytes());
    b[16..24].copy_from_slice(&size.to_le_bytes());
    b[24..32].copy_from_slice(&mtime.to_le_bytes());
    b[32..].copy_from_slice(&mtime_nsec.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&b)
}

/// The tree hash: xxh3-128 over the concatenated little-endian xxh3-128 of
/// each block, or `None` when a block hash is missing.
pub fn tree_hash(blocks: &[Option<u128>]) -> Option<u128> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for b in blocks {
        h.update(&(*b)?.to_le_bytes());
    }
    Some(h.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_grows_past_50k_blocks() {
        assert_eq!(block_size_for(1 << 30, 8 << 20), 8 << 20);
        let huge = 1u64 << 42; // 4 TiB
        let b = block_size_for(huge, 8 << 20);
        assert!(huge.div_ceil(b) <= MAX_BLOCKS);
        assert_eq!(b % (8 << 20), 0);
        assert_eq!(block_size_for(0, 4096), 4096);
    }

    #[test]
    fn ranges_cover_exactly() {
        let r: Vec<_> = ranges(10, 4).collect();
        assert_eq!(r, vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(ranges(0, 4).count(), 0);
        assert_eq!(ranges(8, 4).count(), 2);
    }

    #[test]
    fn ids_fixed_width() {
        assert_eq!(block_id(0, 0, 8 << 20).len(), 32);
        assert_eq!(block_id(u64::MAX, 49_999, 4000 << 20).len(), 32);
        assert_ne!(block_id(9, 1, 8 << 20), block_id(9, 2, 8 << 20));
        assert_ne!(block_id(9, 1, 8 << 20), block_id(9, 1, 16 << 20));
        assert_ne!(block_id(9, 1, 8 << 20), block_id(8, 1, 8 << 20));
        assert_ne!(fingerprint(1, 2, 3, 4, 5), fingerprint(1, 2, 3, 4, 6));
    }
}
