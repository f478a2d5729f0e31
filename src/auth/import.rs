//! `importdjango`: users, groups, memberships, permissions and DRF tokens
//! from the Django + REST framework proxy's database, all or nothing, in
//! one transaction. Users and groups are matched by name, so a second run
//! changes nothing; a user of the same name with another password hash is
//! reported and kept, unless `replace`. Password hashes come as they are
//! (`auth::django` checks them, and a login upgrades them to argon2id); DRF
//! keys are stored as digests only, like our own tokens.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use crate::db::DbConnection;

use super::perms::Granted;
use super::token;
use super::users::{self, ServiceError};
use crate::db::django::{DjangoAuth, DjangoUser, parse_datetime};
use crate::db::models::{TokenRecord, UserRecord};
use crate::db::queries;
use crate::lbasedb::perms::APP_LABEL;

/// What an import did, and what it could not.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub users_created: Vec<String>,
    pub users_replaced: Vec<String>,
    pub users_unchanged: Vec<String>,
    /// Same name, another hash: kept as they are (without `replace`).
    pub users_clashing: Vec<String>,
    pub groups_created: Vec<String>,
    pub groups_existing: Vec<String>,
    pub memberships: usize,
    pub permissions_mapped: usize,
    /// `app_label.codename` of the permissions that mean nothing here.
    pub permissions_skipped: BTreeSet<String>,
    pub tokens_added: usize,
    pub tokens_known: usize,
    /// Users who cannot log in until given a new password, and why.
    pub cannot_log_in: Vec<(String, String)>,
}

/// Our permission for a Django one: a codename of ours under any app label
/// (the seed project's `api.view_data` is `lbasedb.view_data`), Django's
/// own on users and groups, DRF's on tokens; `None` for the rest.
pub fn map_permission(app_label: &str, codename: &str) -> Option<String> {
    let (action, model) = codename.split_once('_')?;
    if !matches!(action, "view" | "add" | "change" | "delete") {
        return None;
    }
    match (app_label, model) {
        (_, "feed" | "col" | "data") => Some(format!("{APP_LABEL}.{codename}")),
        ("auth", "user" | "group") => Some(format!("auth.{codename}")),
        ("authtoken", "token") => Some(format!("authtoken.{codename}")),
        _ => None,
    }
}

/// Imports `source` into our database; see the module's doc.
pub fn import_django(
    conn: &mut DbConnection,
    source: &DjangoAuth,
    replace: bool,
) -> Result<ImportReport, ServiceError> {
    problems(source).into_result()?;
    conn.write_transaction(|conn| {
        let mut report = ImportReport::default();
        let perms = map_permissions(conn, source, &mut report)?;
        let groups = import_groups(conn, source, &perms, &mut report)?;
        let users = import_users(conn, source, replace, &mut report)?;
        for link in &source.user_groups {
            if let (Some(user), Some(group)) = (users.get(&link.from), groups.get(&link.to)) {
                let link = users::Link::Member { user: *user, group: *group };
                users::add_link(conn, &Granted::system(), link)?;
                report.memberships += 1;
            }
        }
        for link in &source.user_permissions {
            if let (Some(user), Some(perm)) = (users.get(&link.from), perms.get(&link.to)) {
                let link = users::Link::Permission(queries::Holder::User(*user), *perm);
                users::add_link(conn, &Granted::system(), link)?;
                report.permissions_mapped += 1;
            }
        }
        import_tokens(conn, source, &users, &mut report)?;
        Ok(report)
    })
}

/// The rows the admin would refuse: names and fields past their rules, DRF
/// keys that are not keys, dates that are not dates.
fn problems(source: &DjangoAuth) -> users::Problems {
    let mut problems = users::Problems::default();
    for user in &source.users {
        let row = users::row_name("user", &user.username);
        problems.check(&row, users::validate_username(&user.username));
        problems
            .check(&row, users::validate_person(&user.email, &user.first_name, &user.last_name));
        problems.check(&row, record(user).map(drop));
        problems.check(&row, users::validate_hash(&user.password));
    }
    for group in &source.groups {
        problems
            .check(users::row_name("group", &group.name), users::validate_group_name(&group.name));
    }
    for drf in source.tokens.iter().flatten() {
        // DRF's keys are 40 hexadecimal characters.
        let key_ok = (1..=128).contains(&drf.key.len())
            && drf.key.bytes().all(|b| b.is_ascii_alphanumeric());
        if !key_ok {
            let row = format!("token of user #{}", drf.user_id);
            problems.check(row, Err(ServiceError::invalid("key", "not a DRF key")));
        }
    }
    problems
}

