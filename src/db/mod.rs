//! The proxy's own database: SQLite (the default) or PostgreSQL (for
//! replicas) through diesel, an r2d2 pool of one connection type for both,
//! and each engine's migrations embedded in the binary.

pub mod django;
pub mod dump;
pub mod models;
pub mod queries;
pub mod schema;

use std::path::Path;
use std::time::Duration;

use actix_web::web;
use diesel::migration::MigrationSource;
use diesel::r2d2;
use diesel_migrations::MigrationHarness;

pub mod conn;
mod migrations;
pub use conn::{Backend, DbConnection};
use migrations::{Engine, Migrations};

pub type Pool = r2d2::Pool<conn::Manager>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migrations: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
    /// The database cannot be opened as configured.
    #[error("{0}")]
    Config(String),
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// The engine a `DATABASE_URL` names: `postgres://…` or `postgresql://…`
/// selects PostgreSQL; a path or `sqlite://PATH` selects SQLite. Any other
/// URL is refused rather than taken as a file name (`mysql://…` would
/// otherwise make a file called `mysql:`); the message names only the
/// scheme, never the credentials a URL may carry.
pub fn backend(url: &str) -> Result<Backend, DbError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Backend::Sqlite(path.to_owned()));
    }
    match url.split_once(':') {
        Some((scheme, _))
            if matches!(scheme.to_ascii_lowercase().as_str(), "postgres" | "postgresql") =>
        {
            Ok(Backend::Postgres(url.to_owned()))
        }
        Some((scheme, rest))
            if rest.starts_with("//")
                || matches!(scheme.to_ascii_lowercase().as_str(), "mysql" | "mariadb") =>
        {
            Err(DbError::Config(format!(
                "DATABASE_URL is a {scheme}: URL, but only SQLite and PostgreSQL are \
                 supported: give a file path, sqlite://PATH or postgres://…"
            )))
        }
        _ if url.is_empty() => Err(DbError::Config("DATABASE_URL is empty".into())),
        _ => Ok(Backend::Sqlite(url.to_owned())),
    }
}

