//! Everyone's own account page, `/account/` (staff or not): who they are
//! and what they hold, their password and two-factor settings, and their
//! own tokens: made (a name, an expiry, scopes from what they hold, allowed
//! networks), listed with when and from where each was last used, revoked,
//! and rotated (a new secret; the old one working for a grace period the
//! user picks, up to `TOKEN_ROTATION_GRACE`).

use actix_web::web;
use askama::Template;
use serde::Deserialize;

use super::extract::Member;
use super::{AdminError, CsrfForm, Layout, NoFields, Reply, ok, redirect, registry};
use crate::auth::principal::Principal;
use crate::auth::{csrf, scopes, token, users};
use crate::db::models::Token;
use crate::db::{self, queries};

/// Tokens the page lists (newest first); `MAX_TOKENS_PER_USER` live ones
/// and the dead ones trimmed beside them stay well under it.
const LISTED: i64 = 300;

struct TokenRow {
    token: Token,
    live: bool,
}

#[derive(Template)]
#[template(path = "admin/account.html")]
struct AccountPage<'a> {
    layout: &'a Layout,
    principal: &'a Principal,
    permissions: Vec<String>,
    grants: Vec<String>,
    two_factor: bool,
    tokens: Vec<TokenRow>,
    /// A token made or rotated just now: its secret, shown this once.
    secret: Option<String>,
    error: Option<String>,
    max_grace: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewTokenForm {
    name: String,
    expires_in: String,
    /// What the user holds, ticked: the token keeps only these.
    scopes: Vec<String>,
    allowed_networks: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RotateForm {
    grace: String,
}

async fn page(member: &Member, secret: Option<String>, error: Option<String>) -> Reply {
    let staff = &member.0;
    let principal = &staff.principal;
    let user_id = principal.user_id;
    let (tokens, two_factor) = db::run(&staff.auth.pool, move |conn| {
        Ok::<_, users::ServiceError>((
            queries::tokens_of(conn, user_id, LISTED)?,
            users::has_two_factor(conn, user_id)?,
        ))
    })
    .await?;
    let now = queries::now();
    let tokens = tokens
        .into_iter()
        .map(|token| {
            let live = !token.revoked && token.expires_at.is_none_or(|at| at > now);
            TokenRow { token, live }
        })
        .collect();
    let mut permissions: Vec<String> = principal.perms.iter().cloned().collect();
    permissions.sort();
    // As scopes are written (`CODENAME=FEED[COLUMNS]@ROWS`): what the new
    // token form offers to keep.
    let grants = principal
        .described_grants()
        .into_iter()
        .flat_map(|(feed, held)| {
            held.into_iter().map(move |grant| {
                let at = grant.find(['[', '@']).unwrap_or(grant.len());
                format!("{}={feed}{}", &grant[..at], &grant[at..])
            })
        })
        .collect();
    let max_grace = humantime::format_duration(staff.auth.token_rotation_grace).to_string();
    ok(&AccountPage {
        layout: &staff.layout,
        principal,
        permissions,
        grants,
        two_factor,
        tokens,
        secret,
        error,
        max_grace,
    })
}

pub async fn show(member: Member) -> Reply {
    page(&member, None, None).await
}

/// A refusal of the service, said on the page; anything else an error.
fn refusal(err: users::ServiceError) -> Result<String, AdminError> {
    match err {
        users::ServiceError::Invalid(invalid) => Ok(invalid.to_string()),
        users::ServiceError::Denied(why) => Ok(why.0),
        other => Err(other.into()),
    }
}

pub async fn new_token(member: Member, CsrfForm(form): CsrfForm<NewTokenForm>) -> Reply {
    csrf::check_same_origin(member.0.request()).map_err(|_| AdminError::Csrf)?;
    let expires_at = match token::expiry_from_text(&form.expires_in) {
        Ok(at) => at,
        Err(err) => return page(&member, None, Some(format!("Expires in: {err}."))).await,
    };
    let networks: Vec<String> = form
        .allowed_networks
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let restrictions = match scopes::Restrictions::parse(&form.scopes, &networks) {
        Ok(restrictions) => restrictions,
        Err(err) => return page(&member, None, Some(err)).await,
    };
    let auth = member.0.auth.clone();
    let (user_id, limits, name) = (member.0.principal.user_id, auth.token_limits, form.name);
    let made = auth
        .write(move |conn| {
            let spec = users::TokenSpec { name: &name, expires_at, restrictions, limits };
            users::issue_own_token(conn, user_id, &spec)
        })
        .await;
    match made {
        Ok((_, plain)) => page(&member, Some(plain.secret), None).await,
        Err(err) => page(&member, None, Some(refusal(err)?)).await,
    }
}

pub async fn revoke(member: Member, path: web::Path<i32>, _form: CsrfForm<NoFields>) -> Reply {
    csrf::check_same_origin(member.0.request()).map_err(|_| AdminError::Csrf)?;
    let (auth, user_id, token_id) = (member.0.auth.clone(), member.0.principal.user_id, *path);
    auth.write(move |conn| users::revoke_token_of(conn, user_id, token_id)).await?;
    member.0.flash("success", "The token was revoked: it stops working at once.");
    redirect(registry::ACCOUNT)
}

pub async fn rotate(
    member: Member,
    path: web::Path<i32>,
    CsrfForm(form): CsrfForm<RotateForm>,
) -> Reply {
    csrf::check_same_origin(member.0.request()).map_err(|_| AdminError::Csrf)?;
    let auth = member.0.auth.clone();
    let grace = match form.grace.trim() {
        "" | "0" => Ok(std::time::Duration::ZERO),
        text => humantime::parse_duration(text).map_err(|e| e.to_string()),
    };
    let grace = match grace {
        Ok(grace) if grace <= auth.token_rotation_grace => grace,
        Ok(_) => {
            let said = format!(
                "Grace: at most TOKEN_ROTATION_GRACE ({}).",
                humantime::format_duration(auth.token_rotation_grace)
            );
            return page(&member, None, Some(said)).await;
        }
        Err(err) => return page(&member, None, Some(format!("Grace: {err}."))).await,
    };
    let (user_id, token_id, limits) = (member.0.principal.user_id, *path, auth.token_limits);
    let rotated = auth
        .write(move |conn| users::rotate_token_of(conn, user_id, token_id, grace, limits))
        .await;
    match rotated {
        Ok((_, plain)) => page(&member, Some(plain.secret), None).await,
        Err(err) => page(&member, None, Some(refusal(err)?)).await,
    }
}
