//! The streaming path to the upstream: one awc client per worker, bodies
//! piped both ways without buffering, and failures turned into 413/502/504.

use crate::requestid::X_REQUEST_ID;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use awc::error::{ConnectError, SendRequestError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;

use super::ProxyState;
use super::classify::Endpoint;
use super::headers::{
    X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, forward_request_header,
    forward_response_header, response_content_type,
};
use super::idempotency::{Answer, Claimed, RequestDigest};
use super::limits::WriteMeter;
use super::quota::QuotaCap;
use super::repair::{AppendedRows, BodyRows, Torn};
use crate::config::Settings;
use crate::error::ApiError;
use crate::lock::WriteGuard;
use crate::metrics::{Metrics, UpstreamError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One client per worker (built in the app factory), with a keep-alive pool.
/// awc's total timeout would also cover the time spent sending a body, and
/// so cut large uploads: it is off, and `forward` times only the wait for
/// the response head.
pub fn build_client(settings: &Settings, upstream_secret: Option<&str>) -> awc::Client {
    let connector = awc::Connector::new()
        .connector(super::buffered::BufferedConnector::default())
        .timeout(settings.connect_timeout)
        .limit(settings.upstream_pool_limit)
        .conn_keep_alive(Duration::from_secs(30));
    let mut builder = awc::Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects()
        .no_default_headers();
    if let Some(secret) = upstream_secret {
        let mut value = HeaderValue::from_str(&format!("Bearer {secret}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer -"));
        value.set_sensitive(true);
        builder = builder.add_default_header((header::AUTHORIZATION, value));
    }
    builder.finish()
}

/// A request body on its way upstream: the client's stream, piped as it
/// comes, or a small body the proxy has read whole to check it.
pub enum Body {
    Stream(web::Payload),
    Full(Bytes),
}

/// How the client framed its request body.
enum BodyFraming {
    None,
    Sized(u64),
    Chunked,
}

fn body_framing(headers: &HeaderMap) -> Result<BodyFraming, ApiError> {
    if let Some(value) = headers.get(header::CONTENT_LENGTH) {
        let len = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::BadRequest("Invalid Content-Length.".into()))?;
        return Ok(BodyFraming::Sized(len));
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return Ok(BodyFraming::Chunked);
    }
    Ok(BodyFraming::None)
}

/// A request on its way upstream: the answer to come, when its body has
/// been sent (which starts the response-head timer), and whether it was
/// cut for passing the body limit.
pub struct Sending {
    response: awc::SendClientRequest,
    body_sent: oneshot::Receiver<()>,
    cut: Cuts,
    limit: u64,
}

/// Why the proxy cut a request body on its way, if it did: the upstream
/// saw it end early, and so never acted on it.
#[derive(Debug, Clone)]
enum Cut {
    /// Past the body limit.
    OverLimit,
    /// What the write would cost passed `MAX_WRITE_BYTES`.
    Costly(String),
    /// The write passed what its user's write quota has left today.
    Quota(String),
}

type Cuts = Rc<std::cell::RefCell<Option<Cut>>>;

/// How a request's body is held as it streams: to `limit` bytes, and to
/// `MAX_WRITE_BYTES` of what it makes the upstream build (`meter`).
pub struct Bounds {
    pub(super) limit: u64,
    pub(super) meter: Option<WriteMeter>,
    /// A keyed write's digest, fed the body as it goes.
    pub(super) digest: Option<RequestDigest>,
    /// Told the rows the body holds (an append's, those it adds), once its
    /// whole body has gone by, where its meter knows.
    pub(super) rows: AppendedRows,
    /// What its user's write quota has left (`quota`): the body is cut past it.
    pub(super) quota: Option<QuotaCap>,
}

/// Starts sending the request on, its body streamed within `bounds`; the
/// answer comes from `Sending::head` or `Sending::locked`.
pub fn start(
    req: &HttpRequest,
    body: Body,
    endpoint: Endpoint,
    state: &ProxyState,
    client: &awc::Client,
    bytes_in: &Arc<AtomicU64>,
    bounds: Bounds,
) -> Result<Sending, ApiError> {
    let Bounds { limit, meter, digest, rows, quota } = bounds;
    let framing = body_framing(req.headers())?;
    if let BodyFraming::Sized(len) = framing
        && len > limit
    {
        return Err(ApiError::PayloadTooLarge { limit });
    }

    let url = upstream_url(state, endpoint, req.query_string());
    let mut upstream_req = client.request(req.method().clone(), url.as_str());
    copy_headers(req, upstream_req.headers_mut());

    let cut = Cuts::default();
    let (body_done, body_sent) = oneshot::channel();
    let response = match body {
        Body::Full(bytes) => {
            if let Some(digest) = &digest {
                digest.update(&bytes);
            }
            let _ = body_done.send(());
            state.metrics.request_bytes(endpoint.name(), bytes.len() as u64);
            bytes_in.store(bytes.len() as u64, Ordering::Relaxed);
            upstream_req.send_body(bytes)
        }
        Body::Stream(payload) => {
            let body = RequestBody {
                payload,
                counted: state.metrics.clone(),
                reported: bytes_in.clone(),
                endpoint,
                sent: 0,
                limit,
                meter,
                limits: state.limits,
                cut: cut.clone(),
                done: Some(body_done),
                digest,
                rows,
                quota,
            };
            match framing {
                BodyFraming::None => {
                    drop(body);
                    upstream_req.send()
                }
                BodyFraming::Sized(len) => upstream_req.send_body(SizedStream::new(len, body)),
                BodyFraming::Chunked => upstream_req.send_stream(body),
            }
        }
    };
    Ok(Sending { response, body_sent, cut, limit })
}

impl Sending {
    /// The upstream's response head (or the error that stands for it),
    /// within `UPSTREAM_TIMEOUT` of the end of the request body: an upload
    /// of any size that keeps flowing is never cut.
    pub async fn head(self, state: &ProxyState) -> Result<awc::ClientResponse, ApiError> {
        let Sending { response, body_sent, cut, limit } = self;
        let response_timeout = state.response_timeout;
        let head_deadline = async move {
            let _ = body_sent.await;
            tokio::time::sleep(response_timeout).await;
        };
        let response = tokio::select! {
            response = response => response,
            () = head_deadline => {
                state.metrics.upstream_error(UpstreamError::Timeout);
                tracing::warn!("upstream gave no response head within {response_timeout:?}");
                return Err(ApiError::UpstreamTimeout);
            }
        };
        answer(response, &cut, limit, &state.metrics)
    }

    /// As `head`, for a write that holds its feed's lock: the exchange runs
    /// on its own, and keeps the lock until the upstream has answered or
    /// closed, even when this answers 504 or the client hangs up, for up to
    /// `WRITE_DOUBT_TIMEOUT` more; only then is the lock let go, and the
    /// write reported in doubt (a later write must not overtake it). An
    /// append the upstream fails in the middle of (`torn`) is undone before
    /// the lock is let go. The write's `Idempotency-Key`, if any, is
    /// answered for by the exchange too, whatever becomes of the request.
    pub async fn locked(
        self,
        state: &web::Data<ProxyState>,
        feed: String,
        lock: WriteGuard,
        torn: Option<Torn>,
        key: Option<Claimed>,
    ) -> Result<Answer, ApiError> {
        let Sending { mut response, body_sent, cut, limit } = self;
        let (tx, rx) = oneshot::channel();
        let state = state.clone();
        let key = key.map(Claimed::handed);
        actix_web::rt::spawn(async move {
            let _lock = lock;
            let response_timeout = state.response_timeout;
            let head_deadline = async move {
                let _ = body_sent.await;
                tokio::time::sleep(response_timeout).await;
            };
            let answered = tokio::select! {
                answered = &mut response => answered,
                () = head_deadline => {
                    state.metrics.upstream_error(UpstreamError::Timeout);
                    tracing::warn!("upstream gave no response head within {response_timeout:?}; \
                                the write to feed {feed} keeps its lock until it answers");
                    let _ = tx.send(Err(ApiError::UpstreamTimeout));
                    match tokio::time::timeout(state.write_doubt_timeout, response).await {
                        Ok(late) => {
                            state.columns.forget_size(&feed);
                            tracing::info!("the late write to feed {feed} ended; its lock is free");
                            let late = answer(late, &cut, limit, &state.metrics);
                            settle(late, &feed, torn, key, None).await;
                        }
                        Err(_) => {
                            if let Some(torn) = torn {
                                torn.ended(&feed, false);
                            }
                            state.metrics.write_in_doubt();
                            tracing::error!(
                                "write in doubt: feed {feed}: the upstream neither answered nor \
                                 closed within WRITE_DOUBT_TIMEOUT ({:?}) after the response \
                                 timeout; its lock is released, check the feed",
                                state.write_doubt_timeout
                            );
                        }
                    }
                    return;
                }
            };
            // Nobody waiting any more (the client hung up): the write is
            // done all the same, its key answered, and its lock goes with
            // this task.
            // A size read while it was under way is stale.
            state.columns.forget_size(&feed);
            let answered = answer(answered, &cut, limit, &state.metrics);
            settle(answered, &feed, torn, key, Some(tx)).await;
        });
        rx.await.unwrap_or(Err(ApiError::UpstreamBroken))
    }
}

/// Ends a locked write, its lock still held: an append the upstream failed
/// in the middle of is undone (its client told at once), any other outcome
/// is kept for the write's key; the client's answer goes to `tell`.
async fn settle(
    outcome: Result<awc::ClientResponse, ApiError>,
    feed: &str,
    torn: Option<Torn>,
    key: Option<Claimed>,
    tell: Option<oneshot::Sender<Result<Answer, ApiError>>>,
) {
    let answer = match (outcome, torn) {
        (Err(ApiError::UpstreamBroken), Some(torn)) => {
            if let Some(tell) = tell {
                let _ = tell.send(Err(ApiError::UpstreamBroken));
            }
            torn.undo(feed, key).await;
            return;
        }
        (Ok(response), torn) => {
            if let Some(torn) = torn {
                torn.ended(feed, response.status().is_success());
            }
            match key {
                Some(key) => key.answer(response).await,
                None => Ok(Answer::Upstream(response)),
            }
        }
        (Err(err), torn) => {
            if let Some(torn) = torn {
                torn.ended(feed, false);
            }
            match key {
                Some(key) => Err(key.failed(err).await),
                None => Err(err),
            }
        }
    };
    if let Some(tell) = tell {
        let _ = tell.send(answer);
    }
}

fn answer(
    response: Result<awc::ClientResponse, SendRequestError>,
    cut: &Cuts,
    limit: u64,
    metrics: &Metrics,
) -> Result<awc::ClientResponse, ApiError> {
    match (response, cut.borrow().clone()) {
        (Ok(response), _) => Ok(response),
        (Err(_), Some(Cut::OverLimit)) => Err(ApiError::PayloadTooLarge { limit }),
        (Err(_), Some(Cut::Costly(why))) => Err(ApiError::TooLarge(why)),
        (Err(_), Some(Cut::Quota(detail))) => {
            metrics.rate_limited("write_quota");
            Err(ApiError::QuotaSpent { detail, until: crate::auth::quota::until_tomorrow() })
        }
        (Err(err), None) => Err(upstream_error(err, metrics)),
    }
}

/// The upstream's URL for this endpoint. The query goes on byte for byte:
/// the classifier read this very string.
fn upstream_url(state: &ProxyState, endpoint: Endpoint, query: &str) -> String {
    let mut url =
        String::with_capacity(state.upstream.len() + endpoint.name().len() + query.len() + 2);
    url.push_str(&state.upstream);
    url.push('/');
    url.push_str(endpoint.name());
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The client's headers that the policy lets through, and the forwarding
/// headers the proxy sets itself.
fn copy_headers(req: &HttpRequest, headers: &mut HeaderMap) {
    for (name, value) in req.headers() {
        if forward_request_header(req.headers(), name) {
            headers.append(name.clone(), value.clone());
        }
    }
    // Set from what the proxy saw (through trusted proxies only), never
    // from what the client claims.
    if let Ok(value) = HeaderValue::from_str(&crate::net::client_ip(req).to_string()) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = req.headers().get(header::HOST) {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    // The upstream (or a server in between) can log it beside its own.
    headers.insert(X_REQUEST_ID, crate::requestid::of(req).header().clone());
}

/// Streams the upstream's answer back: status, the headers the policy
/// lets through, and the body with its length.
pub fn respond(
    req: &HttpRequest,
    response: awc::ClientResponse,
    binary: bool,
    state: &ProxyState,
    endpoint: Endpoint,
) -> HttpResponse {
    let status = response.status();
    let mut builder = HttpResponseBuilder::new(status);
    for (name, value) in response.headers() {
        if forward_response_header(response.headers(), name) {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    let binary = binary && status.is_success();
    builder.insert_header((
        header::CONTENT_TYPE,
        response_content_type(binary, response.headers().get(header::CONTENT_TYPE)),
    ));
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || req.method() == Method::HEAD
    {
        return builder.finish();
    }
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let counted = state.metrics.response_bytes(endpoint.name());
    let response = response.inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            counted.inc_by(chunk.len() as u64);
        }
    });
    match length {
        Some(len) => builder.body(SizedStream::new(len, response)),
        None => builder.streaming(response),
    }
}

fn upstream_error(err: SendRequestError, metrics: &Metrics) -> ApiError {
    match err {
        // awc's word for a connection the upstream closed with no answer
        // (its worker panicked, or it was killed).
        SendRequestError::Connect(ConnectError::Disconnected) => {
            metrics.upstream_error(UpstreamError::Closed);
            tracing::warn!("upstream closed the connection without a response");
            ApiError::UpstreamBroken
        }
        SendRequestError::Connect(ConnectError::Timeout) => {
            metrics.upstream_error(UpstreamError::Timeout);
            tracing::warn!("upstream did not accept the connection in time");
            ApiError::UpstreamUnreachable
        }
        SendRequestError::Connect(err) => {
            metrics.upstream_error(UpstreamError::Connect);
            tracing::warn!("upstream unreachable: {err}");
            ApiError::UpstreamUnreachable
        }
        SendRequestError::Timeout => {
            metrics.upstream_error(UpstreamError::Timeout);
            ApiError::UpstreamTimeout
        }
        SendRequestError::Body(err) => {
            tracing::info!("request body from the client failed: {err}");
            ApiError::BadRequest("The request body ended early.".into())
        }
        err => {
            metrics.upstream_error(UpstreamError::Closed);
            tracing::warn!("upstream failed: {err}");
            ApiError::UpstreamBroken
        }
    }
}

/// The client's body on its way upstream: counts bytes against the limit
/// (a chunked body has no length to check up front) and says when it ends,
/// which starts the response-head timer.
struct RequestBody {
    payload: web::Payload,
    counted: Arc<Metrics>,
    /// What the audit records as bytes in.
    reported: Arc<AtomicU64>,
    endpoint: Endpoint,
    sent: u64,
    limit: u64,
    meter: Option<WriteMeter>,
    limits: crate::config::Limits,
    cut: Cuts,
    done: Option<oneshot::Sender<()>>,
    digest: Option<RequestDigest>,
    rows: AppendedRows,
    quota: Option<QuotaCap>,
}

impl RequestBody {
    /// Why the body, this far, is to be cut, if it is.
    fn cut(&self) -> Option<Cut> {
        if self.sent > self.limit {
            return Some(Cut::OverLimit);
        }
        if let Some(meter) = &self.meter
            && let Some(costly) = meter.refusal(self.sent, &self.limits)
        {
            return Some(Cut::Costly(costly));
        }
        let quota = self.quota.as_ref()?;
        let rows = self.meter.as_ref().map(|meter| meter.rows_so_far(self.sent));
        quota.passed(self.sent, rows).map(Cut::Quota)
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            self.counted.request_bytes(self.endpoint.name(), self.sent);
            self.reported.store(self.sent, Ordering::Relaxed);
            let _ = done.send(());
        }
    }
}

impl Stream for RequestBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.payload.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                this.sent += chunk.len() as u64;
                if let Some(meter) = &mut this.meter {
                    meter.feed(&chunk);
                }
                if let Some(cut) = this.cut() {
                    *this.cut.borrow_mut() = Some(cut);
                    this.finish();
                    return Poll::Ready(Some(Err(io::Error::other("request body cut"))));
                }
                if let Some(digest) = &this.digest {
                    digest.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.finish();
                Poll::Ready(Some(Err(io::Error::other(err.to_string()))))
            }
            Poll::Ready(None) => {
                let sent = this.sent;
                this.rows.set(BodyRows {
                    certain: this.meter.as_ref().and_then(|meter| meter.rows(sent)),
                    most: this.meter.as_ref().map(|meter| meter.rows_so_far(sent)),
                });
                this.finish();
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::time::Duration;

    use chrono::{DateTime, TimeDelta, Utc};

    /// A runtime on this thread, started for one request and ended after it.
    #[derive(Debug, Clone, Copy)]
    enum Runtime {
        ActixSystem,
        /// A tokio runtime and a `LocalSet`, with no actix system.
        Tokio,
    }

    /// How far behind the time it was sent the `Date` header of one
    /// request sent by awc from a new `runtime` was, as a server saw it.
    fn date_behind(address: &str, runtime: Runtime) -> TimeDelta {
        async fn fetch(address: &str) -> actix_web::web::Bytes {
            let mut answer = awc::Client::default().get(address).send().await.unwrap();
            answer.body().await.unwrap()
        }
        let sent = Utc::now();
        let echoed = match runtime {
            Runtime::ActixSystem => actix_web::rt::System::new().block_on(fetch(address)),
            Runtime::Tokio => {
                let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build();
                tokio::task::LocalSet::new().block_on(&tokio.unwrap(), fetch(address))
            }
        };
        let echoed = std::str::from_utf8(&echoed).unwrap();
        sent - DateTime::parse_from_rfc2822(echoed).unwrap().to_utc()
    }

    /// The vendored awc keeps one codec config, and so one date task, a
    /// thread (vendor/README.md). A runtime's end stops that task: a thread
    /// that runs another runtime later must still send the current date,
    /// not the one the first runtime last set. A config made for the
    /// request dates it within the second (the header has no fractions);
    /// one kept from the runtime before would be as old as the pause.
    #[test]
    fn a_request_from_a_later_runtime_on_the_same_thread_carries_the_current_date() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut date = String::new();
                for line in BufReader::new(&stream).lines() {
                    let line = line.unwrap();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("date")
                    {
                        date = value.trim().to_owned();
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{date}",
                    date.len()
                );
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        let fresh = TimeDelta::milliseconds(1250);
        // Another actix system: a new config at once, though a kept one
        // would still pass the check by time (its date under 2 s old).
        // Then runtimes without a system: a new config once the kept
        // one's date is 2 s old.
        let rounds = [
            (Runtime::ActixSystem, Duration::ZERO),
            (Runtime::ActixSystem, Duration::from_millis(1500)),
            (Runtime::Tokio, Duration::ZERO),
            (Runtime::Tokio, Duration::from_millis(2500)),
        ];
        for (runtime, pause) in rounds {
            std::thread::sleep(pause);
            let behind = date_behind(&address, runtime);
            assert!(
                behind < fresh,
                "{runtime:?} after {pause:?}: the date sent was {behind} behind"
            );
        }
    }
}
