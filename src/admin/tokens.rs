//! `/admin/authtoken/token/`: the list with filters, creating a token for a
//! user (its secret shown on that page only, once), revoking one.

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::{AdminError, Errors, Message, flash, log_action, ok, redirect, staff, staff_form};
use crate::auth::{AuthState, users};
use crate::db::models::{Token, User};
use crate::db::{self, queries};

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    user: Option<i32>,
}

struct Row {
    token: Token,
    username: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "admin/token_list.html")]
struct ListPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    rows: Vec<Row>,
    users: Vec<User>,
    status: String,
    user_filter: Option<i32>,
    can_add: bool,
    can_revoke: bool,
}

fn status_of(token: &Token) -> &'static str {
    if token.revoked {
        "revoked"
    } else if token.expires_at.is_some_and(|at| at <= queries::now()) {
        "expired"
    } else {
        "active"
    }
}

pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("authtoken", "token")?;
    let status = query
        .status
        .clone()
        .filter(|s| matches!(s.as_str(), "active" | "revoked" | "expired"));
    let (user_filter, wanted) = (query.user, status.clone());
    let (tokens, users) = db::run(&auth.pool, move |conn| {
        Ok((
            queries::list_tokens(conn, user_filter, wanted.as_deref())?,
            queries::all_users(conn)?,
        ))
    })
    .await?;
    let rows = tokens
        .into_iter()
        .map(|(token, username)| Row {
            status: status_of(&token),
            token,
            username,
        })
        .collect();
    ok(&ListPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        rows,
        users,
        status: status.unwrap_or_default(),
        user_filter: query.user,
        can_add: ctx.can("authtoken.add_token"),
        can_revoke: ctx.can("authtoken.change_token"),
    })
}

#[derive(Template)]
#[template(path = "admin/token_add.html")]
struct AddPage<'a> {
    user: Option<&'a str>,
    csrf: &'a str,
    messages: Vec<Message>,
    users: Vec<User>,
    chosen: i32,
    name: String,
    expires_in: String,
    errors: Errors,
    /// After saving: the secret, shown this once.
    secret: Option<String>,
    prefix: String,
}

pub async fn add_form(
    req: HttpRequest,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require("authtoken.add_token")?;
    let users = db::run(&auth.pool, queries::all_users).await?;
    ok(&AddPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: ctx.messages.clone(),
        users,
        chosen: 0,
        name: String::new(),
        expires_in: String::new(),
        errors: Errors::new(),
        secret: None,
        prefix: String::new(),
    })
}

pub async fn add(
    req: HttpRequest,
    body: web::Bytes,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, form) = staff_form(&req, &auth, &body, "authtoken.add_token").await?;
    let users = db::run(&auth.pool, queries::all_users).await?;
    let mut errors = Errors::new();
    let chosen = form.get("user").parse::<i32>().unwrap_or(0);
    let Some(owner) = users.iter().find(|u| u.id == chosen).cloned() else {
        errors
            .entry("user")
            .or_default()
            .push("Select a valid choice.".into());
        return ok(&AddPage {
            user: ctx.user(),
            csrf: &ctx.csrf,
            messages: Vec::new(),
            users,
            chosen,
            name: form.get("name").into(),
            expires_in: form.get("expires_in").into(),
            errors,
            secret: None,
            prefix: String::new(),
        });
    };
    let name = form.get("name").trim().to_owned();
    let expires_in = form.get("expires_in").trim().to_owned();
    let expires_at = match crate::auth::token::expiry_from_text(&expires_in) {
        Ok(at) => at,
        Err(why) => {
            errors.entry("expires_in").or_default().push(format!(
                "Enter a duration such as 30d, 12h or 90min ({why})."
            ));
            None
        }
    };
    if name.is_empty() {
        errors
            .entry("name")
            .or_default()
            .push("This field is required.".into());
    }
    if !errors.is_empty() {
        return ok(&AddPage {
            user: ctx.user(),
            csrf: &ctx.csrf,
            messages: Vec::new(),
            users,
            chosen,
            name,
            expires_in,
            errors,
            secret: None,
            prefix: String::new(),
        });
    }
    let token_name = name.clone();
    let actor = ctx.as_actor();
    let (token, plain) = db::run(&auth.pool, move |conn| {
        users::issue_token(conn, actor, owner.id, &token_name, expires_at)
    })
    .await?;
    log_action(
        &auth,
        ctx.actor(),
        (
            "authtoken.token",
            token.id.to_string(),
            format!("{} ({})", token.prefix, owner.username),
        ),
        "add",
        json!([]),
    )
    .await?;
    // Rendered, not redirected: the secret must appear on this page only.
    ok(&AddPage {
        user: ctx.user(),
        csrf: &ctx.csrf,
        messages: vec![Message {
            level: "success".into(),
            text: format!(
                "The token “{name}” for “{}” was added successfully.",
                owner.username
            ),
        }],
        users: Vec::new(),
        chosen,
        name,
        expires_in,
        errors: Errors::new(),
        secret: Some(plain.secret),
        prefix: token.prefix,
    })
}

pub async fn revoke(
    req: HttpRequest,
    path: web::Path<i32>,
    body: web::Bytes,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let (ctx, _) = staff_form(&req, &auth, &body, "authtoken.change_token").await?;
    let id = *path;
    let (token, owner) = db::run(&auth.pool, move |conn| queries::token_by_id(conn, id))
        .await?
        .ok_or(AdminError::NotFound)?;
    db::run(&auth.pool, move |conn| {
        queries::revoke_token_by_id(conn, id)
    })
    .await?;
    // Revoked here, so it stops working at once.
    auth.cache.clear();
    log_action(
        &auth,
        ctx.actor(),
        (
            "authtoken.token",
            id.to_string(),
            format!("{} ({owner})", token.prefix),
        ),
        "change",
        json!([{"field": "revoked", "old": "false", "new": "true"}]),
    )
    .await?;
    flash(
        &req,
        "success",
        format!("The token {} was revoked.", token.prefix),
    );
    redirect("/admin/authtoken/token/")
}

pub async fn history(
    req: HttpRequest,
    path: web::Path<i32>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, AdminError> {
    let ctx = staff(&req, &auth).await?;
    ctx.require_view("authtoken", "token")?;
    let id = *path;
    let (token, owner) = db::run(&auth.pool, move |conn| queries::token_by_id(conn, id))
        .await?
        .ok_or(AdminError::NotFound)?;
    super::history_page(
        &ctx,
        &auth,
        "authtoken.token",
        id,
        format!("{} ({owner})", token.prefix),
        "/admin/authtoken/token/".into(),
    )
    .await
}
