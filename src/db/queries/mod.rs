//! Query functions by table: plain, synchronous, over `&mut DbConnection` (either engine);
//! the async side calls them through `db::run`, and every write that a person
//! makes goes through the service layer (`auth::users`). Each table's module
//! is re-exported here, so callers name `queries::user_by_id`.

use crate::db::DbConnection;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use super::DbError;
use super::models::{Group, NewUser, Permission, Token, TokenStatus, User};
use super::schema::{
    auth_group, auth_group_permissions, auth_permission, auth_user, auth_user_groups,
    auth_user_user_permissions, authtoken_token, feed_grant, session,
};

type Conn = DbConnection;

mod grants;
mod groups;
mod idempotency;
mod identities;
mod log;
mod permissions;
mod quota;
mod repairs;
mod sessions;
mod shared;
mod tokens;
mod totp;
mod users;

pub use grants::*;
pub use groups::*;
pub use idempotency::*;
pub use identities::*;
pub use log::*;
pub use permissions::*;
pub use quota::*;
pub use repairs::*;
pub use sessions::*;
pub use shared::*;
pub use tokens::*;
pub use totp::*;
pub use users::*;

diesel::define_sql_function! {
    /// For searches in any case: SQLite's `LIKE` ignores ASCII case,
    /// PostgreSQL's does not.
    fn lower<T: diesel::sql_types::SingleValue>(x: T) -> T;
}

/// A permission's full codename (`lbasedb.view_data`), joined by the
/// database (`||` in both engines), as checks, forms and dumps name it.
pub fn full_codename() -> diesel::dsl::Concat<
    diesel::dsl::Concat<auth_permission::app_label, &'static str>,
    auth_permission::codename,
> {
    auth_permission::app_label.concat(".").concat(auth_permission::codename)
}

/// Now, to the microsecond: what PostgreSQL's `timestamp` keeps, so that
/// an installation moved between engines keeps its times exactly.
pub fn now() -> NaiveDateTime {
    use chrono::SubsecRound;
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// A `LIKE` pattern matching `text` anywhere, its own `%`, `_` and `\`
/// taken literally (with `ESCAPE '\'`).
pub fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}
