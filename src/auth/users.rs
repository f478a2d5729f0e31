//! Creating and changing users, groups and tokens with their permissions
//! and grants: the one place the CLI, the API and the admin site do it
//! through. Each write that a person makes names its `Actor`, and the
//! rules of `guard` run inside the write's own transaction. Transactions
//! that read before they write begin IMMEDIATE: a deferred one would fail
//! with "database is locked" when another writer got in between, rather
//! than wait its turn.

use chrono::NaiveDateTime;
use diesel::sqlite::SqliteConnection;

use super::guard::{self, Actor, Denied, Powers};
use super::token::{self, PlainToken};
use crate::db::DbError;
use crate::db::models::{Group, NewUser, Token, User};
use crate::db::queries::{self, Holder, NewLogEntry, NewToken, UserUpdate};
use crate::lbasedb::names::is_valid_name;

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
    conn.immediate_transaction(|conn| {
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
    conn.immediate_transaction(|conn| {
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

/// Issues a token for a user: the secret is in the answer, and nowhere
/// else. Making a token for someone else is acting as them (`guard`).
pub fn issue_token(
    conn: &mut SqliteConnection,
    actor: Actor,
    user_id: i32,
    name: &str,
    expires_at: Option<NaiveDateTime>,
) -> Result<(Token, PlainToken), DbError> {
    conn.immediate_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((actor_id, powers)) = actor_powers(conn, actor)? {
            guard::may_act_as(actor_id, &powers, user_id, &powers_of(conn, &target)?)?;
        }
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
    })
}

/// Sets a password (already hashed) and ends the user's sessions, but for
/// the one (by its key digest) that changed it, if any. Setting someone
/// else's password is acting as them (`guard`).
pub fn set_password(
    conn: &mut SqliteConnection,
    actor: Actor,
    user_id: i32,
    phc: &str,
    keep_session: Option<&str>,
) -> Result<(), DbError> {
    conn.immediate_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((actor_id, powers)) = actor_powers(conn, actor)? {
            guard::may_act_as(actor_id, &powers, user_id, &powers_of(conn, &target)?)?;
        }
        queries::set_password(conn, user_id, phc)?;
        queries::sessions_end_for_user(conn, user_id, keep_session)?;
        Ok(())
    })
}

/// Activates or deactivates a user. Deactivating ends the user's sessions
/// and revokes its tokens at once; the last active superuser stays.
pub fn set_active(
    conn: &mut SqliteConnection,
    actor: Actor,
    user_id: i32,
    active: bool,
) -> Result<(), DbError> {
    conn.immediate_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((_, powers)) = actor_powers(conn, actor)? {
            guard::may_change_user(&powers, target.is_superuser, target.is_superuser)?;
        }
        keep_a_superuser(conn, &target, target.is_superuser && active)?;
        queries::set_active(conn, user_id, active)?;
        if target.is_active && !active {
            end_access(conn, user_id)?;
        }
        Ok(())
    })
}

/// Saves the change form: fields, groups, permissions and grants, by the
/// rules of `guard` for what was added, and never leaving no active
/// superuser. Deactivating ends sessions and tokens at once.
pub fn update_user(
    conn: &mut SqliteConnection,
    actor: Actor,
    user_id: i32,
    update: &UserUpdate,
) -> Result<(), DbError> {
    conn.immediate_transaction(|conn| {
        let before = find_user(conn, user_id)?;
        if let Some((_, powers)) = actor_powers(conn, actor)? {
            guard::may_change_user(&powers, before.is_superuser, update.is_superuser)?;
            let old = queries::user_links(conn, user_id)?;
            check_gifts(
                conn,
                &powers,
                (&old.perms, &old.grants),
                (&update.links.perms, &update.links.grants),
            )?;
            for group in update
                .links
                .groups
                .iter()
                .filter(|g| !old.groups.contains(g))
            {
                let held = queries::group_powers(conn, &[*group])?;
                let name = queries::group_by_id(conn, *group)?
                    .map(|g| g.name)
                    .unwrap_or_default();
                let holds = Powers {
                    superuser: false,
                    perms: held.perms.into_iter().collect(),
                    grants: held.grants.into_iter().collect(),
                };
                guard::may_add_to_group(&powers, &name, &holds)?;
            }
        }
        keep_a_superuser(conn, &before, update.is_superuser && update.is_active)?;
        queries::update_user(conn, user_id, update)?;
        if before.is_active && !update.is_active {
            end_access(conn, user_id)?;
        }
        Ok(())
    })
}

/// Deletes a user (its tokens and sessions go with it), recording `log`
/// in the same transaction; a superuser only by a superuser, and never the
/// last active one.
pub fn delete_user(
    conn: &mut SqliteConnection,
    actor: Actor,
    user_id: i32,
    log: Option<&NewLogEntry<'_>>,
) -> Result<User, DbError> {
    conn.immediate_transaction(|conn| {
        let target = find_user(conn, user_id)?;
        if let Some((_, powers)) = actor_powers(conn, actor)? {
            guard::may_delete_user(&powers, target.is_superuser)?;
        }
        keep_a_superuser(conn, &target, false)?;
        if let Some(log) = log {
            // Before the deletion: an actor deleting itself is still there
            // to be named (the row's user id then becomes NULL).
            queries::log_action(conn, log)?;
        }
        queries::delete_user(conn, user_id)?;
        Ok(target)
    })
}

