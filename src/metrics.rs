//! Prometheus metrics at `GET /metrics`, for the addresses in
//! `METRICS_ALLOW` (loopback by default) and for a superuser's token; 404
//! for anyone else. Every label is bounded: endpoint, method, status,
//! reason, kind. Who and which feed belong in the audit, not here (a label
//! per user or feed would grow without end).

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::auth::{AuthState, Credential};
use crate::error::ApiError;
use crate::net::{TrustedProxies, client_ip};

/// One process's metrics, registered in a registry of its own.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    upstream_errors: IntCounterVec,
    auth_failures: IntCounterVec,
    rate_limited: IntCounterVec,
    audit_dropped: prometheus::IntCounter,
    writes_in_doubt: prometheus::IntCounter,
    idempotent_replays: prometheus::IntCounter,
    appends_repaired: prometheus::IntCounter,
    upstream_restarts: prometheus::IntCounter,
    /// What acknowledged writes counted against write quotas, by unit.
    quota_written: IntCounterVec,
    in_flight: IntGauge,
    audit_rows: IntGauge,
    write_lock_wait: Histogram,
    /// Each endpoint's series, found once.
    handles: Box<[Handles; ENDPOINTS.len()]>,
}

/// The endpoint labels of proxied requests.
const ENDPOINTS: [&str; 8] = ["version", "feed", "col", "size", "data", "bytes", "raw", "unknown"];
/// The method labels: Lbasedb's methods, and the rest as one.
const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OTHER"];
/// The statuses whose series are kept at hand; others are looked up.
const STATUSES: [u16; 16] =
    [200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 422, 429, 500, 502, 503, 504];

/// One endpoint's series, each made on its first use (a series appears in
/// `/metrics` once something counted in it, as with `with_label_values`)
/// and then kept: a request counts without hashing its labels and taking
/// the vector's lock four times, as `with_label_values` does.
#[derive(Debug, Default)]
struct Handles {
    duration: OnceLock<Histogram>,
    request_bytes: OnceLock<IntCounter>,
    response_bytes: OnceLock<IntCounter>,
    /// By method, then status (`METHODS` x `STATUSES`).
    requests: [[OnceLock<IntCounter>; STATUSES.len()]; METHODS.len()],
}

/// Why an upstream request failed.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Closed,
}

/// Why authentication or authorisation refused a request.
#[derive(Debug, Clone, Copy)]
pub enum AuthFailure {
    NoCredentials,
    BadToken,
    ExpiredToken,
    InactiveUser,
    BadPassword,
    Throttled,
    Csrf,
    Forbidden,
    TokenScope,
    TokenNetwork,
}

impl AuthFailure {
    fn label(self) -> &'static str {
        match self {
            Self::NoCredentials => "no_credentials",
            Self::BadToken => "bad_token",
            Self::ExpiredToken => "expired_token",
            Self::InactiveUser => "inactive_user",
            Self::BadPassword => "bad_password",
            Self::Throttled => "throttled",
            Self::Csrf => "csrf",
            Self::Forbidden => "forbidden",
            Self::TokenScope => "token_scope",
            Self::TokenNetwork => "token_network",
        }
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

/// Seconds to the response head, by endpoint: from half a millisecond
/// (a cached answer next door) to half a minute (a large read).
fn durations() -> prometheus::Result<HistogramVec> {
    HistogramVec::new(
        HistogramOpts::new(
            "lbasedb_proxy_request_duration_seconds",
            "Time to the response head of proxied requests, by endpoint.",
        )
        .buckets(vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0,
        ]),
        &["endpoint"],
    )
}

/// A metric made (its options are constants: they cannot fail) and
/// registered (once, in a registry of its own).
fn registered<M>(registry: &Registry, made: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    let metric = made.expect("a valid metric");
    registry.register(Box::new(metric.clone())).expect("registered once");
    metric
}

