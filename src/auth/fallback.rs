//! Rotating `SECRET_KEY` without logging anyone out, as Django 4.1's
//! `SECRET_KEY_FALLBACKS`: a session cookie encrypted with one of the old
//! keys is opened with it and handed on encrypted with the current key, so
//! that the session middleware reads it and answers with a cookie of the
//! current key. Without fallbacks this costs nothing; with them, a cookie
//! the current key opens is decrypted once more (microseconds).

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{COOKIE, HeaderValue};
use actix_web::middleware::Next;

/// The session cookie's name (`startup::sessions`).
pub const SESSION_COOKIE: &str = "sessionid";

/// The current key and the old ones still accepted.
#[derive(Clone)]
pub struct SessionKeys {
    pub current: Key,
    pub fallbacks: Vec<Key>,
}

impl SessionKeys {
    /// `value`, a session cookie's as sent (percent-encoded, as the
    /// session middleware writes it), encrypted with the current key if an
    /// old one opens it; `None` if it needs nothing (or nothing opens it).
    fn rekeyed(&self, value: &str) -> Option<String> {
        let sent = Cookie::parse_encoded(format!("{SESSION_COOKIE}={value}")).ok()?;
        let mut jar = CookieJar::new();
        jar.add_original(sent.into_owned());
        if jar.private(&self.current).get(SESSION_COOKIE).is_some() {
            return None;
        }
        let opened = self.fallbacks.iter().find_map(|old| jar.private(old).get(SESSION_COOKIE))?;
        let mut fresh = CookieJar::new();
        let sealed = Cookie::new(SESSION_COOKIE, opened.value().to_owned());
        fresh.private_mut(&self.current).add(sealed);
        let encoded = fresh.get(SESSION_COOKIE)?.encoded().stripped().to_string();
        Some(encoded.split_once('=')?.1.to_owned())
    }

    /// The request's `Cookie` header with its session cookie rekeyed, if
    /// it needs it.
    fn rekey_header(&self, header: &str) -> Option<String> {
        let mut changed = false;
        let pairs: Vec<String> = header
            .split(';')
            .map(|pair| {
                let pair = pair.trim();
                match pair.split_once('=') {
                    Some((SESSION_COOKIE, value)) => match self.rekeyed(value) {
                        Some(value) => {
                            changed = true;
                            format!("{SESSION_COOKIE}={value}")
                        }
                        None => pair.to_owned(),
                    },
                    _ => pair.to_owned(),
                }
            })
            .collect();
        changed.then(|| pairs.join("; "))
    }
}

/// The middleware, before the session middleware: rewrites a session
/// cookie of an old key into one of the current key.
pub async fn rekey(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A known session's cookie is of the current key (`KnownSessions`).
    let known = req.extensions().contains::<super::session::KnownSession>();
    if let Some(keys) = req.app_data::<actix_web::web::Data<SessionKeys>>().cloned()
        && !known
    {
        let rekeyed = req
            .headers()
            .get(COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|header| keys.rekey_header(header));
        if let Some(header) = rekeyed.and_then(|h| HeaderValue::from_str(&h).ok()) {
            req.headers_mut().insert(COOKIE, header);
            req.extensions_mut().insert(Rekeyed);
        }
    }
    next.call(req).await
}

/// A request whose session cookie `rekey` rewrote.
#[derive(Clone, Copy)]
struct Rekeyed;

/// The session entry that marks a session as changed once rekeyed.
const REKEYED: &str = "rekeyed";

/// The middleware, inside the session middleware: a session whose cookie
/// was rekeyed is changed (an entry of its own), so that its answer sets a
/// cookie of the current key; the session middleware sets the cookie only
/// when the session changes.
pub async fn renew_rekeyed(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.extensions().get::<Rekeyed>().is_some() {
        use actix_session::SessionExt;
        // A state that cannot be written was not read either: nothing to keep.
        let _ = req.get_session().insert(REKEYED, true);
    }
    next.call(req).await
}

/// A session cookie's value as the session middleware sends it.
#[cfg(test)]
pub(crate) fn sealed(key: &Key, value: &str) -> String {
    let mut jar = CookieJar::new();
    jar.private_mut(key).add(Cookie::new(SESSION_COOKIE, value.to_owned()));
    let sent = jar.get(SESSION_COOKIE).unwrap().encoded().stripped().to_string();
    sent.split_once('=').unwrap().1.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_of_an_old_key_is_sealed_again_with_the_current_one() {
        let (old, current, other) = (Key::generate(), Key::generate(), Key::generate());
        let keys = SessionKeys { current: current.clone(), fallbacks: vec![old.clone()] };
        let header = format!("a=1; {SESSION_COOKIE}={}; b=2", sealed(&old, "the-session"));
        let rewritten = keys.rekey_header(&header).expect("rekeyed");
        let sent = rewritten.split("; ").nth(1).unwrap();
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::parse_encoded(sent.to_owned()).unwrap());
        assert_eq!(jar.private(&current).get(SESSION_COOKIE).unwrap().value(), "the-session");
        assert!(rewritten.starts_with("a=1; ") && rewritten.ends_with("; b=2"));
        // The current key's cookie, and one no key opens, are left alone.
        let fresh = format!("{SESSION_COOKIE}={}", sealed(&current, "s"));
        assert_eq!(keys.rekey_header(&fresh), None);
        assert_eq!(keys.rekey_header(&format!("{SESSION_COOKIE}={}", sealed(&other, "s"))), None);
    }
}
