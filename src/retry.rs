//! The one retry policy for every storage request.
//!
//! Owns: which failures are retried, how long to wait, and the retry counter
//! that the summary reports. Exponential backoff with decorrelated jitter
//! (object_store's choice: it spreads synchronized clients apart), bounded by
//! count and by total time (kept under five minutes so that a token fetched at
//! the start is still valid), `Retry-After` honoured, never retried on
//! authentication or permission errors. The SDK's own retry policy is turned
//! off so that this is the only one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::store::Error;

/// Retry limits. Every default has a reason next to it.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Attempts after the first: 10, enough to ride out a throttling burst.
    pub max_retries: u32,
    /// Total time spent retrying one request: 180 s, below token lifetimes.
    pub max_elapsed: Duration,
    /// First backoff: 100 ms, on the order of one Azure request.
    pub initial: Duration,
    /// Longest single backoff: 15 s.
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 10,
            max_elapsed: Duration::from_secs(180),
            initial: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
        }
    }
}

/// Counts retries across the whole run, for the summary.
#[derive(Debug, Default)]
pub struct RetryCounter(AtomicU64);

impl RetryCounter {
    /// Retries so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Adds `n` retries counted elsewhere (another rank's).
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Next backoff with decorrelated jitter: uniform in [initial, 3 × previous], capped.
pub fn next_backoff(cfg: &RetryConfig, previous: Duration, rng: &mut impl Rng) -> Duration {
    let lo = cfg.initial.as_secs_f64();
    let hi = (previous.as_secs_f64() * 3.0).max(lo * 1.000_001);
    let pick = rng.gen_range(lo..hi);
    Duration::from_secs_f64(pick.min(cfg.max_backoff.as_secs_f64()))
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the
/// limits are reached. `what` names the request in log lines.
pub async fn retry<T, F, Fut>(
    cfg: &RetryConfig,
    counter: &RetryCounter,
    what: &str,
    mut op: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    retry_with(cfg, counter, what, (), |()| {
        let attempt = op();
        async move { ((), attempt.await) }
    })
    .await
    .1
}

/// Like [`retry`], threading `state` (a reusable buffer, say) through every
/// attempt and handing it back at the end, whatever the outcome.
pub async fn retry_with<S, T, F, Fut>(
    cfg: &RetryConfig,
    counter: &RetryCounter,
    what: &str,
    mut state: S,
    mut op: F,
) -> (S, Result<T, Error>)
where
    F: FnMut(S) -> Fut,
    Fut: Future<Output = (S, Result<T, Error>)>,
{
    let start = Instant::now();
    let mut backoff = cfg.initial;
    let mut attempt = 0u32;
    loop {
        let (s, result) = op(state).await;
        state = s;
        match result {
            Ok(v) => return (state, Ok(v)),
            Err(e) if e.is_retryable() && attempt < cfg.max_retries => {
                attempt += 1;
                backoff = next_backoff(cfg, backoff, &mut rand::thread_rng());
                let wait = e
                    .retry_after()
                    .unwrap_or(backoff)
                    .min(Duration::from_secs(60));
                if start.elapsed() + wait > cfg.max_elapsed {
                    return (state, Err(e));
                }
                counter.0.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{what}: {e}; backing off for {:.2} s, retry {attempt} of {}",
                    wait.as_secs_f64(),
                    cfg.max_retries
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => return (state, Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_stays_within_bounds() {
        let cfg = RetryConfig::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = cfg.initial;
        for _ in 0..100 {
            b = next_backoff(&cfg, b, &mut rng);
            assert!(b >= cfg.initial && b <= cfg.max_backoff, "{b:?}");
        }
    }

    #[tokio::test]
    async fn retries_transient_then_succeeds_and_counts() {
        let cfg = RetryConfig {
            initial: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            ..Default::default()
        };
        let counter = RetryCounter::default();
        let mut calls = 0;
        let r: Result<u32, Error> = retry(&cfg, &counter, "test", || {
            calls += 1;
            let c = calls;
            async move {
                if c < 3 {
                    Err(Error::Transient {
                        op: "get".into(),
                        detail: "503".into(),
                        retry_after: Some(Duration::from_millis(1)),
                    })
                } else {
                    Ok(c)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(counter.get(), 2);
    }

    #[tokio::test]
    async fn never_retries_auth() {
        let cfg = RetryConfig::default();
        let counter = RetryCounter::default();
        let mut calls = 0;
        let r: Result<(), Error> = retry(&cfg, &counter, "test", || {
            calls += 1;
            async {
                Err(Error::Auth {
                    target: "a/c".into(),
                    status: 403,
                    code: "AuthenticationFailed".into(),
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
        assert_eq!(counter.get(), 0);
    }
}
