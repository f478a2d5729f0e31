//! The proxy's own database: SQLite through diesel, an r2d2 pool whose every
//! connection gets the same pragmas, and migrations embedded in the binary.

pub mod django;
pub mod dump;
pub mod models;
pub mod queries;
pub mod schema;

use std::path::Path;
use std::time::Duration;

use actix_web::web;
use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ConnectionManager, CustomizeConnection};
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub type Pool = r2d2::Pool<ConnectionManager<SqliteConnection>>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::PoolError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("migrations")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
    /// Input the data refuses (a taken name, an unknown group): a form
    /// shows it beside its field.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The database cannot be opened as configured.
    #[error("{0}")]
    Config(String),
    /// A write the privilege rules of the layer above refuse, with the
    /// reason shown to the one who tried.
    #[error("{0}")]
    Denied(String),
}

/// What is wrong with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl DbError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(Invalid {
            field,
            message: message.into(),
        })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Query(diesel::result::Error::NotFound))
    }

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

/// Set on every pooled connection: SQLite leaves foreign keys off and
/// answers "database is locked" at once unless told otherwise; WAL lets
/// readers run beside the one writer.
#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute(
            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        )
        .map_err(r2d2::Error::QueryError)
    }
}

/// The SQLite file a `DATABASE_URL` names: a path, or `sqlite://PATH`.
/// Any other URL is refused rather than taken as a file name (a
/// `postgres://…` URL would otherwise make a file called `postgres:`); the
/// message names only the scheme, never the credentials a URL may carry.
pub fn sqlite_path(url: &str) -> Result<&str, DbError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(path);
    }
    match url.split_once(':') {
        Some((scheme, rest))
            if rest.starts_with("//")
                || matches!(
                    scheme.to_ascii_lowercase().as_str(),
                    "postgres" | "postgresql" | "mysql" | "mariadb"
                ) =>
        {
            Err(DbError::Config(format!(
                "DATABASE_URL is a {scheme}: URL, but only SQLite is supported here: \
                 give a file path or sqlite://PATH"
            )))
        }
        _ if url.is_empty() => Err(DbError::Config("DATABASE_URL is empty".into())),
        _ => Ok(url),
    }
}

/// Opens (creating it if need be) the database at `url`, a file path or
/// `sqlite://PATH`. A folder it creates is private (0700) and the file is
/// kept readable by its owner only (0600): it holds password hashes and
/// sessions. SQLite gives its `-wal` and `-shm` files the database file's
/// mode.
pub fn connect(url: &str) -> Result<Pool, DbError> {
    let path = sqlite_path(url)?;
    if path != ":memory:" {
        if let Some(parent) = Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            crate::fsperm::private_dir(parent)
                .map_err(|e| DbError::Config(format!("cannot create {}: {e}", parent.display())))?;
        }
        crate::fsperm::private_file(Path::new(path))
            .map_err(|e| DbError::Config(format!("cannot open database {path}: {e}")))?;
    }
    let pool = r2d2::Pool::builder()
        .max_size(8)
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(Pragmas))
        .build(ConnectionManager::<SqliteConnection>::new(path))
        .map_err(|e| DbError::Config(format!("cannot open database {path}: {e}")))?;
    Ok(pool)
}

/// Applies the pending migrations; answers the names of those applied.
pub fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut conn = pool.get()?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(DbError::Migration)?;
    Ok(applied.iter().map(|m| m.to_string()).collect())
}

/// Runs `f` with a pooled connection on the blocking thread pool, so that
/// neither the pool's wait nor SQLite's I/O stalls an async worker.
pub async fn run<F, T>(pool: &Pool, f: F) -> Result<T, DbError>
where
    F: FnOnce(&mut SqliteConnection) -> Result<T, DbError> + Send + 'static,
    T: Send + 'static,
{
    let pool = pool.clone();
    web::block(move || {
        let mut conn = pool.get()?;
        f(&mut conn)
    })
    .await?
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
        let count = |conn: &mut SqliteConnection| -> i64 {
            schema::auth_user::table.count().get_result(conn).unwrap()
        };
        assert_eq!(count(&mut conn), 0);
        let spec = crate::auth::users::UserSpec {
            username: "alice".into(),
            ..Default::default()
        };
        let granted = crate::auth::perms::Granted::system();
        crate::auth::users::create_user(&mut conn, &granted, &spec, "!x").unwrap();
        let _ = queries::user_by_username(&mut conn, "alice").unwrap();
        diesel::sql_query("UPDATE auth_user SET password = 'changed' WHERE username = 'alice'")
            .execute(&mut writer.get().unwrap())
            .unwrap();
        let seen = queries::user_by_username(&mut conn, "alice")
            .unwrap()
            .unwrap();
        assert_eq!(
            seen.password, "changed",
            "an update by another connection is seen"
        );
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
        let seen = queries::user_by_username(&mut conn, "alice")
            .unwrap()
            .unwrap();
        assert_eq!(
            seen.password, "other",
            "an update by another process is seen"
        );
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
