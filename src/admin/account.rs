//! Logging in and out of the admin, changing one's own password, and the
//! index of models.

use crate::lbasedb::perms::VIEW_FEED;
use actix_identity::Identity;
use actix_session::Session;
use actix_web::{HttpRequest, web};
use askama::Template;
use serde::Deserialize;

use super::extract::Member;
use super::{AdminError, CsrfForm, Layout, NoFields, Reply, Staff, ok, redirect, registry};
use crate::auth::AuthError;
use crate::auth::login::check_credentials;
use crate::auth::perms;
use crate::auth::{AuthState, csrf, password, users};
use crate::db::models::{LogEntry, User};
use crate::db::{self, queries};

const STAFF_ONLY: &str = "Please enter the correct username and password for a staff account. Note that both fields may be case-sensitive.";

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage<'a> {
    layout: &'a Layout,
    error: Option<String>,
    username: &'a str,
    next: &'a str,
    /// The single sign-on button's name, if there is a provider.
    sso: Option<&'a str>,
    /// `OIDC_ONLY`: the password form is for the break-glass account.
    sso_only: bool,
}

/// The login page, with `error` said above the form.
pub fn login_page(
    req: &HttpRequest,
    auth: &AuthState,
    error: Option<String>,
    username: &str,
    next: &str,
    status: actix_web::http::StatusCode,
) -> Reply {
    let layout = Layout { csrf: csrf::token(req)?, ..Layout::default() };
    let page = LoginPage {
        layout: &layout,
        error,
        username,
        next,
        sso: auth.oidc.display_name(),
        sso_only: auth.oidc.password_login_only_break_glass(),
    };
    Ok(super::html(status, &page))
}

/// The longest `?next=` followed.
const MAX_NEXT_LEN: usize = 1024;

#[derive(Deserialize)]
pub struct Next {
    pub next: Option<String>,
}

/// `?next=` is honoured for local paths only: one leading `/`, and no
/// backslash or control character anywhere, since browsers drop tabs and
/// newlines and read `\\` as `/` (`/\t/evil.example/` is `//evil.example/`);
/// and short: it is kept in the session through a login (a long one
/// would make an anonymous visitor's state a database row).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.len() <= MAX_NEXT_LEN
                && n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n
        }
        _ => registry::INDEX,
    }
}

pub async fn login_form(
    req: HttpRequest,
    staff: Option<Staff>,
    query: web::Query<Next>,
    auth: web::Data<AuthState>,
) -> Reply {
    let next = safe_next(query.next.as_deref());
    if staff.is_some() {
        return redirect(next);
    }
    login_page(&req, &auth, None, "", next, actix_web::http::StatusCode::OK)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    username: String,
    password: String,
    next: String,
}

/// What the login page says to a refused login, or `None` to let it in:
/// staff, or anyone going to their own account pages.
fn refusal(
    checked: Result<User, AuthError>,
    next: &str,
) -> Result<(Option<User>, Option<String>), AdminError> {
    Ok(match checked {
        Ok(user) if user.is_staff || next.starts_with(registry::ACCOUNT) => (Some(user), None),
        Ok(user) => (Some(user), Some(STAFF_ONLY.to_owned())),
        Err(AuthError::BadCredentials) => (None, Some(STAFF_ONLY.to_owned())),
        Err(err @ AuthError::PasswordLoginOff) => (None, Some(err.to_string())),
        Err(AuthError::Throttled(wait)) => (
            None,
            Some(format!(
                "Too many failed login attempts. Try again in {} seconds.",
                wait.as_secs().max(1)
            )),
        ),
        Err(other) => return Err(AdminError::Internal(other.into())),
    })
}

pub async fn login(
    req: HttpRequest,
    CsrfForm(form): CsrfForm<LoginForm>,
    auth: web::Data<AuthState>,
) -> Reply {
    csrf::check_same_origin(&req).map_err(|_| AdminError::Csrf)?;
    let next = safe_next(Some(&form.next)).to_owned();
    let checked = check_credentials(&auth, &req, &form.username, &form.password).await;
    // A refusal before any password was checked (throttled, busy) is no
    // login attempt to keep: a flood of them would be a row each.
    let attempted = !matches!(checked, Err(AuthError::Throttled(_) | AuthError::PasswordLoginOff));
    let (user, error) = refusal(checked, &next)?;
    let username = form.username.clone();
    let succeeded = error.is_none();
    let recorded = user.clone();
    if attempted {
        db::run(&auth.pool, move |conn| {
            if succeeded && let Some(user) = &recorded {
                queries::touch_last_login(conn, user.id)?;
            }
            users::record_login(conn, recorded.as_ref(), &username, succeeded)
        })
        .await?;
    }
    let (Some(user), None) = (user, &error) else {
        let status = actix_web::http::StatusCode::OK;
        return login_page(&req, &auth, error, &form.username, &next, status);
    };
    super::two_factor::after_password(&req, &auth, &user, &next).await
}

