//! `/api/auth/`: obtain a token, log in and out with a session, fetch the
//! CSRF token, and ask who you are.

use actix_identity::Identity;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::login::check_credentials;
use super::{AuthState, csrf, login, users};
use crate::db::{self, queries};
use crate::error::ApiError;

/// A login's or a new token's body. A field it does not know is refused,
/// not ignored: a misspelled restriction (`"scope"`, `"networks"`) would
/// otherwise make a token of all its user's powers, from anywhere.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
    /// The second factor, for an account with two-factor login: a TOTP
    /// code or a recovery code.
    otp: Option<String>,
    /// For `/api/auth/token/`: a name for the token.
    name: Option<String>,
    /// For `/api/auth/token/`: a lifetime such as "30d" or "12h".
    expires_in: Option<String>,
    /// For `/api/auth/token/`: what the token keeps of the user's
    /// permissions (`["lbasedb.view_data=xy"]`, or one comma-separated
    /// string in a form).
    #[serde(default)]
    scopes: OneOrMany,
    /// For `/api/auth/token/`: the networks it may be used from
    /// (`["10.0.0.0/8"]`, or one comma-separated string in a form).
    #[serde(default)]
    allowed_networks: OneOrMany,
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

/// `POST /api/auth/token/`: a new token for the user, shown this once.
pub async fn obtain_token(
    req: HttpRequest,
    body: CredentialsBody,
    state: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let expires_at = super::token::expiry_from_text(body.expires_in.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("expires_in: {e}.")))?;
    let restrictions =
        super::scopes::Restrictions::parse(&body.scopes.items(), &body.allowed_networks.items())
            .map_err(|e| ApiError::BadRequest(format!("scopes: {e}.")))?;
    let user = check_credentials(&state, &req, &body.username, &body.password).await?;
    login::check_second_factor(&state, &req, &user, body.otp.as_deref()).await?;
    let name = body.name.unwrap_or_else(|| "api".into());
    let limits = state.token_limits;
    let (token, plain) = db::run(&state.pool, move |conn| {
        let spec = users::TokenSpec { name: &name, expires_at, restrictions, limits };
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
    state: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    csrf::check_same_origin(&req)?;
    let body = body.into_inner();
    let user = check_credentials(&state, &req, &body.username, &body.password).await?;
    login::check_second_factor(&state, &req, &user, body.otp.as_deref()).await?;
    let csrf = login::start_session(&req, &user)?;
    let user_id = user.id;
    db::run(&state.pool, move |conn| queries::touch_last_login(conn, user_id)).await?;
    Ok(HttpResponse::Ok().cookie(csrf::cookie(&csrf, state.secure_cookies)).json(json!({
        "detail": "Logged in.",
        "username": user.username,
        "csrfToken": csrf,
    })))
}

/// `POST /api/auth/logout/`: ends the session (CSRF-checked, so that
/// another site cannot log a user out).
pub async fn logout(
    req: HttpRequest,
    identity: Option<Identity>,
) -> Result<HttpResponse, ApiError> {
    if let Some(identity) = identity {
        csrf::check_header(&req)?;
        identity.logout();
    }
    Ok(HttpResponse::Ok().json(json!({ "detail": "Logged out." })))
}

/// `GET /api/auth/csrf/`: the session's CSRF token, also set as the
/// `csrftoken` cookie.
pub async fn csrf(req: HttpRequest, state: web::Data<AuthState>) -> Result<HttpResponse, ApiError> {
    let token = csrf::token(&req)?;
    Ok(HttpResponse::Ok()
        .cookie(csrf::cookie(&token, state.secure_cookies))
        .json(json!({ "csrfToken": token })))
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
    let (quota, rows_today, bytes_today) = state.write_quota_of(p).await?;
    let grants = p.described_grants();
    Ok(HttpResponse::Ok().json(json!({
        "id": p.user_id,
        "username": p.username,
        "email": p.email,
        "is_staff": p.is_staff,
        "is_superuser": p.is_superuser,
        "authenticated_by": who.credential.kind(),
        "groups": p.groups,
        "permissions": permissions,
        "feed_grants": grants,
        // Rows and bytes a day (null: no limit), and what today (UTC) used.
        "write_quota": {
            "rows_per_day": quota.rows,
            "bytes_per_day": quota.bytes,
            "rows_today": rows_today,
            "bytes_today": bytes_today,
        },
    })))
}

/// `DELETE /api/auth/token/`: revokes the token this request carries
/// (django-rest-knox's logout); it stops working at once.
pub async fn revoke_token(
    req: HttpRequest,
    state: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    let who = state.authenticate(&req).await?.ok_or_else(ApiError::no_credentials)?;
    let super::Credential::Token { id, .. } = who.credential else {
        return Err(ApiError::BadRequest("Only a token can revoke itself.".into()));
    };
    state.write(move |conn| users::revoke_own_token(conn, id)).await?;
    Ok(HttpResponse::NoContent().finish())
}
