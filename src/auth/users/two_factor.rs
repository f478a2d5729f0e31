//! Two-factor login's writes: enrolment, its confirmation by a first code,
//! a code checked at login (each time step once, each recovery code once),
//! new recovery codes, turning it off, and the command line's reset. Each
//! change is in the user's history.

use super::*;
use crate::auth::totp;

fn now_unix() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default()
}

fn wrong_code() -> ServiceError {
    ServiceError::invalid("code", "That code is not right (or was used already).")
}

fn two_factor_change(
    conn: &mut DbConnection,
    user: &User,
    from: &str,
    to: &str,
) -> Result<(), ServiceError> {
    let changes = [FieldChange::new("two_factor", from, to)];
    record(conn, Actor::User(user.id), user_object(user), "change", &changes)
}

/// Turns two-factor login on with `secret` (made for this enrolment and
/// kept only in the enrolling session, so that nobody else can have seen
/// it), confirmed by a code from it; answers the ten recovery codes (shown
/// once). Refused while it is on (turn it off first: a second enrolment
/// must not replace a device silently).
pub fn confirm_two_factor(
    conn: &mut DbConnection,
    user: &User,
    secret: &str,
    code: &str,
) -> Result<Vec<String>, ServiceError> {
    let step = totp::matching_step(secret, code, now_unix()).ok_or_else(wrong_code)?;
    conn.write_transaction(|conn| {
        queries::enable_totp(conn, user.id, secret, step).map_err(|e| {
            unique_as(e, "code", "Two-factor login is on already; turn it off first.")
        })?;
        let codes = replace_codes(conn, user.id)?;
        two_factor_change(conn, user, "off", "on")?;
        Ok(codes)
    })
}

fn replace_codes(conn: &mut DbConnection, user_id: i32) -> Result<Vec<String>, ServiceError> {
    let codes = totp::new_recovery_codes();
    let digests: Vec<String> = codes.iter().map(|c| totp::recovery_digest(c)).collect();
    queries::replace_recovery_codes(conn, user_id, &digests)?;
    Ok(codes)
}

/// Whether `user_id` has two-factor login on.
pub fn has_two_factor(conn: &mut DbConnection, user_id: i32) -> Result<bool, ServiceError> {
    Ok(queries::totp_of(conn, user_id)?.is_some())
}

/// Checks a second factor: a TOTP code (its step past the last accepted)
/// or an unused recovery code, each then spent.
pub fn check_second_factor(
    conn: &mut DbConnection,
    user_id: i32,
    code: &str,
) -> Result<bool, ServiceError> {
    conn.write_transaction(|conn| {
        let Some(on) = queries::totp_of(conn, user_id)? else {
            return Ok(false);
        };
        if totp::looks_like_totp(code) {
            return match totp::matching_step(&on.secret, code, now_unix()) {
                Some(step) => Ok(queries::accept_step(conn, user_id, step)?),
                None => Ok(false),
            };
        }
        Ok(queries::use_recovery_code(conn, user_id, &totp::recovery_digest(code))?)
    })
}

/// Ten new recovery codes (the old ones stop), for a correct code.
pub fn renew_recovery_codes(
    conn: &mut DbConnection,
    user: &User,
    code: &str,
) -> Result<Vec<String>, ServiceError> {
    if !check_second_factor(conn, user.id, code)? {
        return Err(wrong_code());
    }
    conn.write_transaction(|conn| {
        let codes = replace_codes(conn, user.id)?;
        two_factor_change(conn, user, "recovery codes", "new recovery codes")?;
        Ok(codes)
    })
}

/// Turns two-factor login off, for a correct code, unless `REQUIRE_2FA`
/// applies to the user.
pub fn turn_off_two_factor(
    conn: &mut DbConnection,
    user: &User,
    code: &str,
    required: bool,
) -> Result<(), ServiceError> {
    if required {
        return Err(Denied("Two-factor login is required for your account.".into()).into());
    }
    if !check_second_factor(conn, user.id, code)? {
        return Err(wrong_code());
    }
    conn.write_transaction(|conn| {
        queries::remove_totp(conn, user.id)?;
        two_factor_change(conn, user, "on", "off")
    })
}

/// `lbasedb-proxy 2fa reset USER`: a lost device; the user enrols again
/// (at the next login, where `REQUIRE_2FA` applies). Answers whether it
/// was on.
pub fn reset_two_factor(
    conn: &mut DbConnection,
    by: &Granted<perms::ChangeUser>,
    username: &str,
) -> Result<bool, ServiceError> {
    conn.write_transaction(|conn| {
        records::system_only(by)?;
        let user = queries::user_by_username(conn, username)?.ok_or(ServiceError::NotFound)?;
        let removed = queries::remove_totp(conn, user.id)? > 0;
        // The command line is no user: the history names no actor.
        let changes = serde_json::to_string(&[FieldChange::new("two_factor", "on", "reset")])
            .unwrap_or_else(|_| "[]".into());
        queries::log_action(
            conn,
            &NewLogEntry {
                user_id: None,
                username: "command line",
                object_type: Model::User.object_type(),
                object_id: &user.id.to_string(),
                object_repr: &user.username,
                action: "change",
                changes: &changes,
            },
        )?;
        Ok(removed)
    })
}
