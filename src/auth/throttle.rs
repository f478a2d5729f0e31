//! Failed-login and bad-token throttling, in memory.
//!
//! A login attempt is counted *before* its password is checked, atomically
//! per key, so that a burst of N concurrent guesses is checked at most
//! `login_limit` times; a success clears the count. Logins are keyed by
//! (account, address), so a stranger elsewhere cannot lock a user out from
//! everywhere. Only unknown tokens are counted, per address, and the count
//! never refuses a valid token: behind NAT or a reverse proxy one address is
//! many users.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// A count and when it was last raised.
type Count = (u32, Instant);

fn counts<K>(window: Duration) -> Cache<K, Count>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(window)
        .build()
}

#[derive(Clone)]
pub struct Throttle {
    logins: Cache<(String, IpAddr), Count>,
    tokens: Cache<IpAddr, Count>,
    login_limit: u32,
    token_limit: u32,
    window: Duration,
}

impl Throttle {
    pub fn new(login_limit: u32, token_limit: u32, window: Duration) -> Self {
        Self {
            logins: counts(window),
            tokens: counts(window),
            login_limit,
            token_limit,
            window,
        }
    }

    /// Counts a login attempt for the account from this address; `Err`
    /// (how long to wait) when it is over the limit and must not be checked.
    pub fn attempt_login(&self, username: &str, ip: IpAddr) -> Result<(), Duration> {
        self.count(
            &self.logins,
            (username.to_lowercase(), ip),
            self.login_limit,
        )
    }

    /// A correct password: the account's count from this address is cleared.
    pub fn succeed_login(&self, username: &str, ip: IpAddr) {
        self.logins.invalidate(&(username.to_lowercase(), ip));
    }

    /// Counts an unknown or revoked token from this address; `Err` once the
    /// address is over the limit (the answer becomes 429 rather than 401).
    pub fn fail_token(&self, ip: IpAddr) -> Result<(), Duration> {
        self.count(&self.tokens, ip, self.token_limit)
    }

    /// Raises the key's count unless it is already at the limit, in one
    /// atomic step per key (moka's `and_upsert_with` serialises them).
    fn count<K>(&self, cache: &Cache<K, Count>, key: K, limit: u32) -> Result<(), Duration>
    where
        K: std::hash::Hash + Eq + Send + Sync + Clone + 'static,
    {
        let window = self.window;
        let mut refused = None;
        cache.entry(key).and_upsert_with(|entry| {
            let now = Instant::now();
            match entry.map(|e| e.into_value()) {
                Some((count, last)) if last.elapsed() < window => {
                    if count >= limit {
                        refused = Some(window.saturating_sub(last.elapsed()));
                        (count, last)
                    } else {
                        (count + 1, now)
                    }
                }
                _ => (1, now),
            }
        });
        match refused {
            Some(wait) => Err(wait.max(Duration::from_secs(1))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_before_they_are_checked() {
        let throttle = Throttle::new(3, 2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.attempt_login("Alice", ip).is_ok());
        }
        assert!(throttle.attempt_login("alice", ip).is_err());
        assert!(throttle.attempt_login("alice", other).is_ok());
        assert!(throttle.attempt_login("bob", ip).is_ok());
        throttle.succeed_login("ALICE", ip);
        assert!(throttle.attempt_login("alice", ip).is_ok());

        assert!(throttle.fail_token(ip).is_ok());
        assert!(throttle.fail_token(ip).is_ok());
        assert!(throttle.fail_token(ip).is_err());
        assert!(throttle.fail_token(other).is_ok());
    }

    #[test]
    fn a_burst_is_checked_at_most_limit_times() {
        let throttle = std::sync::Arc::new(Throttle::new(5, 5, Duration::from_secs(60)));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let passed: usize = (0..8)
            .map(|_| {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    (0..20)
                        .filter(|_| throttle.attempt_login("alice", ip).is_ok())
                        .count()
                })
            })
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(passed, 5);
    }
}
