//! The API's error type: every failure of `/api/...` answers JSON
//! `{"detail": ...}`, the Django REST framework convention. Causes that the
//! client must not see (an upstream's address, an I/O error) go to the log.

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Not found.")]
    NotFound,
    #[error("Method \"{method}\" not allowed.")]
    MethodNotAllowed {
        method: Method,
        allowed: &'static [Method],
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("Request body is larger than the limit of {limit} bytes.")]
    PayloadTooLarge { limit: u64 },
    #[error("The upstream Lbasedb server could not be reached.")]
    UpstreamUnreachable,
    #[error("The upstream Lbasedb server closed the connection without a response.")]
    UpstreamBroken,
    #[error("The upstream Lbasedb server did not answer in time.")]
    UpstreamTimeout,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpstreamUnreachable | Self::UpstreamBroken => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Self::MethodNotAllowed { allowed, .. } = self {
            response.insert_header(header::Allow(allowed.to_vec()));
        }
        response.json(json!({ "detail": self.to_string() }))
    }
}
