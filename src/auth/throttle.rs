//! Failed-login and bad-token throttling, counted in the database so that
//! replicas count together.
//!
//! A login attempt is counted *before* its password is checked, in one
//! atomic upsert per key, so that a burst of N concurrent guesses (through
//! any replicas) is checked at most `login_limit` times; a success clears
//! the count. Logins are keyed by (account, address), so a stranger
//! elsewhere cannot lock a user out from everywhere. Only unknown tokens are
//! counted, per address, and the count never refuses a valid token: behind
//! NAT or a reverse proxy one address is many users. An IPv6 client counts
//! by its /64 (`net::counted_as`), so that rotating addresses neither resets
//! its count nor fills the table. Keys are stored as digests: a username
//! field sometimes holds a mistyped password.
//!
//! A key over its limit is also remembered in memory until its window
//! ends, so that a flood costs the database at most `limit` writes per key
//! and replica.
//!
//! Failed logins are also counted per address across usernames
//! (`LOGIN_ADDRESS_FAILURE_LIMIT`): one address trying ever-new usernames
//! meets no per-account count, and each of its attempts costs a password
//! hash. Past that count, every login from the address is refused until
//! the window ends (a correct password does not reset it: one valid
//! account must not buy unlimited guesses at the others).

use std::net::IpAddr;
use std::time::Duration;

use moka::sync::Cache;
use sha2::{Digest, Sha256};

use crate::db::{self, DbError, Pool, queries};

#[derive(Clone)]
pub struct Throttle {
    pool: Pool,
    /// Keys over their limit, with when their window ends (Unix seconds).
    refused: Cache<String, i64>,
    login_limit: u32,
    token_limit: u32,
    address_limit: u32,
    window: Duration,
}

impl Throttle {
    pub fn new(pool: Pool, login_limit: u32, token_limit: u32, window: Duration) -> Self {
        Self {
            pool,
            refused: Cache::builder().max_capacity(100_000).time_to_live(window).build(),
            login_limit,
            token_limit,
            address_limit: u32::MAX,
            window,
        }
    }

    /// With failed logins from one address, across usernames, counted too.
    pub fn with_address_limit(self, address_limit: u32) -> Self {
        Self { address_limit, ..self }
    }

    /// `Err` (how long to wait) while the address is over its count of
    /// failed logins; costs nothing (the count is known in memory).
    pub fn login_address_refused(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = chrono::Utc::now().timestamp();
        match self.refused.get(&address_key(ip)) {
            Some(end) if end > now => Err(wait(end - now)),
            _ => Ok(()),
        }
    }

    /// Counts a failed login from this address, whatever its username.
    pub async fn fail_login_address(&self, ip: IpAddr) -> Result<(), DbError> {
        self.count(address_key(ip), self.address_limit).await.map(drop)
    }

    /// Counts a login attempt for the account from this address; `Err`
    /// (how long to wait) when it is over the limit and must not be checked.
    pub async fn attempt_login(
        &self,
        username: &str,
        ip: IpAddr,
    ) -> Result<Result<(), Duration>, DbError> {
        self.count(login_key(username, ip), self.login_limit).await
    }

    /// A correct password: the account's count from this address is cleared.
    pub async fn succeed_login(&self, username: &str, ip: IpAddr) -> Result<(), DbError> {
        let key = login_key(username, ip);
        self.refused.invalidate(&key);
        db::run(&self.pool, move |conn| queries::throttle_clear(conn, &key)).await
    }

    /// Counts an unknown or revoked token from this address; `Err` once the
    /// address is over the limit (the answer becomes 429 rather than 401).
    pub async fn fail_token(&self, ip: IpAddr) -> Result<Result<(), Duration>, DbError> {
        let who = crate::net::counted_as(ip);
        self.count(digest(&format!("token\0{who}")), self.token_limit).await
    }

