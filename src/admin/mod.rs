//! The administration site under `/admin/`: Django's admin habits (login,
//! an index of models, lists with search, filters, sorting and pages, add
//! and change forms, delete with confirmation, history, a message after each
//! save), server-rendered with askama and usable without JavaScript.

pub(crate) mod account;
mod feeds;
mod groups;
mod tokens;
mod users;

use std::sync::Arc;

use actix_identity::IdentityExt;
use actix_session::SessionExt;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use crate::auth::principal::Principal;
use crate::auth::{AuthState, ensure_csrf_token};
use crate::db::{self, DbError, queries};

/// Every admin route; `/admin` is one scope with the admin's security headers.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/admin/admin.css", web::get().to(stylesheet))
        .route("/static/admin/chooser.js", web::get().to(chooser_script))
        .service(
            web::scope("/admin")
                .wrap(security_headers())
                .route("/", web::get().to(account::index))
                .service(
                    web::resource("/login/")
                        .route(web::get().to(account::login_form))
                        .route(web::post().to(account::login)),
                )
                .route("/logout/", web::post().to(account::logout))
                .service(
                    web::resource("/password_change/")
                        .route(web::get().to(account::password_change_form))
                        .route(web::post().to(account::password_change)),
                )
                .service(
                    web::resource("/auth/user/")
                        .route(web::get().to(users::list))
                        .route(web::post().to(users::bulk_action)),
                )
                .service(
                    web::resource("/auth/user/add/")
                        .route(web::get().to(users::add_form))
                        .route(web::post().to(users::add)),
                )
                .service(
                    web::resource("/auth/user/{id}/change/")
                        .route(web::get().to(users::change_form))
                        .route(web::post().to(users::change)),
                )
                .service(
                    web::resource("/auth/user/{id}/password/")
                        .route(web::get().to(users::password_form))
                        .route(web::post().to(users::password)),
                )
                .service(
                    web::resource("/auth/user/{id}/delete/")
                        .route(web::get().to(users::delete_form))
                        .route(web::post().to(users::delete)),
                )
                .route("/auth/user/{id}/history/", web::get().to(users::history))
                .route("/auth/group/", web::get().to(groups::list))
                .service(
                    web::resource("/auth/group/add/")
                        .route(web::get().to(groups::add_form))
                        .route(web::post().to(groups::add)),
                )
                .service(
                    web::resource("/auth/group/{id}/change/")
                        .route(web::get().to(groups::change_form))
                        .route(web::post().to(groups::change)),
                )
                .service(
                    web::resource("/auth/group/{id}/delete/")
                        .route(web::get().to(groups::delete_form))
                        .route(web::post().to(groups::delete)),
                )
                .route("/auth/group/{id}/history/", web::get().to(groups::history))
                .route("/authtoken/token/", web::get().to(tokens::list))
                .service(
                    web::resource("/authtoken/token/add/")
                        .route(web::get().to(tokens::add_form))
                        .route(web::post().to(tokens::add)),
                )
                .route(
                    "/authtoken/token/{id}/revoke/",
                    web::post().to(tokens::revoke),
                )
                .route(
                    "/authtoken/token/{id}/history/",
                    web::get().to(tokens::history),
                )
                .route("/lbasedb/feed/", web::get().to(feeds::list))
                .route("/lbasedb/feed/{name}/", web::get().to(feeds::detail))
                .default_service(web::to(|| async { AdminError::NotFound.error_response() })),
        );
}

/// No framing, no inline script or style, no sniffing, no caching.
fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::REFERRER_POLICY, "same-origin"))
        .add((header::CACHE_CONTROL, "no-store"))
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/admin/admin.css"))
}

async fn chooser_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/admin/chooser.js"))
}

/// What every admin page knows: who, their CSRF token, pending messages.
pub struct Ctx {
    pub principal: Arc<Principal>,
    pub csrf: String,
    pub messages: Vec<Message>,
}

impl Ctx {
    pub fn user(&self) -> Option<&str> {
        Some(&self.principal.username)
    }

    pub fn can(&self, codename: &str) -> bool {
        self.principal.has_perm(codename)
    }

    pub fn require(&self, codename: &str) -> Result<(), AdminError> {
        if self.can(codename) {
            Ok(())
        } else {
            Err(AdminError::Forbidden)
        }
    }

    /// Who writes, for the privilege rules of `auth::guard`.
    pub fn as_actor(&self) -> crate::auth::guard::Actor {
        crate::auth::guard::Actor::User(self.principal.user_id)
    }

    /// Who the history records as having done an action.
    pub fn actor(&self) -> Option<(i32, String)> {
        Some((self.principal.user_id, self.principal.username.clone()))
    }

    /// Django's rule for read pages: `view_<model>` or `change_<model>`.
    pub fn can_view(&self, app: &str, model: &str) -> bool {
        let held = |action: &str| self.can(&format!("{app}.{action}_{model}"));
        held("view") || held("change")
    }