/// Django's permission ids to ours; the rest go in the report.
fn map_permissions(
    conn: &mut DbConnection,
    source: &DjangoAuth,
    report: &mut ImportReport,
) -> Result<HashMap<i32, i32>, ServiceError> {
    let mut ours = HashMap::new();
    let used: BTreeSet<i32> = source
        .group_permissions
        .iter()
        .chain(&source.user_permissions)
        .map(|link| link.to)
        .collect();
    for perm in source.permissions.iter().filter(|p| used.contains(&p.id)) {
        match map_permission(&perm.app_label, &perm.codename) {
            Some(codename) => {
                ours.insert(perm.id, users::permission(conn, &codename)?.id);
            }
            None => {
                report.permissions_skipped.insert(format!("{}.{}", perm.app_label, perm.codename));
            }
        }
    }
    Ok(ours)
}

/// Groups by name, with the permissions that mean something here; answers
/// Django's group ids to ours.
fn import_groups(
    conn: &mut DbConnection,
    source: &DjangoAuth,
    perms: &HashMap<i32, i32>,
    report: &mut ImportReport,
) -> Result<HashMap<i32, i32>, ServiceError> {
    let mut ids = HashMap::new();
    for group in &source.groups {
        let (id, created) = users::put_group(conn, &Granted::system(), &group.name)?;
        let list = if created { &mut report.groups_created } else { &mut report.groups_existing };
        list.push(group.name.clone());
        ids.insert(group.id, id);
    }
    for link in &source.group_permissions {
        if let (Some(group), Some(perm)) = (ids.get(&link.from), perms.get(&link.to)) {
            let link = users::Link::Permission(queries::Holder::Group(*group), *perm);
            users::add_link(conn, &Granted::system(), link)?;
            report.permissions_mapped += 1;
        }
    }
    Ok(ids)
}

/// Users by name; answers Django's user ids to ours, for the users that
/// were created, replaced or found the same (not the clashing ones).
fn import_users(
    conn: &mut DbConnection,
    source: &DjangoAuth,
    replace: bool,
    report: &mut ImportReport,
) -> Result<HashMap<i32, i32>, ServiceError> {
    let mut ids = HashMap::new();
    for user in &source.users {
        let existing = queries::user_by_username(conn, &user.username)?;
        let list = match &existing {
            Some(ours) if ours.password == user.password => {
                ids.insert(user.id, ours.id);
                &mut report.users_unchanged
            }
            Some(_) if !replace => {
                report.users_clashing.push(user.username.clone());
                continue;
            }
            Some(_) => &mut report.users_replaced,
            None => &mut report.users_created,
        };
        list.push(user.username.clone());
        if existing.as_ref().is_none_or(|ours| ours.password != user.password) {
            ids.insert(user.id, users::put_user(conn, &Granted::system(), &record(user)?)?);
        }
        if let Some(why) = why_no_login(&user.password) {
            report.cannot_log_in.push((user.username.clone(), why));
        }
    }
    Ok(ids)
}

fn record(user: &DjangoUser) -> Result<UserRecord, ServiceError> {
    let joined = parse_datetime(&user.date_joined).ok_or_else(|| {
        ServiceError::invalid(
            "date_joined",
            format!("user {}: date_joined {:?} is no date", user.username, user.date_joined),
        )
    })?;
    Ok(UserRecord {
        username: user.username.clone(),
        password: user.password.clone(),
        email: user.email.clone(),
        first_name: user.first_name.clone(),
        last_name: user.last_name.clone(),
        is_active: user.is_active,
        is_staff: user.is_staff,
        is_superuser: user.is_superuser,
        date_joined: joined,
        last_login: user.last_login.as_deref().and_then(parse_datetime),
    })
}

/// Why a hash will never log in, if it will not: unusable, of another
/// algorithm, or past the bounds on what a check may cost.
pub fn why_no_login(encoded: &str) -> Option<String> {
    super::password::assess(encoded).err().map(|why| format!("{why}; set a new password"))
}

