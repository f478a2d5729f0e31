//! Per-feed write locks. Lbasedb appends by reading a feed's size, growing
//! it, then writing at the old end, with no lock across the three steps: two
//! appends at once write the same rows, and one of them is lost. Everything
//! that changes a feed's size or structure (and every write, which races
//! with a resize) therefore takes its feed's lock for as long as the
//! upstream takes to answer; reads take none.
//!
//! `WriteLocks` is the seam: one process uses `InProcessLocks`; replicas
//! sharing one upstream need one lock for all of them (PostgreSQL advisory
//! locks, keyed by the feed's name), behind the same trait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::OwnedMutexGuard;

/// Held while a feed is being written; dropping it releases the lock,
/// whether the request finished, failed, or its client hung up.
pub struct WriteGuard(#[allow(dead_code)] Box<dyn Send>);

impl WriteGuard {
    pub fn new(held: impl Send + 'static) -> Self {
        Self(Box::new(held))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// As many requests as the queue holds already wait for this feed.
    #[error("too many writes are waiting for this feed")]
    QueueFull,
    /// The lock was not free within the timeout.
    #[error("the feed stayed locked for longer than the write-lock timeout")]
    Timeout,
}

pub trait WriteLocks: Send + Sync + 'static {
    /// Waits for `feed`'s lock (within the implementation's bounds).
    fn acquire<'a>(&'a self, feed: &'a str) -> BoxFuture<'a, Result<WriteGuard, LockError>>;
}

/// One process's locks: a tokio mutex per feed, made on first use and
/// dropped when nobody holds or waits for it.
pub struct InProcessLocks {
    feeds: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
    timeout: Duration,
    queue: usize,
}

struct Entry {
    lock: Arc<tokio::sync::Mutex<()>>,
    waiting: AtomicUsize,
}

impl InProcessLocks {
    /// Waits at most `timeout` for a lock, with at most `queue` requests
    /// waiting per feed.
    pub fn new(timeout: Duration, queue: usize) -> Self {
        Self {
            feeds: Arc::default(),
            timeout,
            queue,
        }
    }

    /// Waits as long as it takes, with no queue bound (the embedded server,
    /// behind the proxy's own bounds).
    pub fn unbounded() -> Self {
        Self::new(Duration::MAX, usize::MAX)
    }

    fn entry(&self, feed: &str) -> Arc<Entry> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds
            .entry(feed.to_owned())
            .or_insert_with(|| {
                Arc::new(Entry {
                    lock: Arc::default(),
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    /// Waits for `feed`'s lock; the guard releases it when dropped.
    pub async fn lock(&self, feed: &str) -> Result<FeedGuard, LockError> {
        let entry = self.entry(feed);
        let release = Release {
            feeds: self.feeds.clone(),
            feed: feed.to_owned(),
            entry: entry.clone(),
        };
        // Counted down when the wait ends, however it ends (a client that
        // hangs up drops this future mid-wait).
        let waiting = Waiting(&entry.waiting);
        if entry.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            return Err(LockError::QueueFull);
        }
        let acquired = if self.timeout == Duration::MAX {
            Ok(entry.lock.clone().lock_owned().await)
        } else {
            tokio::time::timeout(self.timeout, entry.lock.clone().lock_owned()).await
        };
        drop(waiting);
        match acquired {
            Ok(held) => Ok(FeedGuard {
                held: Some(held),
                _release: release,
            }),
            Err(_) => Err(LockError::Timeout),
        }
    }

    /// Feeds with a lock in use (held or waited for), for tests.
    pub fn in_use(&self) -> usize {
        self.feeds.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl WriteLocks for InProcessLocks {
    fn acquire<'a>(&'a self, feed: &'a str) -> BoxFuture<'a, Result<WriteGuard, LockError>> {
        Box::pin(async move { self.lock(feed).await.map(WriteGuard::new) })
    }
}

struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A held feed lock.
pub struct FeedGuard {
    held: Option<OwnedMutexGuard<()>>,
    // Dropped after `held` (fields drop in order): the entry is removed only
    // once the lock is free.
    _release: Release,
}

impl Drop for FeedGuard {
    fn drop(&mut self) {
        self.held.take();
    }
}

/// Removes a feed's entry when the last user of it is gone, so the map
/// holds only feeds in use.
struct Release {
    feeds: Arc<Mutex<HashMap<String, Arc<Entry>>>>,
    feed: String,
    entry: Arc<Entry>,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and ours: nobody else holds or waits.
        if Arc::strong_count(&self.entry) == 2 {
            feeds.remove(&self.feed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_writer_per_feed_others_wait_and_entries_go() {
        let locks = Arc::new(InProcessLocks::new(Duration::from_millis(100), 8));
        let held = locks.lock("a").await.unwrap();
        // Another feed is independent.
        let other = locks.lock("b").await.unwrap();
        assert_eq!(locks.lock("a").await.err(), Some(LockError::Timeout));
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("a").await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(waiter.await.unwrap(), "released to the waiter");
        drop(other);
        assert_eq!(locks.in_use(), 0, "no entry outlives its users");
    }

    #[tokio::test]
    async fn the_queue_is_bounded() {
        let locks = Arc::new(InProcessLocks::new(Duration::from_secs(5), 1));
        let held = locks.lock("a").await.unwrap();
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("a").await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(locks.lock("a").await.err(), Some(LockError::QueueFull));
        drop(held);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_no_trace() {
        let locks = Arc::new(InProcessLocks::new(Duration::from_secs(5), 1));
        let held = locks.lock("a").await.unwrap();
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("a").await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter.abort();
        let _ = waiter.await;
        // Its place in the queue is free again.
        let again = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("a").await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(again.await.unwrap());
        assert_eq!(locks.in_use(), 0);
    }
}
