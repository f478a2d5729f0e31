//! Requests the proxy makes to the upstream on behalf of a user signed in
//! to the admin (the data explorer's reads, the feed pages' changes):
//! decided by the same functions as the same request through the API
//! (`classify`, `allowed`), held to the user's rate and share of the bytes
//! in flight, changes under the feed's write lock with grants following
//! them, and each in the data-access audit as that user's.

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, web};
use bytes::Bytes;

use super::classify::{Classified, ReadQuery, Requirement, classify};
use super::upstream::Upstream;
use super::{
    Holding, admit, allowed, check_files, classify_error, feed_changed, read_cost, take_share,
    write_lock,
};
use crate::audit::Audited;
use crate::auth::AuthState;
use crate::auth::principal::Principal;
use crate::budget::Share;
use crate::db::models::Access;
use crate::error::ApiError;
use crate::lbasedb::datatype;

/// How the audit names the credential of the admin's own requests.
const CREDENTIAL: &str = "admin";

/// A user's requests from one admin request: what they are checked
/// against, and what their audit row says of where they came from.
pub struct OnBehalf {
    pub upstream: Upstream,
    pub auth: web::Data<AuthState>,
    pub who: Arc<Principal>,
    pub req: HttpRequest,
}

/// A read under way: its user's place in flight, and its audit row,
/// recorded when the read is dropped (with the bytes it sent; one dropped
/// before it was finished, its client gone, says 499).
pub struct Reading {
    _slot: Holding,
    started: Instant,
    audited: Audited,
    finished: bool,
}

impl Drop for Reading {
    fn drop(&mut self) {
        if !self.finished {
            self.end(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST));
        }
    }
}

impl crate::body::Kept for Reading {
    fn sent(&mut self, bytes: usize) {
        self.audited.sent(bytes);
    }
}

impl Reading {
    /// Ends the read with `status` (its audit row says how it ended).
    pub fn finish(mut self, status: StatusCode) {
        self.end(status);
    }

    /// Ends the read with `err`'s status; answers `err`.
    pub fn failed(self, err: ApiError) -> ApiError {
        self.finish(actix_web::ResponseError::status_code(&err));
        err
    }

    fn end(&mut self, status: StatusCode) {
        self.finished = true;
        let took = self.started.elapsed().as_secs_f64() * 1000.0;
        self.audited.update(|access| {
            access.status = i32::from(status.as_u16());
            access.duration_ms = took;
        });
    }
}

impl OnBehalf {
    /// The audit row of a request to `endpoint` with `query`, as the API's.
    fn access(&self, method: &Method, classified: Option<&Classified>, status: u16) -> Access {
        let feed = classified.and_then(|c| match &c.requires {
            Requirement::Feed(_, feed) => Some(feed.clone()),
            _ => c.write_lock.clone(),
        });
        let read = classified.and_then(Classified::read).map(ReadQuery::audited);
        Access {
            at: crate::db::queries::now(),
            username: self.who.username.clone(),
            credential: CREDENTIAL.to_owned(),
            client: crate::net::client_ip(&self.req).to_string(),
            endpoint: classified.map_or("unknown", |c| c.endpoint.name()).to_owned(),
            method: method.as_str().to_owned(),
            feed,
            status: i32::from(status),
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            requests: 1,
            request_id: Some(crate::requestid::of(&self.req).as_str().to_owned()),
            read_columns: None,
            duration_max_ms: 0.0,
            read_from: None,
            read_to: None,
        }
        .with_read(read)
    }

    /// Classified and allowed as through the API; a refusal is audited.
    async fn decide(
        &self,
        endpoint: &str,
        method: &Method,
        query: &str,
    ) -> Result<Classified, ApiError> {
        let classified = match classify(endpoint, method, query) {
            Ok(classified) => classified,
            Err(err) => return Err(self.refused(method, None, classify_error(err, method))),
        };
        match allowed(&classified, &self.who, method, &self.upstream).await {
            Ok(()) => Ok(classified),
            Err(err) => Err(self.refused(method, Some(&classified), err)),
        }
    }

    fn refused(&self, method: &Method, classified: Option<&Classified>, err: ApiError) -> ApiError {
        let status = actix_web::ResponseError::status_code(&err).as_u16();
        self.upstream.state().audit.record(self.access(method, classified, status));
        err
    }

    /// A read of `feed` refused before it was classified (a feed the user
    /// may not read, a column they may not see), in the audit as the API's
    /// refusals are.
    pub fn refused_read(&self, feed: &str, err: ApiError) -> ApiError {
        let status = actix_web::ResponseError::status_code(&err).as_u16();
        let mut access = self.access(&Method::GET, None, status);
        access.endpoint = "bytes".to_owned();
        access.feed = Some(feed.to_owned());
        self.upstream.state().audit.record(access);
        err
    }

