//! `/api/proxy/{endpoint}`: classify the request, decide, and stream it to
//! the upstream and the answer back.

mod buffered;
pub mod classify;
pub mod columns;
mod forward;
pub mod headers;
pub mod idempotency;
pub mod limits;
pub mod on_behalf;
mod quota;
pub mod repair;
pub mod upstream;

use crate::auth::grant::Reach;
use crate::lbasedb::perms::VIEW_FEED;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::Value;

use crate::audit::{Audit, Audited};
use crate::auth::principal::Principal;
use crate::auth::ratelimit::{Limited, Slot, effective_rate};
use crate::auth::{AuthState, Credential, csrf};
use crate::body::KeepUntilSent;
use crate::budget::{self, Budget, Share};
use crate::config::{Limits, Settings};
use crate::error::ApiError;
use crate::lbasedb::datatype;
use crate::lbasedb::supervisor::Status;
use crate::lock::{LockError, WriteLocks};
use crate::metrics::InFlight;
use crate::metrics::{AuthFailure, Metrics};
use actix_web::http::Method;
use classify::{Classified, ClassifyError, Endpoint, ReadQuery, Requirement, classify};

use columns::Columns;
pub use forward::{Body, build_client};
use idempotency::{Answer, Keyed, RequestDigest};
use upstream::Upstream;