/// A counter without labels, registered.
fn total(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    registered(registry, prometheus::IntCounter::new(name, help))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How long writes waited for their feed's lock.
fn lock_waits() -> prometheus::Result<Histogram> {
    Histogram::with_opts(
        HistogramOpts::new(
            "lbasedb_proxy_write_lock_wait_seconds",
            "Time writes waited for their feed's write lock.",
        )
        .buckets(vec![0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0]),
    )
}

/// The plain counters, in the order `Metrics::new` takes them.
const TOTALS: [(&str, &str); 5] = [
    (
        "lbasedb_proxy_audit_dropped_total",
        "Audit rows dropped because the writer's queue was full.",
    ),
    (
        "lbasedb_proxy_writes_in_doubt_total",
        "Writes whose upstream neither answered nor closed within WRITE_DOUBT_TIMEOUT \
         of the proxy giving up on them: their feed's lock was let go.",
    ),
    (
        "lbasedb_proxy_idempotent_replays_total",
        "Writes answered from the answer kept for their Idempotency-Key, without \
         reaching the upstream.",
    ),
    (
        "lbasedb_proxy_appends_repaired_total",
        "Appends the upstream failed in the middle of, undone by setting their feed's \
         size back.",
    ),
    (
        "lbasedb_proxy_upstream_restarts_total",
        "Times the embedded Lbasedb's process died and was started again.",
    ),
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let duration = registered(&registry, durations());
        let in_flight = registered(
            &registry,
            IntGauge::new("lbasedb_proxy_in_flight_requests", "Proxied requests being served now."),
        );
        let write_lock_wait = registered(&registry, lock_waits());
        let audit_rows = registered(
            &registry,
            IntGauge::new(
                "lbasedb_proxy_audit_rows",
                "Rows in the data-access audit (from its first and last ids, every minute).",
            ),
        );
        let [
            audit_dropped,
            writes_in_doubt,
            idempotent_replays,
            appends_repaired,
            upstream_restarts,
        ] = TOTALS.map(|(name, help)| total(&registry, name, help));
        Self {
            audit_dropped,
            writes_in_doubt,
            idempotent_replays,
            appends_repaired,
            upstream_restarts,
            requests: counter(
                &registry,
                "lbasedb_proxy_requests_total",
                "Proxied requests, by endpoint, method and status.",
                &["endpoint", "method", "status"],
            ),
            request_bytes: counter(
                &registry,
                "lbasedb_proxy_request_bytes_total",
                "Request body bytes sent upstream, by endpoint.",
                &["endpoint"],
            ),
            response_bytes: counter(
                &registry,
                "lbasedb_proxy_response_bytes_total",
                "Response body bytes streamed back, by endpoint.",
                &["endpoint"],
            ),
            upstream_errors: counter(
                &registry,
                "lbasedb_proxy_upstream_errors_total",
                "Upstream requests that failed, by kind (connect, timeout, closed).",
                &["kind"],
            ),
            auth_failures: counter(
                &registry,
                "lbasedb_proxy_auth_failures_total",
                "Requests refused by authentication or authorisation, by reason.",
                &["reason"],
            ),
            quota_written: counter(
                &registry,
                "lbasedb_proxy_quota_written_total",
                "What acknowledged writes counted against users' write quotas, by unit \
                 (rows, bytes of their bodies).",
                &["unit"],
            ),
            rate_limited: counter(
                &registry,
                "lbasedb_proxy_rate_limited_total",
                "Requests refused by a per-user limit, by limit (rate, in_flight, write_quota).",
                &["limit"],
            ),
            registry,
            duration,
            handles: Box::default(),
            in_flight,
            audit_rows,
            write_lock_wait,
        }
    }

    /// A proxied request's outcome.
    pub fn request(&self, endpoint: &str, method: &Method, status: StatusCode, started: Instant) {
        let m = match *method {
            Method::GET => 0,
            Method::POST => 1,
            Method::PUT => 2,
            Method::PATCH => 3,
            Method::DELETE => 4,
            _ => 5,
        };
        let elapsed = started.elapsed().as_secs_f64();
        let (e, s) =
            (Self::endpoint(endpoint), STATUSES.iter().position(|&s| s == status.as_u16()));
        let series =
            |vec: &IntCounterVec| vec.with_label_values(&[endpoint, METHODS[m], status.as_str()]);
        match (e, s) {
            (Some(e), Some(s)) => {
                self.handles[e].requests[m][s].get_or_init(|| series(&self.requests)).inc();
            }
            _ => series(&self.requests).inc(),
        }
        match e {
            Some(e) => self.handles[e]
                .duration
                .get_or_init(|| self.duration.with_label_values(&[endpoint]))
                .observe(elapsed),
            None => self.duration.with_label_values(&[endpoint]).observe(elapsed),
        }
    }

    pub fn request_bytes(&self, endpoint: &str, bytes: u64) {
        match Self::endpoint(endpoint) {
            Some(e) => self.handles[e]
                .request_bytes
                .get_or_init(|| self.request_bytes.with_label_values(&[endpoint]))
                .inc_by(bytes),
            None => self.request_bytes.with_label_values(&[endpoint]).inc_by(bytes),
        }
    }

    /// The counter of an endpoint's response bytes, to count a stream with.
    pub fn response_bytes(&self, endpoint: &str) -> IntCounter {
        match Self::endpoint(endpoint) {
            Some(e) => self.handles[e]
                .response_bytes
                .get_or_init(|| self.response_bytes.with_label_values(&[endpoint]))
                .clone(),
            None => self.response_bytes.with_label_values(&[endpoint]),
        }
    }

    /// Where an endpoint's series are kept at hand.
    fn endpoint(label: &str) -> Option<usize> {
        ENDPOINTS.iter().position(|e| *e == label)
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        let kind = match kind {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Closed => "closed",
        };
        self.upstream_errors.with_label_values(&[kind]).inc();
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures.with_label_values(&[reason.label()]).inc();
    }

    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.with_label_values(&[limit]).inc();
    }

    /// A write counted against its user's write quota.
    pub fn quota_written(&self, rows: u64, bytes: u64) {
        self.quota_written.with_label_values(&["rows"]).inc_by(rows);
        self.quota_written.with_label_values(&["bytes"]).inc_by(bytes);
    }

    pub fn audit_rows(&self, rows: i64) {
        self.audit_rows.set(rows);
    }

    pub fn audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    pub fn upstream_restarted(&self) {
        self.upstream_restarts.inc();
    }

    pub fn write_in_doubt(&self) {
        self.writes_in_doubt.inc();
    }

    pub fn idempotent_replay(&self) {
        self.idempotent_replays.inc();
    }

    pub fn append_repaired(&self) {
        self.appends_repaired.inc();
    }

    pub fn write_lock_waited(&self, since: Instant) {
        self.write_lock_wait.observe(since.elapsed().as_secs_f64());
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A request in flight; dropped when it is done (or abandoned).
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Who may read `/metrics`: these networks (`METRICS_ALLOW`), or a
/// superuser's token.
#[derive(Debug, Clone)]
pub struct MetricsAllow(pub TrustedProxies);

/// `GET /metrics`; 404 for anyone not allowed, so that its existence says
/// nothing to the rest.
pub async fn serve(
    req: HttpRequest,
    auth: web::Data<AuthState>,
    allow: web::Data<MetricsAllow>,
) -> Result<HttpResponse, ApiError> {
    let from_allowed = allow.0.contains(client_ip(&req));
    let superuser = || async {
        req.headers().contains_key(actix_web::http::header::AUTHORIZATION)
            && matches!(auth.authenticate(&req).await, Ok(Some(who)) if matches!(who.credential, Credential::Token { .. }) && who.principal.is_superuser && who.principal.is_active)
    };
    if !from_allowed && !superuser().await {
        return Err(ApiError::NotFound);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(auth.metrics.render()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept series and the looked-up ones are the same series: a
    /// request counts once, under its own labels, whichever way it went.
    #[test]
    fn kept_series_count_in_the_vectors_series() {
        let metrics = Metrics::new();
        let started = Instant::now();
        for _ in 0..3 {
            metrics.request("version", &Method::GET, StatusCode::OK, started);
        }
        // A status not kept at hand, a method counted as OTHER, an
        // endpoint label not kept at hand.
        metrics.request("version", &Method::GET, StatusCode::IM_A_TEAPOT, started);
        metrics.request("data", &Method::HEAD, StatusCode::OK, started);
        metrics.request("other", &Method::GET, StatusCode::OK, started);
        metrics.request_bytes("data", 5);
        metrics.request_bytes("data", 7);
        metrics.response_bytes("version").inc_by(11);
        metrics.response_bytes("version").inc_by(2);
        let text = metrics.render();
        for line in [
            r#"lbasedb_proxy_requests_total{endpoint="version",method="GET",status="200"} 3"#,
            r#"lbasedb_proxy_requests_total{endpoint="version",method="GET",status="418"} 1"#,
            r#"lbasedb_proxy_requests_total{endpoint="data",method="OTHER",status="200"} 1"#,
            r#"lbasedb_proxy_requests_total{endpoint="other",method="GET",status="200"} 1"#,
            r#"lbasedb_proxy_request_duration_seconds_count{endpoint="version"} 4"#,
            r#"lbasedb_proxy_request_bytes_total{endpoint="data"} 12"#,
            r#"lbasedb_proxy_response_bytes_total{endpoint="version"} 13"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        // Nothing counted, nothing shown: no series for the kept handles
        // never used.
        assert!(!text.contains(r#"endpoint="raw""#), "{text}");
    }
}
