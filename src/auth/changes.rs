//! Caches that follow the database. Every change to who may do what raises
//! an `auth_change` counter in the same transaction (triggers, see the
//! `shared_state` migration), whoever makes it: this process, another
//! replica, the CLI; a session's state changed or a session ended raises
//! another. Each process polls them and clears its caches when they move
//! (all of them for the first, the sessions for the second), so a
//! revocation or a logout anywhere is enforced everywhere within one
//! interval, while a request still finds its principal and its session in
//! memory.

use std::time::Duration;

use super::principal::AuthCache;
use crate::db::{self, Pool, queries};

/// Polls every `every` until the process ends.
pub async fn watch(pool: Pool, cache: AuthCache, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: Option<(i64, i64)> = None;
    let mut failing = false;
    loop {
        tick.tick().await;
        match db::run(&pool, queries::auth_change_counts).await {
            Ok(now) => {
                if failing {
                    cache.clear();
                } else if let Some((access, sessions)) = seen {
                    if access != now.0 {
                        cache.clear();
                    } else if sessions != now.1 {
                        cache.clear_sessions();
                    }
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
                    tracing::warn!("cannot poll the authentication change counters: {err}");
                }
                failing = true;
            }
        }
    }
}
