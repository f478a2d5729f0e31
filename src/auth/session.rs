//! actix-session's store over the database, so that logging out, changing a
//! password or deactivating a user ends sessions at once, everywhere. Rows
//! are keyed by the SHA-256 of the cookie's key, and carry the user id so
//! they can be ended per user.
//!
//! An anonymous visitor's session (a CSRF token for the login form, and no
//! identity) costs no row: its state travels in the session cookie itself,
//! which actix-session encrypts and signs with the server's key, so the
//! visitor can neither read nor forge it. Otherwise every request to the
//! login page or `/api/auth/csrf/` would write a row anyone could fill the
//! database with. Such a cookie never carries an identity: logging in makes
//! a database session under a new key.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::body::MessageBody;
use actix_web::cookie::Key;
use actix_web::cookie::time::Duration;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, COOKIE};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use moka::sync::Cache;

use std::sync::Arc;

use super::principal::{AuthCache, CachedSession};
use super::token::digest;
use crate::db::queries::SessionWrite;
use crate::db::{self, Pool, queries};
use crate::secret::Presented;

/// The session key under which actix-identity keeps the user id.
pub const IDENTITY_KEY: &str = "actix_identity.user_id";
/// And when they logged in (unix seconds), for its login deadline.
pub const LOGGED_IN_AT_KEY: &str = "actix_identity.logged_in_at";

#[derive(Clone)]
pub struct DbSessionStore {
    pool: Pool,
    /// Sessions read or written here, cleared with the authentication
    /// caches (and by any session's change anywhere): a session request
    /// reads no row while nothing changed.
    cache: AuthCache,
    /// Sessions whose expiry was pushed back lately: the idle timeout is
    /// extended on every request, but written at most once a minute.
    extended: Cache<String, ()>,
    /// How long a session lasts unused (`SESSION_IDLE_TIMEOUT`), kept
    /// here, not in the cookie: the cookie lives as long as a session may
    /// (`SESSION_MAX_AGE`) and is set when the session changes only, never
    /// encrypted again and sent back on every answer.
    idle: Duration,
}

impl DbSessionStore {
    pub fn new(pool: Pool, cache: AuthCache, idle: Duration) -> Self {
        Self {
            pool,
            cache,
            idle,
            extended: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(StdDuration::from_secs(60))
                .build(),
        }
    }
}

type State = HashMap<String, String>;

fn expiry(ttl: &Duration) -> chrono::NaiveDateTime {
    // Settings may ask for an absurd idle timeout: saturate, never panic.
    chrono::Duration::try_seconds(ttl.whole_seconds())
        .and_then(|ttl| queries::now().checked_add_signed(ttl))
        .unwrap_or(chrono::NaiveDateTime::MAX)
}

/// A value of a session's state, as actix-session reads it (JSON).
pub(super) fn read<T: serde::de::DeserializeOwned>(state: &State, key: &str) -> Option<T> {
    serde_json::from_str(state.get(key)?).ok()
}

pub(super) fn user_of(state: &State) -> Option<i32> {
    read::<String>(state, IDENTITY_KEY)?.parse().ok()
}

fn new_key() -> String {
    crate::secret::random_alphanumeric(64)
}

/// Keys of cookie-held sessions start with this; database keys are
/// alphanumeric, so the two cannot be confused.
const COOKIE_HELD: &str = "anon.";

/// Past this size an anonymous state goes to the database after all: the
/// whole cookie must stay under the browsers' 4 KiB.
const COOKIE_HELD_MAX: usize = 2048;

/// The key that carries an anonymous state itself, or `None` when the state
/// must be kept in the database (it has an identity, or is too large).
fn cookie_held_key(state: &State) -> Option<String> {
    use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine as _};
    if state.contains_key(IDENTITY_KEY) {
        return None;
    }
    let json = serde_json::to_vec(state).ok()?;
    let key = format!("{COOKIE_HELD}{}", BASE64_URL_SAFE_NO_PAD.encode(json));
    (key.len() <= COOKIE_HELD_MAX).then_some(key)
}

