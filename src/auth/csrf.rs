//! Cross-site request forgery, as Django guards against it: a per-session
//! token that pages and browser code send back (`X-CSRFToken` on the API,
//! `csrfmiddlewaretoken` in an admin form), and the same-origin check of a
//! login, which has no session token yet to compare.

use actix_session::SessionExt;
use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;

use crate::error::ApiError;
use crate::secret::{constant_time_eq, random_alphanumeric};

/// Where the session keeps its token.
pub const SESSION_KEY: &str = "csrftoken";
/// The cookie browser code reads the token from (Django's name).
pub const COOKIE: &str = "csrftoken";
/// The header an unsafe API request by session carries it in.
pub const HEADER: &str = "x-csrftoken";
/// The field an admin form carries it in.
pub const FORM_FIELD: &str = "csrfmiddlewaretoken";

/// The session's token, made (and so the session started) if missing.
pub fn token(req: &HttpRequest) -> Result<String, ApiError> {
    let session = req.get_session();
    if let Ok(Some(token)) = session.get::<String>(SESSION_KEY) {
        return Ok(token);
    }
    let token = random_alphanumeric(32);
    session.insert(SESSION_KEY, &token).map_err(ApiError::internal)?;
    Ok(token)
}

/// A new token on the next `token`: a login must not keep one a visitor
/// had before it.
pub fn forget(req: &HttpRequest) {
    req.get_session().remove(SESSION_KEY);
}

/// The `csrftoken` cookie that goes with a session's token: readable by
/// the page's script (that is its use), sent to this site only.
pub fn cookie(token: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(COOKIE, token.to_owned())
        .path("/")
        .same_site(SameSite::Lax)
        .secure(secure)
        .http_only(false)
        .finish()
}

/// Django REST framework's rule: a session-authenticated request with an
/// unsafe method must send `X-CSRFToken` matching the session's token.
pub fn check_header(req: &HttpRequest) -> Result<(), ApiError> {
    let failed = |why: &str| ApiError::Forbidden(format!("CSRF Failed: {why}"));
    let expected =
        session_token(req).ok_or_else(|| failed("CSRF token missing from the session."))?;
    let sent = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| failed("CSRF token missing."))?;
    if constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(failed("CSRF token incorrect."))
    }
}

/// Django's form rule: a form (URL-encoded `body`) carries the session's
/// token as `csrfmiddlewaretoken`.
pub fn form_is_genuine(req: &HttpRequest, body: &[u8]) -> bool {
    let Some(expected) = session_token(req) else {
        return false;
    };
    let sent = form_urlencoded::parse(body).find(|(key, _)| key == FORM_FIELD).map(|(_, v)| v);
    sent.is_some_and(|sent| {
        !sent.is_empty() && constant_time_eq(sent.as_bytes(), expected.as_bytes())
    })
}

fn session_token(req: &HttpRequest) -> Option<String> {
    use actix_web::HttpMessage;
    // Gone around the session middleware: its state is the known session's.
    if let Some(known) = req.extensions().get::<super::session::KnownSession>() {
        return known.session.get(SESSION_KEY);
    }
    req.get_session().get::<String>(SESSION_KEY).ok().flatten()
}

/// Login CSRF: a page on another site must not log its visitor in to an
/// account of the attacker's (whose session would then see what the
/// victim uploads). Browsers send `Origin` (or at least `Referer`) with a
/// cross-site POST; it must name this site, as Django's CSRF check demands
/// over HTTPS. A request with neither comes from no browser page (a script),
/// which no third party can make a victim send.
pub fn check_same_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let claimed = req.headers().get(header::ORIGIN).or_else(|| req.headers().get(header::REFERER));
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let host = crate::net::request_host(req);
    let same = claimed
        .to_str()
        .ok()
        .zip(host)
        .is_some_and(|(origin, host)| crate::net::same_origin(origin, &host));
    if same {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "CSRF Failed: Origin checking failed: the request does not come from this site.".into(),
        ))
    }
}
