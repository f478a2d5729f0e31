//! Users as an OpenID provider vouches for them: found by the provider's
//! subject (never by a username), made at a first login when
//! `OIDC_CREATE_USERS` allows, and their mapped groups and staff flags set
//! from the provider's claims at each login. A local user whose username a
//! new person would take is never taken over: an administrator links the
//! two (`lbasedb-proxy linkidentity`).

use super::*;
use crate::auth::oidc::Person;

/// Why a person the provider vouched for is not let in.
fn no_entry(why: impl Into<String>) -> ServiceError {
    Denied(why.into()).into()
}

/// The user `person` is, made if allowed and needed, with its groups and
/// flags brought in line with the provider's claims; all in one
/// transaction, recorded in the history as the provider's doing.
pub fn sign_in(
    conn: &mut DbConnection,
    person: &Person,
    create: bool,
) -> Result<User, ServiceError> {
    conn.write_transaction(|conn| {
        // A subject that is a service's client id is no person's to log in
        // with (nor to be made a user for).
        if queries::user_by_identity(conn, &person.issuer, queries::CLIENT, &person.subject)?
            .is_some()
        {
            return Err(no_entry("This identity is a service's; it cannot log in here."));
        }
        let linked =
            queries::user_by_identity(conn, &person.issuer, queries::PERSON, &person.subject)?;
        let user = match linked {
            Some(id) => find_user(conn, id)?,
            None if !create => {
                return Err(no_entry(
                    "You have no account here yet: ask an administrator to make one for you.",
                ));
            }
            None => make_user(conn, person)?,
        };
        queries::touch_identity(conn, &person.issuer, queries::PERSON, &person.subject)?;
        if !user.is_active {
            return Err(no_entry("Your account is not active."));
        }
        follow_claims(conn, &user, person)?;
        find_user(conn, user.id)
    })
}

/// A new user for a person never seen: named by the username claim, with
/// no usable password (Django's `!` form), never in place of a local user.
fn make_user(conn: &mut DbConnection, person: &Person) -> Result<User, ServiceError> {
    // NFKC, as Django's `normalize_username`: `ａｄｍｉｎ` is `admin` (and so
    // refused below when a local `admin` exists), not a lookalike account.
    use unicode_normalization::UnicodeNormalization;
    let username: String = person.username.as_deref().unwrap_or(&person.subject).nfkc().collect();
    validate_username(&username).map_err(|_| {
        no_entry(format!(
            "The provider's username {:?} cannot be a username here; ask an administrator.",
            truncated(&username, MAX_USERNAME_LEN)
        ))
    })?;
    if queries::user_by_username(conn, &username)?.is_some() {
        return Err(no_entry(format!(
            "A local account named {username:?} exists: an administrator must link it to your \
             single sign-on identity before you can use it this way."
        )));
    }
    let email = if person.email.len() <= MAX_EMAIL_LEN { person.email.as_str() } else { "" };
    let unusable = format!("!{}", crate::auth::token::generate().secret);
    let user = queries::create_user(
        conn,
        &NewUser {
            username: &username,
            password: &unusable,
            email,
            is_staff: false,
            is_superuser: false,
            date_joined: queries::now(),
        },
    )?;
    queries::link_identity(conn, user.id, &person.issuer, queries::PERSON, &person.subject)?;
    record_idp(conn, &user, "add", &[FieldChange::new("identity", "", &person.issuer)])?;
    Ok(user)
}

/// The mapped groups and the staff flags as the provider says, changing
/// only what differs (each change in the history).
fn follow_claims(
    conn: &mut DbConnection,
    user: &User,
    person: &Person,
) -> Result<(), ServiceError> {
    let mut changes = Vec::new();
    let held = queries::user_links(conn, user.id)?.groups;
    for name in &person.managed {
        let Some(group) = queries::group_by_name(conn, name)? else {
            tracing::warn!("OIDC_GROUP_MAP names group {name:?}, which does not exist");
            continue;
        };
        let (has, wants) = (held.contains(&group.id), person.groups.contains(name));
        if has && !wants {
            queries::remove_user_from_group(conn, user.id, group.id)?;
            changes.push(FieldChange::new("groups", name.as_str(), ""));
        } else if wants && !has {
            queries::add_user_to_group(conn, user.id, group.id)?;
            changes.push(FieldChange::new("groups", "", name.as_str()));
        }
    }
    if (user.is_staff, user.is_superuser) != (person.staff, person.superuser) {
        // The provider may not leave no active superuser either.
        keep_a_superuser(conn, user, person.superuser)?;
        queries::set_staff_flags(conn, user.id, person.staff, person.superuser)?;
        changes.push(FieldChange::new(
            "is_staff",
            user.is_staff.to_string(),
            person.staff.to_string(),
        ));
        changes.push(FieldChange::new(
            "is_superuser",
            user.is_superuser.to_string(),
            person.superuser.to_string(),
        ));
    }
    if !changes.is_empty() {
        record_idp(conn, user, "change", &changes)?;
    }
    Ok(())
}

/// A history row whose actor is the identity provider (no user).
fn record_idp(
    conn: &mut DbConnection,
    user: &User,
    action: &str,
    changes: &[FieldChange],
) -> Result<(), ServiceError> {
    let changes = serde_json::to_string(changes).unwrap_or_else(|_| "[]".into());
    Ok(queries::log_action(
        conn,
        &NewLogEntry {
            user_id: None,
            username: "single sign-on",
            object_type: Model::User.object_type(),
            object_id: &user.id.to_string(),
            object_repr: &user.username,
            action,
            changes: &changes,
        },
    )?)
}

/// The user a JWT bearer stands for, if one is linked (and active: the
/// caller checks with the principal).
pub fn user_of_bearer(
    conn: &mut DbConnection,
    bearer: &crate::auth::oidc::Bearer,
) -> Result<Option<i32>, ServiceError> {
    use crate::auth::oidc::Bearer;
    match bearer {
        Bearer::Person { issuer, subject } => {
            Ok(queries::user_by_identity(conn, issuer, queries::PERSON, subject)?)
        }
        // A person linked with that subject is that person: a `sub` names
        // someone before a client id does (at a provider where people may
        // have a subject equal to a client's id).
        Bearer::Client { issuer, client_id } => {
            match queries::user_by_identity(conn, issuer, queries::PERSON, client_id)? {
                Some(person) => Ok(Some(person)),
                None => Ok(queries::user_by_identity(conn, issuer, queries::CLIENT, client_id)?),
            }
        }
    }
}

/// Links a user to a person or client at a provider (the command line's
/// `linkidentity`): how an existing local user, or a service user for a
/// client-credentials client, is tied to its identity.
pub fn link_identity(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeUser>,
    username: &str,
    issuer: &str,
    kind: &str,
    subject: &str,
) -> Result<(), ServiceError> {
    records::system_only(by)?;
    if subject.is_empty() || subject.len() > 255 || issuer.len() > 255 {
        return Err(ServiceError::invalid(
            "subject",
            "an issuer and a subject of 1 to 255 characters",
        ));
    }
    conn.write_transaction(|conn| {
        let user = queries::user_by_username(conn, username)?.ok_or(ServiceError::NotFound)?;
        let issuer = issuer.trim_end_matches('/');
        queries::link_identity(conn, user.id, issuer, kind, subject)
            .map_err(|e| unique_as(e, "subject", "That identity is linked to a user already."))?;
        record_idp(conn, &user, "change", &[FieldChange::new("identity", "", issuer)])
    })
}
