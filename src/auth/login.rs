//! Logging in, for the admin's form and the JSON API alike: the check of a
//! username and password, and the session that follows a good one.

use actix_identity::Identity;
use actix_session::SessionExt;
use actix_web::{HttpMessage, HttpRequest};

use super::{AuthError, AuthState, client_ip, csrf, password, users};
use crate::db::models::User;
use crate::db::{self, queries};
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
