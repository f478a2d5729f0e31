//! `Idempotency-Key` on writes: a write that carries one is forwarded once
//! per user and key; a retry of the same request gets the first one's
//! answer, kept in the database (so replicas share it) for
//! `IDEMPOTENCY_TTL`, without reaching the upstream, marked
//! `Idempotent-Replayed: true`. The same key with another request is 422;
//! a retry while the first is still in flight is 409 (with `Retry-After`).
//!
//! A request is known by a digest of its method, endpoint, query and body,
//! the body hashed as it streams by (never held). A write that never
//! reached the upstream (refused on the way, cut at a limit, the upstream
//! unreachable) gives its key back, so that a retry is a first write. Only
//! keyed writes pay for any of this.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::classify::Endpoint;
use super::forward::Body;
use crate::db::queries::{self, KeptAnswer, KeyClaim};
use crate::db::{self, Pool};
use crate::error::ApiError;

pub const KEY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A key is 1 to this many visible ASCII characters (a UUID is 36).
pub const MAX_KEY_LEN: usize = 255;
/// The most bytes of an answer kept to replay: the upstream answers a
/// write with an empty body or a short JSON error.
pub const MAX_KEPT_ANSWER: usize = 4096;

/// The key a write carries, if it carries one: 400 for one that is not a
/// key (or two of them). Reads carry none that matters: they are
/// idempotent already.
pub fn key_of(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    if req.method().is_safe() {
        return Ok(None);
    }
    let mut all = req.headers().get_all(&KEY_HEADER);
    let (Some(value), None) = (all.next(), all.next()) else {
        return match req.headers().contains_key(&KEY_HEADER) {
            true => Err(ApiError::BadRequest("Send one Idempotency-Key, not several.".into())),
            false => Ok(None),
        };
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KEY_LEN || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(ApiError::BadRequest(format!(
            "An Idempotency-Key is 1 to {MAX_KEY_LEN} visible ASCII characters."
        )));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// The digest of a request as it is sent on: its method, endpoint and
/// query, then its body chunk by chunk.
#[derive(Clone)]
pub struct RequestDigest(Rc<RefCell<Sha256>>);

impl RequestDigest {
    /// `content_type` goes on to the upstream and changes what it does (a
    /// JSON body sent as text is refused): it is part of the request.
    pub fn new(method: &Method, endpoint: Endpoint, query: &str, content_type: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        for part in [method.as_str().as_bytes(), endpoint.name().as_bytes(), query.as_bytes()] {
            hasher.update(part);
            hasher.update([0]);
        }
        hasher.update(content_type);
        hasher.update([0]);
        Self(Rc::new(RefCell::new(hasher)))
    }

    pub fn update(&self, chunk: &[u8]) {
        self.0.borrow_mut().update(chunk);
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0.borrow().clone().finalize())
    }

    /// The digest of a repeat's body, read to its end (within `limit`) and
    /// dropped: it is compared, never sent.
    async fn of_body(self, body: Body, limit: u64) -> Result<String, ApiError> {
        match body {
            Body::Full(bytes) => self.update(&bytes),
            Body::Stream(mut payload) => {
                let mut read = 0u64;
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|e| ApiError::BadRequest(e.to_string()))?;
                    read += chunk.len() as u64;
                    if read > limit {
                        return Err(ApiError::PayloadTooLarge { limit });
                    }
                    self.update(&chunk);
                }
            }
        }
        Ok(self.hex())
    }
}

/// The keys' settings and bounds, shared by the workers.
pub struct Keys {
    pub pool: Pool,
    /// `IDEMPOTENCY_TTL`: how long an answer is kept.
    pub ttl: Duration,
    /// How long a claim holds its key if its write never ends (a crash):
    /// longer than any write may take.
    pub lease: Duration,
    /// `IDEMPOTENCY_MAX_KEYS_PER_USER`.
    pub max_per_user: i64,
    /// Users who held `max_per_user` keys at the last count (`count`).
    full_users: RwLock<HashSet<i32>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("ttl", &self.ttl).field("lease", &self.lease).finish()
    }
}

/// A key claimed by this request (its row `id`): what it does with it at
/// the end. While any copy of it lives, its lease is renewed.
#[derive(Clone)]
pub struct Claimed {
    pub digest: RequestDigest,
    state: Rc<ClaimState>,
}

/// What the copies of one claim share.
struct ClaimState {
    keys: Arc<Keys>,
    id: i32,
    /// Taken by the task that runs a locked write to its end (`forward::
    /// Sending::locked`), which then answers for the key whatever becomes
    /// of the request (its client may hang up).
    handed: std::cell::Cell<bool>,
    /// Answered or given back.
    settled: std::cell::Cell<bool>,
    _alive: Arc<()>,
}