    pub fn require_view(&self, app: &str, model: &str) -> Result<(), AdminError> {
        if self.can_view(app, model) {
            Ok(())
        } else {
            Err(AdminError::Forbidden)
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub level: String,
    pub text: String,
}

const MESSAGES_KEY: &str = "_messages";

/// Queues a message for the next page, as Django's messages framework does.
pub fn flash(req: &HttpRequest, level: &str, text: impl Into<String>) {
    let session = req.get_session();
    let mut queued: Vec<Message> = session.get(MESSAGES_KEY).ok().flatten().unwrap_or_default();
    queued.push(Message {
        level: level.into(),
        text: text.into(),
    });
    let _ = session.insert(MESSAGES_KEY, queued);
}

/// The active staff user behind this request, or a redirect to the login.
pub async fn staff(req: &HttpRequest, auth: &AuthState) -> Result<Ctx, AdminError> {
    let to_login = || {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/admin/");
        let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
        AdminError::Redirect(format!("/admin/login/?{query}"))
    };
    let Ok(identity) = req.get_identity() else {
        return Err(to_login());
    };
    let Ok(Ok(user_id)) = identity.id().map(|id| id.parse::<i32>()) else {
        return Err(to_login());
    };
    let principal = auth.principal_of(user_id).await?.ok_or_else(to_login)?;
    if !principal.is_active || !principal.is_staff {
        return Err(to_login());
    }
    let csrf = ensure_csrf_token(req).map_err(|e| AdminError::Internal(e.to_string()))?;
    let session = req.get_session();
    let messages = session
        .remove_as::<Vec<Message>>(MESSAGES_KEY)
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(Ctx {
        principal,
        csrf,
        messages,
    })
}

/// A form submitted to an admin page: by active staff, with the session's
/// CSRF token, holding `codename`.
pub async fn staff_form(
    req: &HttpRequest,
    auth: &AuthState,
    body: &[u8],
    codename: &str,
) -> Result<(Ctx, Form), AdminError> {
    let ctx = staff(req, auth).await?;
    let form = Form::parse(body);
    form.check_csrf(&ctx.csrf)?;
    ctx.require(codename)?;
    Ok((ctx, form))
}

/// A submitted form, keeping repeated fields (multi-selects).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Self {
        Self(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), "on" | "true" | "1")
    }

    /// The form's CSRF token must match the session's.
    pub fn check_csrf(&self, ctx_csrf: &str) -> Result<(), AdminError> {
        let sent = self.get("csrfmiddlewaretoken");
        if !sent.is_empty()
            && sent.len() == ctx_csrf.len()
            && sent
                .bytes()
                .zip(ctx_csrf.bytes())
                .fold(0, |a, (x, y)| a | (x ^ y))
                == 0
        {
            Ok(())
        } else {
            Err(AdminError::Csrf)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("redirect to {0}")]
    Redirect(String),
    #[error("403 Forbidden")]
    Forbidden,
    #[error("CSRF verification failed. Request aborted.")]
    Csrf,
    #[error("404 Not Found")]
    NotFound,
    /// Refused by the privilege rules, with the reason.
    #[error("{0}")]
    Denied(String),
    #[error("server error: {0}")]
    Internal(String),
}

impl From<DbError> for AdminError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Denied(denied) => Self::Denied(denied.0),
            err if err.is_not_found() => Self::NotFound,
            err => Self::Internal(err.to_string()),
        }
    }
}

impl From<crate::error::ApiError> for AdminError {
    fn from(err: crate::error::ApiError) -> Self {
        Self::Internal(err.to_string())
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    title: &'a str,
    detail: &'a str,
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Redirect(_) => StatusCode::FOUND,
            Self::Forbidden | Self::Csrf | Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (title, detail) = match self {
            Self::Redirect(to) => {
                return HttpResponse::Found()
                    .insert_header((header::LOCATION, to.as_str()))
                    .finish();
            }
            Self::Forbidden => (
                "403 Forbidden",
                "You do not have permission to view this page.",
            ),
            Self::Csrf => (
                "403 Forbidden",
                "CSRF verification failed. Request aborted.",
            ),
            Self::Denied(why) => ("403 Forbidden", why.as_str()),
            Self::NotFound => (
                "Not Found",
                "The requested resource was not found on this server.",
            ),
            Self::Internal(cause) => {
                log::error!("admin: {cause}");
                (
                    "Server Error (500)",
                    "There's been an error. It's been reported to the site administrators.",
                )
            }
        };
        let page = ErrorPage {
            user: None,
            csrf: "",
            messages: Vec::new(),
            title,
            detail,
        };
        html(self.status_code(), &page)
    }
}

pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(err) => {
            log::error!("rendering a template: {err}");
            HttpResponse::InternalServerError().finish()
        }
    }
}

