//! The columns of each feed, as the upstream lists them, kept briefly:
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

#[derive(Clone)]
pub struct Columns(Cache<String, Arc<Vec<Col>>>);

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Columns")
    }
}

impl Default for Columns {
    fn default() -> Self {
        Self(Cache::builder().max_capacity(10_000).time_to_live(TTL).build())
    }
}

impl Columns {
    /// `feed`'s columns, with every one of `named` among them if the
    /// upstream has it; empty when the feed is unknown or the upstream
    /// does not answer (the upstream then answers the request itself).
    pub async fn of(&self, upstream: &Upstream, feed: &str, named: &[String]) -> Arc<Vec<Col>> {
        if let Some(cols) = self.0.get(feed)
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
                self.0.insert(feed.to_owned(), cols.clone());
                cols
            }
            None => Arc::default(),
        }
    }

    /// A request through the proxy changed `feed`'s columns.
    pub fn forget(&self, feed: &str) {
        self.0.invalidate(feed);
    }
}
