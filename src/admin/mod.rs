//! The administration site under `/admin/`: Django's admin habits (login,
//! an index of models, lists with search, filters, sorting and pages, add
//! and change forms, delete with confirmation, history, a message after each
//! save), server-rendered with askama and usable without JavaScript.

mod access;
pub(crate) mod account;
mod changelist;
mod explorer;
mod extract;
mod feeds;
pub(crate) mod fields;
mod groups;
mod own;
pub mod registry;
mod sso;
mod tokens;
mod two_factor;
mod users;

use actix_session::SessionExt;
use actix_web::http::{StatusCode, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use crate::auth::perms::Model;
use crate::auth::users::{FieldChange, ServiceError};
use crate::db::{self, DbError, queries};

pub use extract::{Checkbox, CsrfForm, Layout, NoFields, Staff};
use registry::{ACCESS, FEEDS, GROUPS, TOKENS, USERS};

/// Every admin route, at the registry's URLs; `/admin` is one scope with
/// the admin's security headers.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use registry::route;
    let password_change = form(
        route(registry::PASSWORD_CHANGE),
        account::password_change_form,
        account::password_change,
    );
    for (path, content_type, body) in STATIC {
        cfg.route(path, web::get().to(move || static_file(content_type, body)));
    }
    cfg.service(
        web::scope(registry::SCOPE)
            .wrap(security_headers())
            .route(route(registry::INDEX), web::get().to(account::index))
            .service(form(route(registry::LOGIN), account::login_form, account::login))
            .route(route(registry::LOGOUT), web::post().to(account::logout))
            .service(form(
                route(registry::LOGIN_2FA),
                two_factor::login_step_form,
                two_factor::login_step,
            ))
            .route(route(registry::OIDC_LOGIN), web::get().to(sso::start))
            .route(route(registry::OIDC_CALLBACK), web::get().to(sso::callback))
            .service(password_change)
            .service(form(&USERS.route(""), users::list, users::bulk_action))
            .service(form(&USERS.route("add/"), users::add_form, users::add))
            .service(form(&USERS.route("{id}/change/"), users::change_form, users::change))
            .service(form(&USERS.route("{id}/password/"), users::password_form, users::password))
            .service(form(&USERS.route("{id}/delete/"), users::delete_form, users::delete))
            .route(&USERS.route("{id}/history/"), web::get().to(users::history))
            .route(&GROUPS.route(""), web::get().to(groups::list))
            .service(form(&GROUPS.route("add/"), groups::add_form, groups::add))
            .service(form(&GROUPS.route("{id}/change/"), groups::change_form, groups::change))
            .service(form(&GROUPS.route("{id}/delete/"), groups::delete_form, groups::delete))
            .route(&GROUPS.route("{id}/history/"), web::get().to(groups::history))
            .route(&TOKENS.route(""), web::get().to(tokens::list))
            .service(form(&TOKENS.route("add/"), tokens::add_form, tokens::add))
            .route(&TOKENS.route("{id}/revoke/"), web::post().to(tokens::revoke))
            .route(&TOKENS.route("{id}/history/"), web::get().to(tokens::history))
            .route(&ACCESS.route(""), web::get().to(access::list))
            .service(form(&FEEDS.route(""), feeds::list, feeds::create))
            .route(&FEEDS.route("{name}/"), web::get().to(feeds::detail))
            .route(&FEEDS.route("{name}/columns/add/"), web::post().to(feeds::add_column))
            .route(&FEEDS.route("{name}/rename/"), web::post().to(feeds::rename))
            .service(form(&FEEDS.route("{name}/delete/"), feeds::delete_form, feeds::delete))
            .route(&FEEDS.route("{name}/history/"), web::get().to(feeds::history))
            .route(&FEEDS.route("{name}/columns/"), web::get().to(feeds::columns))
            .default_service(web::to(|| async { AdminError::NotFound.error_response() })),
    );
    // Everyone's own pages.
    cfg.service(
        web::scope("/account")
            .wrap(security_headers())
            .route("/", web::get().to(own::show))
            .route("/tokens/", web::post().to(own::new_token))
            .route("/tokens/{id}/revoke/", web::post().to(own::revoke))
            .route("/tokens/{id}/rotate/", web::post().to(own::rotate))
            .route("/feeds/", web::get().to(explorer::list))
            .route("/feeds/{name}/", web::get().to(explorer::page))
            .route("/feeds/{name}/chart/", web::get().to(explorer::chart))
            .route("/feeds/{name}/download/", web::get().to(explorer::download))
            .service(form(
                registry::ACCOUNT_2FA.trim_start_matches("/account"),
                two_factor::manage_form,
                two_factor::manage,
            )),
    );
}