/// Opens the database at `url`. For SQLite (creating the file if need be),
/// a folder it creates is private (0700) and the file is kept readable by
/// its owner only (0600): it holds password hashes and sessions. SQLite
/// gives its `-wal` and `-shm` files the database file's mode.
pub fn connect(url: &str) -> Result<Pool, DbError> {
    let backend = backend(url)?;
    let size = match &backend {
        Backend::Sqlite(path) => {
            if path != ":memory:" {
                if let Some(parent) = Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    crate::fsperm::private_dir(parent).map_err(|e| {
                        DbError::Config(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                crate::fsperm::private_file(Path::new(path))
                    .map_err(|e| DbError::Config(format!("cannot open database {path}: {e}")))?;
            }
            8
        }
        // Write locks hold a connection each while a feed is written.
        Backend::Postgres(_) => 16,
    };
    let name = backend.name();
    let pool = r2d2::Pool::builder()
        .max_size(size)
        // Connections are opened as they are needed, not all at start-up
        // (replicas times pools must stay under PostgreSQL's
        // max_connections), and idle ones are closed after a while.
        .min_idle(Some(1))
        .idle_timeout(Some(Duration::from_secs(300)))
        .connection_timeout(Duration::from_secs(10))
        .build(conn::Manager::new(backend))
        // The error names no URL: a PostgreSQL one may carry a password.
        .map_err(|e| DbError::Config(format!("cannot open the {name} database: {e}")))?;
    Ok(pool)
}

fn migrations_of(conn: &DbConnection) -> Migrations {
    match conn {
        DbConnection::Sqlite(_) => Migrations(Engine::Sqlite),
        DbConnection::Postgres(_) => Migrations(Engine::Postgres),
    }
}

/// Where a database stands against the migrations this binary carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// Known here, not yet applied.
    pub pending: Vec<String>,
    /// Applied by some newer binary, unknown here.
    pub unknown: Vec<String>,
}

/// Compares the database's applied migrations with the binary's.
pub fn migration_state(pool: &Pool) -> Result<MigrationState, DbError> {
    state_on(&mut *pool.get()?)
}

fn state_on(conn: &mut DbConnection) -> Result<MigrationState, DbError> {
    let source = migrations_of(conn);
    let known: Vec<String> = MigrationSource::<conn::MultiBackend>::migrations(&source)
        .map_err(DbError::Migration)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    let applied: Vec<String> = conn
        .applied_migrations()
        .map_err(DbError::Migration)?
        .iter()
        .map(|v| v.to_string())
        .collect();
    Ok(MigrationState {
        pending: known.iter().filter(|v| !applied.contains(v)).cloned().collect(),
        unknown: applied.iter().filter(|v| !known.contains(v)).cloned().collect(),
    })
}

impl MigrationState {
    /// Refuses a database a newer binary migrated, and, unless `pending` is
    /// allowed (they are about to be applied), one behind this binary.
    pub fn check(&self, pending_allowed: bool) -> Result<(), DbError> {
        if !self.unknown.is_empty() {
            return Err(DbError::Config(format!(
                "the database is ahead of this binary: it has migrations {} that this \
                 version does not know; run the newer version",
                self.unknown.join(", ")
            )));
        }
        if !pending_allowed && !self.pending.is_empty() {
            return Err(DbError::Config(format!(
                "the database is behind this binary (migrations {} are pending) and \
                 MIGRATE_ON_START is false: run `lbasedb-proxy migrate` first",
                self.pending.join(", ")
            )));
        }
        Ok(())
    }
}

/// Applies the pending migrations; answers the names of those applied.
/// Refuses a database migrated by a newer binary. On PostgreSQL, replicas
/// that start together take turns (an advisory lock, released with the
/// transaction-less session's unlock or its end), so that one applies and
/// the others find nothing left to do.
pub fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut conn = pool.get()?;
    conn::migration_lock(&mut conn, true)?;
    let result = migrate_on(&mut conn);
    let unlocked = conn::migration_lock(&mut conn, false);
    let applied = result?;
    unlocked?;
    Ok(applied)
}

fn migrate_on(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    state_on(conn)?.check(true)?;
    let source = migrations_of(conn);
    let applied = conn.run_pending_migrations(source).map_err(DbError::Migration)?;
    Ok(applied.iter().map(|m| m.to_string()).collect())
}

/// Runs `f` with a pooled connection on the blocking thread pool, so that
/// neither the pool's wait nor SQLite's I/O stalls an async worker. `f`
/// answers the error of its layer: a query's `DbError`, or the service's
/// `ServiceError` (which a `DbError` becomes).
pub async fn run<F, T, E>(pool: &Pool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    let pool = pool.clone();
    web::block(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        f(&mut conn)
    })
    .await
    .map_err(DbError::from)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::prelude::*;

    /// A read on one connection must never leave a transaction open: a
    /// pooled connection would then read an old snapshot for good, and miss
    /// what another process (the CLI) wrote.
    #[test]
    fn reads_leave_no_snapshot_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let url = path.to_str().unwrap();
        let reader = connect(url).unwrap();
        migrate(&reader).unwrap();
        let writer = connect(url).unwrap();
        let mut conn = reader.get().unwrap();
        let count = |conn: &mut DbConnection| -> i64 {
            schema::auth_user::table.count().get_result(conn).unwrap()
        };
        assert_eq!(count(&mut conn), 0);
        let spec = crate::auth::users::UserSpec { username: "alice".into(), ..Default::default() };
        let granted = crate::auth::perms::Granted::system();
        crate::auth::users::create_user(&mut conn, &granted, &spec, "!x").unwrap();
        let _ = queries::user_by_username(&mut conn, "alice").unwrap();
        diesel::sql_query("UPDATE auth_user SET password = 'changed' WHERE username = 'alice'")
            .execute(&mut writer.get().unwrap())
            .unwrap();
        let seen = queries::user_by_username(&mut conn, "alice").unwrap().unwrap();
        assert_eq!(seen.password, "changed", "an update by another connection is seen");
        // And by another process.
        let status = std::process::Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import sqlite3; c = sqlite3.connect({url:?}); \
                 c.execute(\"UPDATE auth_user SET password = 'other' WHERE username = 'alice'\"); c.commit()"
            ))
            .status()
            .unwrap();
        assert!(status.success());
        let seen = queries::user_by_username(&mut conn, "alice").unwrap().unwrap();
        assert_eq!(seen.password, "other", "an update by another process is seen");
        let _ = queries::user_by_username(&mut conn, "nobody").unwrap();
        let _ = queries::user_count(&mut conn).unwrap();
        diesel::sql_query(
            "INSERT INTO auth_user (username, password, date_joined) VALUES ('x', '!', '2026-01-01 00:00:00')",
        )
        .execute(&mut writer.get().unwrap())
        .unwrap();
        assert_eq!(count(&mut conn), 2, "the reader sees the writer's row");
        assert!(queries::user_by_username(&mut conn, "x").unwrap().is_some());
    }
}
