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

/// The id of block `index` for a blob cut into `block`-byte blocks: 16 ASCII
/// bytes, the block size in KiB (6 hex digits) then the index (10 digits).
/// Deterministic, so a rerun can recognise blocks it already staged; fixed
/// width, as the service requires within one blob.
pub fn block_id(index: u64, block: u64) -> Vec<u8> {
    format!("{:06x}{:010}", (block >> 10) & 0xff_ffff, index).into_bytes()
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
        assert_eq!(block_id(0, 8 << 20).len(), 16);
        assert_eq!(block_id(49_999, 4000 << 20).len(), 16);
        assert_ne!(block_id(1, 8 << 20), block_id(2, 8 << 20));
        assert_ne!(block_id(1, 8 << 20), block_id(1, 16 << 20));
    }
}
