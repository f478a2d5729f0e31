//! Write quotas on the proxy (`auth::quota`): a write by a user with a
//! quota is refused (429, `Retry-After` until the next day, UTC) once that
//! day's rows or bytes are spent, or when what it is known to write before
//! it is sent (a declared body length, the rows a `PUT /size` adds or a
//! `DELETE /bytes` zeroes) would pass what is left; its body is cut as it
//! streams once it passes the bytes or the rows left (`QuotaCap`), so that
//! the upstream never acts on it. It is counted once the upstream has
//! acknowledged it, in the database every replica shares. Writes in flight
//! together are each checked against what was left when they began, so
//! together they can pass a quota by what they write at once. A user
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

/// A write to count against its user's quota once acknowledged.
pub struct Metered {
    user_id: i32,
    /// The rows known before it is sent (`known_rows`).
    known_rows: Option<u64>,
    /// What the quota has left, for the body's stream.
    pub cap: QuotaCap,
}

/// What a user's quota has left today, as a write's body streams: it is
/// cut (and so never acted on) once it passes the bytes left, or holds
/// more rows than are left (counted by its meter as JSON goes by, or as
/// its bytes over the width of the columns a `/bytes` or `/raw` write
/// names).
#[derive(Debug, Clone, Copy)]
pub struct QuotaCap {
    pub bytes: Option<u64>,
    pub rows: Option<u64>,
    /// The bytes of a row of the columns a `/bytes` or `/raw` write names.
    pub width: Option<u64>,
}

impl QuotaCap {
    /// Why a body `sent` bytes in (holding `rows` rows, where its meter
    /// knows) passes what is left, if it does.
    pub fn passed(&self, sent: u64, rows: Option<u64>) -> Option<String> {
        let rows = rows.or_else(|| self.width.filter(|w| *w > 0).map(|width| sent / width));
        let over_bytes = self.bytes.is_some_and(|left| sent > left);
        let over_rows = self.rows.is_some_and(|left| rows.is_some_and(|rows| rows > left));
        (over_bytes || over_rows).then(|| {
            let left = |n: Option<u64>| n.map_or_else(|| "any".to_owned(), |n| n.to_string());
            format!(
                "This write passes what your write quota has left today (UTC): {} rows and {} \
                 bytes. It was cut, and nothing of it was written.",
                left(self.rows),
                left(self.bytes)
            )
        })
    }
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

/// The write's meter, or 429 when its user's quota for today is spent, or
/// would be by what the write is known to write. `new_size`: the size a
/// `PUT /size` sets.
pub async fn admit(
    req: &HttpRequest,
    classified: &Classified,
    who: &Principal,
    (auth, upstream): (&AuthState, &Upstream),
    new_size: Option<u64>,
) -> Result<Option<Metered>, ApiError> {
    let Requirement::Feed(_, feed) = &classified.requires else {
        return Ok(None);
    };
    if !writes_rows(classified.endpoint, req.method())
        || Quota::effective(who.is_superuser, &who.group_quotas, auth.default_quota).is_unlimited()
    {
        return Ok(None);
    }
    let (quota, rows, bytes) = auth.write_quota_of(who).await?;
    let declared = super::declared_length(req).unwrap_or(0);
    let known_rows = known_rows(req, classified, feed, upstream, new_size).await;
    let adding = known_rows.unwrap_or(0);
    let spent = quota.rows.is_some_and(|max| rows >= max || rows.saturating_add(adding) > max)
        || quota.bytes.is_some_and(|max| bytes >= max || bytes.saturating_add(declared) > max);
    if spent {
        auth.metrics.rate_limited("write_quota");
        let this = match (declared, adding) {
            (0, 0) => String::new(),
            (0, adding) => format!(", and this write is {adding} rows"),
            (declared, _) => format!(", and this body is {declared} bytes"),
        };
        return Err(ApiError::QuotaSpent {
            detail: format!(
                "Your write quota ({quota}) is spent for today: {rows} rows and {bytes} bytes \
                 written (UTC){this}. It is whole again at midnight UTC."
            ),
            until: quota::until_tomorrow(),
        });
    }
    let cap = QuotaCap {
        bytes: quota.bytes.map(|max| max.saturating_sub(bytes)),
        rows: quota.rows.map(|max| max.saturating_sub(rows)),
        width: row_width(req, classified, feed, upstream).await,
    };
    Ok(Some(Metered { user_id: who.user_id, known_rows, cap }))
}

/// The rows a write is known to write before it is sent: those a
/// `PUT /size` adds to the feed's size now, those a `DELETE /bytes`
/// zeroes; `None` for a write whose body says.
async fn known_rows(
    req: &HttpRequest,
    classified: &Classified,
    feed: &str,
    upstream: &Upstream,
    new_size: Option<u64>,
) -> Option<u64> {
    match (classified.endpoint, req.method().as_str()) {
        (Endpoint::Size, _) => {
            let now = upstream.size(feed).await.unwrap_or(0);
            Some(new_size.unwrap_or(0).saturating_sub(now))
        }
        (Endpoint::Bytes, "DELETE") => {
            Some(classified.named.as_ref().and_then(|named| named.size).unwrap_or(0))
        }
        _ => None,
    }
}

/// The bytes of a row of the columns a `/bytes` or `/raw` write names
/// (its body is rows of them); `None` for any other write.
async fn row_width(
    req: &HttpRequest,
    classified: &Classified,
    feed: &str,
    upstream: &Upstream,
) -> Option<u64> {
    let named = match (classified.endpoint, req.method().as_str()) {
        (Endpoint::Raw, _) | (Endpoint::Bytes, "POST" | "PUT" | "PATCH") => {
            &classified.named.as_ref()?.columns
        }
        _ => return None,
    };
    let cols = upstream.state().columns.of(upstream, feed, named).await;
    let width = named
        .iter()
        .filter_map(|name| cols.iter().find(|c| &c.name == name))
        .filter_map(|c| datatype::width(&c.datatype))
        .sum();
    Some(width)
}

/// What an acknowledged write wrote, as the proxy saw it go by.
pub struct Written<'a> {
    pub req: &'a HttpRequest,
    pub endpoint: Endpoint,
    /// The rows its body held, when its meter knew (a JSON dataset's rows,
    /// a `PUT /bytes`'s).
    pub body_rows: Option<u64>,
    pub bytes: u64,
}

impl Metered {
    /// Counts an acknowledged write: its rows (appended, overwritten or
    /// zeroed; for `PUT /size`, added) and its body's bytes.
    pub async fn count(self, written: Written<'_>, auth: &AuthState) {
        let rows = self.known_rows.or(written.body_rows).unwrap_or_else(|| {
            // Raw rows of the columns named: the body over their width.
            written.bytes.checked_div(self.cap.width.unwrap_or(0)).unwrap_or(0)
        });
        let (user_id, bytes) = (self.user_id, written.bytes);
        auth.metrics.quota_written(rows, bytes);
        let counted = db::run(&auth.pool, move |conn| {
            queries::add_write_usage(conn, user_id, &quota::today(), rows, bytes)
        })
        .await;
        if let Err(err) = counted {
            tracing::error!("a write of user {user_id} not counted against its quota: {err}");
        }
    }
}
