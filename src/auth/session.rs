//! actix-session's store over the database, so that logging out, changing a
//! password or deactivating a user ends sessions at once, everywhere. Rows
//! are keyed by the SHA-256 of the cookie's key, and carry the user id so
//! they can be ended per user.

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration;
use moka::sync::Cache;
use rand::Rng;
use rand::distributions::Alphanumeric;

use super::token::digest;
use crate::db::{self, Pool, queries};

/// The session key under which actix-identity keeps the user id.
pub const IDENTITY_KEY: &str = "actix_identity.user_id";

#[derive(Clone)]
pub struct DbSessionStore {
    pool: Pool,
    /// Sessions whose expiry was pushed back lately: the idle timeout is
    /// extended on every request, but written at most once a minute.
    extended: Cache<String, ()>,
}

impl DbSessionStore {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            extended: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(StdDuration::from_secs(60))
                .build(),
        }
    }
}

type State = HashMap<String, String>;

fn expiry(ttl: &Duration) -> chrono::NaiveDateTime {
    queries::now() + chrono::Duration::seconds(ttl.whole_seconds())
}

fn user_of(state: &State) -> Option<i32> {
    let raw = state.get(IDENTITY_KEY)?;
    serde_json::from_str::<String>(raw).ok()?.parse().ok()
}

fn new_key() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(64)
        .map(char::from)
        .collect()
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<State>, LoadError> {
        let digest = digest(key.as_ref());
        let state = db::run(&self.pool, move |conn| queries::session_load(conn, &digest))
            .await
            .map_err(|e| LoadError::Other(e.into()))?;
        state
            .map(|raw| serde_json::from_str(&raw).map_err(|e| LoadError::Deserialization(e.into())))
            .transpose()
    }

    async fn save(&self, state: State, ttl: &Duration) -> Result<SessionKey, SaveError> {
        let key = new_key();
        self.write(&key, state, ttl)
            .await
            .map_err(SaveError::Other)?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        key: SessionKey,
        state: State,
        ttl: &Duration,
    ) -> Result<SessionKey, UpdateError> {
        self.write(key.as_ref(), state, ttl)
            .await
            .map_err(UpdateError::Other)?;
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, ttl: &Duration) -> Result<(), anyhow::Error> {
        let digest = digest(key.as_ref());
        if self.extended.contains_key(&digest) {
            return Ok(());
        }
        self.extended.insert(digest.clone(), ());
        let expires = expiry(ttl);
        db::run(&self.pool, move |conn| {
            queries::session_extend(conn, &digest, expires)
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let digest = digest(key.as_ref());
        db::run(&self.pool, move |conn| {
            queries::session_delete(conn, &digest)
        })
        .await?;
        Ok(())
    }
}

impl DbSessionStore {
    async fn write(&self, key: &str, state: State, ttl: &Duration) -> Result<(), anyhow::Error> {
        let digest = digest(key);
        let user = user_of(&state);
        let raw = serde_json::to_string(&state)?;
        let expires = expiry(ttl);
        db::run(&self.pool, move |conn| {
            queries::session_store(conn, &digest, &raw, user, expires)
        })
        .await?;
        Ok(())
    }
}