impl Drop for ClaimState {
    /// The last copy gone with the key neither answered nor handed on: the
    /// request ended (its client hung up) before its write was sent, so the
    /// key is given back at once; a retry is then a first write, not told
    /// 409 until the lease runs out.
    fn drop(&mut self) {
        if self.handed.get() || self.settled.get() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(give_back(self.keys.clone(), self.id));
        }
    }
}

/// A keyed write: the first with its key (its body to forward, then
/// `Claimed::answer`), or a repeat, answered already.
pub enum Keyed {
    First(Claimed, Body),
    Answered(HttpResponse),
}

/// What a write is answered: the upstream's answer, streamed back, or (a
/// keyed write) the answer as kept.
pub enum Answer {
    Upstream(awc::ClientResponse),
    Kept(HttpResponse),
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Upstream(response) => response.status(),
            Self::Kept(answer) => answer.status(),
        }
    }
}

impl Keys {
    pub fn new(pool: Pool, ttl: Duration, lease: Duration, max_per_user: i64) -> Self {
        Self { pool, ttl, lease, max_per_user, full_users: RwLock::default() }
    }

    /// Claims `key` for this request, or answers it: a repeat of an
    /// answered request gets its answer, another request with the key 422,
    /// a repeat while the first is in flight 409. A repeat's body is read
    /// (within `limit`) to know it is the same request.
    pub async fn claim(
        self: &Arc<Self>,
        user_id: i32,
        key: String,
        digest: RequestDigest,
        body: Body,
        limit: u64,
    ) -> Result<Keyed, ApiError> {
        if self.full_users.read().unwrap_or_else(|e| e.into_inner()).contains(&user_id) {
            return Err(ApiError::Throttled(Duration::from_secs(60)));
        }
        let lease = crate::db::queries::now() + self.lease;
        let claimed = {
            let key = key.clone();
            db::run(&self.pool, move |conn| queries::claim_key(conn, user_id, &key, lease)).await?
        };
        match claimed {
            KeyClaim::Claimed(id) => {
                let alive = Arc::new(());
                self.renew_while(id, Arc::downgrade(&alive));
                let state = Rc::new(ClaimState {
                    keys: self.clone(),
                    id,
                    handed: Default::default(),
                    settled: Default::default(),
                    _alive: alive,
                });
                let claimed = Claimed { digest, state };
                Ok(Keyed::First(claimed, body))
            }
            KeyClaim::InFlight => Err(ApiError::Conflict(
                "A request with this Idempotency-Key is still in progress; retry it later.".into(),
            )),
            KeyClaim::Answered(kept) => {
                if digest.of_body(body, limit).await? != kept.request_digest {
                    return Err(ApiError::Unprocessable(
                        "This Idempotency-Key was used for another request (method, endpoint, \
                         query or body differ); use a new key for a new request."
                            .into(),
                    ));
                }
                Ok(Keyed::Answered(replay(&kept)))
            }
        }
    }

    /// Renews claim `id`'s lease every third of it while `alive` lives (a
    /// copy of the claim): a slow upload or a long wait for a lock keeps
    /// its key, and a claim a crash left behind still ends.
    fn renew_while(self: &Arc<Self>, id: i32, alive: std::sync::Weak<()>) {
        let keys = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(keys.lease / 3).await;
                if alive.strong_count() == 0 {
                    return;
                }
                let lease = crate::db::queries::now() + keys.lease;
                let renewed =
                    db::run(&keys.pool, move |conn| queries::renew_lease(conn, id, lease)).await;
                if let Err(err) = renewed {
                    tracing::warn!("renewing an idempotency key's lease: {err}");
                }
            }
        });
    }

    /// Counts the keys held, for the bounds; purges expired ones in small
    /// batches first. Run every minute.
    pub async fn count(&self) {
        let purged = db::run(&self.pool, |conn| {
            let mut purged = 0;
            loop {
                let batch = queries::purge_expired_keys(conn, 1000)?;
                purged += batch;
                if batch < 1000 {
                    return Ok::<_, db::DbError>(purged);
                }
            }
        })
        .await;
        if let Err(err) = purged {
            tracing::warn!("purging expired idempotency keys: {err}");
        }
        match db::run(&self.pool, queries::keys_per_user).await {
            Ok(counts) => {
                let full: HashSet<i32> = counts
                    .iter()
                    .filter(|(_, n)| *n >= self.max_per_user)
                    .map(|(user, _)| *user)
                    .collect();
                if !full.is_empty() {
                    tracing::warn!(
                        "{} user(s) hold IDEMPOTENCY_MAX_KEYS_PER_USER ({}) idempotency keys: \
                         their keyed writes get 429 until keys expire",
                        full.len(),
                        self.max_per_user
                    );
                }
                *self.full_users.write().unwrap_or_else(|e| e.into_inner()) = full;
            }
            Err(err) => tracing::warn!("counting idempotency keys: {err}"),
        }
    }
}

