//! Who is asking and what they hold, resolved once and cached.
//!
//! `has_perm` follows Django's `ModelBackend`: an inactive user has
//! nothing, a superuser everything, anyone else the union of their own and
//! their groups' permissions. A feed-scoped permission is also held when
//! granted for that feed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use chrono::NaiveDateTime;
use moka::sync::Cache;
use serde::Serialize;

use super::grant::Reach;
use crate::db::models::User;
use crate::db::queries::Holdings;
use crate::lbasedb::perms::{VIEW_COL, VIEW_DATA};
use crate::secret::Presented;

#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    pub user_id: i32,
    pub username: String,
    pub email: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub groups: Vec<String>,
    /// Its groups' rate limits (`auth::ratelimit`).
    #[serde(skip)]
    pub group_rates: Vec<super::ratelimit::Rate>,
    /// Its groups' write quotas (`auth::quota`).
    #[serde(skip)]
    pub group_quotas: Vec<super::quota::Quota>,
    pub perms: HashSet<String>,
    /// Its grants by feed and codename, each permission's grants on a feed
    /// as one `Reach`: what every proxied request looks up, without
    /// building a `Grant` to look for.
    #[serde(skip)]
    pub grants: HashMap<String, HashMap<String, Reach>>,
}

impl Principal {
    pub fn new(user: &User, holdings: Holdings) -> Self {
        let mut grants: HashMap<String, HashMap<String, Reach>> = HashMap::new();
        for grant in holdings.grants {
            grants.entry(grant.feed.clone()).or_default().hold(&grant.codename, Reach::of(&grant));
        }
        Self {
            user_id: user.id,
            username: user.username.clone(),
            email: user.email.clone(),
            is_active: user.is_active,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
            groups: holdings.groups,
            group_rates: holdings.group_rates.iter().filter_map(|rate| rate.parse().ok()).collect(),
            group_quotas: holdings.group_quotas.iter().filter_map(|q| q.parse().ok()).collect(),
            perms: holdings.perms.into_iter().collect(),
            grants,
        }
    }

    pub fn has_perm(&self, codename: &str) -> bool {
        self.is_active && (self.is_superuser || self.perms.contains(codename))
    }

    /// Held globally, or granted for this feed (or some of it).
    pub fn has_feed_perm(&self, codename: &str, feed: &str) -> bool {
        self.reach(codename, feed).is_some()
    }

    /// What it may do with `codename` on `feed`: all of it when held
    /// globally, else what its grants there allow together.
    pub fn reach(&self, codename: &str, feed: &str) -> Option<&Reach> {
        if self.has_perm(codename) {
            return Some(&Reach::WHOLE);
        }
        if !self.is_active {
            return None;
        }
        self.grants.get(feed).and_then(|held| held.get(codename))
    }
}

impl Principal {
    /// Whether `GET /col` (and the admin's feed pages) show `column` of
    /// `feed`: when its `view_col` grants there cover it and, if it may read
    /// the feed's data, its `view_data` grants too (a column it may not
    /// read is not shown to exist).
    pub fn shows_column(&self, feed: &str, column: &str) -> bool {
        [VIEW_COL, VIEW_DATA]
            .into_iter()
            .filter_map(|codename| self.reach(codename, feed))
            .all(|reach| reach.shows_column(column))
    }

    /// Whether it sees every column of `feed` (no grant there is limited).
    pub fn sees_every_column(&self, feed: &str) -> bool {
        [VIEW_COL, VIEW_DATA]
            .into_iter()
            .filter_map(|codename| self.reach(codename, feed))
            .all(|reach| *reach == Reach::Whole)
    }

    /// Its grants by feed, each as `CODENAME[COLUMNS]@ROWS` (the columns
    /// and rows only where limited), sorted: what `/api/auth/me/` and the
    /// admin show.
    pub fn described_grants(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let described = self.grants.iter().map(|(feed, held)| {
            let mut held: Vec<String> =
                held.iter().flat_map(|(codename, reach)| reach.describe(codename)).collect();
            held.sort();
            (feed.clone(), held)
        });
        described.collect()
    }
}

/// A feed's grants, by codename.
pub trait FeedGrants {
    /// Adds `reach` to the union of `codename`'s on this feed.
    fn hold(&mut self, codename: &str, reach: Reach);
}

impl FeedGrants for HashMap<String, Reach> {
    fn hold(&mut self, codename: &str, reach: Reach) {
        match self.get_mut(codename) {
            Some(held) => held.add(reach),
            None => {
                self.insert(codename.to_owned(), reach);
            }
        }
    }
}