/// A form page, as Django's admin has them: GET shows it, POST takes it.
fn form<S, SArgs, T, TArgs>(path: &str, show: S, take: T) -> actix_web::Resource
where
    S: actix_web::Handler<SArgs>,
    SArgs: actix_web::FromRequest + 'static,
    S::Output: actix_web::Responder + 'static,
    T: actix_web::Handler<TArgs>,
    TArgs: actix_web::FromRequest + 'static,
    T::Output: actix_web::Responder + 'static,
{
    web::resource(path).route(web::get().to(show)).route(web::post().to(take))
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

/// The admin's own files, built into the binary (it works offline, with
/// nothing to install beside it): path, content type, body.
const STATIC: [(&str, &str, &str); 7] = [
    (
        "/static/admin/admin.css",
        "text/css; charset=utf-8",
        include_str!("../../static/admin/admin.css"),
    ),
    (
        "/static/admin/chooser.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin/chooser.js"),
    ),
    (
        "/static/admin/grants.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin/grants.js"),
    ),
    (
        "/static/admin/explorer.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin/explorer.js"),
    ),
    // uPlot 1.6.32 (MIT, its licence beside it), unchanged from npm.
    (
        "/static/admin/vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/admin/vendor/uPlot.iife.min.js"),
    ),
    (
        "/static/admin/vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("../../static/admin/vendor/uPlot.min.css"),
    ),
    (
        "/static/admin/vendor/uPlot.LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../../static/admin/vendor/uPlot.LICENSE"),
    ),
];

async fn static_file(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
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
    queued.push(Message { level: level.into(), text: text.into() });
    let _ = session.insert(MESSAGES_KEY, queued);
}

/// The messages queued for this page, taken (each is shown once). Only a
/// session that holds some is changed: actix-session's `remove` marks the
/// session changed even for a missing key, and a changed session is
/// written (and every replica's session cache cleared) after the page.
fn take_messages(req: &HttpRequest) -> Vec<Message> {
    let session = req.get_session();
    if !session.entries().contains_key(MESSAGES_KEY) {
        return Vec::new();
    }
    session.remove_as::<Vec<Message>>(MESSAGES_KEY).and_then(Result::ok).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("redirect to {0}")]
    Redirect(String),
    #[error("403 Forbidden")]
    Forbidden,
    #[error("CSRF verification failed. Request aborted.")]
    Csrf,
    #[error("400 Bad Request")]
    BadForm,
    /// Input the rules refuse where no form shows it beside its field.
    #[error("{0}")]
    Invalid(String),
    #[error("404 Not Found")]
    NotFound,
    /// Refused by the privilege rules, with the reason.
    #[error("{0}")]
    Denied(String),
    /// Too many passwords are being checked at once.
    #[error("429 Too Many Requests")]
    Busy,
    #[error("server error")]
    Internal(#[source] anyhow::Error),
}

impl From<DbError> for AdminError {
    fn from(err: DbError) -> Self {
        Self::Internal(err.into())
    }
}

/// A refusal the form does not show beside a field: a page of its own.
impl From<ServiceError> for AdminError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Denied(why) => Self::Denied(why.0),
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Invalid(invalid) => Self::Invalid(invalid.to_string()),
            ServiceError::Db(err) => Self::Internal(err.into()),
        }
    }
}

