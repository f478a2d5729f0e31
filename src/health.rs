//! `/healthz` (the process answers) and `/readyz` (its database and its
//! upstream answer).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::auth::AuthState;
use crate::db::{self, queries};
use crate::proxy::upstream::Upstream;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(upstream: Upstream, auth: web::Data<AuthState>) -> HttpResponse {
    if let Err(err) = db::run(&auth.pool, queries::user_count).await {
        tracing::warn!("readiness: database not answering: {err}");
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "detail": "The database is not answering." }));
    }
    if let Some(why) = upstream.state().embedded.as_ref().and_then(|embedded| embedded.failure()) {
        return HttpResponse::ServiceUnavailable().json(json!({ "detail": format!("{why}.") }));
    }
    match upstream.version().await {
        Some(version) => HttpResponse::Ok().json(
            json!({ "status": "ready", "database": "ok", "upstream": { "version": version } }),
        ),
        None => HttpResponse::ServiceUnavailable()
            .json(json!({ "detail": "The upstream Lbasedb server is not answering." })),
    }
}