/// The state a cookie-held key carries; never one with an identity.
fn cookie_held_state(key: &str) -> Option<State> {
    use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine as _};
    let encoded = key.strip_prefix(COOKIE_HELD)?;
    let json = BASE64_URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let state: State = serde_json::from_slice(&json).ok()?;
    (!state.contains_key(IDENTITY_KEY)).then_some(state)
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        if key.as_ref().starts_with(COOKIE_HELD) {
            return Ok(cookie_held_state(key.as_ref()));
        }
        let digest = digest(key.as_ref());
        if let Some(cached) = self.cache.session(&digest) {
            if cached.expires_at > queries::now() {
                let state = cached.state.clone();
                self.extend(digest).await.map_err(LoadError::Other)?;
                return Ok(Some(state));
            }
            self.cache.forget_session(&digest);
            return Ok(None);
        }
        let generation = self.cache.generation();
        let found = db::run(&self.pool, {
            let digest = digest.clone();
            move |conn| queries::session_load(conn, &digest)
        })
        .await
        .map_err(|e| LoadError::Other(e.into()))?;
        let Some((raw, expires_at)) = found else {
            return Ok(None);
        };
        let state: State =
            serde_json::from_str(&raw).map_err(|e| LoadError::Deserialization(e.into()))?;
        let cached = Arc::new(CachedSession::new(state.clone(), expires_at));
        self.cache.put_session(generation, digest.clone(), cached);
        self.extend(digest).await.map_err(LoadError::Other)?;
        Ok(Some(state))
    }

    /// `_ttl` is the cookie's (`SESSION_MAX_AGE`); a session row lasts
    /// `idle` from its last use.
    async fn save(&self, state: State, _ttl: &Duration) -> Result<SessionKey, SaveError> {
        if let Some(key) = cookie_held_key(&state) {
            return SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()));
        }
        let key = new_key();
        self.write(&key, &state, SessionWrite::New).await.map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        let mut state = state;
        if !key.as_ref().starts_with(COOKIE_HELD) {
            let stored = self
                .write(key.as_ref(), &state, SessionWrite::Existing)
                .await
                .map_err(UpdateError::Other)?;
            if stored {
                return Ok(key);
            }
            // Ended while this request ran: it stays ended. What the
            // request left in it (a message) is kept, without the
            // identity, as any visitor's.
            state.remove(IDENTITY_KEY);
        }
        // A cookie-held session stays one while anonymous; given an
        // identity it moves to the database, under a key of its own.
        self.save(state, ttl).await.map_err(|e| UpdateError::Other(e.into()))
    }

    /// Not called: the cookie is set when the session changes only
    /// (`TtlExtensionPolicy::OnStateChanges`), and `load` extends the row.
    async fn update_ttl(&self, key: &SessionKey, _ttl: &Duration) -> Result<(), anyhow::Error> {
        if key.as_ref().starts_with(COOKIE_HELD) {
            return Ok(());
        }
        self.extend(digest(key.as_ref())).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        if key.as_ref().starts_with(COOKIE_HELD) {
            return Ok(());
        }
        let digest = digest(key.as_ref());
        db::run(&self.pool, move |conn| queries::session_delete(conn, &digest)).await?;
        // As after a write: at once here, within the poll interval elsewhere.
        self.cache.clear_sessions();
        Ok(())
    }
}

impl DbSessionStore {
    /// Pushes the expiry of the session `digest` names back to `idle` from
    /// now: on each use, written at most once a minute.
    async fn extend(&self, digest: String) -> Result<(), anyhow::Error> {
        if self.extended.contains_key(&digest) {
            return Ok(());
        }
        self.extended.insert(digest.clone(), ());
        let expires = expiry(&self.idle);
        // The cached copy has the old expiry: read again next time.
        self.cache.forget_session(&digest);
        db::run(&self.pool, move |conn| queries::session_extend(conn, &digest, expires)).await?;
        Ok(())
    }

    /// Stores `state` under `key`; answers whether it did (`write` says
    /// whether the session may be made, or must still be there).
    async fn write(
        &self,
        key: &str,
        state: &State,
        write: SessionWrite,
    ) -> Result<bool, anyhow::Error> {
        let digest = digest(key);
        let user = user_of(state);
        let raw = serde_json::to_string(state)?;
        let expires = expiry(&self.idle);
        let stored = db::run(&self.pool, move |conn| {
            queries::session_store(conn, write, &digest, &raw, user, expires)
        })
        .await;
        // Not cached here: the write raises the sessions counter, which
        // clears every process's session cache within the poll interval;
        // here at once, so that no read that began before the write keeps
        // the old state. The next request reads it back.
        self.cache.clear_sessions();
        match stored {
            // The user was deleted while this request ran: there is no
            // session left to keep, and nothing to fail the answer for.
            Err(db::DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                _,
            ))) => Ok(false),
            other => Ok(other?),
        }
    }
}

