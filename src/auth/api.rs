//! `/api/auth/`: obtain a token, log in and out with a session, fetch the
//! CSRF token, and ask who you are.

use std::collections::BTreeMap;

use actix_identity::Identity;
use actix_session::Session;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::{
    AuthError, AuthState, CSRF_SESSION_KEY, check_csrf, client_ip, ensure_csrf_token, password,
    users,
};
use crate::db::models::User;
use crate::db::{self, queries};
use crate::error::ApiError;
use crate::metrics::AuthFailure;

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
    /// For `/api/auth/token/`: a name for the token.
    name: Option<String>,
    /// For `/api/auth/token/`: a lifetime such as "30d" or "12h".
    expires_in: Option<String>,
    /// For `/api/auth/token/`: what the token keeps of the user's
    /// permissions (`["lbasedb.view_data=xy"]`, or one comma-separated
    /// string in a form).
    #[serde(default)]
    scopes: OneOrMany,
}

/// A list in JSON, or a single (comma-separated) string in a form.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(text) => vec![text],
            Self::Many(list) => list,
        }
    }
}

/// A form or a JSON body alike.
type CredentialsBody = web::Either<web::Json<Credentials>, web::Form<Credentials>>;

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
        Some(user) if matches && user.is_active => {
            req.extensions_mut().insert(crate::accesslog::Authenticated);
            state.throttle.succeed_login(username, ip).await?;
            upgrade_hash(state, &user, password).await?;
            Ok(user)
        }
        _ => {
            state.metrics.auth_failure(AuthFailure::BadPassword);
            state.throttle.fail_login_address(ip).await?;
            log::info!("failed login for an account from {ip}");
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

/// `POST /api/auth/token/`: a new token for the user, shown this once.
pub async fn obtain_token(
    req: HttpRequest,
    body: CredentialsBody,
    state: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let expires_at = super::token::expiry_from_text(body.expires_in.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("expires_in: {e}.")))?;
    let restrictions = super::scopes::Restrictions::parse(&body.scopes.items(), &[])
        .map_err(|e| ApiError::BadRequest(format!("scopes: {e}.")))?;
    let user = check_credentials(&state, &req, &body.username, &body.password).await?;
    let name = body.name.unwrap_or_else(|| "api".into());
    let max_live = state.max_tokens_per_user;
    let (token, plain) = db::run(&state.pool, move |conn| {
        let spec = users::TokenSpec { name: &name, expires_at, restrictions, max_live };
        users::issue_own_token(conn, user.id, &spec)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "token": plain.secret,
        "prefix": token.prefix,
        "name": token.name,
        "expires_at": token.expires_at,
    })))
}

/// `POST /api/auth/login/`: a session for browser code (cookie + CSRF).
pub async fn login(
    req: HttpRequest,
    body: CredentialsBody,
    session: Session,
    state: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    check_same_origin(&req)?;
    let body = body.into_inner();
    let user = check_credentials(&state, &req, &body.username, &body.password).await?;
    // A new session id at login, and a new CSRF token with it.
    session.renew();
    session.remove(CSRF_SESSION_KEY);
    Identity::login(&req.extensions(), user.id.to_string()).map_err(ApiError::internal)?;
    let csrf = ensure_csrf_token(&req)?;
    let user_id = user.id;
    db::run(&state.pool, move |conn| queries::touch_last_login(conn, user_id)).await?;
    Ok(HttpResponse::Ok().cookie(state.csrf_cookie(&csrf)).json(json!({
        "detail": "Logged in.",
        "username": user.username,
        "csrfToken": csrf,
    })))
}

/// Login CSRF: a page on another site must not log its visitor in to an
/// account of the attacker's (whose session would then see what the
/// victim uploads). Browsers send `Origin` (or at least `Referer`) with a
/// cross-site POST; it must name this site, as Django's CSRF check demands
/// over HTTPS. A request with neither comes from no browser page (a script),
/// which no third party can make a victim send.
pub fn check_same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    use actix_web::http::header;
    let claimed = req.headers().get(header::ORIGIN).or_else(|| req.headers().get(header::REFERER));
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let host = crate::net::request_host(req);
    let same = claimed
        .to_str()
        .ok()
        .zip(host)
        .is_some_and(|(origin, host)| crate::net::same_origin(origin, &host));
    if same {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "CSRF Failed: Origin checking failed: the request does not come from this site.".into(),
        ))
    }
}

/// `POST /api/auth/logout/`: ends the session (CSRF-checked, so that
/// another site cannot log a user out).
pub async fn logout(
    req: HttpRequest,
    identity: Option<Identity>,
) -> Result<HttpResponse, ApiError> {
    if let Some(identity) = identity {
        check_csrf(&req)?;
        identity.logout();
    }
    Ok(HttpResponse::Ok().json(json!({ "detail": "Logged out." })))
}

/// `GET /api/auth/csrf/`: the session's CSRF token, also set as the
/// `csrftoken` cookie.
pub async fn csrf(req: HttpRequest, state: web::Data<AuthState>) -> Result<HttpResponse, ApiError> {
    let token = ensure_csrf_token(&req)?;
    Ok(HttpResponse::Ok().cookie(state.csrf_cookie(&token)).json(json!({ "csrfToken": token })))
}

/// `GET /api/auth/me/`: who you are, your groups, your effective
/// permissions and feed grants.
pub async fn me(req: HttpRequest, state: web::Data<AuthState>) -> Result<HttpResponse, ApiError> {
    let who = state.authenticate(&req).await?.ok_or_else(ApiError::no_credentials)?;
    let p = &who.principal;
    let mut permissions: Vec<String> = if p.is_superuser {
        db::run(&state.pool, queries::all_permissions)
            .await?
            .iter()
            .map(|perm| perm.full_codename())
            .collect()
    } else {
        p.perms.iter().cloned().collect()
    };
    permissions.sort();
    permissions.dedup();
    let grants: BTreeMap<&String, Vec<&String>> = p
        .grants
        .iter()
        .map(|(feed, held)| {
            let mut held: Vec<&String> = held.iter().collect();
            held.sort();
            (feed, held)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "id": p.user_id,
        "username": p.username,
        "email": p.email,
        "is_staff": p.is_staff,
        "is_superuser": p.is_superuser,
        "authenticated_by": if who.by_session { "session" } else { "token" },
        "groups": p.groups,
        "permissions": permissions,
        "feed_grants": grants,
    })))
}

/// `DELETE /api/auth/token/`: revokes the token this request carries
/// (django-rest-knox's logout); it stops working at once.
pub async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    let who = state.authenticate(&req).await?.ok_or_else(ApiError::no_credentials)?;
    if who.by_session {
        return Err(ApiError::BadRequest("Only a token can revoke itself.".into()));
    }
    let header = req.headers().get(actix_web::http::header::AUTHORIZATION).map(|v| v.as_bytes());
    let key = super::parse_authorization(header.unwrap_or_default())?;
    let digest = super::token::digest(key);
    state.write(move |conn| queries::revoke_token_by_digest(conn, &digest)).await?;
    Ok(HttpResponse::NoContent().finish())
}