pub async fn logout(
    req: HttpRequest,
    _form: CsrfForm<NoFields>,
    identity: Option<Identity>,
) -> Reply {
    csrf::check_same_origin(&req).map_err(|_| AdminError::Csrf)?;
    if let Some(identity) = identity {
        identity.logout();
    }
    redirect(registry::LOGIN)
}

struct Section {
    name: &'static str,
    models: Vec<ModelLink>,
}

struct ModelLink {
    name: &'static str,
    url: &'static str,
    /// Where one adds, for one who may.
    add: Option<String>,
}

#[derive(Template)]
#[template(path = "admin/index.html")]
struct IndexPage<'a> {
    layout: &'a Layout,
    sections: Vec<Section>,
    recent: Vec<LogEntry>,
}

/// The index's sections, in the registry's order: the pages this user may
/// see, with an "Add" link where it may add.
fn sections(staff: &Staff) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    for entry in registry::ALL {
        let (shown, can_add) = match entry.model {
            Some(model) => (staff.can_view(model), staff.can(model.adder())),
            // Feeds show for a grant on any one feed too (the page lists
            // only those the user may view); they are made through the API.
            None if entry == registry::FEEDS => (
                staff.can(VIEW_FEED)
                    || staff.principal.grants.values().any(|held| held.contains_key(VIEW_FEED)),
                false,
            ),
            None => (staff.holds::<perms::ViewAccess>(), false),
        };
        if !shown {
            continue;
        }
        let link =
            ModelLink { name: entry.title, url: entry.base, add: can_add.then(|| entry.add()) };
        match sections.last_mut() {
            Some(section) if section.name == entry.section => section.models.push(link),
            _ => sections.push(Section { name: entry.section, models: vec![link] }),
        }
    }
    sections
}

pub async fn index(staff: Staff) -> Reply {
    let user_id = staff.principal.user_id;
    let recent =
        db::run(&staff.auth.pool, move |conn| queries::recent_actions(conn, user_id, 10)).await?;
    ok(&IndexPage { layout: &staff.layout, sections: sections(&staff), recent })
}

#[derive(Template)]
#[template(path = "admin/password_change.html")]
struct PasswordChangePage<'a> {
    layout: &'a Layout,
    errors: Vec<String>,
}

pub async fn password_change_form(Member(staff): Member) -> Reply {
    ok(&PasswordChangePage { layout: &staff.layout, errors: Vec::new() })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordChangeForm {
    old_password: String,
    new_password1: String,
    new_password2: String,
}

/// One's own password, staff or not (`Member`): the account page links
/// here too.
pub async fn password_change(
    Member(staff): Member,
    CsrfForm(form): CsrfForm<PasswordChangeForm>,
    session: Session,
) -> Reply {
    csrf::check_same_origin(staff.request()).map_err(|_| AdminError::Csrf)?;
    let user_id = staff.principal.user_id;
    let user = db::run(&staff.auth.pool, move |conn| queries::user_by_id(conn, user_id))
        .await?
        .ok_or(AdminError::NotFound)?;
    // Checked as a login is (throttled per account and address): a
    // session, perhaps a stolen one, is no oracle for the password.
    let checked =
        check_credentials(&staff.auth, staff.request(), &user.username, &form.old_password).await;
    let mut errors = Vec::new();
    match checked {
        Ok(_) => {}
        Err(AuthError::BadCredentials) => errors
            .push("Your old password was entered incorrectly. Please enter it again.".to_owned()),
        Err(AuthError::Throttled(wait)) => errors.push(format!(
            "Too many wrong passwords. Try again in {} seconds.",
            wait.as_secs().max(1)
        )),
        Err(err @ AuthError::PasswordLoginOff) => errors.push(err.to_string()),
        Err(other) => return Err(AdminError::Internal(other.into())),
    }
    if form.new_password1 != form.new_password2 {
        errors.push("The two password fields didn’t match.".to_owned());
    } else if let Err(problems) =
        password::validate(&form.new_password1, &user.username, &user.email)
    {
        errors.extend(problems);
    }
    if !errors.is_empty() {
        return ok(&PasswordChangePage { layout: &staff.layout, errors });
    }
    let phc = staff.auth.hasher.hash(form.new_password1).await?;
    // Every session of the user ends; this one is renewed, so it stays.
    staff.auth.write(move |conn| users::change_own_password(conn, user_id, &phc, None)).await?;
    session.renew();
    staff.flash("success", "Your password was changed.");
    redirect(if staff.principal.is_staff { registry::INDEX } else { registry::ACCOUNT })
}
