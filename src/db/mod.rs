//! The proxy's own database: SQLite through diesel, an r2d2 pool whose every
//! connection gets the same pragmas, and migrations embedded in the binary.

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
    #[error("migrations: {0}")]
    Migration(String),
    #[error("blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
    #[error("{0}")]
    Invalid(String),
}

impl DbError {
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

/// Opens (creating it if need be) the database at `url`, a file path.
pub fn connect(url: &str) -> Result<Pool, DbError> {
    if let Some(parent) = Path::new(url).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .map_err(|e| DbError::Invalid(format!("cannot create {}: {e}", parent.display())))?;
    }
    let pool = r2d2::Pool::builder()
        .max_size(8)
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(Pragmas))
        .build(ConnectionManager::<SqliteConnection>::new(url))
        .map_err(|e| DbError::Invalid(format!("cannot open database {url}: {e}")))?;
    Ok(pool)
}

/// Applies the pending migrations; answers the names of those applied.
pub fn migrate(pool: &Pool) -> Result<Vec<String>, DbError> {
    let mut conn = pool.get()?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| DbError::Migration(e.to_string()))?;
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