pub fn ok(page: &impl Template) -> Result<HttpResponse, AdminError> {
    Ok(html(StatusCode::OK, page))
}

pub fn redirect(to: &str) -> Result<HttpResponse, AdminError> {
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, to))
        .finish())
}

#[derive(Template)]
#[template(path = "admin/delete_confirm.html")]
pub struct DeletePage<'a> {
    pub user: Option<&'a str>,
    pub csrf: &'a str,
    pub messages: Vec<Message>,
    pub title: String,
    pub kind: &'static str,
    pub objects: Vec<(i32, String, String)>,
    /// What else the deletion touches (a group's members).
    pub affected: Vec<String>,
    pub action: String,
    pub cancel: String,
}

pub type Errors = std::collections::BTreeMap<&'static str, Vec<String>>;

/// The ids chosen in a multi-select, each one checked against `valid`.
pub fn choices(form: &Form, field: &'static str, valid: &[i32], errors: &mut Errors) -> Vec<i32> {
    let mut chosen = Vec::new();
    for value in form.all(field) {
        match value.parse::<i32>().ok().filter(|id| valid.contains(id)) {
            Some(id) => chosen.push(id),
            None => errors.entry(field).or_default().push(format!(
                "Select a valid choice. {value} is not one of the available choices."
            )),
        }
    }
    chosen
}

/// Feed grant rows (`grant_perm`, `grant_feed`): empty rows are dropped,
/// others need an lbasedb permission and a valid feed name.
pub fn grant_rows(
    form: &Form,
    perms: &[crate::db::models::Permission],
    errors: &mut Errors,
) -> Vec<(i32, String)> {
    let mut grants = Vec::new();
    for (perm, feed) in form.all("grant_perm").zip(form.all("grant_feed")) {
        let feed = feed.trim();
        if perm.is_empty() && feed.is_empty() {
            continue;
        }
        let perm_id = perm.parse::<i32>().ok().filter(|id| {
            perms
                .iter()
                .any(|p| p.id == *id && p.app_label == "lbasedb")
        });
        match perm_id {
            Some(id) if crate::lbasedb::names::is_valid_name(feed) => {
                grants.push((id, feed.to_owned()))
            }
            Some(_) => errors
                .entry("feed_grants")
                .or_default()
                .push(format!("“{feed}” is not a valid feed name.")),
            None => errors
                .entry("feed_grants")
                .or_default()
                .push("Choose a permission for each feed grant.".into()),
        }
    }
    grants
}

/// The feeds the upstream has, to offer in grant rows (none if it is down).
pub async fn upstream_feeds(state: &crate::proxy::ProxyState, client: &awc::Client) -> Vec<String> {
    let url = format!("{}/feed", state.upstream);
    let Ok(mut response) = client
        .get(url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
    else {
        return Vec::new();
    };
    let feeds: Vec<serde_json::Value> = response.json().limit(16 << 20).await.unwrap_or_default();
    feeds
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect()
}

struct HistoryRow {
    when: String,
    who: String,
    action: String,
    changes: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "admin/history.html")]
struct HistoryPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    object: String,
    back: String,
    rows: Vec<HistoryRow>,
}

/// An object's History page: each action, who, when, and each changed
/// field's old and new value.
pub async fn history_page(
    ctx: &Ctx,
    auth: &AuthState,
    object_type: &'static str,
    id: i32,
    object: String,
    back: String,
) -> Result<HttpResponse, AdminError> {
    let key = id.to_string();
    let entries = db::run(&auth.pool, move |conn| {
        queries::object_history(conn, object_type, &key)
    })
    .await?;
    let rows = entries
        .into_iter()
        .map(|e| {
            let changes: Vec<serde_json::Value> =
                serde_json::from_str(&e.changes).unwrap_or_default();
            HistoryRow {
                when: e.action_time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                who: e.username,
                action: e.action,
                changes: changes
                    .iter()
                    .map(|c| {
                        let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
                        (text("field"), text("old"), text("new"))
                    })
                    .collect(),
            }
        })
        .collect();
    ok(&HistoryPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        object,
        back,
        rows,
    })
}

/// Records an admin action for the history pages.
pub async fn log_action(
    auth: &AuthState,
    actor: Option<(i32, String)>,
    object: (&str, String, String),
    action: &str,
    changes: serde_json::Value,
) -> Result<(), AdminError> {
    let (object_type, object_id, object_repr) = (object.0.to_owned(), object.1, object.2);
    let action = action.to_owned();
    db::run(&auth.pool, move |conn| {
        let (user_id, username) =
            actor.map_or((None, String::new()), |(id, name)| (Some(id), name));
        queries::log_action(
            conn,
            &queries::NewLogEntry {
                user_id,
                username: &username,
                object_type: &object_type,
                object_id: &object_id,
                object_repr: &object_repr,
                action: &action,
                changes: &changes.to_string(),
            },
        )
    })
    .await?;
    Ok(())
}
