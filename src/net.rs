//! Who the client is: the peer address, or behind trusted reverse proxies
//! the last `X-Forwarded-For` hop that is not one of them (DRF's
//! `NUM_PROXIES`, django-axes' `AXES_IPWARE_PROXY_COUNT`, the same rule).
//! Throttling, the access log and the upstream's `X-Forwarded-For` all key
//! on this one answer. Pure functions over the peer and the headers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpMessage, HttpRequest, web};
use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
/// Empty by default: then the peer address is the client, whatever the
/// headers claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        in_networks(&self.0, ip)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `ip` is in one of `nets`, an IPv4-mapped IPv6 peer
/// (`::ffff:10.0.0.1`, as a dual-stack listener reports it) counting as
/// its IPv4 address.
pub fn in_networks(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.iter().any(|net| net.contains(&ip))
}

/// One `TRUSTED_PROXIES` entry: an address (`10.0.0.1`) or a network
/// (`10.0.0.0/8`, `fd00::/8`).
/// Whom a per-address count is kept for: an IPv4 address, or an IPv6
/// address's /64 (one subscriber's allocation, in which any client picks
/// new addresses at will; counting each alone would let one client reset
/// its count, and fill the count table, by rotating them).
pub fn counted_as(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
        v4 => v4,
    }
}

pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    IpNet::from_str(text)
        .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a network (CIDR)"))
}

/// The client's address for a request from `peer` with `headers`.
pub fn client_ip_of(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
) -> IpAddr {
    let peer = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip().to_canonical());
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut hops = Vec::new();
    for value in headers.get_all(header::X_FORWARDED_FOR) {
        let Ok(value) = value.to_str() else {
            return peer;
        };
        for hop in value.split(',') {
            match IpAddr::from_str(hop.trim()) {
                Ok(ip) => hops.push(ip.to_canonical()),
                // A hop we cannot read ends what we can believe.
                Err(_) => return peer,
            }
        }
    }
    // From the right: each trusted proxy vouches for the hop before it.
    hops.iter().rev().find(|ip| !trusted.contains(**ip)).or(hops.first()).copied().unwrap_or(peer)
}

/// The client's address for this request, by the application's
/// `TrustedProxies` (none registered: the peer): worked out once per
/// request (the access log's middleware is the first to ask) and kept in
/// its extensions for the throttles, the forwarded header and the audit.
pub fn client_ip(req: &HttpRequest) -> IpAddr {
    if let Some(&ClientIp(ip)) = req.extensions().get::<ClientIp>() {
        return ip;
    }
    let trusted = req.app_data::<web::Data<TrustedProxies>>();
    let none = TrustedProxies::default();
    let ip = client_ip_of(req.peer_addr(), req.headers(), trusted.map_or(&none, |t| t.get_ref()));
    remember_client_ip(&mut req.extensions_mut(), ip);
    ip
}

/// A request's client address, once worked out.
#[derive(Debug, Clone, Copy)]
struct ClientIp(IpAddr);

/// Keeps `ip` as the request's client address.
pub fn remember_client_ip(extensions: &mut actix_web::dev::Extensions, ip: IpAddr) {
    extensions.insert(ClientIp(ip));
}

/// The host this request was sent to: the `Host` header, or behind a
/// trusted proxy the first `X-Forwarded-Host` it passes on.
pub fn request_host(req: &HttpRequest) -> Option<String> {
    let forwarded = from_trusted_proxy(req)
        .then(|| req.headers().get(header::X_FORWARDED_HOST))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim);
    let host = forwarded.or_else(|| req.headers().get(header::HOST)?.to_str().ok())?;
    Some(host.to_ascii_lowercase())
}

/// Whether the request's peer is one of `TRUSTED_PROXIES` (whose
/// forwarding headers are believed).
fn from_trusted_proxy(req: &HttpRequest) -> bool {
    req.app_data::<web::Data<TrustedProxies>>()
        .is_some_and(|t| req.peer_addr().is_some_and(|p| t.contains(p.ip())))
}

/// The scheme the client used: a trusted proxy's `X-Forwarded-Proto`
/// (`http` or `https` only), else this listener's.
pub fn request_scheme(req: &HttpRequest) -> &'static str {
    let forwarded = from_trusted_proxy(req)
        .then(|| req.headers().get("x-forwarded-proto"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or_default().trim().to_ascii_lowercase());
    match forwarded.as_deref() {
        Some("https") => "https",
        Some("http") => "http",
        _ if req.app_config().secure() => "https",
        _ => "http",
    }
}

