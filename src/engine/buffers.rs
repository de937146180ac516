//! Transfer buffers under the memory budget, recycled through a pool.
//!
//! A [`Buffer`] exists only while it holds a permit of the [`Budget`]'s
//! semaphore (counted in 4 KiB pages), so the bytes in flight never exceed
//! `--max-memory`. Block-sized buffers go back to a bounded pool when dropped:
//! reusing them avoids a fresh zeroed mapping (page faults, `munmap`) per
//! block, and keeps the allocator from scattering large blocks over per-thread
//! arenas, which inflated peak RSS before the pool existed.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Below this size a buffer is allocated directly (small-file fast path).
const POOL_MIN: usize = 256 << 10;

const PAGE: u64 = 4096;

#[derive(Debug)]
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    block: usize,
    max_free: usize,
}

/// The memory budget: a semaphore counted in 4 KiB pages plus a buffer pool.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    pages: u32,
    pool: Arc<Pool>,
}

impl Budget {
    /// A budget of `bytes` (at least one `block`), pooling `block`-sized buffers.
    pub fn new(bytes: u64, block: u64) -> Self {
        let pages = (bytes.max(block) / PAGE).clamp(1, u32::MAX as u64 / 2) as u32;
        Budget {
            sem: Arc::new(Semaphore::new(pages as usize)),
            pages,
            pool: Arc::new(Pool {
                free: Mutex::new(Vec::new()),
                block: block as usize,
                max_free: (bytes.max(block) / block.max(1)) as usize,
            }),
        }
    }

    /// Waits until all of `lens` may be held at once, then returns one buffer
    /// per length. Taking the whole set in one acquisition means two callers
    /// can never each hold part of what they need and wait for the other.
    pub async fn buffers(&self, lens: &[usize]) -> Vec<Buffer> {
        let pages: Vec<u64> = lens
            .iter()
            .map(|&l| (l as u64).div_ceil(PAGE).max(1))
            .collect();
        let total = pages.iter().sum::<u64>().min(self.pages as u64) as u32;
        let mut permit = Arc::clone(&self.sem).acquire_many_owned(total).await.ok();
        let mut left = total as u64;
        lens.iter()
            .zip(pages)
            .map(|(&len, p)| {
                let take = p.min(left);
                left -= take;
                let part = permit.as_mut().and_then(|all| {
                    if take as usize >= all.num_permits() {
                        None
                    } else {
                        all.split(take as usize)
                    }
                });
                // The last buffer keeps whatever remains of the permit.
                let part = part.or_else(|| if left == 0 { permit.take() } else { None });
                self.make(len, part)
            })
            .collect()
    }

    /// Waits until `len` bytes may be held, then returns a buffer of `len`
    /// bytes (contents unspecified). A request larger than the whole budget
    /// waits for the whole budget.
    pub async fn buffer(&self, len: usize) -> Buffer {
        let want = ((len as u64).div_ceil(PAGE).max(1)).min(self.pages as u64) as u32;
        let permit = Arc::clone(&self.sem).acquire_many_owned(want).await.ok();
        self.make(len, permit)
    }

    /// The largest number of `block`-byte buffers one caller should take at
    /// once so that at least two such sets fit in the budget.
    pub fn max_set(&self, block: u64) -> usize {
        let blocks = (self.pages as u64 * PAGE) / block.max(1);
        (blocks / 2).max(1) as usize
    }

    fn make(&self, len: usize, permit: Option<OwnedSemaphorePermit>) -> Buffer {
        let pooled = len >= POOL_MIN && len <= self.pool.block;
        let data = if pooled {
            let recycled = self.pool.free.lock().ok().and_then(|mut f| f.pop());
            recycled.unwrap_or_else(|| vec![0u8; self.pool.block])
        } else {
            vec![0u8; len]
        };
        Buffer {
            data,
            len,
            pool: pooled.then(|| Arc::clone(&self.pool)),
            _permit: permit,
        }
    }
}

/// A buffer counted against the budget; derefs to exactly the requested length.
#[derive(Debug)]
pub struct Buffer {
    data: Vec<u8>,
    len: usize,
    pool: Option<Arc<Pool>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.data[..self.len]
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if let Ok(mut free) = pool.free.lock() {
                if free.len() < pool.max_free {
                    free.push(std::mem::take(&mut self.data));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sets_are_taken_whole_so_callers_cannot_deadlock() {
        let b = Budget::new(3 << 20, 1 << 20);
        assert_eq!(b.max_set(1 << 20), 1);
        let mut waiters = Vec::new();
        for _ in 0..4 {
            let b = b.clone();
            waiters.push(tokio::spawn(async move {
                let set = b.buffers(&[1 << 20, 1 << 20]).await;
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                set.len()
            }));
        }
        for w in waiters {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), w)
                .await
                .expect("no deadlock")
                .unwrap();
            assert_eq!(n, 2);
        }
        // A set larger than the whole budget is granted as the whole budget.
        let big = b.buffers(&[2 << 20, 2 << 20]).await;
        assert_eq!(big.iter().map(|x| x.len()).sum::<usize>(), 4 << 20);
        drop(big);
        assert_eq!(
            b.buffers(&[1 << 20; 3]).await.len(),
            3,
            "every permit came back"
        );
    }

    #[tokio::test]
    async fn budget_blocks_when_exhausted_and_recycles() {
        let b = Budget::new(1 << 20, 512 << 10);
        let first = b.buffer(512 << 10).await;
        let ptr = first.as_ptr();
        let _second = b.buffer(300 << 10).await;
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.buffer(512 << 10).await.as_ptr() as usize });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "the budget is spent");
        drop(first);
        assert_eq!(
            waiter.await.unwrap(),
            ptr as usize,
            "the pooled buffer was reused"
        );
        // Larger than the whole budget: granted as the whole budget.
        drop(_second);
        let big = b.buffer(4 << 20).await;
        assert_eq!(big.len(), 4 << 20);
        let small = Budget::new(1 << 20, 512 << 10).buffer(10).await;
        assert_eq!(small.len(), 10);
    }
}