/// Sessions a proxied request can use without the session and identity
/// middlewares: browser code sends the same `Cookie` header request after
/// request, so the header's session key is worked out once (the cookie
/// decrypted and the key hashed, as those middlewares do it on every
/// request) and kept by the header itself. A request whose header is known
/// and whose session is cached, live, within its login deadline and pushed
/// back lately goes around both middlewares (`skip::goes_around`);
/// anything else goes through them, which do the work it needs (load,
/// extend, log out) as before. What a session can do is still read from
/// the session cache on every request, which every change to a session
/// clears (`docs/performance.md`).
#[derive(Clone)]
pub struct KnownSessions {
    /// Session key digests by the whole `Cookie` header that carried them:
    /// a header decrypts to one key for good, so this never goes stale.
    /// Only headers that signed someone in are kept.
    by_header: Cache<Presented, Arc<str>>,
    store: DbSessionStore,
    key: Key,
    /// `SESSION_MAX_AGE`, the identity middleware's login deadline.
    login_deadline: i64,
}

/// What `KnownSessions` keeps at most, in bytes of memory: the headers are
/// the clients', so they are bounded by size, not by count. About 6,000
/// browsers' headers; past them the least used go the middlewares' way.
const KNOWN_HEADERS_BYTES: u64 = 4 << 20;

/// An entry's memory beside its header: the digest (64 bytes and its
/// `Arc`), the cache's own records of it and the allocator's share. Counted
/// as the header's length alone, 100,000 headers of 172 bytes took 46 MiB
/// where 16 were meant (an attack test's measure).
const ENTRY_OVERHEAD: usize = 512;

/// A request whose session `KnownSessions` recognised: who signed it in,
/// and the session's state (its CSRF token).
pub struct KnownSession {
    pub user: i32,
    pub session: Arc<CachedSession>,
}

impl KnownSessions {
    pub fn new(store: DbSessionStore, key: Key, login_deadline: StdDuration) -> Self {
        let login_deadline = i64::try_from(login_deadline.as_secs()).unwrap_or(i64::MAX);
        Self { by_header: Self::headers(), store, key, login_deadline }
    }

