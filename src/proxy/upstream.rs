//! The upstream's API as the proxy calls it for itself (never a client's
//! request): the feed list for the admin's grant rows, columns, sizes and
//! first rows for its feed pages, the version for `/readyz`. Each call has
//! a timeout and a size limit, and answers `None` (logged) when the
//! upstream is down or says something else than expected.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::{Ready, ready};
use serde::Deserialize;
use serde_json::Value;

use super::ProxyState;
use crate::error::ApiError;
use crate::lbasedb::datatype;

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

    /// The first `rows` rows of the named columns, as text; or why they
    /// are not read (a column too wide to read, more than a read may be:
    /// the limits of the API hold for the admin's own reads too).
    pub async fn preview(
        &self,
        feed: &str,
        cols: &[Col],
        rows: u64,
    ) -> Result<Vec<Vec<String>>, String> {
        let named: Vec<(&str, &str)> =
            cols.iter().map(|c| (c.name.as_str(), c.datatype.as_str())).collect();
        let form = datatype::Form::Json;
        if let Some(refused) = datatype::refuse_read(rows, &named, form, &self.state.limits) {
            return Err(refused);
        }
        let names: String = cols.iter().map(|c| format!("&col[]={}", c.name)).collect();
        let path = format!("data?feed={feed}&ix=0&size={rows}{names}");
        let data: Value = self.get(&path, Duration::from_secs(10)).await.unwrap_or_default();
        Ok((0..rows as usize)
            .map(|i| {
                cols.iter()
                    .map(|c| match &data[&c.name][i] {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect())
    }
}
