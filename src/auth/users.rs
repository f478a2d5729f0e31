//! Creating users, groups and tokens with their permissions and grants: the
//! one place the CLI, the API and the admin site do it through.

use chrono::NaiveDateTime;
use diesel::Connection;
use diesel::sqlite::SqliteConnection;

use super::token::{self, PlainToken};
use crate::db::DbError;
use crate::db::models::{Group, NewUser, Token, User};
use crate::db::queries::{self, Holder, NewToken};
use crate::proxy::classify::is_valid_name;

#[derive(Debug, Default, Clone)]
pub struct UserSpec {
    pub username: String,
    pub email: String,
    pub staff: bool,
    pub superuser: bool,
    pub groups: Vec<String>,
    pub perms: Vec<String>,
    /// `(codename, feed)`.
    pub grants: Vec<(String, String)>,
}

/// `lbasedb.view_data=sensors` into its codename and feed.
pub fn parse_grant(text: &str) -> Result<(String, String), DbError> {
    let (codename, feed) = text
        .split_once('=')
        .ok_or_else(|| DbError::Invalid(format!("grant {text:?}: expected CODENAME=FEED")))?;
    if !codename.starts_with("lbasedb.") {
        return Err(DbError::Invalid(format!(
            "grant {text:?}: only lbasedb permissions are granted per feed"
        )));
    }
    if !is_valid_name(feed) {
        return Err(DbError::Invalid(format!(
            "grant {text:?}: {feed:?} is not a valid feed name"
        )));
    }
    Ok((codename.to_owned(), feed.to_owned()))
}

pub fn validate_username(username: &str) -> Result<(), DbError> {
    let ok = !username.is_empty()
        && username.len() <= 150
        && username
            .chars()
            .all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(DbError::Invalid(
            "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters."
                .into(),
        ))
    }
}

/// Creates a user (the password already hashed) with groups, permissions
/// and grants, all or nothing.
pub fn create_user(
    conn: &mut SqliteConnection,
    spec: &UserSpec,
    phc: &str,
) -> Result<User, DbError> {
    validate_username(&spec.username)?;
    conn.transaction(|conn| {
        if queries::user_by_username(conn, &spec.username)?.is_some() {
            return Err(DbError::Invalid(
                "A user with that username already exists.".into(),
            ));
        }
        let user = queries::create_user(
            conn,
            &NewUser {
                username: &spec.username,
                password: phc,
                email: &spec.email,
                is_staff: spec.staff || spec.superuser,
                is_superuser: spec.superuser,
                date_joined: queries::now(),
            },
        )?;
        for name in &spec.groups {
            let group = queries::group_by_name(conn, name)?
                .ok_or_else(|| DbError::Invalid(format!("unknown group {name:?}")))?;
            queries::add_user_to_group(conn, user.id, group.id)?;
        }
        for codename in &spec.perms {
            let perm = queries::permission_by_codename(conn, codename)?;
            queries::add_user_permission(conn, user.id, perm.id)?;
        }
        for (codename, feed) in &spec.grants {
            let perm = queries::permission_by_codename(conn, codename)?;
            queries::add_feed_grant(conn, Holder::User(user.id), perm.id, feed)?;
        }
        Ok(user)
    })
}

pub fn create_group(
    conn: &mut SqliteConnection,
    name: &str,
    perms: &[String],
    grants: &[(String, String)],
) -> Result<Group, DbError> {
    if name.trim().is_empty() || name.len() > 150 {
        return Err(DbError::Invalid(
            "A group name is 1 to 150 characters.".into(),
        ));
    }
    conn.transaction(|conn| {
        if queries::group_by_name(conn, name)?.is_some() {
            return Err(DbError::Invalid(
                "Group with this Name already exists.".into(),
            ));
        }
        let group = queries::create_group(conn, name)?;
        for codename in perms {
            let perm = queries::permission_by_codename(conn, codename)?;
            queries::add_group_permission(conn, group.id, perm.id)?;
        }
        for (codename, feed) in grants {
            let perm = queries::permission_by_codename(conn, codename)?;
            queries::add_feed_grant(conn, Holder::Group(group.id), perm.id, feed)?;
        }
        Ok(group)
    })
}

/// Issues a token for a user: the secret is in the answer, and nowhere else.
pub fn issue_token(
    conn: &mut SqliteConnection,
    user_id: i32,
    name: &str,
    expires_at: Option<NaiveDateTime>,
) -> Result<(Token, PlainToken), DbError> {
    let plain = token::generate();
    let stored = queries::create_token(
        conn,
        &NewToken {
            user_id,
            name,
            prefix: &plain.prefix,
            digest: &plain.digest,
            expires_at,
        },
    )?;
    Ok((stored, plain))
}

/// Sets a password (already hashed) and ends the user's sessions, but for
/// the one (by its key digest) that changed it, if any.
pub fn change_password(
    conn: &mut SqliteConnection,
    user_id: i32,
    phc: &str,
    keep_session: Option<&str>,
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        queries::set_password(conn, user_id, phc)?;
        queries::sessions_end_for_user(conn, user_id, keep_session)?;
        Ok(())
    })
}

pub fn set_active(conn: &mut SqliteConnection, user_id: i32, active: bool) -> Result<(), DbError> {
    conn.transaction(|conn| {
        queries::set_active(conn, user_id, active)?;
        if !active {
            queries::sessions_end_for_user(conn, user_id, None)?;
        }
        Ok(())
    })
}