/// Adds (no id) or changes a group, giving only what the actor holds.
/// Answers the group's id.
pub fn save_group(
    conn: &mut SqliteConnection,
    actor: Actor,
    id: Option<i32>,
    name: &str,
    perms: &[i32],
    grants: &[(i32, String)],
) -> Result<i32, DbError> {
    conn.immediate_transaction(|conn| {
        if let Some((_, powers)) = actor_powers(conn, actor)? {
            let (old_perms, old_grants) = match id {
                Some(id) => queries::group_links(conn, id)?,
                None => (Vec::new(), Vec::new()),
            };
            check_gifts(conn, &powers, (&old_perms, &old_grants), (perms, grants))?;
        }
        let id = match id {
            Some(id) => id,
            None => queries::create_group(conn, name)?.id,
        };
        queries::update_group(conn, id, name, perms, grants)?;
        Ok(id)
    })
}

/// What happened to a feed through the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedChange {
    Deleted(String),
    Renamed { old: String, new: String },
}

/// Grants follow their feed: gone with it, or moved to its new name.
pub fn feed_changed(conn: &mut SqliteConnection, change: &FeedChange) -> Result<usize, DbError> {
    conn.immediate_transaction(|conn| match change {
        FeedChange::Deleted(feed) => queries::delete_feed_grants(conn, feed),
        FeedChange::Renamed { old, new } => queries::rename_feed_grants(conn, old, new),
    })
}

fn find_user(conn: &mut SqliteConnection, user_id: i32) -> Result<User, DbError> {
    queries::user_by_id(conn, user_id)?.ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// What a user holds now, read in the caller's transaction.
pub fn powers_of(conn: &mut SqliteConnection, user: &User) -> Result<Powers, DbError> {
    let holdings = queries::holdings(conn, user.id)?;
    Ok(Powers {
        superuser: user.is_superuser && user.is_active,
        perms: holdings.perms.into_iter().collect(),
        grants: holdings
            .grants
            .into_iter()
            .map(|(feed, codename)| (codename, feed))
            .collect(),
    })
}

/// The acting user's id and powers; `None` for the system. An actor whose
/// account was deactivated or deleted meanwhile holds nothing.
fn actor_powers(
    conn: &mut SqliteConnection,
    actor: Actor,
) -> Result<Option<(i32, Powers)>, DbError> {
    let Actor::User(id) = actor else {
        return Ok(None);
    };
    let powers = match queries::user_by_id(conn, id)? {
        Some(user) if user.is_active => powers_of(conn, &user)?,
        _ => Powers::default(),
    };
    Ok(Some((id, powers)))
}

/// Permissions and grants added by a write must be held by its actor.
fn check_gifts(
    conn: &mut SqliteConnection,
    powers: &Powers,
    old: (&[i32], &[(i32, String)]),
    new: (&[i32], &[(i32, String)]),
) -> Result<(), DbError> {
    let added_perms: Vec<i32> = new
        .0
        .iter()
        .filter(|p| !old.0.contains(p))
        .copied()
        .collect();
    let added_grants: Vec<&(i32, String)> = new.1.iter().filter(|g| !old.1.contains(g)).collect();
    let ids: Vec<i32> = added_perms
        .iter()
        .copied()
        .chain(added_grants.iter().map(|(p, _)| *p))
        .collect();
    let names = queries::permission_codenames(conn, &ids)?;
    let name = |id: &i32| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let perms: Vec<String> = added_perms.iter().map(name).collect();
    let grants: Vec<(String, String)> = added_grants
        .iter()
        .map(|(p, feed)| (name(p), feed.clone()))
        .collect();
    guard::may_give(powers, &perms, &grants)?;
    Ok(())
}

/// Refuses a write that would leave no active superuser: someone must
/// always be able to administer everything.
fn keep_a_superuser(
    conn: &mut SqliteConnection,
    user: &User,
    remains: bool,
) -> Result<(), DbError> {
    if user.is_superuser
        && user.is_active
        && !remains
        && queries::other_active_superusers(conn, user.id)? == 0
    {
        return Err(Denied(
            "This is the last active superuser: it cannot be deleted, deactivated or demoted \
             until there is another."
                .into(),
        )
        .into());
    }
    Ok(())
}

/// A deactivated user's sessions end and its tokens are revoked at once.
fn end_access(conn: &mut SqliteConnection, user_id: i32) -> Result<(), DbError> {
    queries::sessions_end_for_user(conn, user_id, None)?;
    queries::revoke_tokens_of_user(conn, user_id)?;
    Ok(())
}
