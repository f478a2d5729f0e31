//! Bytes in flight: how much all requests together may have the upstream
//! hold at once (`MAX_BYTES_IN_FLIGHT`). Each request is bounded alone
//! (`MAX_READ_BYTES`, `BODY_LIMIT`), but a few hundred connections of
//! bounded requests are still an unbounded sum: a request takes its share
//! before it is forwarded, and gives it back when its answer has been sent
//! (or dropped). Past the budget a request waits a moment, in order, then
//! is refused (503), rather than let the upstream run out of memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request waits for its share before it is refused.
pub const WAIT: Duration = Duration::from_secs(5);

/// Shares are counted in KiB, so that a `u32` of them spans 4 TiB.
const UNIT: u64 = 1024;

#[derive(Debug, Clone)]
pub struct Budget {
    shares: Arc<Semaphore>,
    /// The whole budget, in units: the most one request can take.
    total: u32,
    wait: Duration,
}

/// A request's share, given back when dropped.
#[derive(Debug, Default)]
pub struct Share(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// The budget stayed spent for longer than `WAIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too much data is being read and written at once (MAX_BYTES_IN_FLIGHT)")]
pub struct Exhausted;

impl Budget {
    pub fn new(bytes: u64) -> Self {
        let total = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).max(1);
        Self { shares: Arc::new(Semaphore::new(total as usize)), total, wait: WAIT }
    }

    /// Takes `bytes` of the budget (all of it, for a request larger than
    /// the whole: it then runs alone), waiting at most `WAIT`.
    pub async fn take(&self, bytes: u64) -> Result<Share, Exhausted> {
        if bytes == 0 {
            return Ok(Share(None));
        }
        let units = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).min(self.total);
        let acquire = self.shares.clone().acquire_many_owned(units);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => Ok(Share(Some(permit))),
            _ => Err(Exhausted),
        }
    }

    /// Bytes not taken now, for tests and metrics.
    pub fn available(&self) -> u64 {
        self.shares.available_permits() as u64 * UNIT
    }
}

/// A response body that keeps what its request holds (its share, its
/// place in flight) until the body has been sent, or dropped with its
/// client: a slow reader holds them as long as it reads.
pub struct KeepUntilSent<B, K> {
    body: B,
    _kept: K,
}

impl<B, K> KeepUntilSent<B, K> {
    pub fn new(body: B, kept: K) -> Self {
        Self { body, _kept: kept }
    }
}

impl<B: MessageBody + Unpin, K: Unpin> MessageBody for KeepUntilSent<B, K> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_wait_then_fail_and_come_back_when_dropped() {
        let budget = Budget { wait: Duration::from_millis(20), ..Budget::new(10 * UNIT) };
        let big = budget.take(8 * UNIT).await.unwrap();
        assert_eq!(budget.available(), 2 * UNIT);
        assert_eq!(budget.take(3 * UNIT).await.unwrap_err(), Exhausted);
        let small = budget.take(2 * UNIT).await.unwrap();
        drop(big);
        drop(small);
        assert_eq!(budget.available(), 10 * UNIT);
        // Larger than the whole budget: takes all of it.
        let all = budget.take(u64::MAX).await.unwrap();
        assert_eq!(budget.available(), 0);
        drop(all);
        assert!(budget.take(0).await.is_ok());
    }
}
