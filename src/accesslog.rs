//! The access log: one line per request (client, method, path, status,
//! bytes sent, time to the last byte, request id), written when its answer
//! is done.
//!
//! What a client controls is cut short (a method to 16 characters, a path
//! to 256, control characters escaped), and requests that no one was
//! authenticated for are sampled: per client address (an IPv6 client by
//! its /64) the first few of each second are written, and the rest counted
//! in one line when the second is over, with at most a hundred such lines
//! a second in all. A flood of junk without credentials then costs a few
//! lines a second, while every request someone made stays in the log. The
//! query string and all headers are left out, so that no token or cookie
//! can land here.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use crate::body::{KeepUntilSent, Kept};
use crate::net::{TrustedProxies, client_ip_of, counted_as};

/// Marks a request someone was authenticated for (by a token, a session,
/// or a correct password): its line is always written.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated;

/// Lines written per address and second for requests by no one.
const PER_ADDRESS: u32 = 5;
/// Lines written per second for requests by no one, all addresses.
const PER_SECOND: u32 = 100;
/// Addresses counted apart in one second; past them, they count together.
const ADDRESSES: usize = 10_000;
const MAX_METHOD: usize = 16;
const MAX_PATH: usize = 256;

/// What the log keeps between requests: who it trusts for the client
/// address, and this second's counts of requests by no one.
#[derive(Clone)]
pub struct AccessLog {
    trusted: TrustedProxies,
    sampler: Arc<Mutex<Sampler>>,
}

impl AccessLog {
    pub fn new(trusted: TrustedProxies) -> Self {
        Self { trusted, sampler: Arc::default() }
    }
}

#[derive(Default)]
struct Sampler {
    second: i64,
    written: u32,
    /// Requests by no one this second, per address.
    seen: HashMap<IpAddr, u32>,
    /// Addresses past `ADDRESSES` this second, together.
    others: u64,
}

impl Sampler {
    /// Whether a request by no one from `client` gets its own line now.
    fn admit(&mut self, client: IpAddr) -> bool {
        let now = chrono::Utc::now().timestamp();
        if now != self.second {
            self.summarise();
            self.second = now;
        }
        let who = counted_as(client);
        if self.seen.len() >= ADDRESSES && !self.seen.contains_key(&who) {
            self.others += 1;
            return false;
        }
        let count = self.seen.entry(who).or_default();
        *count += 1;
        if *count <= PER_ADDRESS && self.written < PER_SECOND {
            self.written += 1;
            return true;
        }
        false
    }

    /// Writes what the past second left unwritten, in a few lines.
    fn summarise(&mut self) {
        let mut unwritten: Vec<(IpAddr, u32)> = self
            .seen
            .drain()
            .filter(|(_, count)| *count > PER_ADDRESS)
            .map(|(ip, count)| (ip, count - PER_ADDRESS))
            .collect();
        unwritten.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let listed = unwritten.len().min(PER_SECOND as usize);
        for (ip, count) in &unwritten[..listed] {
            tracing::info!(
                target: "actix_web::middleware::logger",
                "{ip} \"…\" {count} more request(s) without credentials in one second, not logged one by one"
            );
        }
        let rest: u64 =
            unwritten[listed..].iter().map(|(_, c)| u64::from(*c)).sum::<u64>() + self.others;
        if rest > 0 {
            tracing::info!(
                target: "actix_web::middleware::logger",
                "- \"…\" {rest} more request(s) without credentials in one second from other addresses, not logged"
            );
        }
        self.written = 0;
        self.others = 0;
    }
}

