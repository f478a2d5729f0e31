//! Reads a Django project's database (the Django + REST framework proxy's):
//! `auth_user`, `auth_group`, `auth_permission` with `django_content_type`,
//! the three link tables, and `authtoken_token` when present. Read-only,
//! with plain SQL through diesel: the tables are Django's, not ours. On
//! SQLite (a file) or on PostgreSQL (a `postgres://` URL), with one reader.

use std::path::Path;

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Integer, Nullable, Text};
use diesel::{PgConnection, SqliteConnection};

use super::{DbConnection, DbError};

/// A user as Django keeps it.
#[derive(Debug, Clone, QueryableByName)]
pub struct DjangoUser {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Text)]
    pub username: String,
    #[diesel(sql_type = Text)]
    pub password: String,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Text)]
    pub first_name: String,
    #[diesel(sql_type = Text)]
    pub last_name: String,
    #[diesel(sql_type = Bool)]
    pub is_active: bool,
    #[diesel(sql_type = Bool)]
    pub is_staff: bool,
    #[diesel(sql_type = Bool)]
    pub is_superuser: bool,
    #[diesel(sql_type = Text)]
    pub date_joined: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_login: Option<String>,
}

#[derive(Debug, Clone, QueryableByName)]
pub struct DjangoGroup {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Text)]
    pub name: String,
}

/// A permission with its app label (`api`, `auth`, …).
#[derive(Debug, Clone, QueryableByName)]
pub struct DjangoPermission {
    #[diesel(sql_type = Integer)]
    pub id: i32,
    #[diesel(sql_type = Text)]
    pub app_label: String,
    #[diesel(sql_type = Text)]
    pub codename: String,
}

/// A link between two rows (user and group, group and permission, …).
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct Link {
    #[diesel(sql_type = Integer)]
    pub from: i32,
    #[diesel(sql_type = Integer)]
    pub to: i32,
}

/// A DRF token: its key in clear, as DRF stores it.
#[derive(Debug, Clone, QueryableByName)]
pub struct DjangoToken {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = Text)]
    pub created: String,
    #[diesel(sql_type = Integer)]
    pub user_id: i32,
}

/// Everything the import needs, read at once.
#[derive(Debug, Default)]
pub struct DjangoAuth {
    pub users: Vec<DjangoUser>,
    pub groups: Vec<DjangoGroup>,
    pub permissions: Vec<DjangoPermission>,
    pub user_groups: Vec<Link>,
    pub group_permissions: Vec<Link>,
    pub user_permissions: Vec<Link>,
    /// `None`: the project had no `rest_framework.authtoken`.
    pub tokens: Option<Vec<DjangoToken>>,
}

const REQUIRED: [&str; 7] = [
    "auth_user",
    "auth_group",
    "auth_permission",
    "django_content_type",
    "auth_user_groups",
    "auth_group_permissions",
    "auth_user_user_permissions",
];

/// A table's name, as the engine's catalogue lists it.
#[derive(QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Where the two engines' SQL differs: the catalogue of tables, and
/// datetimes (text in SQLite, `timestamp with time zone` in PostgreSQL,
/// read as UTC text to the second).
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn of(conn: &DbConnection) -> Self {
        match conn {
            DbConnection::Sqlite(_) => Self::Sqlite,
            DbConnection::Postgres(_) => Self::Postgres,
        }
    }

    fn article_name(self) -> &'static str {
        match self {
            Self::Sqlite => "an SQLite database",
            Self::Postgres => "a PostgreSQL database",
        }
    }

    fn tables(self) -> &'static str {
        match self {
            Self::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
            Self::Postgres => {
                "SELECT CAST(table_name AS text) AS name FROM information_schema.tables \
                 WHERE table_schema = current_schema()"
            }
        }
    }

    fn time(self, column: &str) -> String {
        match self {
            Self::Sqlite => column.to_owned(),
            Self::Postgres => {
                format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')")
            }
        }
    }
}

/// Rows of `sql` on either engine. Ids and names are cast to `integer`
/// and `text`, which both engines read alike (Django's ids may be
/// `bigint`, its names `varchar`).
fn load<T>(conn: &mut DbConnection, sql: &str) -> Result<Vec<T>, DbError>
where
    T: QueryableByName<diesel::pg::Pg> + QueryableByName<diesel::sqlite::Sqlite> + 'static,
{
    Ok(crate::on_engine!(conn, |c| diesel::sql_query(sql).load::<T>(c))?)
}

