//! Which headers cross the proxy, each way. Pure functions over names.

use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// RFC 9110 §7.6.1 connection-specific fields, plus the non-standard ones
/// still seen in the wild.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The only client request headers that go on: what Lbasedb reads of a
/// request (the body's type, what answer is accepted). Everything else
/// stays here: our credentials (`Authorization`, `Cookie`, `X-CSRFToken`),
/// the client's claims about forwarding (`X-Forwarded-*`, `Forwarded`,
/// `X-Real-IP`, `X-Client-IP`, `True-Client-IP`, `CF-Connecting-IP`),
/// overrides an upstream or a server in between might honour
/// (`X-HTTP-Method-Override`, `X-Original-URL`), and whatever is invented
/// next. The framing (`Content-Length`, `Transfer-Encoding`) is made anew
/// from the body the proxy streams, and the proxy adds its own
/// `X-Forwarded-For`, `-Proto`, `-Host` and, for a secret upstream,
/// `Authorization`.
const FORWARDED_REQUEST: [HeaderName; 2] = [header::CONTENT_TYPE, header::ACCEPT];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `name` is listed in the message's own `Connection` header, which
/// makes it hop-by-hop too.
fn named_in_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
}

fn hop_by_hop(headers: &HeaderMap, name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || named_in_connection(headers, name)
}

/// Whether a client's request header goes on to the upstream: an
/// allow-list, so that a header nobody thought of never does.
pub fn forward_request_header(headers: &HeaderMap, name: &HeaderName) -> bool {
    FORWARDED_REQUEST.contains(name) && !hop_by_hop(headers, name)
}

/// Response headers the proxy sets itself: the length (re-created from the
/// streamed body), the type (see `response_content_type`), cookies (the
/// proxy's own), and the headers that keep an answer from being run as a
/// page on this origin (`/api` sets its own, which an upstream must not
/// loosen).
const NOT_FORWARDED_RESPONSE: [HeaderName; 7] = [
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::SET_COOKIE,
    header::CONTENT_SECURITY_POLICY,
    header::X_CONTENT_TYPE_OPTIONS,
    header::CONTENT_DISPOSITION,
    header::REFRESH,
];

/// Whether an upstream's response header goes back to the client. CORS is
/// the proxy's to decide too.
pub fn forward_response_header(headers: &HeaderMap, name: &HeaderName) -> bool {
    !hop_by_hop(headers, name)
        && !NOT_FORWARDED_RESPONSE.contains(name)
        && !name.as_str().starts_with("access-control-")
}

pub const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// The type an upstream answer is served with. A user may write any bytes
/// to a feed (`<html><script>…`), so an answer is never served as anything
/// a browser would run: binary reads are always `application/octet-stream`,
/// and otherwise only the upstream's JSON and plain-text types pass; a
/// missing or any other type (HTML, SVG, XML…) becomes octet-stream.
pub fn response_content_type(binary: bool, upstream: Option<&HeaderValue>) -> HeaderValue {
    if binary {
        return OCTET_STREAM;
    }
    let essence = upstream
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json" | "text/plain") => upstream.cloned().unwrap_or(OCTET_STREAM),
        _ => OCTET_STREAM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        headers
    }

    /// Each of `kept` (names apart by spaces) passes `policy`, each of `dropped` does not.
    fn check(
        policy: fn(&HeaderMap, &HeaderName) -> bool,
        headers: &HeaderMap,
        kept: &str,
        dropped: &str,
    ) {
        for (names, expected) in [(kept, true), (dropped, false)] {
            for name in names.split_whitespace() {
                let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
                assert_eq!(policy(headers, &name), expected, "{name}");
            }
        }
    }

    #[test]
    fn request_header_policy_table() {
        let headers = map(&[("connection", "keep-alive, X-Custom-Hop"), ("x-custom-hop", "1")]);
        check(
            forward_request_header,
            &headers,
            "content-type accept",
            // Hop by hop (and what Connection names), the proxy's own
            // credentials, framing, claims about the client, overrides,
            // and anything else.
            "x-custom-hop connection keep-alive transfer-encoding te upgrade proxy-authorization \
             host cookie authorization x-csrftoken content-length expect \
             x-forwarded-for x-forwarded-host x-forwarded-port x-forwarded-prefix forwarded \
             x-real-ip x-client-ip true-client-ip cf-connecting-ip x-original-url \
             x-http-method-override user-agent origin referer x-anything",
        );
        // Even an allowed header, when `Connection` names it.
        let named = map(&[("connection", "accept"), ("accept", "*/*")]);
        check(forward_request_header, &named, "content-type", "accept");
    }

    #[test]
    fn response_header_policy_table() {
        let headers = map(&[("connection", "close")]);
        check(
            forward_response_header,
            &headers,
            "allow date",
            // The proxy sets the type and its guards itself; framing, cookies
            // and CORS are not the upstream's to give.
            "content-type content-security-policy x-content-type-options content-length \
             transfer-encoding connection set-cookie \
             access-control-allow-origin access-control-allow-credentials",
        );
    }

    #[test]
    fn answers_are_never_served_as_a_page() {
        let json = HeaderValue::from_static("application/json");
        let text = HeaderValue::from_static("text/plain; charset=utf-8");
        let html = HeaderValue::from_static("text/html");
        let svg = HeaderValue::from_static("image/svg+xml");
        let odd = HeaderValue::from_static("Application/JSON ; x=1");
        let cases = [
            (true, Some(&json), "application/octet-stream"),
            (true, None, "application/octet-stream"),
            (false, Some(&json), "application/json"),
            (false, Some(&text), "text/plain; charset=utf-8"),
            (false, Some(&odd), "Application/JSON ; x=1"),
            (false, Some(&html), "application/octet-stream"),
            (false, Some(&svg), "application/octet-stream"),
            (false, None, "application/octet-stream"),
        ];
        for (binary, upstream, expected) in cases {
            assert_eq!(response_content_type(binary, upstream), expected, "{upstream:?}");
        }
    }
}
