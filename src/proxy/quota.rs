//! Write quotas on the proxy (`auth::quota`): a write by a user with a
//! quota is refused (429, `Retry-After` until the next day, UTC) once that
//! day's rows or bytes are spent, or when the body it declares would pass
//! the bytes left; it is counted once the upstream has acknowledged it, in
//! the database every replica shares. A write is checked before it is sent
//! and counted after, so concurrent writes can pass a quota by what they
//! write at once; no write is counted that was not acknowledged. A user
//! without a quota costs nothing here: no database round trip.

use actix_web::HttpRequest;
use actix_web::http::Method;

use super::classify::{Classified, Endpoint, Requirement};
use super::upstream::Upstream;
use crate::auth::AuthState;
use crate::auth::principal::Principal;
use crate::auth::quota::{self, Quota};
use crate::db::{self, queries};
use crate::error::ApiError;
use crate::lbasedb::datatype;
use crate::lbasedb::query::{DataQuery, RawQuery, parse_form, parse_qs};

/// A write to count against its user's quota once acknowledged.
pub struct Metered {
    user_id: i32,
    feed: String,
    /// For `PUT /size`: the feed's size before, to count the rows it adds.
    size_before: Option<u64>,
}

/// Whether a request writes rows: what quotas count. Columns and feeds
/// are made, renamed and removed without counting.
pub fn writes_rows(endpoint: Endpoint, method: &Method) -> bool {
    matches!(
        (endpoint, method.as_str()),
        (Endpoint::Data | Endpoint::Bytes, "POST" | "PUT" | "PATCH")
            | (Endpoint::Bytes, "DELETE")
            | (Endpoint::Raw, "POST")
            | (Endpoint::Size, "PUT")
    )
}

/// The write's meter, or 429 when its user's quota for today is spent.
pub async fn admit(
    req: &HttpRequest,
    classified: &Classified,
    who: &Principal,
    auth: &AuthState,
    upstream: &Upstream,
) -> Result<Option<Metered>, ApiError> {
    let Requirement::Feed(_, feed) = &classified.requires else {
        return Ok(None);
    };
    if !writes_rows(classified.endpoint, req.method()) {
        return Ok(None);
    }
    if Quota::effective(who.is_superuser, &who.group_quotas, auth.default_quota).is_unlimited() {
        return Ok(None);
    }
    let user_id = who.user_id;
    let (quota, rows, bytes) = auth.write_quota_of(who).await?;
    let declared = super::declared_length(req).unwrap_or(0);
    let spent = quota.rows.is_some_and(|max| rows >= max)
        || quota.bytes.is_some_and(|max| bytes >= max || bytes.saturating_add(declared) > max);
    if spent {
        auth.metrics.rate_limited("write_quota");
        return Err(ApiError::QuotaSpent {
            detail: format!(
                "Your write quota ({quota}) is spent for today: {rows} rows and {bytes} bytes \
                 written (UTC){}. It is whole again at midnight UTC.",
                if declared > 0 {
                    format!(", and this body is {declared} bytes")
                } else {
                    String::new()
                }
            ),
            until: quota::until_tomorrow(),
        });
    }
    let size_before = match classified.endpoint {
        Endpoint::Size => upstream.size(feed).await,
        _ => None,
    };
    Ok(Some(Metered { user_id, feed: feed.clone(), size_before }))
}

/// What an acknowledged write wrote, as the proxy saw it go by.
pub struct Written<'a> {
    pub req: &'a HttpRequest,
    pub endpoint: Endpoint,
    /// The rows its body held, when its meter knew (a JSON dataset's rows,
    /// a `PUT /bytes`'s).
    pub body_rows: Option<u64>,
    pub bytes: u64,
    /// For `PUT /size`: the size set.
    pub new_size: Option<u64>,
}

impl Metered {
    /// Counts an acknowledged write: its rows (appended, overwritten or
    /// zeroed; for `PUT /size`, added) and its body's bytes.
    pub async fn count(self, written: Written<'_>, auth: &AuthState, upstream: &Upstream) {
        let rows = self.rows(&written, upstream).await;
        let Self { user_id, .. } = self;
        let bytes = written.bytes;
        auth.metrics.quota_written(rows, bytes);
        let counted = db::run(&auth.pool, move |conn| {
            queries::add_write_usage(conn, user_id, &quota::today(), rows, bytes)
        })
        .await;
        if let Err(err) = counted {
            tracing::error!("a write of user {user_id} not counted against its quota: {err}");
        }
    }

    async fn rows(&self, written: &Written<'_>, upstream: &Upstream) -> u64 {
        let query = written.req.query_string();
        match (written.endpoint, written.req.method().as_str()) {
            (Endpoint::Size, _) => {
                written.new_size.unwrap_or(0).saturating_sub(self.size_before.unwrap_or(0))
            }
            (Endpoint::Bytes, "DELETE") => {
                parse_qs::<DataQuery>(query).ok().and_then(|q| q.size).unwrap_or(0) as u64
            }
            (Endpoint::Data, _) | (Endpoint::Bytes, "PUT") => written.body_rows.unwrap_or(0),
            (endpoint, _) => {
                // Raw rows of the columns named: the body over their width.
                let named = match endpoint {
                    Endpoint::Raw => parse_form::<RawQuery>(query).map(|q| vec![q.col]).ok(),
                    _ => parse_qs::<DataQuery>(query).ok().and_then(|q| q.col),
                };
                let named = named.unwrap_or_default();
                let cols = upstream.state().columns.of(upstream, &self.feed, &named).await;
                let width: u64 = named
                    .iter()
                    .filter_map(|name| cols.iter().find(|c| &c.name == name))
                    .filter_map(|c| datatype::width(&c.datatype))
                    .sum();
                written.bytes.checked_div(width).unwrap_or(0)
            }
        }
    }
}
