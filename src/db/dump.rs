//! `dumpdata` / `loaddata`: users (with their password hashes), groups,
//! permissions, feed grants and token digests as JSON, keyed by natural
//! keys (usernames, group names, codenames, token prefixes) so that a dump
//! loads into another database whatever its ids.

use crate::db::DbConnection;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::DbError;
use super::models::{Group, TokenRecord, UserRecord};
use super::queries::{self, Held};
use super::schema::{auth_group, auth_user, auth_user_groups, authtoken_token};
use crate::auth::perms::Granted;
use crate::auth::users::{self, ServiceError};

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
    /// Absent from dumps made before write quotas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_quota: Option<String>,
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
    held.grants = queries::sorted_grants(held.grants);
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
        groups.push(GroupDump {
            rate_limit: group.rate_limit,
            write_quota: group.write_quota,
            name: group.name,
            holds,
        });
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
    // A name twice would load as its last row, hiding what the first says.
    let twice = |names: Vec<&str>| -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        names.into_iter().filter(|name| !seen.insert(*name)).map(str::to_owned).collect()
    };
    let again = || Err(ServiceError::invalid("name", "appears more than once in the dump"));
    for name in twice(dump.groups.iter().map(|g| g.name.as_str()).collect()) {
        problems.check(users::row_name("group", &name), again());
    }
    for name in twice(dump.users.iter().map(|u| u.record.username.as_str()).collect()) {
        problems.check(users::row_name("user", &name), again());
    }
    for prefix in twice(dump.tokens.iter().map(|t| t.record.prefix.as_str()).collect()) {
        problems.check(users::row_name("token", &prefix), again());
    }
    for group in &dump.groups {
        let row = users::row_name("group", &group.name);
        problems.check(&row, users::validate_group_name(&group.name));
        problems.check(&row, users::parse_rate(group.rate_limit.as_deref()).map(drop));
        problems.check(&row, users::parse_quota(group.write_quota.as_deref()).map(drop));
        problems.check(&row, users::check_grants(&group.holds.grants));
    }
    for user in &dump.users {
        let record = &user.record;
        let row = users::row_name("user", &record.username);
        problems.check(&row, users::validate_username(&record.username));
        problems.check(
            &row,
            users::validate_person(&record.email, &record.first_name, &record.last_name),
        );
        problems.check(&row, users::check_grants(&user.holds.grants));
        problems.check(&row, users::validate_hash(&record.password));
    }
    for token in &dump.tokens {
        let row = users::row_name("token", &token.record.prefix);
        problems.check(&row, users::validate_token_record(&token.record));
    }
    problems
}

/// Loads a dump, all or nothing, through the service: groups and users are
/// created or updated by name (their permissions, grants and memberships
/// become the dump's); tokens are added unless their prefix is already
/// known. Every row is checked first (`problems`); users whose password
/// hash will never log in are counted and named.
pub fn load(conn: &mut DbConnection, dump: &Dump) -> Result<LoadCounts, ServiceError> {
    if dump.version != FORMAT_VERSION {
        return Err(ServiceError::invalid(
            "version",
            format!("unsupported dump version {}", dump.version),
        ));
    }
    problems(dump).into_result()?;
    conn.write_transaction(|conn| {
        let mut counts = LoadCounts::default();
        for user in &dump.users {
            if let Some(why) = crate::auth::import::why_no_login(&user.record.password) {
                counts.cannot_log_in.push((user.record.username.clone(), why));
            }
        }
        for group in &dump.groups {
            let (id, _) = users::put_group(conn, &Granted::system(), &group.name)?;
            let limits = (group.rate_limit.as_deref(), group.write_quota.as_deref());
            users::set_group_holds(conn, &Granted::system(), id, limits, &group.holds)?;
            counts.groups += 1;
        }
        for user in &dump.users {
            let id = users::put_user(conn, &Granted::system(), &user.record)?;
            users::set_user_holds(conn, &Granted::system(), id, &user.groups, &user.holds)
                .map_err(|err| err.about(&users::row_name("user", &user.record.username)))?;
            counts.users += 1;
        }
        for token in &dump.tokens {
            counts.tokens += load_token(conn, token)?;
        }
        Ok(counts)
    })
}

/// A token, unless its prefix is known already; answers 1 if added.
fn load_token(conn: &mut DbConnection, token: &TokenDump) -> Result<usize, ServiceError> {
    let user = queries::user_by_username(conn, &token.user)?.ok_or_else(|| {
        let prefix = &token.record.prefix;
        ServiceError::invalid("user", format!("token {prefix}: unknown user {:?}", token.user))
    })?;
    users::put_token(conn, &Granted::system(), user.id, &token.record)
}

#[derive(Debug, Default)]
pub struct LoadCounts {
    pub groups: usize,
    pub users: usize,
    pub tokens: usize,
    /// Users who cannot log in until given a new password, and why.
    pub cannot_log_in: Vec<(String, String)>,
}
