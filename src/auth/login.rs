//! Logging in, for the admin's form and the JSON API alike: the check of a
//! username and password, and the session that follows a good one.

use actix_identity::Identity;
use actix_session::SessionExt;
use std::net::IpAddr;

use actix_web::{HttpMessage, HttpRequest};

use super::{AuthError, AuthState, client_ip, csrf, password, users};
use crate::db::models::User;
use crate::db::{self, DbConnection, queries};
use crate::error::ApiError;
use crate::metrics::AuthFailure;

const ONE_SECOND: std::time::Duration = std::time::Duration::from_secs(1);

/// Checks a username and password: throttled per (account, address) with
/// the attempt counted before the check, one message for an unknown user,
/// a wrong password or an inactive account, and the same argon2 work in
/// each case.
pub async fn check_credentials(
    state: &AuthState,
    req: &HttpRequest,
    username: &str,
    password: &str,
) -> Result<User, AuthError> {
    let ip = client_ip(req);
    let throttled = |wait| {
        state.metrics.auth_failure(AuthFailure::Throttled);
        AuthError::Throttled(wait)
    };
    state.throttle.login_address_refused(ip).map_err(throttled)?;
    // `OIDC_ONLY`: no password is even checked, but the break-glass one's.
    if !state.oidc.password_login_allowed(username) {
        return Err(AuthError::PasswordLoginOff);
    }
    // No username is longer: a longer one is no account's, and is not
    // worth a look-up or a hash.
    if username.len() > users::MAX_USERNAME_LEN {
        state.metrics.auth_failure(AuthFailure::BadPassword);
        return Err(AuthError::BadCredentials);
    }
    // The address's place first: past its two, nothing else is done.
    let admitted = state.hasher.admit(ip).map_err(|_| throttled(ONE_SECOND))?;
    state.throttle.attempt_login(username, ip).await?.map_err(throttled)?;
    let name = username.to_owned();
    let user = db::run(&state.pool, move |conn| queries::user_by_username(conn, &name)).await?;
    let phc = user.as_ref().map(|u| u.password.clone());
    let matches =
        admitted.verify(password.to_owned(), phc).await.map_err(|_| throttled(ONE_SECOND))?;
    match user {
        // The break-glass account under `OIDC_ONLY` is a superuser's.
        Some(user)
            if matches
                && user.is_active
                && (user.is_superuser || !state.oidc.password_login_only_break_glass()) =>
        {
            req.extensions_mut().insert(crate::accesslog::Authenticated);
            state.throttle.succeed_login(username, ip).await?;
            upgrade_hash(state, &user, password).await?;
            Ok(user)
        }
        _ => {
            state.metrics.auth_failure(AuthFailure::BadPassword);
            state.throttle.fail_login_address(ip).await?;
            tracing::info!("failed login for an account from {ip}");
            Err(AuthError::BadCredentials)
        }
    }
}

/// The second factor for a password login outside the admin's pages (the
/// API's session login and token): `otp` must be a right code when the
/// account has two-factor login on; an account that `REQUIRE_2FA` covers
/// and that has none is refused until it enrols. Throttled as passwords
/// are, on a count of its own per account and address.
pub async fn check_second_factor(
    state: &AuthState,
    req: &HttpRequest,
    user: &User,
    otp: Option<&str>,
) -> Result<(), AuthError> {
    let user_id = user.id;
    let on = db::run(&state.pool, move |conn| users::has_two_factor(conn, user_id)).await?;
    if !on {
        return match state.require_2fa.applies(user.is_staff, user.is_superuser) {
            true => Err(AuthError::SecondFactorMissing),
            false => Ok(()),
        };
    }
    let code = otp.ok_or(AuthError::SecondFactorNeeded)?.to_owned();
    check_code(state, req, user, code).await
}

/// Checks a second-factor code for `user`: `check` answers what a right
/// code gives (`None`: wrong or used). Throttled per account (from every
/// address together) on a count apart from the password's, which a right
/// password does not clear, and per address as passwords are.
pub async fn throttled_code<T: Send + 'static>(
    state: &AuthState,
    req: &HttpRequest,
    user: &User,
    check: impl FnOnce(&mut DbConnection) -> Result<Option<T>, users::ServiceError> + Send + 'static,
) -> Result<T, AuthError> {
    let ip = client_ip(req);
    // The address's own limit first, as for passwords: past it, no code is
    // checked for any account.
    state.throttle.login_address_refused(ip).map_err(AuthError::Throttled)?;
    // Counted per account, whatever the address: six digits cannot bear a
    // count per address (a /48 of IPv6 is 65,536 of them).
    let counted = format!("{}\u{0}2fa", user.username);
    let anywhere = IpAddr::from([0, 0, 0, 0]);
    state.throttle.attempt_login(&counted, anywhere).await?.map_err(AuthError::Throttled)?;
    match db::run(&state.pool, check).await? {
        Some(given) => {
            state.throttle.succeed_login(&counted, anywhere).await?;
            Ok(given)
        }
        None => {
            state.metrics.auth_failure(AuthFailure::BadPassword);
            state.throttle.fail_login_address(ip).await?;
            Err(AuthError::SecondFactorWrong)
        }
    }
}

/// A TOTP or recovery code for `user`, spent if right.
pub async fn check_code(
    state: &AuthState,
    req: &HttpRequest,
    user: &User,
    code: String,
) -> Result<(), AuthError> {
    let user_id = user.id;
    throttled_code(state, req, user, move |conn| {
        Ok(users::check_second_factor(conn, user_id, &code)?.then_some(()))
    })
    .await
}

/// A hash imported from Django (or made with older parameters) is replaced
/// by our argon2id once its password is known to be right, as Django's
/// `must_update` does. Only if it is still the one that was checked: a
/// password changed meanwhile stays.
async fn upgrade_hash(state: &AuthState, user: &User, password: &str) -> Result<(), AuthError> {
    if !password::needs_rehash(&user.password) {
        return Ok(());
    }
    let new = state.hasher.hash(password.to_owned()).await?;
    let (id, old) = (user.id, user.password.clone());
    db::run(&state.pool, move |conn| queries::replace_password_hash(conn, id, &old, &new)).await?;
    Ok(())
}

/// Logs `user` in on this request's session: a new session id (a visitor's
/// old one, which someone else may have handed it, is dropped), a new CSRF
/// token, and the identity. Answers the new token.
pub fn start_session(req: &HttpRequest, user: &User) -> Result<String, ApiError> {
    req.get_session().renew();
    csrf::forget(req);
    Identity::login(&req.extensions(), user.id.to_string()).map_err(ApiError::internal)?;
    csrf::token(req)
}
