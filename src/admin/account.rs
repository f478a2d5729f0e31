//! Logging in and out of the admin, changing one's own password, and the
//! index of models.

use actix_identity::Identity;
use actix_session::Session;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::{AdminError, Ctx, Form, Message, flash, log_action, ok, redirect, staff};
use crate::auth::api::check_credentials;
use crate::auth::guard::Actor;
use crate::auth::{AuthState, CSRF_SESSION_KEY, ensure_csrf_token, password, users};
use crate::db::models::LogEntry;
use crate::db::{self, queries};
use crate::error::ApiError;

const STAFF_ONLY: &str = "Please enter the correct username and password for a staff account. Note that both fields may be case-sensitive.";

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    error: Option<String>,
    username: &'a str,
    next: &'a str,
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// `?next=` is honoured for local paths only: one leading `/`, and no
/// backslash or control character anywhere, since browsers drop tabs and
/// newlines and read `\\` as `/` (`/\t/evil.example/` is `//evil.example/`).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => "/admin/",
    }
}

pub async fn login_form(
    req: HttpRequest,
    query: web::Query<Next>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let next = safe_next(query.next.as_deref());
    if staff(&req, &auth).await.is_ok() {
        return redirect(next);
    }
    let csrf = ensure_csrf_token(&req)?;
    ok(&LoginPage {
        user: None,
        csrf: &csrf,
        messages: Vec::new(),
        error: None,
        username: "",
        next,
    })
}

pub async fn login(
    req: HttpRequest,
    body: web::Bytes,
    session: Session,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let form = Form::parse(&body);
    let csrf = ensure_csrf_token(&req)?;
    form.check_csrf(&csrf)?;
    crate::auth::api::check_same_origin(&req).map_err(|_| AdminError::Csrf)?;
    let username = form.get("username");
    let next = safe_next(Some(form.get("next"))).to_owned();
    let checked = check_credentials(&auth, &req, username, form.get("password")).await;
    let error = match &checked {
        Ok(user) if user.is_staff => None,
        Ok(_) | Err(ApiError::BadRequest(_)) => Some(STAFF_ONLY.to_owned()),
        Err(ApiError::Throttled(wait)) => Some(format!(
            "Too many failed login attempts. Try again in {} seconds.",
            wait.as_secs().max(1)
        )),
        Err(other) => return Err(AdminError::Internal(other.to_string())),
    };
    if let Some(error) = error {
        let actor = checked.as_ref().ok().map(|u| (u.id, u.username.clone()));
        log_action(
            &auth,
            actor,
            ("auth.user", String::new(), username.to_owned()),
            "login_failed",
            json!([]),
        )
        .await?;
        let page = LoginPage {
            user: None,
            csrf: &csrf,
            messages: Vec::new(),
            error: Some(error),
            username,
            next: &next,
        };
        return Ok(super::html(actix_web::http::StatusCode::OK, &page));
    }
    let user = checked.expect("checked above");
    session.renew();
    session.remove(CSRF_SESSION_KEY);
    Identity::login(&req.extensions(), user.id.to_string())
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    let user_id = user.id;
    db::run(&auth.pool, move |conn| {
        queries::touch_last_login(conn, user_id)
    })
    .await?;
    log_action(
        &auth,
        Some((user.id, user.username.clone())),
        ("auth.user", user.id.to_string(), user.username),
        "login",
        json!([]),
    )
    .await?;
    redirect(&next)
}

pub async fn logout(
    req: HttpRequest,
    body: web::Bytes,
    identity: Option<Identity>,
) -> Result<HttpResponse, AdminError> {
    let form = Form::parse(&body);
    let csrf = ensure_csrf_token(&req)?;
    form.check_csrf(&csrf)?;
    crate::auth::api::check_same_origin(&req).map_err(|_| AdminError::Csrf)?;
    if let Some(identity) = identity {
        identity.logout();
    }
    redirect("/admin/login/")
}

struct Section {
    name: &'static str,
    models: Vec<ModelLink>,
}

struct ModelLink {
    name: &'static str,
    url: &'static str,
    can_add: bool,
}

#[derive(Template)]
#[template(path = "admin/index.html")]
struct IndexPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    sections: Vec<Section>,
    recent: Vec<LogEntry>,
}