/// Whether `origin` (an `Origin` value, or a `Referer` URL) names `host`
/// (a `Host` value, `name[:port]`). Default ports are the same as none.
pub fn same_origin(origin: &str, host: &str) -> bool {
    let Ok(uri) = origin.parse::<actix_web::http::Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    if authority.as_str().contains('@') {
        return false;
    }
    let normalise = |name: &str, port: Option<u16>| {
        let port = port.filter(|p| *p != default_port);
        match port {
            Some(port) => format!("{}:{port}", name.to_ascii_lowercase()),
            None => name.to_ascii_lowercase(),
        }
    };
    let theirs = normalise(authority.host(), authority.port_u16());
    let Ok(ours) = format!("{scheme}://{host}").parse::<actix_web::http::Uri>() else {
        return false;
    };
    let Some(ours) = ours.authority() else {
        return false;
    };
    theirs == normalise(ours.host(), ours.port_u16())
}

#[cfg(test)]
mod tests {

    #[test]
    fn counts_are_kept_per_ipv4_address_and_per_ipv6_64() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert_eq!(counted_as(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(counted_as(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(counted_as(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")), ip("2001:db8:1:2::"));
        assert_eq!(counted_as(ip("2001:db8:1:2::1")), counted_as(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(counted_as(ip("2001:db8:1:2::1")), counted_as(ip("2001:db8:1:3::1")));
    }
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| parse_net(n).unwrap()).collect())
    }

    fn xff(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_static(value),
            );
        }
        headers
    }

    #[test]
    fn the_client_is_the_last_untrusted_hop() {
        let peer = |ip: &str| Some(SocketAddr::new(ip.parse().unwrap(), 4000));
        let ip = |ip: &str| ip.parse::<IpAddr>().unwrap();
        let proxies = trusted(&["10.0.0.0/8", "127.0.0.1"]);
        let cases = [
            // Nothing trusted: the peer, whatever the header says.
            ("203.0.113.9", vec!["1.2.3.4"], TrustedProxies::default(), "203.0.113.9"),
            ("127.0.0.1", vec!["1.2.3.4"], TrustedProxies::default(), "127.0.0.1"),
            // An untrusted peer's header is not believed.
            ("203.0.113.9", vec!["1.2.3.4"], proxies.clone(), "203.0.113.9"),
            // Through one trusted proxy.
            ("127.0.0.1", vec!["1.2.3.4"], proxies.clone(), "1.2.3.4"),
            // A spoofed first hop is passed over: the last untrusted one counts.
            ("127.0.0.1", vec!["6.6.6.6, 1.2.3.4, 10.1.2.3"], proxies.clone(), "1.2.3.4"),
            ("127.0.0.1", vec!["6.6.6.6", "1.2.3.4"], proxies.clone(), "1.2.3.4"),
            // Every hop trusted: the first.
            ("127.0.0.1", vec!["10.0.0.2, 10.0.0.3"], proxies.clone(), "10.0.0.2"),
            // No header, or one we cannot read: the peer.
            ("127.0.0.1", vec![], proxies.clone(), "127.0.0.1"),
            ("127.0.0.1", vec!["1.2.3.4, bogus"], proxies.clone(), "127.0.0.1"),
            ("::ffff:127.0.0.1", vec!["1.2.3.4"], proxies.clone(), "1.2.3.4"),
        ];
        for (from, header, trusted, expected) in cases {
            assert_eq!(
                client_ip_of(peer(from), &xff(&header), &trusted),
                ip(expected),
                "{from} {header:?}"
            );
        }
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_networks() {
        assert!(parse_net("10.0.0.1").is_ok());
        assert!(parse_net(" 10.0.0.0/8 ").is_ok());
        assert!(parse_net("fd00::/8").is_ok());
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("proxy.example").is_err());
    }

    #[test]
    fn same_origin_compares_host_and_port() {
        let cases = [
            ("http://127.0.0.1:8000", "127.0.0.1:8000", true),
            ("http://Example.com", "example.com", true),
            ("https://example.com:443", "example.com", true),
            ("http://example.com:80", "example.com", true),
            ("http://127.0.0.1:8000/admin/login/?x=1", "127.0.0.1:8000", true),
            ("http://evil.example", "127.0.0.1:8000", false),
            ("http://127.0.0.1:8001", "127.0.0.1:8000", false),
            ("http://127.0.0.1:8000.evil.example", "127.0.0.1:8000", false),
            ("http://127.0.0.1:8000@evil.example", "127.0.0.1:8000", false),
            ("null", "127.0.0.1:8000", false),
            ("file:///etc/passwd", "127.0.0.1:8000", false),
            ("", "127.0.0.1:8000", false),
        ];
        for (origin, host, expected) in cases {
            assert_eq!(same_origin(origin, host), expected, "{origin} vs {host}");
        }
    }
}
