//! `/admin/authtoken/token/`: the list with filters, creating a token for a
//! user (its secret shown on that page only, once), revoking one.

use actix_web::web;
use askama::Template;
use serde::Deserialize;

use super::changelist::{ChangeList, PageLink};
use super::{
    AdminError, CsrfForm, Errors, HistoryOf, Layout, Message, NoFields, Reply, Staff, TOKENS,
    history_page, ok, redirect,
};
use crate::auth::perms::{self, Model};
use crate::auth::users::ServiceError;
use crate::auth::{AuthState, token, users};
use crate::db::models::{Token, TokenStatus, User};
use crate::db::{self, DbError, queries};

const PER_PAGE: i64 = 100;

#[derive(Deserialize, serde::Serialize, Default)]
pub struct ListQuery {
    status: Option<String>,
    user: Option<i32>,
    /// The page: a link to another view of the list starts on the first.
    #[serde(skip_serializing)]
    p: Option<i64>,
}

struct Row {
    token: Token,
    username: String,
    status: TokenStatus,
}

#[derive(Template)]
#[template(path = "admin/token_list.html")]
struct ListPage<'a> {
    layout: &'a Layout,
    rows: Vec<Row>,
    users: Vec<User>,
    status: String,
    user_filter: Option<i32>,
    can_add: bool,
    can_revoke: bool,
    total: i64,
    page: i64,
    pages: i64,
    page_links: Vec<PageLink>,
}

pub async fn list(staff: Staff, query: web::Query<ListQuery>) -> Reply {
    staff.require_view(Model::Token)?;
    let status = query.status.as_deref().and_then(TokenStatus::parse);
    let user_filter = query.user;
    let filter = queries::TokenQuery {
        user: user_filter,
        status,
        page: query.p.unwrap_or(0).max(0),
        per_page: PER_PAGE,
    };
    let q = filter.clone();
    let ((tokens, total), users) = db::run(&staff.auth.pool, move |conn| {
        Ok::<_, DbError>((queries::list_tokens(conn, &q)?, queries::all_users(conn)?))
    })
    .await?;
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let now = queries::now();
    let rows = tokens
        .into_iter()
        .map(|(token, username)| Row { status: token.status(now), token, username })
        .collect();
    ok(&ListPage {
        layout: &staff.layout,
        rows,
        users,
        status: status.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        user_filter,
        can_add: staff.holds::<perms::AddToken>(),
        can_revoke: staff.holds::<perms::ChangeToken>(),
        total,
        page: filter.page + 1,
        pages,
        page_links: ChangeList::of(&*query).pages(pages),
    })
}

#[derive(Template)]
#[template(path = "admin/token_add.html")]
struct AddPage<'a> {
    layout: &'a Layout,
    users: Vec<User>,
    chosen: i32,
    name: String,
    expires_in: String,
    scopes: String,
    allowed_networks: String,
    errors: Errors,
    /// After saving: the secret, shown this once.
    secret: Option<String>,
    prefix: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AddForm {
    user: String,
    name: String,
    expires_in: String,
    scopes: String,
    allowed_networks: String,
}

impl AddPage<'_> {
    /// The form, with what was typed and its errors.
    fn form<'a>(
        layout: &'a Layout,
        users: Vec<User>,
        form: &AddForm,
        errors: Errors,
    ) -> AddPage<'a> {
        AddPage {
            layout,
            users,
            chosen: form.user.parse().unwrap_or(0),
            name: form.name.trim().to_owned(),
            expires_in: form.expires_in.trim().to_owned(),
            scopes: form.scopes.trim().to_owned(),
            allowed_networks: form.allowed_networks.trim().to_owned(),
            errors,
            secret: None,
            prefix: String::new(),
        }
    }
}

async fn users_list(auth: &AuthState) -> Result<Vec<User>, AdminError> {
    Ok(db::run(&auth.pool, queries::all_users).await?)
}

pub async fn add_form(staff: Staff) -> Reply {
    staff.require::<perms::AddToken>()?;
    let users = db::run(&staff.auth.pool, queries::all_users).await?;
    ok(&AddPage::form(&staff.layout, users, &AddForm::default(), Errors::new()))
}

