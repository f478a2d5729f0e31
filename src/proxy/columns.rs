//! The columns of each feed, as the upstream lists them, kept briefly (and
//! its size, more briefly still):
//! what a read costs in bytes depends on the widths of the columns it
//! names, and asking the upstream on every read would add a round trip to
//! each. A feed's entry is dropped when a request through the proxy
//! changes its columns (or the feed), and lives at most `TTL` otherwise
//! (a column changed on the upstream directly is seen within that); a read
//! naming a column the entry does not know reads the list afresh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use super::upstream::{Col, Upstream};

/// How stale a feed's columns may be when changed behind the proxy's back.
pub const TTL: Duration = Duration::from_secs(5);

/// How stale a feed's size may be when a grant's window counts rows from
/// its end (`auth::grant`): appends through this proxy drop it at once;
/// rows appended elsewhere (another replica, the upstream directly) move
/// the window within this.
pub const SIZE_TTL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Columns {
    cols: Cache<String, Arc<Vec<Col>>>,
    sizes: Cache<String, Option<u64>>,
    /// Raised by every `forget`: a size read while a write was under way
    /// is not kept (it may be the size from before the write).
    epoch: Arc<AtomicU64>,
}

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Columns")
    }
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            cols: Cache::builder().max_capacity(10_000).time_to_live(TTL).build(),
            sizes: Cache::builder().max_capacity(10_000).time_to_live(SIZE_TTL).build(),
            epoch: Arc::default(),
        }
    }
}

impl Columns {
    /// `feed`'s columns, with every one of `named` among them if the
    /// upstream has it; empty when the feed is unknown or the upstream
    /// does not answer (the upstream then answers the request itself).
    pub async fn of(&self, upstream: &Upstream, feed: &str, named: &[String]) -> Arc<Vec<Col>> {
        if let Some(cols) = self.cols.get(feed)
            && named.iter().all(|name| cols.iter().any(|c| &c.name == name))
        {
            return cols;
        }
        self.fresh(upstream, feed).await
    }

    /// `feed`'s columns read now (under its write lock, to count them).
    pub async fn fresh(&self, upstream: &Upstream, feed: &str) -> Arc<Vec<Col>> {
        match upstream.cols(feed).await {
            Some(cols) => {
                let cols = Arc::new(cols);
                self.cols.insert(feed.to_owned(), cols.clone());
                cols
            }
            None => Arc::default(),
        }
    }

    /// `feed`'s size, at most `SIZE_TTL` old; `None` when the upstream
    /// does not know the feed.
    pub async fn size(&self, upstream: &Upstream, feed: &str) -> Option<u64> {
        if let Some(size) = self.sizes.get(feed) {
            return size;
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let size = upstream.size(feed).await;
        if self.epoch.load(Ordering::SeqCst) == epoch {
            self.sizes.insert(feed.to_owned(), size);
            // A write began or ended between the check and the insert.
            if self.epoch.load(Ordering::SeqCst) != epoch {
                self.sizes.invalidate(feed);
            }
        }
        size
    }

    /// A request through the proxy is about to change `feed`'s columns or
    /// rows.
    pub fn forget(&self, feed: &str) {
        self.cols.invalidate(feed);
        self.forget_size(feed);
    }

    /// A write to `feed` is under way or has just ended (the upstream
    /// answered): its size may have changed.
    pub fn forget_size(&self, feed: &str) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.sizes.invalidate(feed);
    }
}
