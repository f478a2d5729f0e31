//! Two-factor login in the browser: the code asked after the password (or,
//! where `REQUIRE_2FA` covers a user with none, the enrolment that comes
//! first), and everyone's own page to set it up, renew recovery codes and
//! turn it off (`/account/2fa/`). The session becomes a login only once
//! both factors are right; until then it holds the pending user alone.

use actix_session::SessionExt;
use actix_web::{HttpRequest, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::extract::Member;
use super::{AdminError, CsrfForm, Layout, Reply, ok, redirect, registry};
use crate::auth::{AuthError, AuthState, csrf, login, totp, users};
use crate::db::models::User;
use crate::db::{self, queries};

/// The session's key for a password accepted and a code awaited.
const PENDING: &str = "2fa_pending";

/// The session's key for an enrolment under way: its secret lives here
/// alone until a code from it is confirmed, so that no other session (a
/// thief's, or one that knows only the password) ever sees it.
const ENROLLING: &str = "2fa_enrolling";

#[derive(Serialize, Deserialize)]
struct Enrolling {
    user_id: i32,
    secret: String,
}

/// How long the code may take after the password.
const PENDING_FOR: i64 = 300;

#[derive(Serialize, Deserialize)]
struct Pending {
    user_id: i32,
    next: String,
    started: i64,
}

#[derive(Template, Default)]
#[template(path = "admin/two_factor.html")]
struct Page<'a> {
    layout: Layout,
    /// "code", "enrol", "codes" or "manage".
    mode: &'a str,
    action: &'a str,
    error: Option<String>,
    secret: String,
    qr: String,
    codes: Vec<String>,
    next: String,
    on: bool,
    left: i64,
    required: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    code: String,
    action: String,
    /// The account's password, to start an enrolment (a session alone,
    /// perhaps a stolen one, may not put a device on the account).
    password: String,
}

/// After a right password: a session at once, or the code first (or the
/// enrolment `REQUIRE_2FA` asks for).
pub async fn after_password(req: &HttpRequest, auth: &AuthState, user: &User, next: &str) -> Reply {
    let user_id = user.id;
    let on = db::run(&auth.pool, move |conn| users::has_two_factor(conn, user_id)).await?;
    if !on && !auth.require_2fa.applies(user.is_staff, user.is_superuser) {
        login::start_session(req, user)?;
        return redirect(next);
    }
    let started = chrono::Utc::now().timestamp();
    let pending = Pending { user_id, next: next.to_owned(), started };
    req.get_session().insert(PENDING, &pending).map_err(|e| AdminError::Internal(e.into()))?;
    redirect(registry::LOGIN_2FA)
}

/// The user whose password was accepted in this session lately, if any.
async fn pending_user(
    req: &HttpRequest,
    auth: &AuthState,
) -> Result<Option<(Pending, User)>, AdminError> {
    let pending = req.get_session().get::<Pending>(PENDING).ok().flatten();
    let Some(pending) = pending else { return Ok(None) };
    if chrono::Utc::now().timestamp() - pending.started > PENDING_FOR {
        req.get_session().remove(PENDING);
        return Ok(None);
    }
    let user_id = pending.user_id;
    let user = db::run(&auth.pool, move |conn| queries::user_by_id(conn, user_id)).await?;
    Ok(user.filter(|u| u.is_active).map(|user| (pending, user)))
}

fn layout(req: &HttpRequest, user: Option<&str>) -> Result<Layout, AdminError> {
    Ok(Layout { user: user.map(str::to_owned), csrf: csrf::token(req)?, ..Layout::default() })
}

/// The enrolment's page: this session's secret for `user` (a new one when
/// `fresh` or when it has none), as a QR code and as text.
fn enrol_page(
    req: &HttpRequest,
    user: &User,
    action: &'static str,
    error: Option<String>,
    fresh: bool,
) -> Reply {
    let session = req.get_session();
    let kept = session.get::<Enrolling>(ENROLLING).ok().flatten();
    let secret = match kept.filter(|e| e.user_id == user.id && !fresh) {
        Some(enrolling) => enrolling.secret,
        None => {
            let secret = totp::new_secret();
            let enrolling = Enrolling { user_id: user.id, secret: secret.clone() };
            session.insert(ENROLLING, &enrolling).map_err(|e| AdminError::Internal(e.into()))?;
            secret
        }
    };
    let (_, qr) = totp::provisioning(&secret, &user.username)
        .ok_or_else(|| AdminError::Internal(anyhow::anyhow!("an unreadable TOTP secret")))?;
    let layout = layout(req, Some(&user.username))?;
    ok(&Page { layout, mode: "enrol", action, error, secret, qr, ..Page::default() })
}

