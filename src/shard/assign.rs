//! Deterministic assignment of a transfer plan to ranks.
//!
//! Every rank runs the same [`Assigner`] over the same plan in the same order
//! and so reaches the same answer without talking to the others. Whole files
//! go to the least-loaded rank (load = bytes plus a fixed per-file cost, so
//! many tiny files spread by count too); a file of at least `split_min` bytes
//! is cut into contiguous groups of whole blocks (stripe-aligned when the
//! blocks are), each group to the least-loaded rank — contiguous ranges per
//! rank, not interleaved, so each OST object sees few writers (mpifileutils'
//! lesson: static, contiguous chunks avoid Lustre lock contention).
//!
//! Memory is O(ranks); the plan is streamed. Because no whole item is larger
//! than `split_min` and no group larger than `size / ranks` rounded up to a
//! block, the final loads differ by at most one such item.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Load a file adds beyond its bytes (one request's worth of latency at
/// ~250 MB/s per stream: ~1 ms ≈ 256 KiB).
pub const FILE_COST: u64 = 256 << 10;
/// Default: files of at least this many bytes are split across ranks.
pub const SPLIT_MIN: u64 = 256 << 20;

/// A contiguous run of blocks `[first, end)` of one file, for one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// The rank.
    pub rank: usize,
    /// First block index.
    pub first: u64,
    /// One past the last block index.
    pub end: u64,
}

/// Who moves one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Share {
    /// One rank moves the whole file.
    Whole(usize),
    /// Several ranks move contiguous groups; the first group's rank owns the
    /// file (creates nothing, but verifies and renames it at the end).
    Split(Vec<Group>),
}

impl Share {
    /// The rank that finishes the file (rename, attributes).
    pub fn owner(&self) -> usize {
        match self {
            Share::Whole(r) => *r,
            Share::Split(g) => g.first().map_or(0, |g| g.rank),
        }
    }

    /// True when `rank` has any part of the file.
    pub fn involves(&self, rank: usize) -> bool {
        match self {
            Share::Whole(r) => *r == rank,
            Share::Split(g) => g.iter().any(|g| g.rank == rank),
        }
    }
}

/// The streaming assigner.
#[derive(Debug, Clone)]
pub struct Assigner {
    heap: BinaryHeap<Reverse<(u64, usize)>>,
    loads: Vec<u64>,
    bytes: Vec<u64>,
    requests: Vec<u64>,
    split_min: u64,
}

impl Assigner {
    /// An assigner for `ranks` ranks splitting files of `split_min` bytes or more.
    pub fn new(ranks: usize, split_min: u64) -> Assigner {
        let ranks = ranks.max(1);
        Assigner {
            heap: (0..ranks).map(|r| Reverse((0, r))).collect(),
            loads: vec![0; ranks],
            bytes: vec![0; ranks],
            requests: vec![0; ranks],
            split_min: split_min.max(1),
        }
    }

    fn take(&mut self, bytes: u64, requests: u64) -> usize {
        let Some(Reverse((load, rank))) = self.heap.pop() else {
            return 0;
        };
        let load = load + bytes + FILE_COST;
        self.loads[rank] = load;
        self.bytes[rank] += bytes;
        self.requests[rank] += requests;
        self.heap.push(Reverse((load, rank)));
        rank
    }

    /// Assigns the next file of the plan: `size` bytes moved in blocks of
    /// `block` bytes, `request` bytes per request (for the request count).
    pub fn assign(&mut self, size: u64, block: u64, request: u64) -> Share {
        let block = block.max(1);
        let ranks = self.loads.len() as u64;
        let count = size.div_ceil(block);
        let reqs = |bytes: u64| bytes.div_ceil(request.max(block)).max(1);
        if ranks == 1 || size < self.split_min || count < 2 {
            return Share::Whole(self.take(size, reqs(size)));
        }
        let per = count.div_ceil(ranks).max(1);
        let mut groups = Vec::new();
        let mut first = 0;
        while first < count {
            let end = (first + per).min(count);
            let bytes = (end * block).min(size) - first * block;
            let rank = self.take(bytes, reqs(bytes));
            groups.push(Group { rank, first, end });
            first = end;
        }
        Share::Split(groups)
    }

    /// Load per rank (bytes plus per-file cost) so far.
    pub fn loads(&self) -> &[u64] {
        &self.loads
    }

    /// Payload bytes per rank so far.
    pub fn bytes(&self) -> &[u64] {
        &self.bytes
    }

    /// Requests per rank so far (GETs or PUTs of data).
    pub fn requests(&self) -> &[u64] {
        &self.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn whole_files_balance_and_one_rank_takes_all() {
        let mut a = Assigner::new(1, SPLIT_MIN);
        assert_eq!(a.assign(10 * SPLIT_MIN, 8 * MIB, 32 * MIB), Share::Whole(0));
        let mut a = Assigner::new(4, SPLIT_MIN);
        let shares: Vec<_> = (0..8).map(|_| a.assign(MIB, 8 * MIB, 32 * MIB)).collect();
        assert_eq!(
            shares,
            [0, 1, 2, 3, 0, 1, 2, 3].map(Share::Whole).to_vec(),
            "ties go to the lowest rank"
        );
    }

    #[test]
    fn big_files_split_into_contiguous_groups_covering_every_block_once() {
        let mut a = Assigner::new(3, SPLIT_MIN);
        let size = 1000 * MIB + 5;
        let Share::Split(groups) = a.assign(size, 8 * MIB, 32 * MIB) else {
            panic!("not split")
        };
        let count = size.div_ceil(8 * MIB);
        let mut next = 0;
        for g in &groups {
            assert_eq!(g.first, next);
            assert!(g.end > g.first);
            next = g.end;
        }
        assert_eq!(next, count);
        let mut ranks: Vec<_> = groups.iter().map(|g| g.rank).collect();
        ranks.sort();
        assert_eq!(ranks, vec![0, 1, 2]);
        let (min, max) = (
            a.loads().iter().min().unwrap(),
            a.loads().iter().max().unwrap(),
        );
        assert!(max - min <= 8 * MIB * (count.div_ceil(3)));
    }

    #[test]
    fn same_plan_same_answer() {
        let sizes: Vec<u64> = (0..500).map(|i| (i * 7919 % 1000) * MIB + i).collect();
        let run = || {
            let mut a = Assigner::new(7, SPLIT_MIN);
            sizes
                .iter()
                .map(|&s| a.assign(s, 8 * MIB, 32 * MIB))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
