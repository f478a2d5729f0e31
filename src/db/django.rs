//! Reads a Django project's database (the Django + REST framework proxy's):
//! `auth_user`, `auth_group`, `auth_permission` with `django_content_type`,
//! the three link tables, and `authtoken_token` when present. Read-only,
//! with plain SQL: the tables are Django's, not ours. On SQLite (a file) or
//! on PostgreSQL (a `postgres://` URL).

use std::path::Path;

use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::sqlite::SqliteConnection;

use super::DbError;

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

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn has_table(conn: &mut SqliteConnection, table: &str) -> Result<bool, DbError> {
    let found: Count = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = ?",
    )
    .bind::<Text, _>(table)
    .get_result(conn)?;
    Ok(found.n > 0)
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
    for table in REQUIRED {
        let present = has_table(&mut conn, table)
            .map_err(|e| not_django(format!("not an SQLite database ({e})")))?;
        if !present {
            return Err(not_django(format!("not a Django database: it has no table {table}")));
        }
    }
    read(&mut conn)
}

fn read(conn: &mut SqliteConnection) -> Result<DjangoAuth, DbError> {
    let links = |conn: &mut SqliteConnection, sql: &str| -> Result<Vec<Link>, DbError> {
        Ok(diesel::sql_query(sql).load(conn)?)
    };
    let tokens = if has_table(conn, "authtoken_token")? {
        Some(diesel::sql_query("SELECT key, created, user_id FROM authtoken_token").load(conn)?)
    } else {
        None
    };
    Ok(DjangoAuth {
        users: diesel::sql_query(
            "SELECT id, username, password, email, first_name, last_name, is_active, \
             is_staff, is_superuser, date_joined, last_login FROM auth_user ORDER BY id",
        )
        .load(conn)?,
        groups: diesel::sql_query("SELECT id, name FROM auth_group ORDER BY id").load(conn)?,
        permissions: diesel::sql_query(
            "SELECT p.id, c.app_label, p.codename FROM auth_permission p \
             JOIN django_content_type c ON c.id = p.content_type_id ORDER BY p.id",
        )
        .load(conn)?,
        user_groups: links(
            conn,
            "SELECT user_id AS \"from\", group_id AS \"to\" FROM auth_user_groups",
        )?,
        group_permissions: links(
            conn,
            "SELECT group_id AS \"from\", permission_id AS \"to\" FROM auth_group_permissions",
        )?,
        user_permissions: links(
            conn,
            "SELECT user_id AS \"from\", permission_id AS \"to\" FROM auth_user_user_permissions",
        )?,
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

/// Django's datetimes as our readers take them: UTC text, to the second.
const PG_TIME: &str = "'YYYY-MM-DD HH24:MI:SS'";

/// Reads a Django database on PostgreSQL (`postgres://…`), in a read-only
/// session. Errors name the server without its credentials.
pub fn read_postgres(url: &str) -> Result<DjangoAuth, DbError> {
    let shown = redacted(url);
    let fail = |why: String| DbError::Config(format!("{shown}: {why}"));
    let mut client = postgres::Client::connect(url, postgres::NoTls)
        .map_err(|e| fail(format!("cannot connect ({e})")))?;
    client
        .batch_execute("SET default_transaction_read_only = on")
        .map_err(|e| fail(e.to_string()))?;
    let tables: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema()",
            &[],
        )
        .map_err(|e| fail(e.to_string()))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if let Some(missing) = REQUIRED.iter().find(|t| !tables.iter().any(|have| have == *t)) {
        return Err(fail(format!("not a Django database: it has no table {missing}")));
    }
    read_pg(&mut client, tables.iter().any(|t| t == "authtoken_token"))
        .map_err(|e| fail(e.to_string()))
}

fn pg_users(client: &mut postgres::Client) -> Result<Vec<DjangoUser>, postgres::Error> {
    let sql = format!(
        "SELECT id::int4, username::text, password::text, email::text, first_name::text, \
         last_name::text, is_active, is_staff, is_superuser, \
         to_char(date_joined AT TIME ZONE 'UTC', {PG_TIME}), \
         to_char(last_login AT TIME ZONE 'UTC', {PG_TIME}) FROM auth_user ORDER BY id"
    );
    Ok(client
        .query(&sql, &[])?
        .iter()
        .map(|r| DjangoUser {
            id: r.get(0),
            username: r.get(1),
            password: r.get(2),
            email: r.get(3),
            first_name: r.get(4),
            last_name: r.get(5),
            is_active: r.get(6),
            is_staff: r.get(7),
            is_superuser: r.get(8),
            date_joined: r.get(9),
            last_login: r.get(10),
        })
        .collect())
}

fn read_pg(
    client: &mut postgres::Client,
    with_tokens: bool,
) -> Result<DjangoAuth, postgres::Error> {
    let users = pg_users(client)?;
    let mut rows = |sql: &str| client.query(sql, &[]);
    let groups = rows("SELECT id::int4, name::text FROM auth_group ORDER BY id")?
        .iter()
        .map(|r| DjangoGroup { id: r.get(0), name: r.get(1) })
        .collect();
    let permissions = rows(
        "SELECT p.id::int4, c.app_label::text, p.codename::text FROM auth_permission p \
         JOIN django_content_type c ON c.id = p.content_type_id ORDER BY p.id",
    )?
    .iter()
    .map(|r| DjangoPermission { id: r.get(0), app_label: r.get(1), codename: r.get(2) })
    .collect();
    let mut links = |sql: &str| -> Result<Vec<Link>, postgres::Error> {
        Ok(client.query(sql, &[])?.iter().map(|r| Link { from: r.get(0), to: r.get(1) }).collect())
    };
    let user_groups = links("SELECT user_id::int4, group_id::int4 FROM auth_user_groups")?;
    let group_permissions =
        links("SELECT group_id::int4, permission_id::int4 FROM auth_group_permissions")?;
    let user_permissions =
        links("SELECT user_id::int4, permission_id::int4 FROM auth_user_user_permissions")?;
    let tokens = if with_tokens {
        let sql = format!(
            "SELECT key::text, to_char(created AT TIME ZONE 'UTC', {PG_TIME}), user_id::int4 \
             FROM authtoken_token"
        );
        Some(
            client
                .query(&sql, &[])?
                .iter()
                .map(|r| DjangoToken { key: r.get(0), created: r.get(1), user_id: r.get(2) })
                .collect(),
        )
    } else {
        None
    };
    Ok(DjangoAuth {
        users,
        groups,
        permissions,
        user_groups,
        group_permissions,
        user_permissions,
        tokens,
    })
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
