//! A request id per request, so that one request can be followed end to
//! end: on its access-log line, in its audit row, sent to the upstream and
//! answered to the client, all as `X-Request-Id`.
//!
//! A client's `X-Request-Id` is taken only from a trusted proxy
//! (`TRUSTED_PROXIES`, which made or passed it on), and only if it is a
//! short token of plain characters: anyone else could otherwise put a
//! chosen text in our logs and audit, or make two requests look like one.
//! Otherwise the id is made here: this process's random prefix and a
//! counter, which costs no hashing and no system call per request.

use std::fmt;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use crate::net::TrustedProxies;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The most characters a given id may have.
pub const MAX_LEN: usize = 128;

/// A request's id, in its extensions from the first middleware on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

/// This process's ids begin with 8 random hexadecimal digits, so that
/// replicas (and restarts) do not make the same ones.
static PREFIX: LazyLock<String> = LazyLock::new(|| hex::encode(crate::secret::random_bytes::<4>()));
static NEXT: AtomicU64 = AtomicU64::new(1);

impl RequestId {
    /// A new id: the prefix, a dash and the counter in hexadecimal.
    pub fn make() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let text = format!("{}-{n:x}", *PREFIX);
        // Only hexadecimal digits and a dash: always a valid value.
        Self(HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("-")))
    }

    /// A client's id, if it is one we keep: 1 to `MAX_LEN` characters of
    /// letters, digits and `-_.:/+=@`.
    pub fn given(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(b);
        ((1..=MAX_LEN).contains(&bytes.len()) && bytes.iter().all(plain))
            .then(|| Self(value.clone()))
    }

    /// Its header value, as sent on.
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Made or checked above: plain ASCII.
        self.0.to_str().unwrap_or("-")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of a request that went through `assign` (a made one otherwise).
pub fn of(req: &actix_web::HttpRequest) -> RequestId {
    req.extensions().get::<RequestId>().cloned().unwrap_or_else(RequestId::make)
}

/// The one `X-Request-Id` a request carries, if it is one we keep. Two are
/// ambiguous (a proxy that appended its own after the client's), so
/// neither is taken.
fn one_given(headers: &actix_web::http::header::HeaderMap) -> Option<RequestId> {
    let mut all = headers.get_all(&X_REQUEST_ID);
    match (all.next(), all.next()) {
        (Some(value), None) => RequestId::given(value),
        _ => None,
    }
}

/// The middleware: gives the request its id (a trusted proxy's, or a new
/// one) and answers it in the response's `X-Request-Id`.
pub async fn assign(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let trusted = req
        .app_data::<web::Data<TrustedProxies>>()
        .is_some_and(|trusted| req.peer_addr().is_some_and(|peer| trusted.contains(peer.ip())));
    let id = trusted.then(|| one_given(req.headers())).flatten().unwrap_or_else(RequestId::make);
    let header = id.header().clone();
    req.extensions_mut().insert(id);
    let mut res = next.call(req).await?;
    res.headers_mut().insert(X_REQUEST_ID, header);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_differ_and_given_ones_are_plain_and_short() {
        let (a, b) = (RequestId::make(), RequestId::make());
        assert_ne!(a, b);
        assert!(a.as_str().len() > 9 && a.as_str().starts_with(PREFIX.as_str()), "{a}");
        let ok = HeaderValue::from_static("7f3a-b2:c/d=e");
        assert_eq!(RequestId::given(&ok).unwrap().as_str(), "7f3a-b2:c/d=e");
        for bad in ["", "a b", "a\"b", "<script>", "ü"] {
            if let Ok(value) = HeaderValue::from_str(bad) {
                assert!(RequestId::given(&value).is_none(), "{bad:?}");
            }
        }
        let long = HeaderValue::from_str(&"a".repeat(MAX_LEN + 1)).unwrap();
        assert!(RequestId::given(&long).is_none());
    }
}
