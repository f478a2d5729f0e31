//! `dumpdata` / `loaddata`: users (with their password hashes), groups,
//! permissions, feed grants and token digests as JSON, keyed by natural
//! keys (usernames, group names, codenames, token prefixes) so that a dump
//! loads into another database whatever its ids.

use crate::db::DbConnection;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::DbError;
use super::models::{Group, Token, TokenRecord, User, UserRecord};
use super::queries::{self, Holder};
use super::schema::{
    auth_group, auth_group_permissions, auth_permission, auth_user, auth_user_groups,
    auth_user_user_permissions, authtoken_token, feed_grant,
};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Dump {
    pub version: u32,
    pub groups: Vec<GroupDump>,
    pub users: Vec<UserDump>,
    pub tokens: Vec<TokenDump>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Grant {
    pub permission: String,
    pub feed: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupDump {
    pub name: String,
    pub permissions: Vec<String>,
    pub feed_grants: Vec<Grant>,
    /// Absent from dumps made before group rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct UserDump {
    pub username: String,
    pub password: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub is_staff: bool,
    pub is_superuser: bool,
    pub date_joined: NaiveDateTime,
    pub last_login: Option<NaiveDateTime>,
    pub groups: Vec<String>,
    pub permissions: Vec<String>,
    pub feed_grants: Vec<Grant>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenDump {
    pub user: String,
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

fn codenames(rows: Vec<(String, String)>) -> Vec<String> {
    let mut names: Vec<String> =
        rows.into_iter().map(|(app, code)| format!("{app}.{code}")).collect();
    names.sort();
    names
}

fn grants(rows: Vec<(String, String, String)>) -> Vec<Grant> {
    let mut grants: Vec<Grant> = rows
        .into_iter()
        .map(|(feed, app, code)| Grant { permission: format!("{app}.{code}"), feed })
        .collect();
    grants.sort_by(|a, b| (&a.feed, &a.permission).cmp(&(&b.feed, &b.permission)));
    grants
}

pub fn dump(conn: &mut DbConnection) -> Result<Dump, DbError> {
    Ok(Dump {
        version: FORMAT_VERSION,
        groups: dump_groups(conn)?,
        users: dump_users(conn)?,
        tokens: dump_tokens(conn)?,
    })
}

fn dump_groups(conn: &mut DbConnection) -> Result<Vec<GroupDump>, DbError> {
    let mut groups = Vec::new();
    for group in auth_group::table.order(auth_group::name).select(Group::as_select()).load(conn)? {
        let permissions = auth_group_permissions::table
            .inner_join(auth_permission::table)
            .filter(auth_group_permissions::group_id.eq(group.id))
            .select((auth_permission::app_label, auth_permission::codename))
            .load(conn)?;
        let feed_grants = feed_grant::table
            .inner_join(auth_permission::table)
            .filter(feed_grant::group_id.eq(group.id))
            .select((feed_grant::feed, auth_permission::app_label, auth_permission::codename))
            .load(conn)?;
        groups.push(GroupDump {
            rate_limit: group.rate_limit,
            name: group.name,
            permissions: codenames(permissions),
            feed_grants: grants(feed_grants),
        });
    }
    Ok(groups)
}

fn dump_users(conn: &mut DbConnection) -> Result<Vec<UserDump>, DbError> {
    let mut users = Vec::new();
    for user in auth_user::table.order(auth_user::username).select(User::as_select()).load(conn)? {
        let mut member_of: Vec<String> = auth_user_groups::table
            .inner_join(auth_group::table)
            .filter(auth_user_groups::user_id.eq(user.id))
            .select(auth_group::name)
            .load(conn)?;
        member_of.sort();
        let permissions = auth_user_user_permissions::table
            .inner_join(auth_permission::table)
            .filter(auth_user_user_permissions::user_id.eq(user.id))
            .select((auth_permission::app_label, auth_permission::codename))
            .load(conn)?;
        let feed_grants = feed_grant::table
            .inner_join(auth_permission::table)
            .filter(feed_grant::user_id.eq(user.id))
            .select((feed_grant::feed, auth_permission::app_label, auth_permission::codename))
            .load(conn)?;
        users.push(UserDump {
            username: user.username,
            password: user.password,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            is_active: user.is_active,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
            date_joined: user.date_joined,
            last_login: user.last_login,
            groups: member_of,
            permissions: codenames(permissions),
            feed_grants: grants(feed_grants),
        });
    }
    Ok(users)
}

fn dump_tokens(conn: &mut DbConnection) -> Result<Vec<TokenDump>, DbError> {
    Ok(authtoken_token::table
        .inner_join(auth_user::table)
        .order(authtoken_token::id)
        .select((Token::as_select(), auth_user::username))
        .load::<(Token, String)>(conn)?
        .into_iter()
        .map(|(t, user)| TokenDump {
            user,
            name: t.name,
            prefix: t.prefix,
            digest: t.digest,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked: t.revoked,
            scopes: t.scopes,
            allowed_networks: t.allowed_networks,
        })
        .collect())
}

/// Loads a dump, all or nothing: groups and users are created or updated by
/// name (their permissions, grants and memberships become the dump's);
/// tokens are added unless their prefix is already known.
pub fn load(conn: &mut DbConnection, dump: &Dump) -> Result<LoadCounts, DbError> {
    if dump.version != FORMAT_VERSION {
        return Err(DbError::invalid(
            "version",
            format!("unsupported dump version {}", dump.version),
        ));
    }
    conn.transaction(|conn| {
        let mut counts = LoadCounts::default();
        for group in &dump.groups {
            load_group(conn, group)?;
            counts.groups += 1;
        }
        for user in &dump.users {
            load_user(conn, user)?;
            counts.users += 1;
        }
        for token in &dump.tokens {
            counts.tokens += load_token(conn, token)?;
        }
        Ok(counts)
    })
}

/// A group by name, created or made the dump's.
fn load_group(conn: &mut DbConnection, group: &GroupDump) -> Result<(), DbError> {
    let id = match queries::group_by_name(conn, &group.name)? {
        Some(existing) => existing.id,
        None => queries::create_group(conn, &group.name)?.id,
    };
    queries::set_group_rate(conn, id, group.rate_limit.as_deref())?;
    diesel::delete(auth_group_permissions::table.filter(auth_group_permissions::group_id.eq(id)))
        .execute(conn)?;
    diesel::delete(feed_grant::table.filter(feed_grant::group_id.eq(id))).execute(conn)?;
    for codename in &group.permissions {
        let perm = queries::permission_by_codename(conn, codename)?;
        queries::add_group_permission(conn, id, perm.id)?;
    }
    for grant in &group.feed_grants {
        let perm = queries::permission_by_codename(conn, &grant.permission)?;
        queries::add_feed_grant(conn, Holder::Group(id), perm.id, &grant.feed)?;
    }
    Ok(())
}

/// A user by name, created or made the dump's (password hash included).
fn load_user(conn: &mut DbConnection, user: &UserDump) -> Result<(), DbError> {
    let id = queries::put_user_record(
        conn,
        &UserRecord {
            username: &user.username,
            password: &user.password,
            email: &user.email,
            first_name: &user.first_name,
            last_name: &user.last_name,
            is_active: user.is_active,
            is_staff: user.is_staff,
            is_superuser: user.is_superuser,
            date_joined: user.date_joined,
            last_login: user.last_login,
        },
    )?;
    diesel::delete(auth_user_groups::table.filter(auth_user_groups::user_id.eq(id)))
        .execute(conn)?;
    diesel::delete(
        auth_user_user_permissions::table.filter(auth_user_user_permissions::user_id.eq(id)),
    )
    .execute(conn)?;
    diesel::delete(feed_grant::table.filter(feed_grant::user_id.eq(id))).execute(conn)?;
    for name in &user.groups {
        let group = queries::group_by_name(conn, name)?.ok_or_else(|| {
            DbError::invalid("groups", format!("user {}: unknown group {name:?}", user.username))
        })?;
        queries::add_user_to_group(conn, id, group.id)?;
    }
    for codename in &user.permissions {
        let perm = queries::permission_by_codename(conn, codename)?;
        queries::add_user_permission(conn, id, perm.id)?;
    }
    for grant in &user.feed_grants {
        let perm = queries::permission_by_codename(conn, &grant.permission)?;
        queries::add_feed_grant(conn, Holder::User(id), perm.id, &grant.feed)?;
    }
    Ok(())
}

/// A token, unless its prefix is known already; answers 1 if added.
fn load_token(conn: &mut DbConnection, token: &TokenDump) -> Result<usize, DbError> {
    let user = queries::user_by_username(conn, &token.user)?.ok_or_else(|| {
        DbError::invalid("user", format!("token {}: unknown user {:?}", token.prefix, token.user))
    })?;
    let inserted = queries::put_token_record(
        conn,
        &TokenRecord {
            user_id: user.id,
            name: &token.name,
            prefix: &token.prefix,
            digest: &token.digest,
            created_at: token.created_at,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            revoked: token.revoked,
            scopes: token.scopes.as_deref(),
            allowed_networks: token.allowed_networks.as_deref(),
        },
    )?;
    Ok(inserted)
}

#[derive(Debug, Default)]
pub struct LoadCounts {
    pub groups: usize,
    pub users: usize,
    pub tokens: usize,
}
