//! The migrations this binary carries, written once for both engines.
//!
//! Each `migrations/<version>_<name>/` holds an `up.sql` and a `down.sql` in
//! SQL that both engines accept, but for one thing: an auto-numbered key is
//! written as PostgreSQL has it, `SERIAL PRIMARY KEY`, and SQLite gets
//! `INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL` (Django's choice there: a
//! deleted row's id is never handed out again). What only one engine can
//! say (triggers) stands beside them in `up.<engine>.sql`, run after
//! `up.sql`, and `down.<engine>.sql`, run before `down.sql`. Versions are
//! diesel's (the folder name's date and number), so a database migrated by
//! `embed_migrations!` reads the same.

use std::fmt;

use diesel::connection::BoxableConnection;
use diesel::migration::{
    Migration, MigrationMetadata, MigrationName, MigrationSource, MigrationVersion, Result,
};

use super::conn::MultiBackend;

/// One migration's files.
struct Files {
    name: &'static str,
    up: &'static str,
    down: &'static str,
    /// `(up, down)` for PostgreSQL and for SQLite, where the engines differ.
    per_engine: Option<[(&'static str, &'static str); 2]>,
}

macro_rules! sql {
    ($dir:literal, $file:literal) => {
        include_str!(concat!("../../migrations/", $dir, "/", $file))
    };
}

macro_rules! migration {
    ($dir:literal) => {
        Files {
            name: $dir,
            up: sql!($dir, "up.sql"),
            down: sql!($dir, "down.sql"),
            per_engine: None,
        }
    };
    ($dir:literal, per_engine) => {
        Files {
            name: $dir,
            up: sql!($dir, "up.sql"),
            down: sql!($dir, "down.sql"),
            per_engine: Some([
                (sql!($dir, "up.postgres.sql"), sql!($dir, "down.postgres.sql")),
                (sql!($dir, "up.sqlite.sql"), sql!($dir, "down.sqlite.sql")),
            ]),
        }
    };
}

/// In order; a new folder is added here too (a test checks the two agree).
const MIGRATIONS: &[Files] = &[
    migration!("2026-11-27-000001_auth"),
    migration!("2026-11-27-000002_admin_log"),
    migration!("2026-11-28-000003_group_rate_limit"),
    migration!("2026-11-28-000004_token_scopes"),
    migration!("2026-11-28-000005_access_log"),
    migration!("2026-11-28-000006_shared_state", per_engine),
    migration!("2026-12-01-000007_access_log_requests"),
    migration!("2026-12-01-000008_access_log_request_id"),
    migration!("2026-12-01-000009_idempotency_key"),
    migration!("2026-12-01-000010_feed_repair"),
    migration!("2026-12-01-000011_fine_grants"),
    migration!("2026-12-01-000012_oidc_identity"),
    migration!("2026-12-01-000013_two_factor"),
    migration!("2026-12-01-000014_token_last_address"),
    migration!("2026-12-02-000015_audit_minutes", per_engine),
];

/// The engine a migration is written out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

/// The migrations, as `engine` runs them.
pub struct Migrations(pub Engine);

impl MigrationSource<MultiBackend> for Migrations {
    fn migrations(&self) -> Result<Vec<Box<dyn Migration<MultiBackend>>>> {
        Ok(MIGRATIONS
            .iter()
            .map(|files| {
                Box::new(SqlMigration::new(files, self.0)) as Box<dyn Migration<MultiBackend>>
            })
            .collect())
    }
}

struct SqlMigration {
    name: Name,
    up: String,
    down: String,
}

impl SqlMigration {
    fn new(files: &Files, engine: Engine) -> Self {
        let (up, down) = match (files.per_engine, engine) {
            (None, _) => (files.up.to_owned(), files.down.to_owned()),
            (Some([(up, down), _]), Engine::Postgres) | (Some([_, (up, down)]), Engine::Sqlite) => {
                (format!("{}\n{up}", files.up), format!("{down}\n{}", files.down))
            }
        };
        Self { name: Name(files.name), up: dialect(&up, engine), down: dialect(&down, engine) }
    }
}

/// `sql` as `engine` says it.
fn dialect(sql: &str, engine: Engine) -> String {
    match engine {
        Engine::Postgres => sql.to_owned(),
        Engine::Sqlite => {
            sql.replace("SERIAL PRIMARY KEY", "INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL")
        }
    }
}

/// A folder name, `2026-11-27-000001_auth`.
struct Name(&'static str);

impl MigrationName for Name {
    /// Diesel's version of a folder: its date and number, digits only.
    fn version(&self) -> MigrationVersion<'_> {
        self.0.split('_').next().unwrap_or(self.0).replace('-', "").into()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Each migration runs in a transaction of its own (diesel's default).
struct InTransaction;

impl MigrationMetadata for InTransaction {}

impl Migration<MultiBackend> for SqlMigration {
    fn run(&self, conn: &mut dyn BoxableConnection<MultiBackend>) -> Result<()> {
        Ok(conn.batch_execute(&self.up)?)
    }

    fn revert(&self, conn: &mut dyn BoxableConnection<MultiBackend>) -> Result<()> {
        Ok(conn.batch_execute(&self.down)?)
    }

    fn metadata(&self) -> &dyn MigrationMetadata {
        &InTransaction
    }

    fn name(&self) -> &dyn MigrationName {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_folder_is_listed_in_order() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut folders: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|files| files.name).collect();
        assert_eq!(folders, listed);
    }

    #[test]
    fn versions_are_diesels() {
        assert_eq!(Name("2026-11-27-000001_auth").version().to_string(), "20261127000001");
    }

    #[test]
    fn sqlite_numbers_keys_as_django_does_and_postgresql_as_written() {
        let sqlite = SqlMigration::new(&MIGRATIONS[0], Engine::Sqlite);
        assert!(sqlite.up.contains("id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL"));
        assert!(!sqlite.up.contains("SERIAL"));
        let postgres = SqlMigration::new(&MIGRATIONS[0], Engine::Postgres);
        assert!(postgres.up.contains("id SERIAL PRIMARY KEY"));
        let triggers = SqlMigration::new(&MIGRATIONS[5], Engine::Postgres);
        assert!(triggers.up.contains("CREATE TABLE throttle") && triggers.up.contains("plpgsql"));
        assert!(triggers.down.find("DROP FUNCTION") < triggers.down.find("DROP TABLE"));
    }
}