impl Claimed {
    /// The upstream's answer to this write, kept for a retry.
    pub async fn answer(self, response: awc::ClientResponse) -> Result<Answer, ApiError> {
        self.keep(response).await.map(Answer::Kept)
    }

    /// This key (a copy of it), handed to the task that runs its write to
    /// the end: from now on that task answers for it.
    pub fn handed(self) -> Claimed {
        self.state.handed.set(true);
        self
    }

    /// Whether the task running its write answers for it.
    pub fn is_handed(&self) -> bool {
        self.state.handed.get()
    }

    /// Keeps the upstream's answer to this write, and answers it: the body
    /// is read (a write's answer is short), kept when it is text of at most
    /// `MAX_KEPT_ANSWER` bytes, and sent.
    pub(super) async fn keep(
        self,
        mut response: awc::ClientResponse,
    ) -> Result<HttpResponse, ApiError> {
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The answer's length is bounded before it is read whole. An answer
        // that breaks off is the write's answer all the same: the upstream
        // acted on it.
        let body = match response.body().limit(64 * 1024).await {
            Ok(body) => body,
            Err(_) => return Err(self.failed(ApiError::UpstreamBroken).await),
        };
        let text = std::str::from_utf8(&body).ok().filter(|t| t.len() <= MAX_KEPT_ANSWER);
        let kept = KeptAnswer {
            request_digest: self.digest.hex(),
            status: i32::from(status.as_u16()),
            content_type,
            answer: text.map(str::to_owned),
        };
        self.store(kept.clone()).await;
        let mut answer = HttpResponse::build(status);
        if let Some(ct) = kept.content_type.as_deref().and_then(|ct| HeaderValue::from_str(ct).ok())
        {
            answer.insert_header((header::CONTENT_TYPE, ct));
        }
        Ok(answer.body(body))
    }

    /// The write failed: the key is given back when the upstream never
    /// acted on it, else the failure is its answer (a retry gets it too:
    /// the write may or may not have been stored, and is not made twice).
    pub async fn failed(self, err: ApiError) -> ApiError {
        match &err {
            ApiError::UpstreamTimeout | ApiError::UpstreamBroken => {
                let detail = serde_json::json!({ "detail": err.to_string() }).to_string();
                let kept = KeptAnswer {
                    request_digest: self.digest.hex(),
                    status: i32::from(err.status_code().as_u16()),
                    content_type: Some("application/json".into()),
                    answer: Some(detail),
                };
                self.store(kept).await;
            }
            _ => self.release().await,
        }
        err
    }

    /// Gives the key back unanswered: a retry with it is a first write.
    pub async fn release(self) {
        self.state.settled.set(true);
        give_back(self.state.keys.clone(), self.state.id).await;
    }

    async fn store(self, kept: KeptAnswer) {
        self.state.settled.set(true);
        let (keys, id) = (&self.state.keys, self.state.id);
        let expires = crate::db::queries::now() + keys.ttl;
        let stored =
            db::run(&keys.pool, move |conn| queries::keep_answer(conn, id, &kept, expires)).await;
        if let Err(err) = stored {
            tracing::error!("keeping the answer of an idempotent write: {err}");
        }
    }
}

/// Gives claim `id` back unanswered: a retry with its key is a first write.
async fn give_back(keys: Arc<Keys>, id: i32) {
    let released = db::run(&keys.pool, move |conn| queries::release_key(conn, id)).await;
    if let Err(err) = released {
        tracing::warn!("giving back an idempotency key: {err}");
    }
}

/// A kept answer, sent again.
fn replay(kept: &KeptAnswer) -> HttpResponse {
    let status = u16::try_from(kept.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut answer = HttpResponse::build(status);
    answer.insert_header((REPLAYED_HEADER, HeaderValue::from_static("true")));
    if let Some(ct) = kept.content_type.as_deref().and_then(|ct| HeaderValue::from_str(ct).ok()) {
        answer.insert_header((header::CONTENT_TYPE, ct));
    }
    match &kept.answer {
        Some(text) => answer.body(text.clone()),
        None => answer.finish(),
    }
}

/// Purges and counts keys every minute.
pub fn spawn_counting(keys: Arc<Keys>) {
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            keys.count().await;
        }
    });
}