impl From<crate::error::ApiError> for AdminError {
    fn from(err: crate::error::ApiError) -> Self {
        Self::Internal(err.into())
    }
}

impl From<crate::auth::password::Busy> for AdminError {
    fn from(_: crate::auth::password::Busy) -> Self {
        Self::Busy
    }
}

impl From<actix_web::error::BlockingError> for AdminError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        Self::Internal(err.into())
    }
}

#[derive(Template)]
#[template(path = "admin/error.html")]
struct ErrorPage<'a> {
    layout: &'a Layout,
    title: &'a str,
    detail: &'a str,
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Redirect(_) => StatusCode::FOUND,
            Self::Forbidden | Self::Csrf | Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::BadForm | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Busy => StatusCode::TOO_MANY_REQUESTS,
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
            Self::Forbidden => ("403 Forbidden", "You do not have permission to view this page."),
            Self::Csrf => ("403 Forbidden", "CSRF verification failed. Request aborted."),
            Self::BadForm => ("400 Bad Request", "The form could not be read."),
            Self::Invalid(why) => ("400 Bad Request", why.as_str()),
            Self::Busy => (
                "429 Too Many Requests",
                "Too many passwords are being checked at once. Try again in a moment.",
            ),
            Self::Denied(why) => ("403 Forbidden", why.as_str()),
            Self::NotFound => ("Not Found", "The requested resource was not found on this server."),
            Self::Internal(cause) => {
                tracing::error!("admin: {cause:#}");
                (
                    "Server Error (500)",
                    "There's been an error. It's been reported to the site administrators.",
                )
            }
        };
        let layout = Layout::default();
        html(self.status_code(), &ErrorPage { layout: &layout, title, detail })
    }
}

/// What an admin handler answers: a page or a redirect, or an
/// `AdminError` that renders as its own page.
pub type Reply = Result<HttpResponse, AdminError>;

pub fn html(status: StatusCode, page: &impl Template) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status).content_type("text/html; charset=utf-8").body(body),
        Err(err) => {
            tracing::error!("rendering a template: {err}");
            HttpResponse::InternalServerError().finish()
        }
    }
}

pub fn ok(page: &impl Template) -> Reply {
    Ok(html(StatusCode::OK, page))
}

pub fn redirect(to: &str) -> Reply {
    Ok(HttpResponse::Found().insert_header((header::LOCATION, to)).finish())
}

/// One object a deletion lists: its id, name, and what goes with it.
pub struct Doomed {
    pub id: i32,
    pub name: String,
    pub note: String,
}

#[derive(Template)]
#[template(path = "admin/delete_confirm.html")]
pub struct DeletePage<'a> {
    pub layout: &'a Layout,
    pub title: &'static str,
    pub kind: &'static str,
    pub objects: Vec<Doomed>,
    /// What else the deletion touches (a group's members).
    pub affected: Vec<String>,
    pub action: String,
    pub cancel: String,
}

pub type Errors = std::collections::BTreeMap<&'static str, Vec<String>>;

/// The ids chosen in a multi-select, each one checked against `valid`.
pub fn choices(
    values: &[String],
    field: &'static str,
    valid: &[i32],
    errors: &mut Errors,
) -> Vec<i32> {
    let mut chosen = Vec::new();
    for value in values {
        match value.parse::<i32>().ok().filter(|id| valid.contains(id)) {
            Some(id) => chosen.push(id),
            None => errors.entry(field).or_default().push(format!(
                "Select a valid choice. {value} is not one of the available choices."
            )),
        }
    }
    chosen
}

