//! The upstream's error answer: 400 with `{"error": <kind>, "detail": <what>}`.

use std::fmt;
use std::io;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct LbError {
    error: String,
    detail: String,
    /// 400, as upstream, but for what the upstream never answers (503 when
    /// this server is too busy to take a read).
    #[serde(skip)]
    status: StatusCode,
}

impl LbError {
    pub fn new(error: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { error: error.into(), detail: detail.into(), status: StatusCode::BAD_REQUEST }
    }

    /// Too much is being read at once: come back in a moment.
    pub fn busy(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, ..Self::new("resource busy", detail) }
    }

    /// The data folder's file system has no room for the write.
    pub fn no_space(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::INSUFFICIENT_STORAGE, ..Self::new("storage full", detail) }
    }

    pub fn param_required(param: &str) -> Self {
        Self::new("param required", param)
    }

    /// What the upstream answers instead of its worker panicking: the storage
    /// layer's own "invalid data" kind.
    pub fn invalid_data(detail: impl Into<String>) -> Self {
        Self::from(io::Error::new(io::ErrorKind::InvalidData, detail.into()))
    }

    pub fn invalid_input(detail: impl Into<String>) -> Self {
        Self::from(io::Error::new(io::ErrorKind::InvalidInput, detail.into()))
    }

    pub fn out_of_range(end: impl fmt::Display) -> Self {
        Self::from(io::Error::new(io::ErrorKind::UnexpectedEof, end.to_string()))
    }

    /// The upstream's `qs_parse` failure: the kind of an `InvalidInput`
    /// I/O error, with the (rewritten) query itself as the detail.
    pub fn query(err: super::query::QsError) -> Self {
        Self::invalid_input(err.query)
    }
}

impl From<io::Error> for LbError {
    fn from(err: io::Error) -> Self {
        // ErrorKind's Display is the upstream's "error" text ("entity not
        // found", ...); an error built from a bare kind displays the same.
        Self::new(err.kind().to_string(), err.to_string())
    }
}

impl fmt::Display for LbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.detail)
    }
}

impl ResponseError for LbError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        response.json(self)
    }
}
