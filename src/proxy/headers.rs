//! Which headers cross the proxy, each way. Pure functions over names.

use actix_web::http::header::{self, HeaderMap, HeaderName};

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

/// Request headers the upstream must never see: our credentials, the
/// client's claims about forwarding (we set our own), and framing that the
/// proxy re-creates from the body it streams.
const NOT_FORWARDED_REQUEST: [HeaderName; 11] = [
    header::HOST,
    header::COOKIE,
    header::AUTHORIZATION,
    HeaderName::from_static("x-csrftoken"),
    header::CONTENT_LENGTH,
    header::EXPECT,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-real-ip"),
];

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

/// Whether a client's request header goes on to the upstream.
pub fn forward_request_header(headers: &HeaderMap, name: &HeaderName) -> bool {
    !hop_by_hop(headers, name) && !NOT_FORWARDED_REQUEST.contains(name)
}

/// Whether an upstream's response header goes back to the client. CORS is
/// the proxy's to decide, cookies are the proxy's own, and the length is
/// re-created from the streamed body.
pub fn forward_response_header(headers: &HeaderMap, name: &HeaderName) -> bool {
    !hop_by_hop(headers, name)
        && *name != header::CONTENT_LENGTH
        && *name != header::SET_COOKIE
        && !name.as_str().starts_with("access-control-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    #[test]
    fn request_header_policy_table() {
        let headers = map(&[
            ("connection", "keep-alive, X-Custom-Hop"),
            ("x-custom-hop", "1"),
        ]);
        let cases = [
            ("content-type", true),
            ("accept", true),
            ("user-agent", true),
            ("x-custom-hop", false),
            ("connection", false),
            ("keep-alive", false),
            ("transfer-encoding", false),
            ("te", false),
            ("upgrade", false),
            ("proxy-authorization", false),
            ("host", false),
            ("cookie", false),
            ("authorization", false),
            ("x-csrftoken", false),
            ("content-length", false),
            ("x-forwarded-for", false),
            ("x-forwarded-host", false),
            ("forwarded", false),
        ];
        for (name, expected) in cases {
            let name = HeaderName::from_static(name);
            assert_eq!(forward_request_header(&headers, &name), expected, "{name}");
        }
    }

    #[test]
    fn response_header_policy_table() {
        let headers = map(&[("connection", "close")]);
        let cases = [
            ("content-type", true),
            ("allow", true),
            ("date", true),
            ("content-length", false),
            ("transfer-encoding", false),
            ("connection", false),
            ("set-cookie", false),
            ("access-control-allow-origin", false),
            ("access-control-allow-credentials", false),
        ];
        for (name, expected) in cases {
            let name = HeaderName::from_static(name);
            assert_eq!(forward_response_header(&headers, &name), expected, "{name}");
        }
    }
}