/// DRF tokens, by the digest of their key (one whose digest is here is
/// known already); the prefix `drf_` and the key's first 8 characters name
/// them in the admin, with `-2`, `-3`… after it when two keys begin alike.
fn import_tokens(
    conn: &mut DbConnection,
    source: &DjangoAuth,
    users: &HashMap<i32, i32>,
    report: &mut ImportReport,
) -> Result<(), ServiceError> {
    for drf in source.tokens.iter().flatten() {
        let Some(user_id) = users.get(&drf.user_id) else {
            continue;
        };
        let digest = token::digest(&drf.key);
        if queries::token_with_user(conn, &digest)?.is_some() {
            report.tokens_known += 1;
            continue;
        }
        let prefix = free_prefix(conn, &format!("drf_{}", &drf.key[..drf.key.len().min(8)]))?;
        let added = users::put_token(
            conn,
            &Granted::system(),
            *user_id,
            &TokenRecord {
                name: "imported from Django".into(),
                prefix,
                digest,
                created_at: parse_datetime(&drf.created).unwrap_or_else(queries::now),
                expires_at: None,
                last_used_at: None,
                revoked: false,
                scopes: None,
                allowed_networks: None,
            },
        )?;
        report.tokens_added += added;
    }
    Ok(())
}

/// `base`, or the first of `base-2`, `base-3`… that no token has.
fn free_prefix(conn: &mut DbConnection, base: &str) -> Result<String, ServiceError> {
    // A thousand keys of one user base beginning alike is no DRF database.
    for n in 1..=1000 {
        let prefix = if n == 1 { base.to_owned() } else { format!("{base}-{n}") };
        if !queries::token_prefix_taken(conn, &prefix)? {
            return Ok(prefix);
        }
    }
    Err(ServiceError::invalid("key", format!("too many DRF keys begin as {base}")))
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users = self.users_created.len()
            + self.users_replaced.len()
            + self.users_unchanged.len()
            + self.users_clashing.len();
        writeln!(
            f,
            "users: {users} ({} created, {} replaced, {} unchanged, {} clashing)",
            self.users_created.len(),
            self.users_replaced.len(),
            self.users_unchanged.len(),
            self.users_clashing.len()
        )?;
        writeln!(
            f,
            "groups: {} ({} created, {} existing)",
            self.groups_created.len() + self.groups_existing.len(),
            self.groups_created.len(),
            self.groups_existing.len()
        )?;
        writeln!(f, "memberships: {}", self.memberships)?;
        writeln!(f, "permissions mapped: {}", self.permissions_mapped)?;
        let skipped: Vec<&str> = self.permissions_skipped.iter().map(String::as_str).collect();
        writeln!(
            f,
            "permissions skipped (no meaning here): {}",
            if skipped.is_empty() { "none".into() } else { skipped.join(", ") }
        )?;
        writeln!(f, "tokens: {} added, {} known already", self.tokens_added, self.tokens_known)?;
        for (user, why) in &self.cannot_log_in {
            writeln!(f, "cannot log in: {user}: {why}")?;
        }
        for user in &self.users_clashing {
            writeln!(
                f,
                "clash: {user} exists here with another password; kept (--replace overwrites)"
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn djangos_permissions_map_to_ours_or_to_none() {
        let ours = [
            ("api", "view_data", "lbasedb.view_data"),
            ("lbasedb", "add_feed", "lbasedb.add_feed"),
            ("auth", "change_user", "auth.change_user"),
            ("auth", "view_group", "auth.view_group"),
            ("authtoken", "add_token", "authtoken.add_token"),
        ];
        for (app, codename, expected) in ours {
            assert_eq!(
                map_permission(app, codename).as_deref(),
                Some(expected),
                "{app}.{codename}"
            );
        }
        // Django's own housekeeping, and what no app here has.
        let none = [
            "auth.add_permission",
            "authtoken.view_tokenproxy",
            "admin.view_logentry",
            "contenttypes.view_contenttype",
            "api.export_data",
        ];
        for full in none {
            let (app, codename) = full.split_once('.').unwrap();
            assert_eq!(map_permission(app, codename), None, "{full}");
        }
    }
}
