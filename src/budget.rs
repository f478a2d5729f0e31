//! Bytes in flight: how much all requests together may have the upstream
//! hold at once (`MAX_BYTES_IN_FLIGHT`). Each request is bounded alone
//! (`MAX_READ_BYTES`, `MAX_WRITE_BYTES`), but a few hundred connections of
//! bounded requests are still an unbounded sum: a request takes its share
//! (what it costs the upstream: a read its rows times the widths it names,
//! a write the worst its declared body can cost) before it is forwarded,
//! and gives it back when its answer has been sent (or dropped), since the
//! upstream holds a read's whole answer until then. Past the budget a
//! request waits a moment, in order, then is refused (503), rather than let
//! the upstream run out of memory. One request takes at most half of it,
//! and one user holds at most half, so that the slow requests of one cannot
//! starve the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Units each user holds now (users holding none are not listed).
    held: Held,
}

/// Units held, by user.
type Held = Arc<Mutex<HashMap<i32, u32>>>;

/// A request's share, given back when dropped.
#[derive(Debug, Default)]
pub struct Share {
    _permit: Option<OwnedSemaphorePermit>,
    user: Option<(Held, i32, u32)>,
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some((held, user, units)) = self.user.take() {
            let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = held.get_mut(&user) {
                *count = count.saturating_sub(units);
                if *count == 0 {
                    held.remove(&user);
                }
            }
        }
    }
}

/// Why a share was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The budget stayed spent for longer than `WAIT`.
    #[error("too much data is being read at once (MAX_BYTES_IN_FLIGHT)")]
    Exhausted,
    /// The user holds half the budget already.
    #[error("you have too much data being read at once: half of MAX_BYTES_IN_FLIGHT")]
    UserShare,
}

impl Budget {
    pub fn new(bytes: u64) -> Self {
        let total = u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).max(1);
        Self {
            shares: Arc::new(Semaphore::new(total as usize)),
            total,
            wait: WAIT,
            held: Arc::default(),
        }
    }

    /// Takes `bytes` of the budget for `user` (`None`: a client of the
    /// embedded server, who is not told apart), half of it at most for one
    /// request (a larger one still runs, beside others); refused at once
    /// when the user would hold more than half, else after waiting `WAIT`.
    pub async fn take(&self, user: Option<i32>, bytes: u64) -> Result<Share, Refused> {
        if bytes == 0 {
            return Ok(Share::default());
        }
        let units =
            u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX).min(self.total / 2).max(1);
        let counted = match user {
            Some(user) => {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                let holding = held.entry(user).or_default();
                if *holding > 0 && holding.saturating_add(units) > self.total / 2 {
                    return Err(Refused::UserShare);
                }
                *holding += units;
                Some((self.held.clone(), user, units))
            }
            None => None,
        };
        // Given back if the wait fails.
        let mut share = Share { _permit: None, user: counted };
        let acquire = self.shares.clone().acquire_many_owned(units);
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(Ok(permit)) => {
                share._permit = Some(permit);
                Ok(share)
            }
            _ => Err(Refused::Exhausted),
        }
    }

    /// Bytes not taken now, for tests and metrics.
    pub fn available(&self) -> u64 {
        self.shares.available_permits() as u64 * UNIT
    }
}

/// How many places each key holds now: a user's requests in flight, a
/// client address's connections or password checks. A place is given back
/// when its guard is dropped, however its request ends.
pub struct Places<K>(Arc<Mutex<HashMap<K, usize>>>);

impl<K> Clone for Places<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for Places<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

/// One place of a key's, given back when dropped.
pub struct Place<K: std::hash::Hash + Eq> {
    places: Places<K>,
    key: K,
}

impl<K: std::hash::Hash + Eq + Clone> Places<K> {
    /// Takes a place for `key`: the guard, and how many `key` holds now
    /// (this one counted).
    pub fn take(&self, key: K) -> (Place<K>, usize) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(key.clone()).or_default();
        *count += 1;
        let now = *count;
        (Place { places: self.clone(), key }, now)
    }

    /// A place for `key` if it holds fewer than `max`.
    pub fn take_below(&self, key: K, max: usize) -> Option<Place<K>> {
        let (place, now) = self.take(key);
        (now <= max).then_some(place)
    }

    /// How many places `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied().unwrap_or(0)
    }
}

impl<K: std::hash::Hash + Eq> Drop for Place<K> {
    fn drop(&mut self) {
        let mut held = self.places.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

impl crate::body::Kept for Share {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shares_wait_then_fail_and_come_back_when_dropped() {
        let budget = Budget { wait: Duration::from_millis(20), ..Budget::new(10 * UNIT) };
        let big = budget.take(None, 4 * UNIT).await.unwrap();
        let more = budget.take(None, 4 * UNIT).await.unwrap();
        assert_eq!(budget.available(), 2 * UNIT);
        assert_eq!(budget.take(None, 3 * UNIT).await.unwrap_err(), Refused::Exhausted);
        let small = budget.take(None, 2 * UNIT).await.unwrap();
        drop((big, more, small));
        assert_eq!(budget.available(), 10 * UNIT);
        // Larger than the whole budget: takes half of it.
        let all = budget.take(None, u64::MAX).await.unwrap();
        assert_eq!(budget.available(), 5 * UNIT);
        drop(all);
        assert!(budget.take(None, 0).await.is_ok());
    }

    #[test]
    fn places_are_counted_and_given_back() {
        let places = Places::default();
        let (first, now) = places.take("a");
        assert_eq!(now, 1);
        let second = places.take_below("a", 2).expect("a second place");
        assert!(places.take_below("a", 2).is_none(), "no third");
        assert_eq!(places.held(&"a"), 2, "a refused place is not kept");
        drop((first, second));
        assert_eq!(places.held(&"a"), 0);
    }

    #[tokio::test]
    async fn one_user_holds_at_most_half() {
        let budget = Budget { wait: Duration::from_millis(20), ..Budget::new(10 * UNIT) };
        let first = budget.take(Some(1), 3 * UNIT).await.unwrap();
        let second = budget.take(Some(1), 2 * UNIT).await.unwrap();
        assert_eq!(budget.take(Some(1), UNIT).await.unwrap_err(), Refused::UserShare);
        // Others get the rest.
        let other = budget.take(Some(2), 5 * UNIT).await.unwrap();
        drop((first, second, other));
        assert_eq!(budget.available(), 10 * UNIT);
        // One read of any size still runs.
        let whole = budget.take(Some(1), 10 * UNIT).await.unwrap();
        assert_eq!(budget.available(), 5 * UNIT);
        drop(whole);
        // A refused wait gives the user's count back.
        let hog = budget.take(Some(3), 5 * UNIT).await.unwrap();
        let _other = budget.take(Some(4), 5 * UNIT).await.unwrap();
        assert_eq!(budget.take(Some(5), UNIT).await.unwrap_err(), Refused::Exhausted);
        drop(hog);
        assert!(budget.take(Some(5), 5 * UNIT).await.is_ok());
    }
}
