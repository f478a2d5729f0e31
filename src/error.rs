//! The API's error type: every failure of `/api/...` answers JSON
//! `{"detail": ...}`, the Django REST framework convention. Causes that the
//! client must not see (an upstream's address, an I/O error) go to the log.

use std::time::Duration;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::auth::users::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Not found.")]
    NotFound,
    #[error("Method \"{method}\" not allowed.")]
    MethodNotAllowed { method: Method, allowed: &'static [Method] },
    #[error("{0}")]
    BadRequest(String),
    #[error("Request body is larger than the limit of {limit} bytes.")]
    PayloadTooLarge { limit: u64 },
    /// A read whose answer would be larger than one request may ask for.
    #[error("{0}.")]
    TooLarge(String),
    #[error("The upstream Lbasedb server could not be reached.")]
    UpstreamUnreachable,
    #[error("The upstream Lbasedb server closed the connection without a response.")]
    UpstreamBroken,
    #[error("The upstream Lbasedb server did not answer in time.")]
    UpstreamTimeout,
    /// The embedded upstream cannot start, and will not until restarted.
    #[error("{0}.")]
    UpstreamFailed(String),
    #[error("{0}")]
    NotAuthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("Request was throttled. Expected available in {} seconds.", .0.as_secs().max(1))]
    Throttled(Duration),
    /// The user's write quota for the day is spent (`auth::quota`).
    #[error("{detail}")]
    QuotaSpent { detail: String, until: Duration },
    /// The user's reads in flight hold half of `MAX_BYTES_IN_FLIGHT`.
    #[error(
        "You have too much data being read at once (half of MAX_BYTES_IN_FLIGHT); retry when \
         your reads in flight have been received."
    )]
    ReadsInFlight,
    /// Other writes to the same feed hold its lock for too long, or too
    /// many wait for it.
    #[error("The feed is busy with other writes; retry in {} seconds.", .0.as_secs().max(1))]
    Busy(Duration),
    /// A JWT bearer could not be checked: the identity provider's keys
    /// could not be read.
    #[error("The identity provider's keys could not be read; retry later.")]
    ProviderUnavailable,
    /// A request with the same `Idempotency-Key` is still in flight.
    #[error("{0}")]
    Conflict(String),
    /// An `Idempotency-Key` used before for another request.
    #[error("{0}")]
    Unprocessable(String),
    /// The cause goes to the log, never to the client.
    #[error("A server error occurred.")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    pub fn no_credentials() -> Self {
        Self::NotAuthenticated("Authentication credentials were not provided.".into())
    }

    pub fn permission_denied() -> Self {
        Self::Forbidden("You do not have permission to perform this action.".into())
    }
}

/// A JSON body the API cannot read (`/api/auth/`), in the API's own shape:
/// 413 past its limit, else 400 saying why (an unknown field, a type).
pub fn json_body_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge { limit: limit as u64 }.into()
        }
        err => ApiError::BadRequest(format!("{err}.")).into(),
    }
}

/// A form body the API cannot read, as `json_body_error`.
pub fn form_body_error(
    err: actix_web::error::UrlencodedError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::UrlencodedError as E;
    match err {
        E::Overflow { limit, .. } => ApiError::PayloadTooLarge { limit: limit as u64 }.into(),
        err => ApiError::BadRequest(format!("{err}.")).into(),
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(err: crate::db::DbError) -> Self {
        Self::internal(err)
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Denied(why) => Self::Forbidden(why.0),
            ServiceError::Invalid(invalid) => {
                Self::BadRequest(format!("{}: {}.", invalid.field, invalid.message))
            }
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Db(err) => Self::internal(err),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } | Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamUnreachable | Self::UpstreamBroken => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::NotAuthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Throttled(_) | Self::ReadsInFlight | Self::QuotaSpent { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Busy(_) | Self::UpstreamFailed(_) | Self::ProviderUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::MethodNotAllowed { allowed, .. } => {
                response.insert_header(header::Allow(allowed.to_vec()));
            }
            Self::NotAuthenticated(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Token"));
            }
            Self::Throttled(wait) | Self::Busy(wait) | Self::QuotaSpent { until: wait, .. } => {
                response.insert_header((header::RETRY_AFTER, wait.as_secs().max(1).to_string()));
            }
            Self::ReadsInFlight | Self::Conflict(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            Self::Internal(cause) => tracing::error!("internal error: {cause:#}"),
            _ => {}
        }
        response.json(json!({ "detail": self.to_string() }))
    }
}
