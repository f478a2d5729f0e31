//! Per-feed write locks. Lbasedb appends by reading a feed's size, growing
//! it, then writing at the old end, with no lock across the three steps: two
//! appends at once write the same rows, and one of them is lost. Everything
//! that changes a feed's size or structure (and every write, which races
//! with a resize) therefore takes its feed's lock for as long as the
//! upstream takes to answer; reads take none.
//!
//! `WriteLocks` is the seam: one process uses `InProcessLocks`; replicas
//! sharing one upstream take `PostgresLocks` (PostgreSQL advisory locks,
//! keyed by the feed's name), behind the same trait.

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
    /// The shared lock's database cannot be reached.
    #[error("the write lock cannot be taken: its database is unavailable")]
    Unavailable,
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
        Self { feeds: Arc::default(), timeout, queue }
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
                Arc::new(Entry { lock: Arc::default(), waiting: AtomicUsize::new(0) })
            })
            .clone()
    }

    /// Waits for `feed`'s lock; the guard releases it when dropped.
    pub async fn lock(&self, feed: &str) -> Result<FeedGuard, LockError> {
        let entry = self.entry(feed);
        let release =
            Release { feeds: self.feeds.clone(), feed: feed.to_owned(), entry: entry.clone() };
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
            Ok(held) => Ok(FeedGuard { held: Some(held), _release: release }),
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

/// Replicas' locks: PostgreSQL advisory locks, keyed by a digest of the
/// feed's name, so that two replicas never write one feed at once. A
/// replica first takes its own in-process lock (its queue bound, its
/// order), then the database's, on a connection of its own kept for locks:
/// a session-level advisory lock lives exactly as long as the connection
/// holding it, so one that cannot be released cleanly is closed, and a
/// replica that dies releases its locks with its connections.
pub struct PostgresLocks {
    local: InProcessLocks,
    url: String,
    timeout: Duration,
    /// Idle lock connections, reused.
    idle: Arc<Mutex<Vec<diesel::PgConnection>>>,
}

impl PostgresLocks {
    pub fn new(url: &str, timeout: Duration, queue: usize) -> Self {
        Self {
            local: InProcessLocks::new(timeout, queue),
            url: url.to_owned(),
            timeout,
            idle: Arc::default(),
        }
    }

    /// The advisory lock's key for a feed: the first 8 bytes of its name's
    /// SHA-256 (two feeds sharing one would only take turns).
    pub fn key(feed: &str) -> i64 {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(feed.as_bytes());
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    async fn lock(&self, feed: &str) -> Result<WriteGuard, LockError> {
        let started = std::time::Instant::now();
        let local = self.local.lock(feed).await?;
        let left = self.timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(LockError::Timeout);
        }
        let key = Self::key(feed);
        let (url, idle) = (self.url.clone(), self.idle.clone());
        let taken = tokio::task::spawn_blocking(move || {
            use diesel::Connection;
            use diesel::connection::SimpleConnection;
            let reused = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match reused {
                Some(conn) => conn,
                None => diesel::PgConnection::establish(&url).map_err(|e| e.to_string())?,
            };
            // lock_timeout bounds the wait for an advisory lock too.
            let ms = left.as_millis().clamp(1, i32::MAX as u128);
            match conn.batch_execute(&format!(
                "SET lock_timeout = {ms}; SELECT pg_advisory_lock({key}); SET lock_timeout = 0"
            )) {
                Ok(()) => Ok(Ok(conn)),
                // The connection is closed with what it may hold.
                Err(diesel::result::Error::DatabaseError(_, info))
                    if info.message().contains("lock timeout") =>
                {
                    Ok(Err(LockError::Timeout))
                }
                Err(err) => Err(err.to_string()),
            }
        })
        .await;
        match taken {
            Ok(Ok(Ok(conn))) => Ok(WriteGuard::new(Held {
                conn: Some(conn),
                key,
                idle: self.idle.clone(),
                _local: local,
            })),
            Ok(Ok(Err(err))) => Err(err),
            Ok(Err(err)) => {
                tracing::error!("cannot take a feed's write lock in PostgreSQL: {err}");
                Err(LockError::Unavailable)
            }
            Err(_) => Err(LockError::Unavailable),
        }
    }
}

impl WriteLocks for PostgresLocks {
    fn acquire<'a>(&'a self, feed: &'a str) -> BoxFuture<'a, Result<WriteGuard, LockError>> {
        Box::pin(self.lock(feed))
    }
}

/// A held advisory lock and this replica's lock on the same feed.
struct Held {
    conn: Option<diesel::PgConnection>,
    key: i64,
    idle: Arc<Mutex<Vec<diesel::PgConnection>>>,
    // Released after the advisory lock is given back (below).
    _local: FeedGuard,
}

impl Drop for Held {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let (key, idle) = (self.key, self.idle.clone());
        // Off the async worker: the release is a round trip. The next writer
        // of this replica may start waiting meanwhile; PostgreSQL hands it
        // the lock once released.
        let release = move || {
            use diesel::connection::SimpleConnection;
            match conn.batch_execute(&format!("SELECT pg_advisory_unlock({key})")) {
                Ok(()) => {
                    let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
                    if idle.len() < 64 {
                        idle.push(conn);
                    }
                }
                // Dropped: closing the connection releases the lock.
                Err(err) => tracing::warn!("releasing a feed's write lock: {err}"),
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(release)),
            Err(_) => release(),
        }
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
    use tokio::task::JoinHandle;

    use super::*;

    /// A task waiting for `key`, given the time to join its queue; it
    /// answers whether it got the lock.
    async fn queued(locks: &Arc<InProcessLocks>, key: &'static str) -> JoinHandle<bool> {
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock(key).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiter
    }

    #[tokio::test]
    async fn one_writer_per_feed_others_wait_and_entries_go() {
        let locks = Arc::new(InProcessLocks::new(Duration::from_millis(100), 8));
        let held = locks.lock("a").await.unwrap();
        // Another feed is independent.
        let other = locks.lock("b").await.unwrap();
        assert_eq!(locks.lock("a").await.err(), Some(LockError::Timeout));
        let waiter = queued(&locks, "a").await;
        drop(held);
        assert!(waiter.await.unwrap(), "released to the waiter");
        drop(other);
        assert_eq!(locks.in_use(), 0, "no entry outlives its users");
    }

    #[tokio::test]
    async fn the_queue_is_bounded() {
        let locks = Arc::new(InProcessLocks::new(Duration::from_secs(5), 1));
        let held = locks.lock("a").await.unwrap();
        let waiter = queued(&locks, "a").await;
        assert_eq!(locks.lock("a").await.err(), Some(LockError::QueueFull));
        drop(held);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_no_trace() {
        let locks = Arc::new(InProcessLocks::new(Duration::from_secs(5), 1));
        let held = locks.lock("a").await.unwrap();
        let waiter = queued(&locks, "a").await;
        waiter.abort();
        let _ = waiter.await;
        // Its place in the queue is free again.
        let again = queued(&locks, "a").await;
        drop(held);
        assert!(again.await.unwrap());
        assert_eq!(locks.in_use(), 0);
    }
}