fn code_page(req: &HttpRequest, error: Option<String>) -> Reply {
    let layout = layout(req, None)?;
    ok(&Page { layout, mode: "code", action: registry::LOGIN_2FA, error, ..Page::default() })
}

/// A refused code in words.
fn said(err: AuthError) -> Result<String, AdminError> {
    match err {
        AuthError::SecondFactorWrong => Ok(err.to_string()),
        AuthError::Throttled(wait) => {
            Ok(format!("Too many wrong codes. Try again in {} seconds.", wait.as_secs().max(1)))
        }
        other => Err(AdminError::Internal(other.into())),
    }
}

pub async fn login_step_form(req: HttpRequest, auth: web::Data<AuthState>) -> Reply {
    let Some((_, user)) = pending_user(&req, &auth).await? else {
        return redirect(registry::LOGIN);
    };
    if on(&auth, &user).await? {
        code_page(&req, None)
    } else {
        enrol_page(&req, &user, registry::LOGIN_2FA, None, false)
    }
}

pub async fn login_step(
    req: HttpRequest,
    CsrfForm(form): CsrfForm<CodeForm>,
    auth: web::Data<AuthState>,
) -> Reply {
    let Some((pending, user)) = pending_user(&req, &auth).await? else {
        return redirect(registry::LOGIN);
    };
    csrf::check_same_origin(&req).map_err(|_| AdminError::Csrf)?;
    if on(&auth, &user).await? {
        return match login::check_code(&auth, &req, &user, form.code).await {
            Ok(()) => {
                req.get_session().remove(PENDING);
                login::start_session(&req, &user)?;
                redirect(&pending.next)
            }
            Err(err) => code_page(&req, Some(said(err)?)),
        };
    }
    // Enrolment, forced by `REQUIRE_2FA`: the first code confirms it, and
    // the login is made with the recovery codes shown.
    match confirm(&req, &auth, &user, form.code).await {
        Ok(codes) => {
            req.get_session().remove(PENDING);
            login::start_session(&req, &user)?;
            let layout = layout(&req, Some(&user.username))?;
            ok(&Page { layout, mode: "codes", codes, next: pending.next, ..Page::default() })
        }
        Err(err) => enrol_page(&req, &user, registry::LOGIN_2FA, Some(said(err)?), false),
    }
}

