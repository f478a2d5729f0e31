//! `/api/proxy/{endpoint}`: classify the request, decide, and stream it to
//! the upstream and the answer back.

mod buffered;
pub mod classify;
mod forward;
pub mod headers;
pub mod limits;
pub mod upstream;

use crate::lbasedb::perms::VIEW_FEED;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::Value;

use crate::audit::{Audit, Audited};
use crate::auth::principal::Principal;
use crate::auth::ratelimit::{Limited, Slot, effective_rate};
use crate::auth::{AuthState, check_csrf};
use crate::config::{Limits, Settings};
use crate::error::ApiError;
use crate::lock::{LockError, WriteLocks};
use crate::metrics::{AuthFailure, Metrics};
use actix_web::http::Method;
use classify::{Access, Classified, ClassifyError, Endpoint, classify};

pub use forward::{Body, build_client};

use crate::auth::users::{self, FeedChange};
use crate::lbasedb::query::{NameQuery, parse_form};

/// What every worker's proxy handler shares.
#[derive(Debug, Clone)]
pub struct ProxyState {
    /// The upstream's base URL, without a trailing slash.
    pub upstream: String,
    /// Sent to the upstream as `Authorization: Bearer` (the embedded
    /// server's per-process secret, or LBASEDB_SECRET).
    pub upstream_secret: Option<String>,
    pub body_limit: u64,
    pub limits: Limits,
    pub response_timeout: Duration,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    /// Per-feed write serialisation (`crate::lock`).
    pub write_locks: Arc<dyn WriteLocks>,
    pub write_lock_timeout: Duration,
}

impl std::fmt::Debug for dyn WriteLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteLocks")
    }
}

impl ProxyState {
    pub fn new(
        upstream: &str,
        upstream_secret: Option<String>,
        settings: &Settings,
        metrics: Arc<Metrics>,
        audit: Audit,
        write_locks: Arc<dyn WriteLocks>,
    ) -> Self {
        Self {
            metrics,
            audit,
            upstream: upstream.trim_end_matches('/').to_owned(),
            upstream_secret,
            body_limit: settings.body_limit,
            limits: settings.limits,
            response_timeout: settings.response_timeout,
            write_locks,
            write_lock_timeout: settings.write_lock_timeout,
        }
    }
}

pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    endpoint: web::Path<String>,
    state: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
    auth: web::Data<AuthState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let at = crate::db::queries::now();
    let _in_flight = auth.metrics.in_flight();
    let label = Endpoint::from_name(&endpoint).map_or("unknown", Endpoint::name);
    let mut seen = Seen::default();
    let answer = handle(&req, payload, &endpoint, &state, &client, &auth, &mut seen).await;
    let status = match &answer {
        Ok(response) => response.status(),
        Err(err) => err.status_code(),
    };
    auth.metrics.request(label, req.method(), status, started);
    let access = crate::db::models::Access {
        at,
        username: seen.username,
        credential: seen.credential.as_deref().unwrap_or_default().to_owned(),
        client: crate::net::client_ip(&req).to_string(),
        endpoint: label.to_owned(),
        method: req.method().as_str().to_owned(),
        feed: seen.feed,
        status: i32::from(status.as_u16()),
        bytes_in: i64::try_from(seen.bytes_in.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        bytes_out: 0,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    };
    match answer {
        // Recorded when its body is done, with the bytes it sent.
        Ok(response) => Ok(response
            .map_body(|_, body| Audited::new(body, access, state.audit.clone()))
            .map_into_boxed_body()),
        Err(err) => {
            state.audit.record(access);
            Err(err)
        }
    }
}

/// What the audit learns of a request as it is handled.
#[derive(Default)]
struct Seen {
    username: String,
    credential: Option<Arc<str>>,
    feed: Option<String>,
    bytes_in: Arc<AtomicU64>,
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: &str,
    state: &ProxyState,
    client: &awc::Client,
    auth: &AuthState,
    seen: &mut Seen,
) -> Result<HttpResponse, ApiError> {
    let req = req.clone();
    // Deny by default: nothing about the upstream for the unauthenticated.
    let who = auth.authenticate(&req).await?.ok_or_else(|| {
        auth.metrics.auth_failure(AuthFailure::NoCredentials);
        ApiError::no_credentials()
    })?;
    seen.username.clone_from(&who.principal.username);
    seen.credential = Some(who.credential.clone());
    if who.by_session && !req.method().is_safe() {
        check_csrf(&req).inspect_err(|_| auth.metrics.auth_failure(AuthFailure::Csrf))?;
    }
    let _slot = admit(auth, &who.principal)?;
    let classified = classify(endpoint, req.method(), req.query_string())
        .map_err(|err| classify_error(err, req.method()))?;
    seen.feed = match &classified.access {
        Access::Feed(_, feed) => Some(feed.clone()),
        _ => classified.write_lock.clone(),
    };
    authorize(&classified, &who.principal)
        .inspect_err(|_| auth.metrics.auth_failure(AuthFailure::Forbidden))?;
    limits::check_query(classified.endpoint, req.method(), req.query_string(), &state.limits)
        .map_err(ApiError::BadRequest)?;
    let (body, facts) = match limits::body_rule(classified.endpoint, req.method()) {
        Some(rule) => {
            let body = read_small_body(payload).await?;
            let facts =
                limits::check_body(rule, &body, &state.limits).map_err(ApiError::BadRequest)?;
            (Body::Full(body), facts)
        }
        None => (Body::Stream(payload), limits::BodyFacts::default()),
    };
    // Held until the upstream has answered; dropped on every way out (an
    // error, or the client hanging up, which drops this whole future).
    let _write_lock = match &classified.write_lock {
        Some(feed) => Some(write_lock(state, feed).await?),
        None => None,
    };
    let response =
        forward::send(&req, body, classified.endpoint, state, client, &seen.bytes_in).await?;
    if response.status().is_success() && classified.endpoint == Endpoint::Feed {
        feed_changed(&req, auth, facts).await;
    }
    if classified.access == Access::FeedList && !who.principal.has_perm(VIEW_FEED) {
        return visible_feeds(response, &who.principal).await;
    }
    // `/bytes` and `/raw` reads are raw column bytes, whatever they hold.
    let binary = matches!(classified.endpoint, Endpoint::Bytes | Endpoint::Raw)
        && req.method() == Method::GET;
    Ok(forward::respond(&req, response, binary, state, classified.endpoint))
}