pub async fn index(
    req: HttpRequest,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    let model = |name, url, object: &str, app: &str| {
        let view =
            ctx.can(&format!("{app}.view_{object}")) || ctx.can(&format!("{app}.change_{object}"));
        view.then(|| ModelLink {
            name,
            url,
            can_add: ctx.can(&format!("{app}.add_{object}")),
        })
    };
    let sections = [
        (
            "Authentication and authorization",
            vec![
                model("Users", "/admin/auth/user/", "user", "auth"),
                model("Groups", "/admin/auth/group/", "group", "auth"),
            ],
        ),
        (
            "API",
            vec![model(
                "Tokens",
                "/admin/authtoken/token/",
                "token",
                "authtoken",
            )],
        ),
        (
            "Lbasedb",
            // Feeds show for a grant on any one feed too; the page lists
            // only those the user may view.
            vec![
                ctx.principal
                    .grants
                    .values()
                    .any(|held| held.contains("lbasedb.view_feed"))
                    .then_some(ModelLink {
                        name: "Feeds",
                        url: "/admin/lbasedb/feed/",
                        can_add: false,
                    })
                    .or_else(|| model("Feeds", "/admin/lbasedb/feed/", "feed", "lbasedb"))
                    // Feeds are created through the API, not here.
                    .map(|link| ModelLink {
                        can_add: false,
                        ..link
                    }),
            ],
        ),
    ]
    .into_iter()
    .map(|(name, models)| Section {
        name,
        models: models.into_iter().flatten().collect(),
    })
    .filter(|s| !s.models.is_empty())
    .collect();
    let user_id = ctx.principal.user_id;
    let recent = db::run(&auth.pool, move |conn| {
        queries::recent_actions(conn, user_id, 10)
    })
    .await?;
    let Ctx {
        principal,
        csrf,
        messages,
    } = &ctx;
    ok(&IndexPage {
        user: Some(&principal.username),
        csrf,
        messages: messages.clone(),
        sections,
        recent,
    })
}

#[derive(Template)]
#[template(path = "admin/password_change.html")]
struct PasswordChangePage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    errors: Vec<String>,
}

pub async fn password_change_form(
    req: HttpRequest,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ok(&PasswordChangePage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        errors: Vec::new(),
    })
}

pub async fn password_change(
    req: HttpRequest,
    body: web::Bytes,
    session: Session,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    let form = Form::parse(&body);
    form.check_csrf(&ctx.csrf)?;
    let (old, new1, new2) = (
        form.get("old_password"),
        form.get("new_password1"),
        form.get("new_password2"),
    );
    let user_id = ctx.principal.user_id;
    let user = db::run(&auth.pool, move |conn| queries::user_by_id(conn, user_id))
        .await?
        .ok_or(AdminError::NotFound)?;
    let (old_owned, stored) = (old.to_owned(), user.password.clone());
    let old_ok = web::block(move || password::verify(&old_owned, Some(&stored)))
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    let mut errors = Vec::new();
    if !old_ok {
        errors.push("Your old password was entered incorrectly. Please enter it again.".to_owned());
    }
    if new1 != new2 {
        errors.push("The two password fields didn’t match.".to_owned());
    } else if let Err(problems) = password::validate(new1, &user.username, &user.email) {
        errors.extend(problems);
    }
    if !errors.is_empty() {
        return ok(&PasswordChangePage {
            user: ctx.user(),
            csrf: &ctx.csrf,
            messages: Vec::new(),
            errors,
        });
    }
    let new = new1.to_owned();
    let phc = web::block(move || password::hash(&new))
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    // Every session of the user ends; this one is renewed, so it stays.
    db::run(&auth.pool, move |conn| {
        users::set_password(conn, Actor::User(user_id), user_id, &phc, None)
    })
    .await?;
    auth.cache.clear();
    session.renew();
    log_action(
        &auth,
        Some((user.id, user.username.clone())),
        ("auth.user", user.id.to_string(), user.username),
        "change",
        json!([{"field": "password", "old": "(hidden)", "new": "(changed)"}]),
    )
    .await?;
    flash(&req, "success", "Your password was changed.");
    redirect("/admin/")
}