    fn headers() -> Cache<Presented, Arc<str>> {
        Cache::builder()
            .weigher(|header: &Presented, _: &Arc<str>| {
                u32::try_from(header.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .max_capacity(KNOWN_HEADERS_BYTES)
            .time_to_idle(StdDuration::from_secs(3600))
            .build()
    }

    /// The session of a `Cookie` header, if it needs none of the
    /// middlewares' work.
    fn ready(&self, header: &Presented) -> Option<KnownSession> {
        let digest = self.by_header.get(header)?;
        let session = self.store.cache.session(&digest)?;
        let now = queries::now();
        let user = session.user?;
        // actix-identity logs out once more than the deadline has passed
        // since the login (to the nanosecond); a second early is left to it.
        let signed_in =
            now.and_utc().timestamp().saturating_sub(session.logged_in_at?) < self.login_deadline;
        let live = session.expires_at > now && self.store.extended.contains_key(&*digest);
        (signed_in && live).then_some(KnownSession { user, session })
    }

    /// Keeps the key of the session cookie in `header`, which signed in the
    /// request it came with: read as actix-web reads cookies (the first of
    /// that name, percent-decoded) and opened as actix-session opens it,
    /// with the current key only (a cookie of an old key goes through
    /// `fallback::rekey` every time).
    fn learn(&self, header: Presented) {
        // Known already (its session was due to be extended, or not cached).
        if self.by_header.contains_key(&header) {
            return;
        }
        let Some(key) = session_key(header.as_str(), &self.key) else {
            return;
        };
        if !key.starts_with(COOKIE_HELD) {
            self.by_header.insert(header, digest(&key).into());
        }
    }
}

fn session_key(header: &str, key: &Key) -> Option<String> {
    use actix_web::cookie::{Cookie, CookieJar};
    let cookie = header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| Cookie::parse_encoded(pair).ok())
        .find(|cookie| cookie.name() == super::fallback::SESSION_COOKIE)?;
    let mut jar = CookieJar::new();
    jar.add_original(cookie.into_owned());
    let opened = jar.private(key).get(super::fallback::SESSION_COOKIE)?;
    Some(opened.value().to_owned())
}

/// The middleware, before the session and identity middlewares (and
/// `fallback::rekey`): marks a proxied request whose session it knows
/// (`KnownSession`), so that they are gone around, and learns the header
/// of one they signed in.
pub async fn recognise(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let header = by_cookie_alone(&req).then(|| {
        let mut headers = req.headers().get_all(COOKIE);
        match (headers.next(), headers.next()) {
            (Some(value), None) => std::str::from_utf8(value.as_bytes()).ok().map(Presented::new),
            _ => None,
        }
    });
    let Some(Some(header)) = header else {
        return next.call(req).await;
    };
    let Some(known) = req.app_data::<web::Data<KnownSessions>>().cloned() else {
        return next.call(req).await;
    };
    if let Some(session) = known.ready(&header) {
        req.extensions_mut().insert(session);
        return next.call(req).await;
    }
    let response = next.call(req).await?;
    // No `Authorization`: whoever signed it in did so by its session.
    if response.request().extensions().contains::<crate::accesslog::Authenticated>() {
        known.learn(header);
    }
    Ok(response)
}

/// A proxied request with no `Authorization`: its session is all it has.
fn by_cookie_alone(req: &ServiceRequest) -> bool {
    req.path().starts_with("/api/proxy/") && !req.headers().contains_key(AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_read_as_actix_web_reads_cookies_and_opened_with_the_current_key() {
        use super::super::fallback::sealed;
        let (key, old) = (Key::generate(), Key::generate());
        let cookie = sealed(&key, "the-key");
        for header in [
            format!("sessionid={cookie}"),
            format!("csrftoken=abc; sessionid={cookie}; other=1"),
            format!(" ;;sessionid={cookie} ;"),
            format!("sessionid={cookie}; sessionid={}", sealed(&key, "second")),
            format!("broken; sessionid={cookie}"),
        ] {
            assert_eq!(session_key(&header, &key).as_deref(), Some("the-key"), "{header}");
        }
        // The first of the name is the session's, opened or not.
        for header in [
            format!("sessionid=AAAA; sessionid={cookie}"),
            format!("sessionid={}; sessionid={cookie}", sealed(&old, "old")),
            format!("SessionID={cookie}"),
            format!("sessionid={}", sealed(&old, "the-key")),
            String::new(),
        ] {
            assert_eq!(session_key(&header, &key), None, "{header}");
        }
    }

    /// A user varying their other cookies makes a new header a request:
    /// what they are kept in is bounded in memory, not by count of headers.
    #[test]
    fn the_known_headers_are_bounded_with_what_each_costs_beside_its_text() {
        let headers = KnownSessions::headers();
        let digest: Arc<str> = "d".repeat(64).into();
        for i in 0..40_000 {
            headers.insert(
                Presented::new(&format!("sessionid=x; z{i:05}={}", "p".repeat(80))),
                digest.clone(),
            );
        }
        headers.run_pending_tasks();
        // Each entry's memory beside its 100-byte header, as measured (the
        // attack test's 100,000 headers of 172 bytes took 46 MiB): 400 bytes.
        let each = 100 + 400;
        assert!(headers.weighted_size() <= KNOWN_HEADERS_BYTES, "{}", headers.weighted_size());
        assert!(headers.entry_count() <= KNOWN_HEADERS_BYTES / each, "{}", headers.entry_count());
    }

    #[test]
    fn anonymous_state_rides_in_the_cookie_and_never_an_identity() {
        let mut state = State::new();
        state.insert("csrftoken".into(), "\"abc\"".into());
        let key = cookie_held_key(&state).expect("anonymous state is cookie-held");
        assert_eq!(cookie_held_state(&key), Some(state.clone()));

        state.insert(IDENTITY_KEY.into(), "\"1\"".into());
        assert_eq!(cookie_held_key(&state), None, "an identity goes to the database");
        use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine as _};
        let forged = format!(
            "{COOKIE_HELD}{}",
            BASE64_URL_SAFE_NO_PAD.encode(serde_json::to_vec(&state).unwrap())
        );
        assert_eq!(cookie_held_state(&forged), None);

        let mut big = State::new();
        big.insert("x".into(), "y".repeat(COOKIE_HELD_MAX));
        assert_eq!(cookie_held_key(&big), None, "too large for a cookie");
    }
}