fn classify_error(err: ClassifyError, method: &Method) -> ApiError {
    match err {
        ClassifyError::UnknownEndpoint => ApiError::NotFound,
        ClassifyError::MethodNotAllowed(allowed) => {
            ApiError::MethodNotAllowed { method: method.clone(), allowed }
        }
        ClassifyError::BadQuery(detail) => ApiError::BadRequest(detail),
    }
}

/// Waits for the feed's write lock, within the queue's and the timeout's
/// bounds (503 past them); the wait is measured.
async fn write_lock(state: &ProxyState, feed: &str) -> Result<crate::lock::WriteGuard, ApiError> {
    let waiting = Instant::now();
    let acquired = state.write_locks.acquire(feed).await;
    state.metrics.write_lock_waited(waiting);
    acquired.map_err(|err| {
        log::warn!("write to a feed refused: {err}");
        let wait = match err {
            LockError::QueueFull | LockError::Unavailable => Duration::from_secs(1),
            LockError::Timeout => state.write_lock_timeout.min(Duration::from_secs(60)),
        };
        ApiError::Busy(wait)
    })
}

/// Per-user limits: the user's rate, and its requests in flight (held
/// until this request is done).
fn admit(auth: &AuthState, who: &Principal) -> Result<Slot, ApiError> {
    let rate = effective_rate(who.is_superuser, &who.group_rates, auth.default_rate);
    auth.limits.admit(who.user_id, rate, who.is_superuser).map_err(|limited| match limited {
        Limited::Rate(wait) => {
            auth.metrics.rate_limited("rate");
            ApiError::Throttled(wait)
        }
        Limited::InFlight => {
            auth.metrics.rate_limited("in_flight");
            ApiError::Throttled(Duration::from_secs(1))
        }
    })
}

/// A body the proxy must read before forwarding (a name, a size): small by
/// nature, so read whole, up to `SMALL_BODY_LIMIT`.
async fn read_small_body(payload: web::Payload) -> Result<bytes::Bytes, ApiError> {
    match payload.to_bytes_limited(limits::SMALL_BODY_LIMIT).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(err)) => {
            log::info!("request body from the client failed: {err}");
            Err(ApiError::BadRequest("The request body ended early.".into()))
        }
        Err(_) => Err(ApiError::PayloadTooLarge { limit: limits::SMALL_BODY_LIMIT as u64 }),
    }
}

/// A feed deleted or renamed through the proxy takes its grants along:
/// deleted, they go (a new feed of the same name is not the old one's
/// data); renamed, they move to the new name. The upstream has already
/// acted, so a failure here is logged loudly rather than answered.
async fn feed_changed(req: &HttpRequest, auth: &AuthState, facts: limits::BodyFacts) {
    let Ok(NameQuery { name: old }) = parse_form::<NameQuery>(req.query_string()) else {
        return;
    };
    let change = match (req.method().as_str(), facts.name) {
        ("DELETE", _) => FeedChange::Deleted(old),
        ("PATCH", Some(new)) => FeedChange::Renamed { old, new },
        _ => return,
    };
    if let Err(err) = auth.write(move |conn| users::feed_changed(conn, &change)).await {
        log::error!("feed grants not updated after a feed was deleted or renamed: {err}");
    }
}

/// The one place where a classified request is allowed or refused.
pub fn authorize(classified: &Classified, who: &Principal) -> Result<(), ApiError> {
    let allowed = match &classified.access {
        Access::Authenticated | Access::FeedList => who.is_active,
        Access::Global(perm) => who.has_perm(perm.codename()),
        Access::Feed(perm, feed) => who.has_feed_perm(perm.codename(), feed),
    };
    if allowed { Ok(()) } else { Err(ApiError::permission_denied()) }
}

/// `GET /feed` for a user without `view_feed` everywhere: only the feeds
/// they may view. The list is small (names only), so it is read whole.
async fn visible_feeds(
    mut response: awc::ClientResponse,
    who: &Principal,
) -> Result<HttpResponse, ApiError> {
    const LIST_LIMIT: usize = 16 << 20;
    let status = response.status();
    let body = response.body().limit(LIST_LIMIT).await.map_err(|err| {
        log::warn!("reading the upstream's feed list: {err}");
        ApiError::UpstreamBroken
    })?;
    if !status.is_success() {
        return Ok(HttpResponse::build(status).content_type("application/json").body(body));
    }
    let feeds: Vec<Value> = serde_json::from_slice(&body).map_err(|err| {
        log::warn!("the upstream's feed list is not a JSON list: {err}");
        ApiError::UpstreamBroken
    })?;
    let visible: Vec<Value> = feeds
        .into_iter()
        .filter(|feed| feed["name"].as_str().is_some_and(|name| who.has_feed_perm(VIEW_FEED, name)))
        .collect();
    Ok(HttpResponse::Ok().json(visible))
}
