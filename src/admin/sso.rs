//! Logging in through the OpenID provider (`auth::oidc`): the button's
//! start, which keeps the login's secrets in the session and sends the
//! browser to the provider, and the callback, which checks what comes back
//! against them (once: a callback is never accepted twice) and starts the
//! same session a password login does.

use actix_session::{Session, SessionExt};
use actix_web::{HttpMessage, HttpRequest, web};
use serde::Deserialize;

use super::account::{Next, login_page, safe_next};
use super::{AdminError, Reply, redirect, registry};
use crate::auth::oidc::Pending;
use crate::auth::{AuthState, login, users};
use crate::db::queries;
use crate::secret::constant_time_eq;

/// The session's key for the login under way.
const PENDING: &str = "oidc_pending";

/// The longest error code from the provider that the page repeats.
const MAX_ERROR_LEN: usize = 100;

pub async fn start(req: HttpRequest, auth: web::Data<AuthState>, query: web::Query<Next>) -> Reply {
    auth.oidc.display_name().ok_or(AdminError::NotFound)?;
    let next = safe_next(query.next.as_deref());
    // Forwarding headers only from `TRUSTED_PROXIES`, as everywhere.
    let host = crate::net::request_host(&req).unwrap_or_default();
    let here = format!("{}://{host}", crate::net::request_scheme(&req));
    match auth.oidc.start(&here, next).await {
        Ok((pending, url)) => {
            let session = req.get_session();
            session.insert(PENDING, &pending).map_err(|e| AdminError::Internal(e.into()))?;
            redirect(&url)
        }
        Err(err) => {
            // Said once per failed fetch (`Issuer::metadata`), not per login.
            tracing::debug!("single sign-on could not start: {err}");
            refused(&req, &auth, next, "The identity provider cannot be reached; try again later.")
        }
    }
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

pub async fn callback(
    req: HttpRequest,
    session: Session,
    auth: web::Data<AuthState>,
    query: web::Query<Callback>,
) -> Reply {
    auth.oidc.display_name().ok_or(AdminError::NotFound)?;
    // Taken out whatever follows: a `state` is good for one callback.
    let pending = session.remove_as::<Pending>(PENDING).and_then(Result::ok);
    let state = query.state.as_deref().unwrap_or_default();
    let Some(pending) = pending.filter(|p| constant_time_eq(p.state.as_bytes(), state.as_bytes()))
    else {
        return refused(
            &req,
            &auth,
            registry::INDEX,
            "This sign-in was not started in this browser, or was finished already: start again.",
        );
    };
    if let Some(error) = &query.error {
        let error: String = error.chars().take(MAX_ERROR_LEN).collect();
        let said = format!("The identity provider refused the login ({error}).");
        return refused(&req, &auth, &pending.next, &said);
    }
    let Some(code) = &query.code else {
        return refused(&req, &auth, &pending.next, "The identity provider sent no code.");
    };
    let person = match auth.oidc.finish(&pending, code, query.iss.as_deref()).await {
        Ok(person) => person,
        Err(err) => {
            tracing::info!("a single sign-on login was refused: {err}");
            return refused(&req, &auth, &pending.next, &err.to_string());
        }
    };
    let create = auth.oidc.creates_users();
    // As a service write: the groups and flags it may change are enforced
    // from the next request on.
    let signed_in = auth
        .write(move |conn| {
            let user = users::sign_in(conn, &person, create)?;
            queries::touch_last_login(conn, user.id)?;
            users::record_login(conn, Some(&user), &user.username, true)?;
            Ok(user)
        })
        .await;
    let user = match signed_in {
        Ok(user) => user,
        Err(users::ServiceError::Denied(why)) => {
            return refused(&req, &auth, &pending.next, &why.0);
        }
        Err(err) => return Err(err.into()),
    };
    req.extensions_mut().insert(crate::accesslog::Authenticated);
    login::start_session(&req, &user)?;
    // The admin is staff's; anyone else's session serves the API and
    // their account page.
    let admin_page = pending.next.starts_with(registry::SCOPE);
    redirect(if user.is_staff || !admin_page { &pending.next } else { registry::ACCOUNT })
}

/// The login page, saying why single sign-on did not let the person in.
fn refused(req: &HttpRequest, auth: &AuthState, next: &str, why: &str) -> Reply {
    login_page(req, auth, Some(why.to_owned()), "", next, actix_web::http::StatusCode::FORBIDDEN)
}
