//! Rows of the proxy's tables.

use std::fmt;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::schema::{auth_group, auth_permission, auth_user, authtoken_token, feed_grant};

#[derive(Debug, Clone, HasQuery, Identifiable, Serialize, Deserialize)]
#[diesel(table_name = auth_user)]
pub struct User {
    pub id: i32,
    pub username: String,
    /// The argon2 PHC string; serialised only by `dumpdata`.
    pub password: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub date_joined: NaiveDateTime,
    pub last_login: Option<NaiveDateTime>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = auth_user)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub email: &'a str,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub date_joined: NaiveDateTime,
}

/// Every field of a user but its id, as a dump or a Django database brings
/// it (the password hash as is), and as `dumpdata` writes it.
#[derive(
    Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Serialize, Deserialize,
)]
#[diesel(table_name = auth_user)]
pub struct UserRecord {
    pub username: String,
    pub password: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub date_joined: NaiveDateTime,
    #[diesel(treat_none_as_null = true)]
    pub last_login: Option<NaiveDateTime>,
}

/// A user's own links: group ids, permission ids, grants.
#[derive(Debug, Clone)]
pub struct UserLinks {
    pub groups: Vec<i32>,
    pub perms: Vec<i32>,
    pub grants: Vec<crate::auth::grant::Grant>,
}

/// A user's own fields and links, as the change form sets them.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = auth_user)]
pub struct UserUpdate {
    pub username: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    /// Replaced apart (`set_user_links`).
    #[diesel(skip_update)]
    pub links: UserLinks,
}

/// A token but its id and owner, as a dump or a Django database brings it
/// (its digest only), and as `dumpdata` writes it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize, Deserialize)]
#[diesel(table_name = authtoken_token)]
pub struct TokenRecord {
    pub name: String,
    pub prefix: String,
    /// SHA-256 of the secret; the secret itself exists nowhere.
    pub digest: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked: bool,
    /// Absent from dumps made before scoped tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_networks: Option<String>,
}

#[derive(Debug, Clone, HasQuery, Identifiable, Serialize, Deserialize)]
#[diesel(table_name = auth_group)]
pub struct Group {
    pub id: i32,
    pub name: String,
    /// Its members' request rate, overriding `USER_RATE_LIMIT` ("600/min").
    pub rate_limit: Option<String>,
    /// Its members' write quota, overriding `WRITE_QUOTA`
    /// ("10000000rows/day,2GB/day").
    pub write_quota: Option<String>,
}

#[derive(Debug, Clone, HasQuery, Identifiable, Serialize)]
#[diesel(table_name = auth_permission)]
pub struct Permission {
    pub id: i32,
    pub app_label: String,
    pub codename: String,
    pub name: String,
}

impl Permission {
    /// Django's `app_label.codename`, e.g. `lbasedb.view_data`.
    pub fn full_codename(&self) -> String {
        format!("{}.{}", self.app_label, self.codename)
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = feed_grant)]
pub struct FeedGrant {
    pub id: i32,
    pub group_id: Option<i32>,
    pub user_id: Option<i32>,
    pub permission_id: i32,
    pub feed: String,
}

#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = authtoken_token)]
pub struct Token {
    pub id: i32,
    pub user_id: i32,
    pub name: String,
    pub prefix: String,
    pub digest: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked: bool,
    /// What the token may do, of what its user may ("lbasedb.view_data=xy,…").
    pub scopes: Option<String>,
    /// Where it may be used from ("203.0.113.0/24,…").
    pub allowed_networks: Option<String>,
    /// The address it was last used from (with `last_used_at`).
    pub last_used_from: Option<String>,
}

/// Whether a token works: active, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

impl TokenStatus {
    pub const ALL: [Self; 3] = [Self::Active, Self::Expired, Self::Revoked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_active(self) -> bool {
        self == Self::Active
    }
}

impl fmt::Display for TokenStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Token {
    /// Revoked first: a revoked token is revoked however long it had left.
    pub fn status(&self, now: NaiveDateTime) -> TokenStatus {
        if self.revoked {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }
}

/// The digest stays out of logs and debug output.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("expires_at", &self.expires_at)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = super::schema::admin_log)]
pub struct LogEntry {
    pub id: i32,
    pub action_time: NaiveDateTime,
    pub user_id: Option<i32>,
    pub username: String,
    pub object_type: String,
    pub object_id: String,
    pub object_repr: String,
    pub action: String,
    pub changes: String,
}

/// One proxied request, as the audit keeps it.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Serialize)]
#[diesel(table_name = super::schema::access_log)]
pub struct Access {
    pub at: NaiveDateTime,
    pub username: String,
    /// A token's prefix, "session", or "" (no credentials).
    pub credential: String,
    pub client: String,
    pub endpoint: String,
    pub method: String,
    pub feed: Option<String>,
    pub status: i32,
    pub bytes_in: i64,
    pub bytes_out: i64,
    /// The requests' durations added up; `duration_max_ms` the longest.
    pub duration_ms: f64,
    /// How many requests the row stands for (one a minute and key by
    /// default, see `audit`).
    pub requests: i64,
    /// `X-Request-Id` (`requestid`); none for a row of several requests.
    pub request_id: Option<String>,
    /// What a read of rows named: its columns, comma-separated as named
    /// (the same for every request a row counts), and the span of the rows
    /// read, from `read_from` to `read_to` (none: to the end).
    pub read_columns: Option<String>,
    pub duration_max_ms: f64,
    pub read_from: Option<i64>,
    pub read_to: Option<i64>,
}

impl Access {
    /// The rows read, `FROM..TO` (`FROM..` to the end), as the admin and
    /// the CSV show them.
    pub fn rows_read(&self) -> Option<String> {
        let from = self.read_from?;
        Some(format!("{from}..{}", self.read_to.map(|to| to.to_string()).unwrap_or_default()))
    }

    /// The row with what a read named (`ReadQuery::audited`): its columns,
    /// and its rows from and to.
    pub fn with_read(self, read: Option<(String, i64, Option<i64>)>) -> Self {
        match read {
            Some((columns, from, to)) => {
                Self { read_columns: Some(columns), read_from: Some(from), read_to: to, ..self }
            }
            None => Self { read_columns: None, read_from: None, read_to: None, ..self },
        }
    }
}
