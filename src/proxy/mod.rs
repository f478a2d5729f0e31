//! `/api/proxy/{endpoint}`: classify the request, decide, and stream it to
//! the upstream and the answer back.

pub mod classify;
mod forward;
pub mod headers;

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::config::Settings;
use crate::error::ApiError;
use classify::{Classified, ClassifyError, classify};

pub use forward::build_client;

/// What every worker's proxy handler shares.
#[derive(Debug, Clone)]
pub struct ProxyState {
    /// The upstream's base URL, without a trailing slash.
    pub upstream: String,
    pub body_limit: u64,
    pub response_timeout: Duration,
}

impl ProxyState {
    pub fn new(upstream: &str, settings: &Settings) -> Self {
        Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            body_limit: settings.body_limit,
            response_timeout: settings.response_timeout,
        }
    }
}

pub async fn proxy(
    req: HttpRequest,
    payload: web::Payload,
    endpoint: web::Path<String>,
    state: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, ApiError> {
    let classified =
        classify(&endpoint, req.method(), req.query_string()).map_err(|err| match err {
            ClassifyError::UnknownEndpoint => ApiError::NotFound,
            ClassifyError::MethodNotAllowed(allowed) => ApiError::MethodNotAllowed {
                method: req.method().clone(),
                allowed,
            },
            ClassifyError::BadQuery(detail) => ApiError::BadRequest(detail),
        })?;
    authorize(&classified)?;
    forward::forward(&req, payload, classified.endpoint, &state, &client).await
}

/// The one place where a classified request is allowed or refused. Until
/// users and permissions exist, everything is allowed.
fn authorize(_classified: &Classified) -> Result<(), ApiError> {
    Ok(())
}