/// `text`, at most `max` characters, control characters escaped: what a
/// client sent is never a line break or a terminal escape in the log.
fn capped(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (n, c) in text.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A request's method as its line shows it: one of HTTP's own without a
/// copy, any other cut short and escaped.
fn method_of(method: &actix_web::http::Method) -> Cow<'static, str> {
    use actix_web::http::Method;
    let known: &[(Method, &'static str)] = &[
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    match known.iter().find(|(m, _)| m == method) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(capped(method.as_str(), MAX_METHOD)),
    }
}

/// The middleware: notes the request, and logs it when its answer is done.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let Some(log) = req.app_data::<web::Data<AccessLog>>().cloned() else {
        return Ok(next
            .call(req)
            .await?
            .map_body(|_, body| KeepUntilSent::new(body, Line { pending: None, sent: 0 })));
    };
    let client = client_ip_of(req.peer_addr(), req.headers(), &log.trusted);
    crate::net::remember_client_ip(&mut req.extensions_mut(), client);
    let method = method_of(req.method());
    let path = capped(req.path(), MAX_PATH);
    let res = next.call(req).await?;
    let by_someone = res.request().extensions().contains::<Authenticated>();
    let id = crate::requestid::of(res.request());
    let status = res.status().as_u16();
    let pending = Pending { log, client, method, path, status, by_someone, started, id };
    Ok(res.map_body(|_, body| KeepUntilSent::new(body, Line { pending: Some(pending), sent: 0 })))
}

/// What a line says but the bytes sent and the time, known at the end.
struct Pending {
    log: web::Data<AccessLog>,
    client: IpAddr,
    method: Cow<'static, str>,
    path: String,
    status: u16,
    by_someone: bool,
    started: Instant,
    id: crate::requestid::RequestId,
}

/// A request's line, kept by its response body (`body::KeepUntilSent`):
/// it counts what the body sends and is written when the body is done
/// (sent, cut, or dropped with its client).
struct Line {
    pending: Option<Pending>,
    sent: u64,
}

impl Kept for Line {
    fn sent(&mut self, bytes: usize) {
        self.sent += bytes as u64;
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        write_line(self.pending.take(), self.sent);
    }
}

/// Writes a finished request's line, unless it is one by no one past its
/// address's share of this second (then it is only counted).
fn write_line(pending: Option<Pending>, sent: u64) {
    let Some(p) = pending else {
        return;
    };
    let written =
        p.by_someone || p.log.sampler.lock().unwrap_or_else(|e| e.into_inner()).admit(p.client);
    if written {
        tracing::info!(
            target: "actix_web::middleware::logger",
            "{} \"{} {}\" {} {} {:.6}ms {}",
            p.client,
            p.method,
            p.path,
            p.status,
            sent,
            p.started.elapsed().as_secs_f64() * 1000.0,
            p.id
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_client_sends_is_cut_short_and_escaped() {
        assert_eq!(capped("GET", MAX_METHOD), "GET");
        assert_eq!(capped(&"A".repeat(100), MAX_METHOD), format!("{}…", "A".repeat(16)));
        assert_eq!(capped("/a\nb\x1b[31m", 50), "/a\\nb\\u{1b}[31m");
        assert_eq!(capped(&"/x".repeat(1000), MAX_PATH).chars().count(), MAX_PATH + 1);
    }

    #[test]
    fn requests_by_no_one_are_sampled_per_address_and_second() {
        let mut sampler = Sampler::default();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let written = (0..1000).filter(|_| sampler.admit(one)).count();
        assert!(written <= PER_ADDRESS as usize + 1, "{written}");
        // Another address still gets its own lines.
        assert!(sampler.admit("192.0.2.2".parse().unwrap()));
        // An IPv6 client is one address for its whole /64.
        let v6 = |n: u16| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, n]);
        let written = (1..1000).filter(|n| sampler.admit(v6(*n))).count();
        assert!(written <= PER_ADDRESS as usize + 1, "{written}");
        // Many addresses: never more than PER_SECOND lines in a second.
        let mut sampler = Sampler::default();
        let written =
            (0..20_000u32).filter(|n| sampler.admit(IpAddr::from(n.to_be_bytes()))).count();
        assert!(written <= 2 * PER_SECOND as usize, "{written}");
    }
}
