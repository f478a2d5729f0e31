//! Connections, which cost an open file each whether or not they ever
//! send a request: a client with no credentials could otherwise open tens
//! of thousands, each trickling a login's body, until no one else can
//! connect (the open-file limit reached, `accept` failing).
//!
//! Three bounds, each checked before any work: one client address (an
//! IPv6 client by its /64) holds at most `MAX_CONNECTIONS_PER_ADDRESS`
//! connections (a connection past it is answered 503 and closed at its
//! first request; reverse proxies in `TRUSTED_PROXIES` are not counted,
//! as their connections are many clients'); all of them together at most
//! what the open-file limit leaves (`max_connections`, past which the
//! server stops accepting for a while instead of failing); and the body of
//! a request outside the proxy's path (a login, an admin form: small, and
//! sent at once by any honest client) must arrive within `BODY_TIMEOUT`,
//! or the request is answered and its connection closed.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use bytes::Bytes;
use futures_util::Stream;

use crate::budget::{Place, Places};
use crate::net::{TrustedProxies, counted_as};

/// How long the body of a login or an admin form may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections held open per client address.
#[derive(Clone)]
pub struct Connections {
    held: Places<IpAddr>,
    max_per_address: usize,
    trusted: TrustedProxies,
}

/// A connection's place among its address's, given back when it closes.
struct Connection {
    _place: Place<IpAddr>,
    /// Past its address's bound: answered 503 and closed.
    over: bool,
}

impl Connections {
    pub fn new(max_per_address: usize, trusted: TrustedProxies) -> Self {
        Self { held: Places::default(), max_per_address, trusted }
    }

    /// Counts a new connection from `peer` (`HttpServer::on_connect`).
    pub fn opened(&self, peer: Option<IpAddr>, ext: &mut Extensions) {
        let Some(peer) = peer.map(|ip| ip.to_canonical()) else {
            return;
        };
        if self.trusted.contains(peer) {
            return;
        }
        let (place, held) = self.held.take(counted_as(peer));
        ext.insert(Connection { _place: place, over: held > self.max_per_address });
    }

    /// Connections held now by `peer`'s address, for tests.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.held.held(&counted_as(peer.to_canonical()))
    }
}

/// The most connections the server may hold in all, per worker: what the
/// open-file limit leaves after the process's own files (its database, the
/// upstream's pool, `reserved`), shared by the workers.
pub fn max_connections(open_files: u64, reserved: u64, workers: usize) -> usize {
    let spare = open_files.saturating_sub(reserved.saturating_add(256));
    usize::try_from(spare / workers.max(1) as u64).unwrap_or(usize::MAX).max(64)
}

/// The middleware: a connection past its address's bound is answered 503
/// and closed; a body outside the proxy's path is given `BODY_TIMEOUT`.
pub async fn bound(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if req.conn_data::<Connection>().is_some_and(|connection| connection.over) {
        let refusal = HttpResponse::ServiceUnavailable().force_close().json(serde_json::json!({
            "detail": "Too many connections from your address (MAX_CONNECTIONS_PER_ADDRESS)."
        }));
        return Ok(req.into_response(refusal).map_into_right_body());
    }
    let timed = !req.path().starts_with("/api/proxy/");
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if timed {
        let payload = req.take_payload();
        let deadline = Box::pin(tokio::time::sleep(BODY_TIMEOUT));
        let stream = Deadline { payload, deadline, expired: expired.clone() };
        req.set_payload(Payload::Stream { payload: Box::pin(stream) });
    }
    let mut res = next.call(req).await?;
    if expired.load(std::sync::atomic::Ordering::Relaxed) {
        res.response_mut().head_mut().set_connection_type(ConnectionType::Close);
    }
    Ok(res.map_into_left_body())
}

/// A request body that must end by its deadline.
struct Deadline {
    payload: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
    expired: Arc<std::sync::atomic::AtomicBool>,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.payload).poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired.store(true, std::sync::atomic::Ordering::Relaxed);
            let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body too slow");
            return Poll::Ready(Some(Err(PayloadError::Io(late))));
        }
        Poll::Pending
    }
}

/// The connection-level hook, for `HttpServer::on_connect`.
pub fn on_connect(
    connections: web::Data<Connections>,
) -> impl Fn(&dyn std::any::Any, &mut Extensions) {
    move |conn, ext| {
        let peer = conn
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|stream| stream.peer_addr().ok())
            .map(|addr| addr.ip());
        connections.opened(peer, ext);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_its_share_and_gives_it_back() {
        let connections = Connections::new(2, TrustedProxies::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut exts: Vec<Extensions> = (0..3).map(|_| Extensions::new()).collect();
        for ext in &mut exts {
            connections.opened(Some(ip), ext);
        }
        let over: Vec<bool> = exts.iter().map(|e| e.get::<Connection>().unwrap().over).collect();
        assert_eq!(over, [false, false, true]);
        assert_eq!(connections.held_by(ip), 3);
        drop(exts);
        assert_eq!(connections.held_by(ip), 0);
        // A trusted proxy's connections are not counted.
        let trusted = TrustedProxies::new(vec![crate::net::parse_net("10.0.0.1").unwrap()]);
        let connections = Connections::new(1, trusted);
        let mut ext = Extensions::new();
        connections.opened(Some("10.0.0.1".parse().unwrap()), &mut ext);
        assert!(ext.get::<Connection>().is_none());
        assert_eq!(max_connections(20_000, 456, 2), 9_644);
        assert_eq!(max_connections(100, 456, 2), 64);
    }
}