/// The add form, read.
struct NewToken {
    owner: Option<User>,
    name: String,
    expires_at: Option<chrono::NaiveDateTime>,
    restrictions: crate::auth::scopes::Restrictions,
}

/// The form read: its owner, name, expiry and restrictions, with errors.
fn read_add(form: &AddForm, users: &[User]) -> (NewToken, Errors) {
    let mut errors = Errors::new();
    let chosen = form.user.parse::<i32>().unwrap_or(0);
    let owner = users.iter().find(|u| u.id == chosen).cloned();
    if owner.is_none() {
        errors.entry("user").or_default().push("Select a valid choice.".into());
    }
    let expires_at = token::expiry_from_text(&form.expires_in).unwrap_or_else(|why| {
        errors
            .entry("expires_in")
            .or_default()
            .push(format!("Enter a duration such as 30d, 12h or 90min ({why})."));
        None
    });
    let restrictions = crate::auth::scopes::Restrictions::parse(
        std::slice::from_ref(&form.scopes),
        std::slice::from_ref(&form.allowed_networks),
    )
    .unwrap_or_else(|why| {
        errors.entry("scopes").or_default().push(why);
        Default::default()
    });
    let name = form.name.trim().to_owned();
    if name.is_empty() {
        errors.entry("name").or_default().push("This field is required.".into());
    }
    let read = NewToken { owner, name, expires_at, restrictions };
    (read, errors)
}

pub async fn add(staff: Staff, CsrfForm(form): CsrfForm<AddForm>) -> Reply {
    let granted = staff.require::<perms::AddToken>()?;
    let users = db::run(&staff.auth.pool, queries::all_users).await?;
    let (NewToken { owner, name, expires_at, restrictions }, errors) = read_add(&form, &users);
    let Some(owner) = owner.filter(|_| errors.is_empty()) else {
        return ok(&AddPage::form(&staff.layout, users, &form, errors));
    };
    let token_name = name.clone();
    let limits = staff.auth.token_limits;
    let issued = staff
        .auth
        .write(move |conn| {
            let spec = users::TokenSpec { name: &token_name, expires_at, restrictions, limits };
            users::issue_restricted_token(conn, &granted, owner.id, &spec)
        })
        .await;
    let (token, plain) = match issued {
        Ok(issued) => issued,
        Err(ServiceError::Invalid(invalid)) => {
            let mut errors = Errors::new();
            errors.entry(invalid.field).or_default().push(invalid.message);
            return ok(&AddPage::form(
                &staff.layout,
                users_list(&staff.auth).await?,
                &form,
                errors,
            ));
        }
        Err(other) => return Err(other.into()),
    };
    // Rendered, not redirected: the secret must appear on this page only.
    let mut layout = staff.layout;
    layout.messages.push(Message {
        level: "success".into(),
        text: format!("The token “{name}” for “{}” was added successfully.", owner.username),
    });
    ok(&AddPage {
        secret: Some(plain.secret),
        prefix: token.prefix,
        ..AddPage::form(&layout, Vec::new(), &form, Errors::new())
    })
}

pub async fn revoke(staff: Staff, path: web::Path<i32>, _form: CsrfForm<NoFields>) -> Reply {
    let granted = staff.require::<perms::ChangeToken>()?;
    let id = *path;
    // Revoked here, and the cache cleared: it stops working at once.
    let token = staff.auth.write(move |conn| users::revoke_token(conn, &granted, id)).await?;
    staff.flash("success", format!("The token {} was revoked.", token.prefix));
    redirect(TOKENS.list())
}

pub async fn history(staff: Staff, path: web::Path<i32>) -> Reply {
    staff.require_view(Model::Token)?;
    let id = *path;
    let (token, owner) = db::run(&staff.auth.pool, move |conn| queries::token_by_id(conn, id))
        .await?
        .ok_or(AdminError::NotFound)?;
    let name = format!("{} ({owner})", token.prefix);
    history_page(&staff, HistoryOf::new(Model::Token, id, name)).await
}