/// A token's cached authentication: its principal, when it stops working,
/// and when its `last_used_at` was last written (at most once a minute, so
/// that a busy token does not cost a write per request).
#[derive(Debug)]
pub struct TokenAuth {
    pub token_id: i32,
    /// What the audit names it by.
    pub prefix: Arc<str>,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked: bool,
    /// The user's principal as this token restricts it (`auth::scopes`).
    pub principal: Arc<Principal>,
    /// Where the token may be used from (empty: anywhere).
    pub networks: Vec<ipnet::IpNet>,
    pub last_touched: AtomicI64,
}

impl TokenAuth {
    /// Whether `last_used_at` is due a write; claims it if so.
    pub fn claim_touch(&self, now: i64) -> bool {
        let last = self.last_touched.load(Ordering::Relaxed);
        now - last >= 60
            && self
                .last_touched
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// A session's state as stored, and when it expires; with the identity
/// actix-identity keeps in it read once, for `session::KnownSessions`.
pub struct CachedSession {
    pub state: std::collections::HashMap<String, String>,
    pub expires_at: NaiveDateTime,
    /// The signed-in user (`actix_identity.user_id`).
    pub user: Option<i32>,
    /// When they logged in, unix seconds (`actix_identity.logged_in_at`).
    pub logged_in_at: Option<i64>,
}

impl CachedSession {
    pub fn new(
        state: std::collections::HashMap<String, String>,
        expires_at: NaiveDateTime,
    ) -> Self {
        use super::session::{LOGGED_IN_AT_KEY, read, user_of};
        let (user, logged_in_at) = (user_of(&state), read(&state, LOGGED_IN_AT_KEY));
        Self { state, expires_at, user, logged_in_at }
    }

    /// A value of the state, as actix-session reads it (JSON).
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        super::session::read(&self.state, key)
    }
}

/// Principals by token and by user id, and sessions by key digest. Any change this process makes
/// to users, groups, grants or tokens clears both at once; a change made
/// elsewhere (another replica, the CLI) raises the database's change
/// counter, which `changes::watch` polls, clearing them within its
/// interval. `ttl` is only a backstop.
#[derive(Clone)]
pub struct AuthCache {
    /// Tokens by the token itself (`Presented`: not hashed per request).
    tokens: Cache<Presented, Arc<TokenAuth>>,
    /// Verified JWT bearers, by the JWT itself: their user and `exp` (unix
    /// seconds), so that a JWT's signature is checked once, not per request.
    jwts: Cache<Presented, (i32, i64)>,
    users: Cache<i32, Arc<Principal>>,
    /// Sessions' states by the digest of their key.
    sessions: Cache<String, Arc<CachedSession>>,
    /// Raised by every clear. A load that began before a clear may have
    /// read what the clear was for; it is not cached (`put_*` with the
    /// generation read before the load).
    generation: Arc<AtomicU64>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            tokens: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            jwts: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            users: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            sessions: Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            generation: Arc::default(),
        }
    }

    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.tokens.invalidate_all();
        self.jwts.invalidate_all();
        self.users.invalidate_all();
        self.sessions.invalidate_all();
    }

    /// A session changed or ended somewhere: sessions only.
    pub fn clear_sessions(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.sessions.invalidate_all();
    }

    pub fn session(&self, digest: &str) -> Option<Arc<CachedSession>> {
        self.sessions.get(digest)
    }

    pub fn put_session(&self, generation: u64, digest: String, session: Arc<CachedSession>) {
        self.put(&self.sessions, generation, digest, session);
    }

    pub fn forget_session(&self, digest: &str) {
        self.sessions.invalidate(digest);
    }

    /// Read before loading what `put_token` or `put_user` will cache.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn token(&self, token: &Presented) -> Option<Arc<TokenAuth>> {
        self.tokens.get(token)
    }

    pub fn user(&self, id: i32) -> Option<Arc<Principal>> {
        self.users.get(&id)
    }

    /// Caches what was loaded since `generation`, unless a clear came since.
    fn put<K, V>(&self, cache: &Cache<K, V>, generation: u64, key: K, value: V)
    where
        K: std::hash::Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if self.generation() == generation {
            cache.insert(key, value);
            // A clear between the check and the insert: undo.
            if self.generation() != generation {
                cache.invalidate_all();
            }
        }
    }

    pub fn put_token(&self, generation: u64, token: Presented, auth: Arc<TokenAuth>) {
        self.put(&self.tokens, generation, token, auth);
    }

    /// A verified JWT's user and `exp`, if cached.
    pub fn jwt(&self, jwt: &Presented) -> Option<(i32, i64)> {
        self.jwts.get(jwt)
    }

    pub fn put_jwt(&self, generation: u64, jwt: Presented, user: (i32, i64)) {
        self.put(&self.jwts, generation, jwt, user);
    }

    pub fn put_user(&self, generation: u64, id: i32, principal: Arc<Principal>) {
        self.put(&self.users, generation, id, principal);
    }
}
