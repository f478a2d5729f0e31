//! `dumpdata` / `loaddata`: users (with their password hashes), groups,
//! permissions, feed grants and token digests as JSON, keyed by natural
//! keys (usernames, group names, codenames, token prefixes) so that a dump
//! loads into another database whatever its ids.

use crate::db::DbConnection;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::DbError;
use super::models::{Group, TokenRecord, UserRecord};
use super::queries::{self, Held, Holder};
use super::schema::{
    auth_group, auth_group_permissions, auth_user, auth_user_groups, authtoken_token, feed_grant,
};
use crate::auth::grant::Grant;
use crate::auth::scopes::Restrictions;
use crate::auth::users;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Dump {
    pub version: u32,
    pub groups: Vec<GroupDump>,
    pub users: Vec<UserDump>,
    pub tokens: Vec<TokenDump>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct GroupDump {
    pub name: String,
    #[serde(flatten)]
    pub holds: Held,
    /// Absent from dumps made before group rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct UserDump {
    /// Its fields, at the top level of the user's object.
    #[serde(flatten)]
    pub record: UserRecord,
    pub groups: Vec<String>,
    #[serde(flatten)]
    pub holds: Held,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TokenDump {
    /// Its owner's username.
    pub user: String,
    /// Its fields, at the top level of the token's object.
    #[serde(flatten)]
    pub record: TokenRecord,
}

/// Permissions and grants, sorted so that a dump reads the same each time.
fn sorted(mut held: Held) -> Held {
    held.perms.sort();
    held.grants.sort_by(|a, b| (&a.feed, &a.codename).cmp(&(&b.feed, &b.codename)));
    held
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
    for group in Group::query().order(auth_group::name).load(conn)? {
        let holds = sorted(queries::held(conn, queries::HeldBy::Groups(&[group.id]))?);
        groups.push(GroupDump { rate_limit: group.rate_limit, name: group.name, holds });
    }
    Ok(groups)
}

fn dump_users(conn: &mut DbConnection) -> Result<Vec<UserDump>, DbError> {
    let mut users = Vec::new();
    let all: Vec<(i32, UserRecord)> = auth_user::table
        .order(auth_user::username)
        .select((auth_user::id, UserRecord::as_select()))
        .load(conn)?;
    for (id, record) in all {
        let mut member_of: Vec<String> = auth_user_groups::table
            .inner_join(auth_group::table)
            .filter(auth_user_groups::user_id.eq(id))
            .select(auth_group::name)
            .load(conn)?;
        member_of.sort();
        let holds = sorted(queries::held(conn, queries::HeldBy::User(id))?);
        users.push(UserDump { record, groups: member_of, holds });
    }
    Ok(users)
}

fn dump_tokens(conn: &mut DbConnection) -> Result<Vec<TokenDump>, DbError> {
    Ok(authtoken_token::table
        .inner_join(auth_user::table)
        .order(authtoken_token::id)
        .select((TokenRecord::as_select(), auth_user::username))
        .load::<(TokenRecord, String)>(conn)?
        .into_iter()
        .map(|(record, user)| TokenDump { user, record })
        .collect())
}

/// The rows the admin would refuse, all of them, before anything is
/// written: a dump is input like any form (a hand-edited one, or one from
/// elsewhere), checked by the same rules.
fn problems(dump: &Dump) -> users::Problems {
    let mut problems = users::Problems::default();
    let grants = |list: &[Grant]| -> Result<(), DbError> {
        users::check_grant_count(list.len())?;
        for grant in list {
            grant.check().map_err(|why| DbError::invalid("grants", why))?;
        }
        Ok(())
    };
    for group in &dump.groups {
        let row = users::row_name("group", &group.name);
        problems.check(&row, users::validate_group_name(&group.name));
        problems.check(&row, users::parse_rate(group.rate_limit.as_deref()).map(drop));
        problems.check(&row, grants(&group.holds.grants));
    }
    for user in &dump.users {
        let record = &user.record;
        let row = users::row_name("user", &record.username);
        problems.check(&row, users::validate_username(&record.username));
        problems.check(
            &row,
            users::validate_person(&record.email, &record.first_name, &record.last_name),
        );
        problems.check(&row, grants(&user.holds.grants));
        problems.check(&row, users::validate_hash(&record.password));
    }
    for token in &dump.tokens {
        let row = users::row_name("token", &token.record.prefix);
        problems.check(&row, check_token(&token.record));
    }
    problems
}

/// A token as we make them: a short prefix, a SHA-256 digest, a name and
/// restrictions within the bounds of a new one.
fn check_token(record: &TokenRecord) -> Result<(), DbError> {
    let digest_ok =
        record.digest.len() == 64 && record.digest.bytes().all(|b| b.is_ascii_hexdigit());
    if !digest_ok {
        return Err(DbError::invalid("digest", "not a SHA-256 digest"));
    }
    if record.prefix.is_empty()
        || record.prefix.len() > 32
        || record.prefix.chars().any(char::is_control)
    {
        return Err(DbError::invalid("prefix", "not a token prefix"));
    }
    if record.name.is_empty() || record.name.chars().count() > users::MAX_TOKEN_NAME_LEN {
        return Err(DbError::invalid("name", "a token's name has 1 to 100 characters"));
    }
    let list = |text: &Option<String>| text.iter().cloned().collect::<Vec<_>>();
    let restrictions = Restrictions::parse(&list(&record.scopes), &list(&record.allowed_networks))
        .map_err(|why| DbError::invalid("scopes", why))?;
    if restrictions.scopes.len().max(restrictions.networks.len()) > users::MAX_TOKEN_RESTRICTIONS {
        return Err(DbError::invalid("scopes", "too many scopes or networks"));
    }
    Ok(())
}

/// Loads a dump, all or nothing: groups and users are created or updated by
/// name (their permissions, grants and memberships become the dump's);
/// tokens are added unless their prefix is already known. Every row is
/// checked first (`problems`); users whose password hash will never log
/// in are counted and named.
pub fn load(conn: &mut DbConnection, dump: &Dump) -> Result<LoadCounts, DbError> {
    if dump.version != FORMAT_VERSION {
        return Err(DbError::invalid(
            "version",
            format!("unsupported dump version {}", dump.version),
        ));
    }
    problems(dump).into_result()?;
    conn.transaction(|conn| {
        let mut counts = LoadCounts::default();
        for user in &dump.users {
            if let Some(why) = crate::auth::import::why_no_login(&user.record.password) {
                counts.cannot_log_in.push((user.record.username.clone(), why));
            }
        }
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
    for codename in &group.holds.perms {
        let perm = queries::permission_by_codename(conn, codename)?;
        queries::add_permission(conn, Holder::Group(id), perm.id)?;
    }
    for grant in &group.holds.grants {
        let perm = queries::permission_by_codename(conn, &grant.codename)?;
        queries::add_feed_grant(conn, Holder::Group(id), perm.id, &grant.feed)?;
    }
    Ok(())
}

/// A user by name, created or made the dump's (password hash included).
fn load_user(conn: &mut DbConnection, user: &UserDump) -> Result<(), DbError> {
    let id = queries::put_user_record(conn, &user.record)?;
    let mut links =
        queries::UserLinks { groups: Vec::new(), perms: Vec::new(), grants: Vec::new() };
    for name in &user.groups {
        let group = queries::group_by_name(conn, name)?.ok_or_else(|| {
            DbError::invalid(
                "groups",
                format!("user {}: unknown group {name:?}", user.record.username),
            )
        })?;
        links.groups.push(group.id);
    }
    for codename in &user.holds.perms {
        links.perms.push(queries::permission_by_codename(conn, codename)?.id);
    }
    for grant in &user.holds.grants {
        let perm = queries::permission_by_codename(conn, &grant.codename)?;
        links.grants.push((perm.id, grant.feed.clone()));
    }
    queries::set_user_links(conn, id, &links)
}

/// A token, unless its prefix is known already; answers 1 if added.
fn load_token(conn: &mut DbConnection, token: &TokenDump) -> Result<usize, DbError> {
    let user = queries::user_by_username(conn, &token.user)?.ok_or_else(|| {
        let prefix = &token.record.prefix;
        DbError::invalid("user", format!("token {prefix}: unknown user {:?}", token.user))
    })?;
    queries::put_token_record(conn, user.id, &token.record)
}

#[derive(Debug, Default)]
pub struct LoadCounts {
    pub groups: usize,
    pub users: usize,
    pub tokens: usize,
    /// Users who cannot log in until given a new password, and why.
    pub cannot_log_in: Vec<(String, String)>,
}
