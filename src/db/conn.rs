//! One connection type for both engines. Diesel's `MultiConnection` derive
//! makes an enum that runs the query DSL on either SQLite or PostgreSQL, so
//! the query layer is written once; the few statements whose SQL differs
//! (an upsert, an advisory lock) match on the variant.

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::{Connection, PgConnection, SqliteConnection};

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which engine a `DATABASE_URL` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A file path (or `:memory:`).
    Sqlite(String),
    /// A `postgres://` or `postgresql://` URL, handed to libpq as is.
    Postgres(String),
}

impl Backend {
    /// The engine's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "SQLite",
            Self::Postgres(_) => "PostgreSQL",
        }
    }
}

/// Makes the pool's connections: the engine is chosen once, from the URL,
/// rather than by `establish` trying each engine in turn (SQLite takes any
/// string as a file name).
#[derive(Debug, Clone)]
pub struct Manager {
    backend: Backend,
}

impl Manager {
    pub fn new(backend: Backend) -> Self {
        Self { backend }
    }

    pub fn establish(&self) -> Result<DbConnection, diesel::ConnectionError> {
        Ok(match &self.backend {
            Backend::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                // SQLite leaves foreign keys off and answers "database is
                // locked" at once unless told otherwise; WAL lets readers run
                // beside the one writer.
                conn.batch_execute(
                    "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                     PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
                )
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                DbConnection::Sqlite(conn)
            }
            Backend::Postgres(url) => {
                let mut conn = PgConnection::establish(url)?;
                // Timestamps are written and read as UTC, whatever the
                // server's default zone.
                conn.batch_execute("SET TIME ZONE 'UTC'")
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                DbConnection::Postgres(conn)
            }
        })
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        self.establish().map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        use diesel::r2d2::R2D2Connection;
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        std::thread::panicking() || conn.is_broken()
    }
}

/// An arbitrary constant naming the migration lock among the advisory
/// locks of a PostgreSQL database (feeds' write locks hash their names).
const MIGRATION_LOCK: i64 = 0x6c62_6173_6564_6201;

/// Takes (or releases) the migration lock on PostgreSQL; SQLite's own
/// write lock already serialises migrations there.
pub fn migration_lock(conn: &mut DbConnection, take: bool) -> diesel::QueryResult<()> {
    if let DbConnection::Postgres(pg) = conn {
        let sql = if take {
            format!("SELECT pg_advisory_lock({MIGRATION_LOCK})")
        } else {
            format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")
        };
        pg.batch_execute(&sql)?;
    }
    Ok(())
}

impl DbConnection {
    /// A transaction that writes. On SQLite it begins `IMMEDIATE`, taking
    /// the write lock first: a transaction that read, then tried to write,
    /// would fail at once with "database is locked" when another writer
    /// came between, as `busy_timeout` cannot retry an upgrade. PostgreSQL
    /// needs no such care.
    pub fn write_transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Self) -> Result<T, E>,
        E: From<diesel::result::Error>,
    {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        match self {
            Self::Sqlite(conn) => {
                AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")?
            }
            Self::Postgres(_) => Self::begin_transaction(self)?,
        }
        match f(self) {
            Ok(value) => {
                Self::commit_transaction(self)?;
                Ok(value)
            }
            Err(e) => {
                Self::rollback_transaction(self)?;
                Err(e)
            }
        }
    }
}

/// Runs one statement on whichever engine `conn` is, with `$c` the
/// engine's own connection: for what `MultiConnection` cannot express
/// (upserts, multi-row inserts) though both engines can, in the same words.
#[macro_export]
macro_rules! on_engine {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgres($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}
