//! Whole records written by name, as `loaddata` and `importdjango` bring
//! them: through the checks the admin's forms pass, in the caller's
//! transaction (a load is all or nothing). Only the system (the command
//! line) loads records: a person's writes go through the forms' functions,
//! where the privilege rules run.

use super::*;
use crate::db::models::{TokenRecord, UserRecord};
use crate::db::queries::{Held, UserLinks};

/// Loads are the command line's: a person never reaches them (they would
/// pass by the privilege rules).
pub(super) fn system_only<P: perms::AdminPermission>(by: &Granted<P>) -> Result<(), ServiceError> {
    match by.actor() {
        Actor::System => Ok(()),
        Actor::User(_) => {
            Err(Denied("Records are loaded from the command line only.".into()).into())
        }
    }
}

/// A group by name, made if there is none; answers its id and whether it
/// was made.
pub fn put_group(
    conn: &mut DbConnection,
    by: &Granted<perms::AddGroup>,
    name: &str,
) -> Result<(i32, bool), ServiceError> {
    system_only(by)?;
    validate_group_name(name)?;
    Ok(match queries::group_by_name(conn, name)? {
        Some(group) => (group.id, false),
        None => (queries::create_group(conn, name)?.id, true),
    })
}

/// A group's rate, write quota and holdings made these, replacing what it
/// had.
pub fn set_group_holds(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeGroup>,
    id: i32,
    (rate, quota): (Option<&str>, Option<&str>),
    held: &Held,
) -> Result<(), ServiceError> {
    system_only(by)?;
    parse_rate(rate)?;
    parse_quota(quota)?;
    let group = queries::group_by_id(conn, id)?.ok_or(ServiceError::NotFound)?;
    let perms = held_ids(conn, held)?;
    queries::update_group(conn, id, &group.name, &perms, &held.grants)?;
    queries::set_group_limits(conn, id, rate, quota)?;
    Ok(())
}

/// A user by name with its record's fields (the password hash too), made
/// or updated; answers its id.
pub fn put_user(
    conn: &mut DbConnection,
    by: &Granted<perms::AddUser>,
    record: &UserRecord,
) -> Result<i32, ServiceError> {
    system_only(by)?;
    validate_username(&record.username)?;
    validate_person(&record.email, &record.first_name, &record.last_name)?;
    validate_hash(&record.password)?;
    Ok(queries::put_user_record(conn, record)?)
}

/// A user's groups (by name) and holdings made these, replacing what it
/// had.
pub fn set_user_holds(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeUser>,
    id: i32,
    groups: &[String],
    held: &Held,
) -> Result<(), ServiceError> {
    system_only(by)?;
    let mut links = UserLinks { groups: Vec::new(), perms: Vec::new(), grants: Vec::new() };
    for name in groups {
        let group = queries::group_by_name(conn, name)?
            .ok_or_else(|| ServiceError::invalid("groups", format!("unknown group {name:?}")))?;
        links.groups.push(group.id);
    }
    links.perms = held_ids(conn, held)?;
    links.grants = held.grants.clone();
    Ok(queries::set_user_links(conn, id, &links)?)
}

/// One link an import adds, by our ids.
#[derive(Debug, Clone, Copy)]
pub enum Link {
    /// A permission to a user or a group.
    Permission(Holder, i32),
    /// A user to a group.
    Member { user: i32, group: i32 },
}

/// Adds a link; what was there stays.
pub fn add_link(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeUser>,
    link: Link,
) -> Result<(), ServiceError> {
    system_only(by)?;
    match link {
        Link::Permission(holder, id) => queries::add_permission(conn, holder, id)?,
        Link::Member { user, group } => queries::add_user_to_group(conn, user, group)?,
    }
    Ok(())
}

/// A token as it was stored elsewhere (its digest, never a secret), unless
/// its prefix is known already; answers 1 if added.
pub fn put_token(
    conn: &mut DbConnection,
    by: &Granted<perms::AddToken>,
    user_id: i32,
    record: &TokenRecord,
) -> Result<usize, ServiceError> {
    system_only(by)?;
    validate_token_record(record)?;
    Ok(queries::put_token_record(conn, user_id, record)?)
}

/// A token as we make them: a short prefix, a SHA-256 digest, a name and
/// restrictions within the bounds of a new one.
pub fn validate_token_record(record: &TokenRecord) -> Result<(), ServiceError> {
    let digest_ok =
        record.digest.len() == 64 && record.digest.bytes().all(|b| b.is_ascii_hexdigit());
    if !digest_ok {
        return Err(ServiceError::invalid("digest", "not a SHA-256 digest"));
    }
    if record.prefix.is_empty()
        || record.prefix.len() > 32
        || record.prefix.chars().any(char::is_control)
    {
        return Err(ServiceError::invalid("prefix", "not a token prefix"));
    }
    if record.name.is_empty() || record.name.chars().count() > MAX_TOKEN_NAME_LEN {
        return Err(ServiceError::invalid("name", "a token's name has 1 to 100 characters"));
    }
    let list = |text: &Option<String>| text.iter().cloned().collect::<Vec<_>>();
    let restrictions = Restrictions::parse(&list(&record.scopes), &list(&record.allowed_networks))
        .map_err(|why| ServiceError::invalid("scopes", why))?;
    if restrictions.scopes.len().max(restrictions.networks.len()) > MAX_TOKEN_RESTRICTIONS {
        return Err(ServiceError::invalid("scopes", "too many scopes or networks"));
    }
    Ok(())
}

/// What `held` names, checked: the ids of its permissions.
fn held_ids(conn: &mut DbConnection, held: &Held) -> Result<Vec<i32>, ServiceError> {
    check_grants(&held.grants)?;
    known_grants(conn, &held.grants)?;
    held.perms.iter().map(|c| Ok(permission(conn, c)?.id)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads pass by the privilege rules: a person's proof opens none.
    #[test]
    fn a_person_cannot_load_records() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::connect(dir.path().join("db.sqlite3").to_str().unwrap()).unwrap();
        crate::db::migrate(&pool).unwrap();
        let conn = &mut pool.get().unwrap();
        let person = Granted::<perms::AddGroup>::checked(Actor::User(1), None);
        let refused = put_group(conn, &person, "g");
        assert!(matches!(refused, Err(ServiceError::Denied(_))), "{refused:?}");
        assert!(queries::group_by_name(conn, "g").unwrap().is_none());
        let (_, made) = put_group(conn, &Granted::system(), "g").unwrap();
        assert!(made, "the system loads it");
    }
}