/// Feed grant rows as sent (`fields::GrantInput`) as grants: empty rows
/// are dropped, others need an lbasedb permission and a valid feed name,
/// and the columns and window a grant of that permission may have
/// (`Grant::check`).
pub fn grant_rows(
    input: fields::GrantInput<'_>,
    perms: &[crate::db::models::Permission],
    errors: &mut Errors,
) -> Vec<crate::auth::grant::Grant> {
    let mut grants = Vec::new();
    let mut error = |message: String| errors.entry("feed_grants").or_default().push(message);
    for (row, (perm, feed)) in input.perm.iter().zip(input.feed).enumerate() {
        let feed = feed.trim();
        if perm.is_empty() && feed.is_empty() {
            continue;
        }
        let chosen = perm.parse::<i32>().ok().and_then(|id| {
            perms.iter().find(|p| p.id == id && p.app_label == crate::lbasedb::perms::APP_LABEL)
        });
        let Some(perm) = chosen else {
            error("Choose a permission for each feed grant.".into());
            continue;
        };
        if !crate::lbasedb::names::is_valid_name(feed) {
            error(format!("“{feed}” is not a valid feed name."));
            continue;
        }
        let mut grant = crate::auth::grant::Grant::new(perm.full_codename(), feed);
        let prefix = format!("{row}:");
        let columns: std::collections::BTreeSet<String> = input
            .column
            .iter()
            .filter_map(|value| value.strip_prefix(&prefix))
            .map(str::to_owned)
            .collect();
        grant.columns = (!columns.is_empty()).then_some(columns);
        let bound = |values: &[String]| values.get(row).map_or("", |v| v.trim()).to_owned();
        let (from, to) = (bound(input.from), bound(input.to));
        if !from.is_empty() || !to.is_empty() {
            match format!("{from}..{to}").parse() {
                Ok(window) => grant.rows = Some(window),
                Err(why) => {
                    error(format!("{feed}: {why}."));
                    continue;
                }
            }
        }
        match grant.check() {
            Ok(()) => grants.push(grant),
            Err(why) => error(format!("{why}.")),
        }
    }
    grants
}

/// Where a form's "Save and …" button goes after saving.
pub fn after_save(action: &str, list: &str, add: &str, change: &str) -> Reply {
    match action {
        "_continue" => redirect(change),
        "_addanother" => redirect(add),
        _ => redirect(list),
    }
}

struct HistoryRow {
    when: String,
    who: String,
    action: String,
    changes: Vec<FieldChange>,
}

#[derive(Template)]
#[template(path = "admin/history.html")]
struct HistoryPage<'a> {
    layout: &'a Layout,
    object: String,
    back: String,
    rows: Vec<HistoryRow>,
}

/// What a History page is about.
pub struct HistoryOf {
    object_type: &'static str,
    key: String,
    name: String,
    back: String,
}

impl HistoryOf {
    /// `model`'s object `id`, shown as `name`; the page links back to the
    /// object's change page (to the list, for a token, which has none).
    pub fn new(model: Model, id: i32, name: String) -> Self {
        let back = registry::Entry::of(model).back(id);
        Self { object_type: model.object_type(), key: id.to_string(), name, back }
    }

    /// A feed of the upstream, by its name.
    pub fn feed(name: &str) -> Self {
        Self {
            object_type: crate::auth::users::FEED_OBJECT,
            key: name.to_owned(),
            name: name.to_owned(),
            back: FEEDS.object(name, "detail"),
        }
    }
}

/// An object's History page: each action, who, when, and each changed
/// field's old and new value.
pub async fn history_page(staff: &Staff, of: HistoryOf) -> Reply {
    let key = of.key;
    let object_type = of.object_type;
    let entries =
        db::run(&staff.auth.pool, move |conn| queries::object_history(conn, object_type, &key))
            .await?;
    let rows = entries
        .into_iter()
        .map(|e| HistoryRow {
            when: e.action_time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            who: e.username,
            action: e.action,
            changes: serde_json::from_str(&e.changes).unwrap_or_default(),
        })
        .collect();
    ok(&HistoryPage { layout: &staff.layout, object: of.name, back: of.back, rows })
}