/// Reads a Django SQLite database. A path that is no SQLite file, or one
/// without Django's auth tables, is a clear error, and nothing is created.
pub fn read_sqlite(path: &Path) -> Result<DjangoAuth, DbError> {
    let not_django = |why: String| DbError::Config(format!("{}: {why}", path.display()));
    if !path.is_file() {
        return Err(not_django("no such file".into()));
    }
    let url = path.to_str().ok_or_else(|| not_django("the path is not UTF-8".into()))?;
    let mut conn =
        SqliteConnection::establish(url).map_err(|e| not_django(format!("cannot open it: {e}")))?;
    conn.batch_execute("PRAGMA query_only = ON;")
        .map_err(|e| not_django(format!("not an SQLite database ({e})")))?;
    read(&mut DbConnection::Sqlite(conn), not_django)
}

/// Reads a Django database on PostgreSQL (`postgres://…`), in a read-only
/// session. Errors name the server without its credentials.
pub fn read_postgres(url: &str) -> Result<DjangoAuth, DbError> {
    let shown = redacted(url);
    let fail = |why: String| DbError::Config(format!("{shown}: {why}"));
    let mut conn =
        PgConnection::establish(url).map_err(|e| fail(format!("cannot connect ({e})")))?;
    conn.batch_execute("SET default_transaction_read_only = on")
        .map_err(|e| fail(e.to_string()))?;
    read(&mut DbConnection::Postgres(conn), fail)
}

/// Everything the import needs, from a database that has Django's auth
/// tables (else `fail` says which one is missing).
fn read(conn: &mut DbConnection, fail: impl Fn(String) -> DbError) -> Result<DjangoAuth, DbError> {
    let dialect = Dialect::of(conn);
    let tables: Vec<TableName> = load(conn, dialect.tables())
        .map_err(|e| fail(format!("not {} ({e})", dialect.article_name())))?;
    let has = |table: &str| tables.iter().any(|t| t.name == table);
    if let Some(missing) = REQUIRED.iter().find(|t| !has(t)) {
        return Err(fail(format!("not a Django database: it has no table {missing}")));
    }
    let links = |conn: &mut DbConnection, from: &str, to: &str, table: &str| {
        load::<Link>(
            conn,
            &format!(
                "SELECT CAST({from} AS integer) AS \"from\", CAST({to} AS integer) AS \"to\" \
                 FROM {table}"
            ),
        )
    };
    let tokens = if has("authtoken_token") {
        let sql = format!(
            "SELECT CAST(key AS text) AS key, {} AS created, CAST(user_id AS integer) AS user_id \
             FROM authtoken_token",
            dialect.time("created")
        );
        Some(load(conn, &sql)?)
    } else {
        None
    };
    let users = format!(
        "SELECT CAST(id AS integer) AS id, CAST(username AS text) AS username, \
         CAST(password AS text) AS password, CAST(email AS text) AS email, \
         CAST(first_name AS text) AS first_name, CAST(last_name AS text) AS last_name, \
         is_active, is_staff, is_superuser, {} AS date_joined, {} AS last_login \
         FROM auth_user ORDER BY id",
        dialect.time("date_joined"),
        dialect.time("last_login")
    );
    Ok(DjangoAuth {
        users: load(conn, &users)?,
        groups: load(
            conn,
            "SELECT CAST(id AS integer) AS id, CAST(name AS text) AS name FROM auth_group \
             ORDER BY id",
        )?,
        permissions: load(
            conn,
            "SELECT CAST(p.id AS integer) AS id, CAST(c.app_label AS text) AS app_label, \
             CAST(p.codename AS text) AS codename FROM auth_permission p \
             JOIN django_content_type c ON c.id = p.content_type_id ORDER BY p.id",
        )?,
        user_groups: links(conn, "user_id", "group_id", "auth_user_groups")?,
        group_permissions: links(conn, "group_id", "permission_id", "auth_group_permissions")?,
        user_permissions: links(conn, "user_id", "permission_id", "auth_user_user_permissions")?,
        tokens,
    })
}

/// The URL without its credentials, for messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://{host}"),
        _ => url.to_owned(),
    }
}

/// Django's SQLite datetimes (`2026-11-28 00:21:50.123456`, sometimes with
/// a `T` or an offset): as UTC, to the second.
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let text = text.trim();
    let plain = text.get(..19)?.replace('T', " ");
    NaiveDateTime::parse_from_str(&plain, "%Y-%m-%d %H:%M:%S").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn djangos_datetimes_read_as_utc_seconds() {
        let at = parse_datetime("2026-11-28 00:21:50.123456").unwrap();
        assert_eq!(at.to_string(), "2026-11-28 00:21:50");
        assert!(parse_datetime("2026-11-28T00:21:50+00:00").is_some());
        assert!(parse_datetime("yesterday").is_none());
    }
}
