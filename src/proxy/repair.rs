//! Torn appends undone. Lbasedb's `data_push` sets a feed's new size
//! before it writes the columns, so an upstream that fails in the middle of
//! an append (killed) can leave rows of zeros, or half-written
//! rows, that nobody was told were stored. Every append holds its feed's
//! write lock, so the proxy knows the feed's size before forwarding it
//! (kept from the last append where this process is the only writer, else
//! asked);
//! when the upstream then fails without an answer, the feed stays locked,
//! is marked in the database (`feed_repair`: a restart, or another
//! replica, sees it), and as soon as the upstream answers again it is set
//! back to that size; only then is the lock let go. A retry of the append
//! (with its `Idempotency-Key`, which the repair frees) is then stored
//! exactly once. Overwrites (`PUT`, `PATCH`) are not undone: what they
//! overwrote is not kept.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::Method;

use super::classify::Endpoint;
use super::idempotency::Claimed;
use super::upstream::Upstream;
use crate::db::{self, Pool, queries};
use crate::error::ApiError;

/// Whether a write appends rows (and so can be torn).
pub fn is_append(endpoint: Endpoint, method: &Method) -> bool {
    *method == Method::POST && matches!(endpoint, Endpoint::Data | Endpoint::Bytes)
}

/// The repairs not made yet: those a stopped process left (read at start),
/// and the ones under way. A write to such a feed makes its repair first.
/// Replicas (`shared`) read the database under the feed's lock before each
/// write instead: another replica may have marked one since.
pub struct Repairs {
    pool: Pool,
    shared: bool,
    pending: Mutex<HashMap<String, u64>>,
    /// Each feed's size after the last append through this process, while
    /// nothing else has written it: the next append's size before, without
    /// asking the upstream. Only where this process is the only writer
    /// (not `shared`): a replica may have written since.
    sizes: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Repairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Repairs")
    }
}

impl Repairs {
    /// With the repairs the database lists (a process stopped before it
    /// finished them).
    pub fn load(pool: Pool, shared: bool) -> Self {
        let listed = pool
            .get()
            .map_err(db::DbError::from)
            .and_then(|mut conn| queries::pending_repairs(&mut conn));
        let pending = match listed {
            Ok(rows) => rows
                .into_iter()
                .map(|(feed, size)| {
                    tracing::warn!(
                        "feed {feed}: a torn append is to be undone (back to {size} rows) \
                         before its next write"
                    );
                    (feed, u64::try_from(size).unwrap_or(0))
                })
                .collect(),
            Err(err) => {
                tracing::error!("reading the repairs left to make: {err}");
                HashMap::new()
            }
        };
        Self { pool, shared, pending: Mutex::new(pending), sizes: Mutex::default() }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Before a write to `feed`, under its lock: a repair left to make is
    /// made first (503 while the upstream cannot take it).
    pub async fn before_write(&self, upstream: &Upstream, feed: &str) -> Result<(), ApiError> {
        let size = if self.shared {
            let name = feed.to_owned();
            let size =
                db::run(&self.pool, move |conn| queries::pending_repair(conn, &name)).await?;
            size.map(|size| u64::try_from(size).unwrap_or(0))
        } else {
            self.pending().get(feed).copied()
        };
        let Some(size) = size else {
            return Ok(());
        };
        if !upstream.set_size(feed, size).await {
            return Err(ApiError::Busy(Duration::from_secs(1)));
        }
        self.done(upstream, feed, size).await;
        Ok(())
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.sizes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A feed's size before an append, under its lock: the size the last
    /// append left, or the upstream's answer (`Upstream::size_or_unreachable`).
    pub async fn size_before(
        &self,
        upstream: &Upstream,
        feed: &str,
    ) -> Result<Option<u64>, ApiError> {
        if let Some(size) = self.sizes().get(feed).copied() {
            return Ok(Some(size));
        }
        upstream.size_or_unreachable(feed).await
    }

    /// A write other than an append, or one whose outcome is not known, is
    /// made to `feed`: its size is asked again next time.
    pub fn forget(&self, feed: &str) {
        self.sizes().remove(feed);
    }

    async fn mark(&self, feed: &str, size: u64) {
        self.pending().insert(feed.to_owned(), size);
        let name = feed.to_owned();
        let marked = db::run(&self.pool, move |conn| queries::mark_repair(conn, &name, size)).await;
        if let Err(err) = marked {
            tracing::error!("feed {feed}: marking a torn append in the database: {err}");
        }
    }

    async fn done(&self, upstream: &Upstream, feed: &str, size: u64) {
        let name = feed.to_owned();
        if let Err(err) = db::run(&self.pool, move |conn| queries::repaired(conn, &name)).await {
            tracing::error!("feed {feed}: unmarking a repaired append: {err}");
        }
        self.pending().remove(feed);
        upstream.state().metrics.append_repaired();
        tracing::warn!("feed {feed}: a torn append was undone, the feed is back to {size} rows");
    }
}

/// The rows an append adds, when certain: told by its body once it has gone
/// by (`forward`), read when it has been stored.
pub type AppendedRows = Rc<Cell<BodyRows>>;

/// The rows a write's body held, as its meter counted them once the whole
/// body had gone by.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyRows {
    /// What an append adds, when certain: every key once, every list as
    /// long (what undoing a torn append needs).
    pub certain: Option<u64>,
    /// The longest list: what the write may have written, at most (what
    /// the write quota counts when the rows are not certain: a key named
    /// twice, lists of different lengths).
    pub most: Option<u64>,
}

/// What an append needs to be undone: the feed's size before it, and a way
/// to the upstream; and, for the next append's size before, the rows it
/// adds.
pub struct Torn {
    pub size: u64,
    pub upstream: Upstream,
    pub rows: AppendedRows,
}

impl Torn {
    /// The append ended as the upstream answered: stored (`stored`) with a
    /// known number of rows, the feed's new size is kept for the next
    /// append (where sizes are kept); else it is asked again.
    pub fn ended(self, feed: &str, stored: bool) {
        let repairs = &self.upstream.state().repairs;
        match (stored, self.rows.get().certain) {
            (true, Some(rows)) if !repairs.shared => {
                repairs.sizes().insert(feed.to_owned(), self.size + rows);
            }
            _ => repairs.forget(feed),
        }
    }

    /// The upstream failed during the append: the feed is set back to its
    /// size before it as soon as the upstream answers, however long that
    /// takes (the caller holds the feed's lock meanwhile); then the append's
    /// key, if it has one, is free for the retry.
    pub async fn undo(self, feed: &str, key: Option<Claimed>) {
        let repairs = &self.upstream.state().repairs;
        repairs.mark(feed, self.size).await;
        let mut wait = Duration::from_millis(50);
        while !self.upstream.set_size(feed, self.size).await {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        repairs.done(&self.upstream, feed, self.size).await;
        if !repairs.shared {
            repairs.sizes().insert(feed.to_owned(), self.size);
        }
        if let Some(key) = key {
            key.release().await;
        }
    }
}
