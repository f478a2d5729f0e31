//! The columns of each feed, as the upstream lists them, kept briefly (and
//! its size, more briefly still):
//! what a read costs in bytes depends on the widths of the columns it
//! names, and asking the upstream on every read would add a round trip to
//! each. A feed's entry is dropped when a request through the proxy
//! changes its columns (or the feed), and lives at most `TTL` otherwise
//! (a column changed on the upstream directly is seen within that); a read
//! naming a column the entry does not know reads the list afresh.

use std::sync::Arc;
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
        let size = upstream.size(feed).await;
        self.sizes.insert(feed.to_owned(), size);
        size
    }

    /// A request through the proxy is changing `feed`'s columns or rows.
    pub fn forget(&self, feed: &str) {
        self.cols.invalidate(feed);
        self.sizes.invalidate(feed);
    }
}
