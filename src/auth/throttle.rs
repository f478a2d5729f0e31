//! Failed-login and bad-token throttling, in memory. Failures are counted
//! per (account, address), so a stranger elsewhere cannot lock a user out
//! from everywhere; bad tokens per address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use moka::sync::Cache;

#[derive(Clone)]
pub struct Throttle {
    logins: Cache<(String, IpAddr), (u32, Instant)>,
    tokens: Cache<IpAddr, (u32, Instant)>,
    login_limit: u32,
    token_limit: u32,
    window: Duration,
}

impl Throttle {
    pub fn new(login_limit: u32, token_limit: u32, window: Duration) -> Self {
        Self {
            logins: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
            tokens: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
            login_limit,
            token_limit,
            window,
        }
    }

    /// `Err(retry_after)` while the account is throttled from this address.
    pub fn check_login(&self, username: &str, ip: IpAddr) -> Result<(), Duration> {
        self.check(
            self.logins.get(&(username.to_lowercase(), ip)),
            self.login_limit,
        )
    }

    pub fn fail_login(&self, username: &str, ip: IpAddr) {
        let key = (username.to_lowercase(), ip);
        let count = self.logins.get(&key).map_or(0, |(n, _)| n);
        self.logins.insert(key, (count + 1, Instant::now()));
    }

    pub fn succeed_login(&self, username: &str, ip: IpAddr) {
        self.logins.invalidate(&(username.to_lowercase(), ip));
    }

    pub fn check_token(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check(self.tokens.get(&ip), self.token_limit)
    }

    pub fn fail_token(&self, ip: IpAddr) {
        let count = self.tokens.get(&ip).map_or(0, |(n, _)| n);
        self.tokens.insert(ip, (count + 1, Instant::now()));
    }

    fn check(&self, entry: Option<(u32, Instant)>, limit: u32) -> Result<(), Duration> {
        match entry {
            Some((count, last)) if count >= limit => Err(self
                .window
                .saturating_sub(last.elapsed())
                .max(Duration::from_secs(1))),
            _ => Ok(()),
        }
    }
}
