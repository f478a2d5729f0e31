//! The upstream's API as the proxy calls it for itself (never a client's
//! request): the feed list for the admin's grant rows, columns, sizes and
//! first rows for its feed pages, the version for `/readyz`. Each call has
//! a timeout and a size limit, and answers `None` (logged) when the
//! upstream is down or says something else than expected.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use bytes::Bytes;
use futures_util::future::{Ready, ready};
use serde::Deserialize;
use serde_json::Value;

use super::ProxyState;
use crate::error::ApiError;

/// Largest answer read whole: a feed list, a column list, ten rows.
const ANSWER_LIMIT: usize = 16 << 20;

/// A handler's argument: built from the app's `ProxyState` and client.
pub struct Upstream {
    state: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
}

/// A column as `GET /col` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Col {
    pub name: String,
    pub datatype: String,
}

impl FromRequest for Upstream {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<ProxyState>>().cloned();
        let client = req.app_data::<web::Data<awc::Client>>().cloned();
        ready(match (state, client) {
            (Some(state), Some(client)) => Ok(Self { state, client }),
            _ => Err(actix_web::error::ErrorInternalServerError("no upstream registered")),
        })
    }
}

impl Upstream {
    pub fn new(state: web::Data<ProxyState>, client: web::Data<awc::Client>) -> Self {
        Self { state, client }
    }

    pub fn state(&self) -> &ProxyState {
        &self.state
    }

    /// Another handle on the same upstream.
    pub fn again(&self) -> Self {
        Self { state: self.state.clone(), client: self.client.clone() }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        timeout: Duration,
    ) -> Option<T> {
        let url = format!("{}/{path_and_query}", self.state.upstream);
        let mut response = match self.client.get(url).timeout(timeout).send().await {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                tracing::debug!("upstream answered {} to {path_and_query}", response.status());
                return None;
            }
            Err(err) => {
                tracing::warn!("upstream not answering {path_and_query}: {err}");
                return None;
            }
        };
        response.json::<T>().limit(ANSWER_LIMIT).await.ok()
    }

    /// `GET /version`'s `version`, within 2 s.
    pub async fn version(&self) -> Option<Value> {
        let answer: Value = self.get("version", Duration::from_secs(2)).await?;
        answer.get("version").cloned()
    }

    /// The names of the upstream's feeds (none if it is down).
    pub async fn feeds(&self) -> Vec<String> {
        #[derive(Deserialize)]
        struct Feed {
            name: String,
        }
        let feeds: Vec<Feed> = self.get("feed", Duration::from_secs(5)).await.unwrap_or_default();
        feeds.into_iter().map(|f| f.name).collect()
    }

    pub async fn cols(&self, feed: &str) -> Option<Vec<Col>> {
        self.get(&format!("col?feed={feed}"), Duration::from_secs(10)).await
    }

    pub async fn size(&self, feed: &str) -> Option<u64> {
        self.size_or_unreachable(feed).await.ok().flatten()
    }

    /// A feed's size: 502 when the upstream cannot be asked (before an
    /// append, `repair`: the append would fail too, and must not be sent on
    /// without a way to undo it), `None` when it answers something else
    /// (no such feed).
    pub async fn size_or_unreachable(&self, feed: &str) -> Result<Option<u64>, ApiError> {
        let url = format!("{}/size?feed={feed}", self.state.upstream);
        match self.client.get(url).timeout(Duration::from_secs(10)).send().await {
            Ok(mut response) if response.status().is_success() => {
                let answer = response.json::<Value>().limit(ANSWER_LIMIT).await.ok();
                Ok(answer.and_then(|answer| answer["size"].as_u64()))
            }
            Ok(_) => Ok(None),
            Err(err) => {
                tracing::warn!("feed {feed}: the upstream cannot tell its size: {err}");
                Err(ApiError::UpstreamUnreachable)
            }
        }
    }

    /// Sets `feed`'s size (a torn append undone): whether that is done, or
    /// there is nothing to do (the feed is gone); false while the upstream
    /// cannot be reached.
    pub async fn set_size(&self, feed: &str, size: u64) -> bool {
        let url = format!("{}/size?feed={feed}", self.state.upstream);
        let body = serde_json::json!({ "size": size });
        match self.client.put(url).timeout(Duration::from_secs(10)).send_json(&body).await {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::warn!("feed {feed}: setting its size back answered {}", response.status());
                response.status().is_client_error()
            }
            Err(err) => {
                tracing::debug!("feed {feed}: the upstream cannot set its size yet: {err}");
                false
            }
        }
    }

    /// A read's raw bytes (`GET /bytes?{query}`), read whole: at most
    /// `expected` bytes (what the query asks for). The upstream's refusal
    /// passes as its detail.
    pub async fn read_bytes(&self, query: &str, expected: u64) -> Result<Bytes, ApiError> {
        let url = format!("{}/bytes?{query}", self.state.upstream);
        let request = self.client.get(url).timeout(self.state.response_timeout);
        let response = request.send().await.map_err(unreachable)?;
        let limit = usize::try_from(expected).unwrap_or(usize::MAX).max(ANSWER_LIMIT);
        answer_body(response, limit).await
    }

    /// A change sent as the API would send it (`on_behalf`): its body a
    /// small JSON value, or none.
    pub async fn send(
        &self,
        method: &Method,
        endpoint: &str,
        query: &str,
        body: Bytes,
    ) -> Result<(), ApiError> {
        let url = format!("{}/{endpoint}?{query}", self.state.upstream);
        let mut request = self.client.request(method.clone(), url);
        request = request.timeout(self.state.response_timeout);
        let sent = match body.is_empty() {
            true => request.send().await,
            false => request.content_type("application/json").send_body(body).await,
        };
        answer_body(sent.map_err(unreachable)?, ANSWER_LIMIT).await.map(drop)
    }
}

fn unreachable(err: awc::error::SendRequestError) -> ApiError {
    use awc::error::SendRequestError::*;
    tracing::warn!("the upstream did not answer the admin: {err}");
    match err {
        Timeout => ApiError::UpstreamTimeout,
        Connect(_) => ApiError::UpstreamUnreachable,
        _ => ApiError::UpstreamBroken,
    }
}

/// A successful answer's body, or the upstream's refusal as the client's
/// error: its `detail` (or its text), with its status.
async fn answer_body(
    mut response: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
    >,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let status = response.status();
    let body = response.body().limit(limit).await.map_err(|err| {
        tracing::warn!("reading the upstream's answer: {err}");
        ApiError::UpstreamBroken
    })?;
    if status.is_success() {
        return Ok(body);
    }
    let detail = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
    Err(match status.as_u16() {
        404 => ApiError::NotFound,
        400..=499 => ApiError::BadRequest(format!("The upstream refused it: {detail}")),
        _ => ApiError::UpstreamBroken,
    })
}