    /// Starts a read of rows (`GET /bytes` with `query`, checked as the
    /// API checks it: the columns, the rows and the grants): the user's
    /// place in flight and the read's audit row, which covers every chunk
    /// read with `chunk` while it lasts.
    pub async fn start_read(&self, query: &str) -> Result<Reading, ApiError> {
        let slot = admit(&self.auth, &self.who)?;
        let classified = self.decide("bytes", &Method::GET, query).await?;
        // As one API read: at most `MAX_READ_BYTES` in all, though it is
        // read in chunks.
        if let Err(err) = read_cost(&Method::GET, &classified, &self.upstream).await {
            return Err(self.refused(&Method::GET, Some(&classified), err));
        }
        let access = self.access(&Method::GET, Some(&classified), 200);
        let audited = Audited::new(access, self.upstream.state().audit.clone());
        let holding = Holding { _slot: Some(slot), ..Holding::default() };
        let started = Instant::now();
        Ok(Reading { _slot: holding, started, audited, finished: false })
    }

    /// Rows `ix..ix + size` of `cols` (name and datatype, in that order)
    /// as the upstream's raw bytes, column after column: a part of a read
    /// that `start_read` allowed, checked again as one API read (the grants
    /// may have changed since), read whole; with its share of the bytes in
    /// flight, which the caller holds for as long as it holds the bytes.
    pub async fn chunk(
        &self,
        feed: &str,
        cols: &[(&str, &str)],
        ix: u64,
        size: u64,
    ) -> Result<(Bytes, Share), ApiError> {
        let query = bytes_query(feed, cols.iter().map(|(name, _)| *name), ix, size);
        let classified = classify("bytes", &Method::GET, &query)
            .map_err(|err| classify_error(err, &Method::GET))?;
        // The user as they are now (cached until anything changes): a
        // grant taken away, or the user deactivated, stops a long read.
        let who = match self.auth.principal_of(self.who.user_id).await {
            Ok(Some(who)) if who.is_active => who,
            Ok(_) => return Err(ApiError::permission_denied()),
            Err(err) => return Err(ApiError::Internal(err.into())),
        };
        allowed(&classified, &who, &Method::GET, &self.upstream).await?;
        let limits = &self.upstream.state().limits;
        if let Some(refused) = datatype::refuse_read(size, cols, datatype::Form::Binary, limits) {
            return Err(ApiError::TooLarge(refused));
        }
        let cost = datatype::read_cost(size, cols, datatype::Form::Binary);
        let share = take_share(self.upstream.state(), self.who.user_id, cost).await?;
        Ok((self.upstream.read_bytes(&query, cost).await?, share))
    }

    /// Sends a change of a feed or its columns (`POST /feed`, `PATCH /feed`,
    /// `DELETE /feed`, `POST /col`...) with a small JSON `body`, as the API
    /// would: checked, under the feed's write lock, grants following a
    /// rename or a deletion, audited. The upstream's refusal is its detail.
    pub async fn change(
        &self,
        endpoint: &str,
        method: Method,
        query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), ApiError> {
        let started = Instant::now();
        let _slot = admit(&self.auth, &self.who)?;
        let classified = self.decide(endpoint, &method, query).await?;
        let body = body.map(|body| Bytes::from(body.to_string())).unwrap_or_default();
        let state = self.upstream.state();
        let facts = match super::limits::body_rule(classified.endpoint, &method) {
            Some(rule) => {
                super::limits::check_body(rule, &body, &state.limits).map_err(|detail| {
                    self.refused(&method, Some(&classified), ApiError::BadRequest(detail))
                })?
            }
            None => Default::default(),
        };
        let sent = async {
            let _lock = match &classified.write_lock {
                Some(feed) => {
                    let lock = write_lock(state, feed).await?;
                    state.repairs.before_write(&self.upstream, feed).await?;
                    check_files(&self.upstream, feed, &facts).await?;
                    state.columns.forget(feed);
                    Some(lock)
                }
                None => None,
            };
            self.upstream.send(&method, classified.endpoint.name(), query, body.clone()).await
        };
        let answered = sent.await;
        let status = match &answered {
            Ok(()) => StatusCode::OK,
            Err(err) => actix_web::ResponseError::status_code(err),
        };
        let mut access = self.access(&method, Some(&classified), status.as_u16());
        access.bytes_in = body.len() as i64;
        access.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        state.audit.record(access);
        answered?;
        feed_changed(&classified, &method, &self.auth, facts.name).await;
        Ok(())
    }
}

/// The query of a `/bytes` read of rows `ix..ix + size` of `cols`.
pub fn bytes_query<'a>(
    feed: &str,
    cols: impl IntoIterator<Item = &'a str>,
    ix: u64,
    size: u64,
) -> String {
    let mut query = format!("feed={feed}&ix={ix}&size={size}");
    for col in cols {
        query.push_str("&col[]=");
        query.push_str(col);
    }
    query
}