    async fn count(&self, key: String, limit: u32) -> Result<Result<(), Duration>, DbError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(end) = self.refused.get(&key)
            && end > now
        {
            return Ok(Err(wait(end - now)));
        }
        let window = self.window.as_secs().max(1) as i64;
        let (count, end) = db::run(&self.pool, {
            let key = key.clone();
            move |conn| queries::throttle_hit(conn, &key, window)
        })
        .await?;
        if count as i64 > limit as i64 {
            self.refused.insert(key, end);
            return Ok(Err(wait(end - now)));
        }
        Ok(Ok(()))
    }
}

fn wait(seconds: i64) -> Duration {
    Duration::from_secs(seconds.max(1) as u64)
}

fn digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn address_key(ip: IpAddr) -> String {
    digest(&format!("login-address\0{}", crate::net::counted_as(ip)))
}

fn login_key(username: &str, ip: IpAddr) -> String {
    let who = crate::net::counted_as(ip);
    digest(&format!("login\0{}\0{who}", username.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &tempfile::TempDir) -> Pool {
        let pool = db::connect(dir.path().join("db.sqlite3").to_str().unwrap()).unwrap();
        db::migrate(&pool).unwrap();
        pool
    }

    #[actix_web::test]
    async fn attempts_are_counted_before_they_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let throttle = Throttle::new(pool(&dir), 3, 2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.attempt_login("Alice", ip).await.unwrap().is_ok());
        }
        assert!(throttle.attempt_login("alice", ip).await.unwrap().is_err());
        assert!(throttle.attempt_login("alice", other).await.unwrap().is_ok());
        assert!(throttle.attempt_login("bob", ip).await.unwrap().is_ok());
        throttle.succeed_login("ALICE", ip).await.unwrap();
        assert!(throttle.attempt_login("alice", ip).await.unwrap().is_ok());

        assert!(throttle.fail_token(ip).await.unwrap().is_ok());
        assert!(throttle.fail_token(ip).await.unwrap().is_ok());
        assert!(throttle.fail_token(ip).await.unwrap().is_err());
        assert!(throttle.fail_token(other).await.unwrap().is_ok());
    }

    #[actix_web::test]
    async fn two_processes_count_together_and_no_key_is_stored_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir);
        // Two throttles on one database: two replicas.
        let a = Throttle::new(pool.clone(), 4, 4, Duration::from_secs(60));
        let b = Throttle::new(pool.clone(), 4, 4, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for throttle in [&a, &b, &a, &b] {
            assert!(throttle.attempt_login("secret-ish", ip).await.unwrap().is_ok());
        }
        assert!(a.attempt_login("secret-ish", ip).await.unwrap().is_err());
        assert!(b.attempt_login("secret-ish", ip).await.unwrap().is_err());
        let keys: Vec<String> = {
            use diesel::prelude::*;
            crate::db::schema::throttle::table
                .select(crate::db::schema::throttle::key)
                .load(&mut pool.get().unwrap())
                .unwrap()
        };
        assert_eq!(keys.len(), 1);
        assert!(!keys[0].contains("secret-ish") && !keys[0].contains("192.0.2.1"));
    }

    #[actix_web::test]
    async fn failed_logins_count_per_address_across_usernames() {
        let dir = tempfile::tempdir().unwrap();
        let throttle =
            Throttle::new(pool(&dir), 5, 5, Duration::from_secs(60)).with_address_limit(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.login_address_refused(ip).is_ok());
            throttle.fail_login_address(ip).await.unwrap();
        }
        assert!(throttle.login_address_refused(ip).is_ok());
        throttle.fail_login_address(ip).await.unwrap();
        assert!(throttle.login_address_refused(ip).is_err());
        assert!(throttle.login_address_refused("192.0.2.2".parse().unwrap()).is_ok());
        // A correct password for one account does not clear it.
        throttle.succeed_login("someone", ip).await.unwrap();
        assert!(throttle.login_address_refused(ip).is_err());
    }

    #[actix_web::test]
    async fn a_burst_is_checked_at_most_limit_times() {
        let dir = tempfile::tempdir().unwrap();
        let throttle = Throttle::new(pool(&dir), 5, 5, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let attempts = (0..40).map(|_| throttle.attempt_login("alice", ip));
        let passed = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(Ok(()))))
            .count();
        assert_eq!(passed, 5);
    }
}