/// A service check whose refusal of the code is "wrong code" (`None`).
fn right<T>(checked: Result<T, users::ServiceError>) -> Result<Option<T>, users::ServiceError> {
    match checked {
        Ok(given) => Ok(Some(given)),
        Err(users::ServiceError::Invalid(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Confirms this session's enrolment with `code`; its secret is then
/// forgotten by the session.
async fn confirm(
    req: &HttpRequest,
    auth: &AuthState,
    user: &User,
    code: String,
) -> Result<Vec<String>, AuthError> {
    let session = req.get_session();
    let enrolling = session.get::<Enrolling>(ENROLLING).ok().flatten();
    let Some(enrolling) = enrolling.filter(|e| e.user_id == user.id) else {
        return Err(AuthError::SecondFactorWrong);
    };
    let who = user.clone();
    let codes = login::throttled_code(auth, req, user, move |conn| {
        right(users::confirm_two_factor(conn, &who, &enrolling.secret, &code))
    })
    .await?;
    session.remove(ENROLLING);
    Ok(codes)
}

async fn on(auth: &AuthState, user: &User) -> Result<bool, AdminError> {
    let user_id = user.id;
    Ok(db::run(&auth.pool, move |conn| users::has_two_factor(conn, user_id)).await?)
}

/// The signed-in user's record (for the history's writes).
async fn own_user(auth: &AuthState, member: &Member) -> Result<User, AdminError> {
    let user_id = member.0.principal.user_id;
    db::run(&auth.pool, move |conn| queries::user_by_id(conn, user_id))
        .await?
        .ok_or(AdminError::NotFound)
}

async fn manage_page(
    req: &HttpRequest,
    auth: &AuthState,
    user: &User,
    error: Option<String>,
) -> Reply {
    let user_id = user.id;
    let (on, left) = db::run(&auth.pool, move |conn| {
        Ok::<_, users::ServiceError>((
            users::has_two_factor(conn, user_id)?,
            queries::recovery_codes_left(conn, user_id)?,
        ))
    })
    .await?;
    let required = auth.require_2fa.applies(user.is_staff, user.is_superuser);
    let layout = layout(req, Some(&user.username))?;
    let action = registry::ACCOUNT_2FA;
    ok(&Page { layout, mode: "manage", action, error, on, left, required, ..Page::default() })
}

pub async fn manage_form(req: HttpRequest, member: Member) -> Reply {
    let auth = member.0.auth.clone();
    let user = own_user(&auth, &member).await?;
    manage_page(&req, &auth, &user, None).await
}

/// The account page's actions: `start` (a new secret to scan), `confirm`
/// (its first code), `codes` (new recovery codes) and `off`; every one but
/// `start` needs a right code.
pub async fn manage(req: HttpRequest, member: Member, CsrfForm(form): CsrfForm<CodeForm>) -> Reply {
    csrf::check_same_origin(&req).map_err(|_| AdminError::Csrf)?;
    let auth = member.0.auth.clone();
    let user = own_user(&auth, &member).await?;
    let action = registry::ACCOUNT_2FA;
    let codes_page = |codes: Vec<String>| -> Reply {
        let layout = layout(&req, Some(&user.username))?;
        let next = action.to_owned();
        ok(&Page { layout, mode: "codes", codes, next, ..Page::default() })
    };
    match form.action.as_str() {
        "start" => {
            match login::check_credentials(&auth, &req, &user.username, &form.password).await {
                Ok(_) if on(&auth, &user).await? => {
                    let said = "Two-factor login is on already; turn it off first.".to_owned();
                    manage_page(&req, &auth, &user, Some(said)).await
                }
                Ok(_) => enrol_page(&req, &user, action, None, true),
                Err(AuthError::BadCredentials) => {
                    let said = "Your password was entered incorrectly.".to_owned();
                    manage_page(&req, &auth, &user, Some(said)).await
                }
                Err(err @ AuthError::PasswordLoginOff) => {
                    manage_page(&req, &auth, &user, Some(err.to_string())).await
                }
                Err(err) => manage_page(&req, &auth, &user, Some(said(err)?)).await,
            }
        }
        "confirm" => match confirm(&req, &auth, &user, form.code).await {
            Ok(codes) => codes_page(codes),
            Err(err) => enrol_page(&req, &user, action, Some(said(err)?), false),
        },
        "codes" => {
            let who = user.clone();
            let renewed = login::throttled_code(&auth, &req, &user, move |conn| {
                right(users::renew_recovery_codes(conn, &who, &form.code))
            })
            .await;
            match renewed {
                Ok(codes) => codes_page(codes),
                Err(err) => manage_page(&req, &auth, &user, Some(said(err)?)).await,
            }
        }
        "off" => {
            let required = auth.require_2fa.applies(user.is_staff, user.is_superuser);
            let who = user.clone();
            let off = login::throttled_code(&auth, &req, &user, move |conn| {
                right(users::turn_off_two_factor(conn, &who, &form.code, required))
            })
            .await;
            match off {
                Ok(()) => {
                    member.0.flash("success", "Two-factor login is off.");
                    redirect(action)
                }
                Err(AuthError::Service(users::ServiceError::Denied(why))) => {
                    manage_page(&req, &auth, &user, Some(why.0)).await
                }
                Err(err) => manage_page(&req, &auth, &user, Some(said(err)?)).await,
            }
        }
        _ => Err(AdminError::BadForm),
    }
}