use crate::auth::users::{self, FeedChange};

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
    pub write_doubt_timeout: Duration,
    /// Each feed's columns, for what a read costs (`columns`).
    pub columns: Columns,
    /// The bytes all requests may have the upstream hold at once.
    pub budget: Budget,
    /// The embedded upstream's process, when it runs one.
    pub embedded: Option<Arc<Status>>,
    /// `Idempotency-Key`s: their answers and bounds.
    pub keys: Arc<idempotency::Keys>,
    /// Torn appends to undo.
    pub repairs: Arc<repair::Repairs>,
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
        embedded: Option<Arc<Status>>,
        settings: &Settings,
        metrics: Arc<Metrics>,
        pool: &crate::db::Pool,
        write_locks: Arc<dyn WriteLocks>,
    ) -> Self {
        let audit = Audit::start(
            pool.clone(),
            metrics.clone(),
            crate::audit::Keep {
                detail: settings.audit_detail,
                retention: settings.audit_retention,
                max_rows: settings.audit_max_rows,
            },
            settings.audit_log.is_some(),
        );
        // An unfinished claim outlives any write: its lock wait, its
        // answer's wait and the time a write in doubt keeps its lock.
        let lease =
            settings.write_lock_timeout + settings.response_timeout + settings.write_doubt_timeout;
        // Replicas share a PostgreSQL database (and its feed locks).
        let shared = matches!(
            crate::db::backend(&settings.db.database_path()),
            Ok(crate::db::Backend::Postgres(_))
        );
        let keys = Arc::new(idempotency::Keys::new(
            pool.clone(),
            settings.idempotency_ttl,
            lease,
            settings.idempotency_max_keys_per_user,
        ));
        Self {
            keys,
            repairs: Arc::new(repair::Repairs::load(pool.clone(), shared)),
            metrics,
            audit,
            upstream: upstream.trim_end_matches('/').to_owned(),
            upstream_secret,
            body_limit: settings.body_limit,
            limits: settings.limits,
            response_timeout: settings.response_timeout,
            write_locks,
            write_lock_timeout: settings.write_lock_timeout,
            write_doubt_timeout: settings.write_doubt_timeout,
            columns: Columns::default(),
            budget: Budget::new(settings.limits.max_bytes_in_flight),
            embedded,
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
    // A method no client of Lbasedb sends is refused before anything is
    // kept of it: it would be an audit row for nothing.
    if !is_standard(req.method()) {
        let allowed = Endpoint::from_name(&endpoint).map_or(ALL_METHODS, Endpoint::methods);
        return Err(ApiError::MethodNotAllowed { method: req.method().clone(), allowed });
    }
    let started = Instant::now();
    let at = crate::db::queries::now();
    let in_flight = auth.metrics.in_flight();
    let label = Endpoint::from_name(&endpoint).map_or("unknown", Endpoint::name);
    let mut seen = Seen::default();
    let answer = handle(&req, payload, &endpoint, &state, &client, &auth, &mut seen).await;
    let status = match &answer {
        Ok((response, _)) => response.status(),
        Err(err) => err.status_code(),
    };
    auth.metrics.request(label, req.method(), status, started);
    let access = crate::db::models::Access {
        at,
        username: seen.username,
        credential: seen
            .credential
            .as_ref()
            .map(Credential::audit_name)
            .unwrap_or_default()
            .to_owned(),
        client: crate::net::client_ip(&req).to_string(),
        endpoint: label.to_owned(),
        method: req.method().as_str().to_owned(),
        feed: seen.feed,
        status: i32::from(status.as_u16()),
        bytes_in: i64::try_from(seen.bytes_in.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
        bytes_out: 0,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        requests: 1,
        request_id: Some(crate::requestid::of(&req).as_str().to_owned()),
        read_columns: None,
        duration_max_ms: 0.0,
        read_from: None,
        read_to: None,
    }
    .with_read(seen.read);
    match answer {
        // Recorded when its body is done, with the bytes it sent; what the
        // request holds (its place in flight, its share of the budget) is
        // given back only then: a slow reader holds them as long as it reads.
        Ok((response, held)) => {
            let held = Held { _held: held, _in_flight: in_flight };
            let audited = Audited::new(access, state.audit.clone());
            Ok(response
                .map_body(|_, body| KeepUntilSent::new(body, (held, audited)))
                .map_into_boxed_body())
        }
        // A refusal too is recorded once sent, with the bytes it sent.
        Err(err) => {
            let audited = Audited::new(access, state.audit.clone());
            Ok(err
                .error_response()
                .map_body(|_, body| KeepUntilSent::new(body, audited))
                .map_into_boxed_body())
        }
    }
}

/// The methods Lbasedb's API has; anything else is refused unrecorded.
const ALL_METHODS: &[Method] =
    &[Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

fn is_standard(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    )
}

/// What the audit learns of a request as it is handled.
#[derive(Default)]
struct Seen {
    username: String,
    credential: Option<Credential>,
    feed: Option<String>,
    /// A read's columns and rows, as the audit keeps them.
    read: Option<(String, i64, Option<i64>)>,
    bytes_in: Arc<AtomicU64>,
}

/// What a request holds until its answer has been sent or dropped.
struct Held {
    _held: Holding,
    _in_flight: InFlight,
}

impl crate::body::Kept for Held {}

/// What `handle` takes for the request: its user's place in flight and its
/// share of the bytes in flight.
#[derive(Default)]
struct Holding {
    _slot: Option<Slot>,
    _share: Share,
}

async fn handle(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: &str,
    state: &web::Data<ProxyState>,
    client: &web::Data<awc::Client>,
    auth: &AuthState,
    seen: &mut Seen,
) -> Result<(HttpResponse, Holding), ApiError> {
    let req = req.clone();
    let upstream = Upstream::new(state.clone(), client.clone());
    let (who, slot, classified) = admitted(&req, endpoint, &upstream, auth, seen).await?;
    let key = idempotency::key_of(&req)?;
    let limit = limits::body_limit(classified.endpoint, state.body_limit, &state.limits);
    let (body, facts) = request_body(&req, payload, classified.endpoint, &state.limits).await?;
    // A repeat of a keyed write is answered before the upstream is asked
    // anything.
    let user_id = who.principal.user_id;
    let (claimed, body) = match claim(state, &req, &classified, user_id, key, body, limit).await? {
        Ok(claimed) => claimed,
        Err(kept) => return Ok((kept, Holding { _slot: Some(slot), ..Holding::default() })),
    };
    let (key_copy, digest) = (claimed.clone(), claimed.as_ref().map(|c| c.digest.clone()));
    let bytes_in = &seen.bytes_in;
    let rows = repair::AppendedRows::default();
    let exchanged = async {
        // After the key's claim: a retry of a write is answered as the
        // first was, whatever its user's quota now.
        let metered =
            quota::admit(&req, &classified, &who.principal, (auth, &upstream), facts.size).await?;
        let meter = write_meter(&req, &classified, &upstream).await?;
        let cost = match &meter {
            Some(meter) => meter.charge(declared_length(&req), &state.limits),
            None => read_cost(req.method(), &classified, &upstream).await?,
        };
        let share = take_share(state, user_id, cost).await?;
        let quota = metered.as_ref().map(|metered| metered.cap);
        let bounds = forward::Bounds { limit, meter, digest, rows: rows.clone(), quota };
        let sending =
            |body| forward::start(&req, body, classified.endpoint, state, client, bytes_in, bounds);
        let response = match &classified.write_lock {
            Some(feed) => {
                let lock = write_lock(state, feed).await?;
                state.repairs.before_write(&upstream, feed).await?;
                check_files(&upstream, feed, &facts).await?;
                state.columns.forget(feed);
                let torn = torn(&req, &classified, &upstream, feed, rows.clone()).await?;
                sending(body)?.locked(state, feed.clone(), lock, torn, key_copy).await?
            }
            None => Answer::Upstream(sending(body)?.head(state).await?),
        };
        Ok::<_, ApiError>((response, (share, metered)))
    };
    // A locked write's key is answered for by its exchange (`locked`);
    // another's here.
    let (response, (share, metered)) = match (claimed, exchanged.await) {
        (Some(claimed), Ok((Answer::Upstream(response), held))) => {
            (claimed.answer(response).await?, held)
        }
        (Some(claimed), Err(err)) if !claimed.is_handed() => return Err(claimed.failed(err).await),
        (_, exchanged) => exchanged?,
    };
    let holding = Holding { _slot: Some(slot), _share: share };
    if response.status().is_success() {
        let written = quota::Written {
            req: &req,
            endpoint: classified.endpoint,
            body_rows: rows.get().certain.or(rows.get().most),
            bytes: seen.bytes_in.load(Ordering::Relaxed),
        };
        acknowledged(written, &classified, auth, facts.name, metered).await;
    }
    let response = match response {
        Answer::Upstream(response) => response,
        Answer::Kept(answer) => return Ok((answer, holding)),
    };
    Ok((answered(&req, response, &classified, &who.principal, state).await?, holding))
}

/// The client's answer from the upstream's: a list cut to what the user
/// may see (`GET /feed` without `view_feed` everywhere, `GET /col` under
/// grants on some columns), else streamed as it comes.
async fn answered(
    req: &HttpRequest,
    response: awc::ClientResponse,
    classified: &Classified,
    who: &Principal,
    state: &web::Data<ProxyState>,
) -> Result<HttpResponse, ApiError> {
    if classified.requires == Requirement::FeedList && !who.has_perm(VIEW_FEED) {
        return visible_feeds(response, who).await;
    }
    if let (Endpoint::Col, Requirement::Feed(_, feed)) = (classified.endpoint, &classified.requires)
        && *req.method() == Method::GET
        && !who.sees_every_column(feed)
    {
        return visible_columns(response, who, feed).await;
    }
    // `/bytes` and `/raw` reads are raw column bytes, whatever they hold.
    let binary = matches!(classified.endpoint, Endpoint::Bytes | Endpoint::Raw)
        && req.method() == Method::GET;
    Ok(forward::respond(req, response, binary, state, classified.endpoint))
}

/// A keyed write's claim on its key (`idempotency`): the claim (none
/// without a key) and the body to send on, or, for a repeat, the answer
/// kept.
async fn claim(
    state: &ProxyState,
    req: &HttpRequest,
    classified: &Classified,
    user_id: i32,
    key: Option<String>,
    body: forward::Body,
    limit: u64,
) -> Result<Result<(Option<idempotency::Claimed>, forward::Body), HttpResponse>, ApiError> {
    let Some(key) = key else {
        return Ok(Ok((None, body)));
    };
    let content_type = req.headers().get(actix_web::http::header::CONTENT_TYPE);
    let content_type = content_type.map_or(&[][..], |value| value.as_bytes());
    let digest =
        RequestDigest::new(req.method(), classified.endpoint, req.query_string(), content_type);
    Ok(match state.keys.claim(user_id, key, digest, body, limit).await? {
        Keyed::Answered(kept) => {
            state.metrics.idempotent_replay();
            Err(kept)
        }
        Keyed::First(claimed, body) => Ok((Some(claimed), body)),
    })
}

/// What undoes an append should the upstream fail in the middle of it: the
/// feed's size now (read under its lock). None for
/// other writes, and for an append to a feed the upstream does not have
/// (it refuses it); 502 when the upstream cannot be asked.
async fn torn(
    req: &HttpRequest,
    classified: &Classified,
    upstream: &Upstream,
    feed: &str,
    rows: repair::AppendedRows,
) -> Result<Option<repair::Torn>, ApiError> {
    let repairs = &upstream.state().repairs;
    if !repair::is_append(classified.endpoint, req.method()) {
        repairs.forget(feed);
        return Ok(None);
    }
    let Some(size) = repairs.size_before(upstream, feed).await? else {
        repairs.forget(feed);
        return Ok(None);
    };
    Ok(Some(repair::Torn { size, upstream: upstream.again(), rows }))
}

/// Who asks, their place in flight and what they ask, authorised and
/// checked: all that is decided before the upstream is asked anything.
async fn admitted(
    req: &HttpRequest,
    endpoint: &str,
    upstream: &Upstream,
    auth: &AuthState,
    seen: &mut Seen,
) -> Result<(crate::auth::Authenticated, Slot, Classified), ApiError> {
    let state = upstream.state();
    // Deny by default: nothing about the upstream for the unauthenticated.
    let who = auth.authenticate(req).await?.ok_or_else(|| {
        auth.metrics.auth_failure(AuthFailure::NoCredentials);
        ApiError::no_credentials()
    })?;
    seen.username.clone_from(&who.principal.username);
    seen.credential = Some(who.credential.clone());
    if who.credential.needs_csrf() && !req.method().is_safe() {
        csrf::check_header(req).inspect_err(|_| auth.metrics.auth_failure(AuthFailure::Csrf))?;
    }
    let slot = admit(auth, &who.principal)?;
    let classified = classify(endpoint, req.method(), req.query_string())
        .map_err(|err| classify_error(err, req.method()))?;
    seen.feed = match &classified.requires {
        Requirement::Feed(_, feed) => Some(feed.clone()),
        _ => classified.write_lock.clone(),
    };
    seen.read = classified.read().map(ReadQuery::audited);
    allowed(&classified, &who.principal, req.method(), upstream).await?;
    if let Some(why) = state.embedded.as_ref().and_then(|embedded| embedded.failure()) {
        return Err(ApiError::UpstreamFailed(why));
    }
    Ok((who, slot, classified))
}

/// The request's share of the bytes in flight (`budget`): 503 while all
/// requests together hold the budget, 429 when its user holds its half.
async fn take_share(state: &ProxyState, user_id: i32, cost: u64) -> Result<Share, ApiError> {
    state.budget.take(Some(user_id), cost).await.map_err(|refused| {
        tracing::warn!("a request refused: {refused}");
        match refused {
            budget::Refused::Exhausted => ApiError::Busy(Duration::from_secs(1)),
            budget::Refused::UserShare => ApiError::ReadsInFlight,
        }
    })
}

/// The body to forward: streamed, or, where the proxy must read it first
/// (a name, a size), read whole and checked, with what it says.
async fn request_body(
    req: &HttpRequest,
    payload: web::Payload,
    endpoint: Endpoint,
    limits: &Limits,
) -> Result<(Body, limits::BodyFacts), ApiError> {
    match limits::body_rule(endpoint, req.method()) {
        Some(rule) => {
            let body = read_small_body(payload).await?;
            let facts = limits::check_body(rule, &body, limits).map_err(ApiError::BadRequest)?;
            Ok((Body::Full(body), facts))
        }
        None => Ok((Body::Stream(payload), limits::BodyFacts::default())),
    }
}

/// What a read will make the upstream hold, in bytes (its rows times the
/// widths of the columns it names), refused (413) when it is more than one
/// read may; 0 for any other request.
async fn read_cost(
    method: &Method,
    classified: &Classified,
    upstream: &Upstream,
) -> Result<u64, ApiError> {
    let limits = &upstream.state().limits;
    if let Some((rows, cols)) = limits::read_shape(classified, method) {
        let Requirement::Feed(_, feed) = &classified.requires else {
            return Ok(0);
        };
        if cols.is_empty() {
            return Ok(0);
        }
        let known = upstream.state().columns.of(upstream, feed, cols).await;
        // A column the upstream does not have costs nothing: it refuses it.
        let named: Vec<(&str, &str)> = cols
            .iter()
            .filter_map(|name| known.iter().find(|c| &c.name == name))
            .map(|c| (c.name.as_str(), c.datatype.as_str()))
            .collect();
        // A `/data` answer is JSON; `/bytes`, `/raw` and the zeroes of a
        // `DELETE /bytes` are raw.
        let form = match classified.endpoint {
            Endpoint::Data => datatype::Form::Json,
            _ => datatype::Form::Binary,
        };
        if let Some(refused) = datatype::refuse_read(rows, &named, form, limits) {
            return Err(ApiError::TooLarge(refused));
        }
        return Ok(datatype::read_cost(rows, &named, form));
    }
    Ok(0)
}

/// The body length a request declares, if it does.
pub(crate) fn declared_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The meter of a write whose cost can be more than its body (a `/data`
/// write, a `PUT /bytes`), from its feed's columns; refused (413) at once
/// when its declared body already costs more than `MAX_WRITE_BYTES`.
async fn write_meter(
    req: &HttpRequest,
    classified: &Classified,
    upstream: &Upstream,
) -> Result<Option<limits::WriteMeter>, ApiError> {
    let Requirement::Feed(_, feed) = &classified.requires else {
        return Ok(None);
    };
    let writes_rows = matches!(
        (classified.endpoint, req.method().as_str()),
        (Endpoint::Data, "POST" | "PUT" | "PATCH") | (Endpoint::Bytes, "PUT")
    );
    if !writes_rows {
        return Ok(None);
    }
    let known = upstream.state().columns.of(upstream, feed, &[]).await;
    let columns: Vec<(&str, &str)> =
        known.iter().map(|c| (c.name.as_str(), c.datatype.as_str())).collect();
    let meter = limits::WriteMeter::of(classified, req.method(), &columns);
    if let (Some(meter), Some(length)) = (&meter, declared_length(req))
        && let Some(refused) = datatype::refuse_write(meter.cost(length), &upstream.state().limits)
    {
        return Err(ApiError::TooLarge(refused));
    }
    Ok(meter)
}

/// What a write does to the feed's files, under its write lock (so that
/// two requests cannot both add the last column): a new column past
/// `MAX_COLUMNS_PER_FEED` is refused (each is a file the storage keeps
/// open), and so is a size or a column that makes a column's file larger
/// than a file system takes (the storage records the size all the same,
/// and its reads of that column then fail for good).
async fn check_files(
    upstream: &Upstream,
    feed: &str,
    facts: &limits::BodyFacts,
) -> Result<(), ApiError> {
    let state = upstream.state();
    if let Some(width) = facts.width {
        let cols = state.columns.fresh(upstream, feed).await;
        let max = state.limits.max_columns_per_feed;
        if cols.len() as u64 >= max {
            return Err(ApiError::BadRequest(format!(
                "A feed has at most {max} columns (MAX_COLUMNS_PER_FEED)."
            )));
        }
        let rows = upstream.size(feed).await.unwrap_or(0);
        if let Some(refused) = datatype::refuse_size(rows, [width]) {
            return Err(ApiError::BadRequest(format!("{refused}.")));
        }
    }
    if let Some(size) = facts.size {
        let cols = state.columns.fresh(upstream, feed).await;
        let widths = cols.iter().filter_map(|c| datatype::width(&c.datatype));
        if let Some(refused) = datatype::refuse_size(size, widths) {
            return Err(ApiError::BadRequest(format!("{refused}.")));
        }
    }
    Ok(())
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
        tracing::warn!("write to a feed refused: {err}");
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
            tracing::info!("request body from the client failed: {err}");
            Err(ApiError::BadRequest("The request body ended early.".into()))
        }
        Err(_) => Err(ApiError::PayloadTooLarge { limit: limits::SMALL_BODY_LIMIT as u64 }),
    }
}

/// What follows a write the upstream acknowledged: grants follow their
/// feed and columns (`feed_changed`), and the write counts against its
/// user's quota.
async fn acknowledged(
    written: quota::Written<'_>,
    classified: &Classified,
    auth: &AuthState,
    name: Option<String>,
    metered: Option<quota::Metered>,
) {
    if matches!(written.endpoint, Endpoint::Feed | Endpoint::Col) {
        feed_changed(classified, written.req.method(), auth, name).await;
    }
    if let Some(metered) = metered {
        metered.count(written, auth).await;
    }
}

/// A feed deleted or renamed through the proxy takes its grants along:
/// deleted, they go (a new feed of the same name is not the old one's
/// data); renamed, they move to the new name. So do the columns grants
/// name. The upstream has already acted, so a failure here is logged
/// loudly rather than answered.
async fn feed_changed(
    classified: &Classified,
    method: &Method,
    auth: &AuthState,
    name: Option<String>,
) {
    // The feed acted on: the one `DELETE` names, the old name of a rename.
    let Some(feed) = classified.write_lock.clone() else {
        return;
    };
    let column = classified.column.clone();
    let change = match (classified.endpoint, method.as_str(), name, column) {
        (Endpoint::Feed, "DELETE", _, _) => FeedChange::Deleted(feed),
        (Endpoint::Feed, "PATCH", Some(new), _) => FeedChange::Renamed { old: feed, new },
        (Endpoint::Col, "DELETE", _, Some(column)) => FeedChange::ColumnDeleted { feed, column },
        (Endpoint::Col, "PATCH", Some(new), Some(old)) => {
            FeedChange::ColumnRenamed { feed, old, new }
        }
        _ => return,
    };
    if let Err(err) = auth.write(move |conn| users::feed_changed(conn, &change)).await {
        tracing::error!("feed grants not updated after a feed or column changed: {err}");
    }
}

/// Whether `who` may make a classified request: its permission, its
/// bounds, its grants. The API's requests and the admin's reads on behalf
/// of a user (`on_behalf`) are all decided here.
async fn allowed(
    classified: &Classified,
    who: &Principal,
    method: &Method,
    upstream: &Upstream,
) -> Result<(), ApiError> {
    let state = upstream.state();
    authorize(classified, who)
        .inspect_err(|_| state.metrics.auth_failure(AuthFailure::Forbidden))?;
    // The bounds first: what the grants' check costs grows with the
    // columns a read names.
    limits::check_query(classified, method, &state.limits).map_err(ApiError::BadRequest)?;
    within_grants(classified, who, upstream)
        .await
        .inspect_err(|_| state.metrics.auth_failure(AuthFailure::Forbidden))
}

/// The one place where a classified request is allowed or refused.
pub fn authorize(classified: &Classified, who: &Principal) -> Result<(), ApiError> {
    let allowed = match &classified.requires {
        Requirement::Authenticated | Requirement::FeedList => who.is_active,
        Requirement::Global(perm) => who.has_perm(perm.codename()),
        Requirement::Feed(perm, feed) => who.has_feed_perm(perm.codename(), feed),
    };
    if allowed { Ok(()) } else { Err(ApiError::permission_denied()) }
}

/// A read of rows inside the user's grants: every column it names, over
/// every row it names (`auth::grant::Reach`). A window counted from the
/// feed's end reads the feed's size, kept for `columns::SIZE_TTL`.
async fn within_grants(
    classified: &Classified,
    who: &Principal,
    upstream: &Upstream,
) -> Result<(), ApiError> {
    let (Requirement::Feed(perm, feed), Some(read)) = (&classified.requires, classified.read())
    else {
        return Ok(());
    };
    let Some(reach) = who.reach(perm.codename(), feed) else {
        return Err(ApiError::permission_denied());
    };
    if *reach == Reach::Whole {
        return Ok(());
    }
    let size = match reach.needs_size() {
        true => upstream.state().columns.size(upstream, feed).await,
        false => None,
    };
    reach.check(feed, read.as_read(), size).map_err(ApiError::Forbidden)
}

/// A small JSON list from the upstream (`GET /feed`, `GET /col`: names
/// only), read whole and kept to the items `keep` allows; an error answer
/// passes as it is.
async fn filtered_list(
    mut response: awc::ClientResponse,
    keep: impl Fn(&str) -> bool,
) -> Result<HttpResponse, ApiError> {
    const LIST_LIMIT: usize = 16 << 20;
    let status = response.status();
    let body = response.body().limit(LIST_LIMIT).await.map_err(|err| {
        tracing::warn!("reading a list from the upstream: {err}");
        ApiError::UpstreamBroken
    })?;
    if !status.is_success() {
        return Ok(HttpResponse::build(status).content_type("application/json").body(body));
    }
    let items: Vec<Value> = serde_json::from_slice(&body).map_err(|err| {
        tracing::warn!("the upstream's list is not a JSON list: {err}");
        ApiError::UpstreamBroken
    })?;
    let kept: Vec<Value> =
        items.into_iter().filter(|item| item["name"].as_str().is_some_and(&keep)).collect();
    Ok(HttpResponse::Ok().json(kept))
}

/// `GET /feed` for a user without `view_feed` everywhere: only the feeds
/// they may view.
async fn visible_feeds(
    response: awc::ClientResponse,
    who: &Principal,
) -> Result<HttpResponse, ApiError> {
    filtered_list(response, |name| who.has_feed_perm(VIEW_FEED, name)).await
}

/// `GET /col` under grants on some columns: only those it shows
/// (`Principal::shows_column`).
async fn visible_columns(
    response: awc::ClientResponse,
    who: &Principal,
    feed: &str,
) -> Result<HttpResponse, ApiError> {
    filtered_list(response, |name| who.shows_column(feed, name)).await
}
