//! Caches that follow the database. Every change to who may do what raises
//! the `auth_change` counter in the same transaction (triggers, see the
//! `shared_state` migration), whoever makes it: this process, another
//! replica, the CLI. Each process polls the counter and clears its
//! authentication caches when it moves, so a revocation anywhere is
//! enforced everywhere within one interval, while a request still finds
//! its principal in memory.

use std::time::Duration;

use super::principal::AuthCache;
use crate::db::{self, Pool, queries};

/// Polls every `every` until the process ends.
pub async fn watch(pool: Pool, cache: AuthCache, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = None;
    let mut failing = false;
    loop {
        tick.tick().await;
        match db::run(&pool, queries::auth_change_count).await {
            Ok(now) => {
                if seen.is_some_and(|seen| seen != now) || failing {
                    cache.clear();
                }
                seen = Some(now);
                failing = false;
            }
            Err(err) => {
                // Unable to tell whether anything changed: forget what is
                // cached rather than trust it (requests then read the
                // database, or fail while it is away).
                cache.clear();
                if !failing {
                    log::warn!("cannot poll the authentication change counter: {err}");
                }
                failing = true;
            }
        }
    }
}
