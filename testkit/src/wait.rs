//! Polling until a condition holds, for tests and benchmarks.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Polls `f` every `every` until it yields a value; fails after `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > limit {
            bail!("{what}: not reached within {limit:?}");
        }
        tokio::time::sleep(every).await;
    }
}
