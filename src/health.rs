//! `/healthz` (the process answers) and `/readyz` (its database and its
//! upstream answer).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::auth::AuthState;
use crate::db::{self, queries};
use crate::proxy::ProxyState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(
    state: web::Data<ProxyState>,
    client: web::Data<awc::Client>,
    auth: web::Data<AuthState>,
) -> HttpResponse {
    if let Err(err) = db::run(&auth.pool, queries::user_count).await {
        log::warn!("readiness: database not answering: {err}");
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "detail": "The database is not answering." }));
    }
    let url = format!("{}/version", state.upstream);
    let answer = client.get(url).timeout(Duration::from_secs(2)).send().await;
    match answer {
        Ok(mut response) if response.status().is_success() => {
            let version = response.json::<serde_json::Value>().await.ok();
            let version = version.as_ref().and_then(|v| v.get("version")).cloned();
            HttpResponse::Ok().json(
                json!({ "status": "ready", "database": "ok", "upstream": { "version": version } }),
            )
        }
        Ok(response) => HttpResponse::ServiceUnavailable().json(json!({
            "detail": format!("The upstream answered {} to /version.", response.status().as_u16())
        })),
        Err(err) => {
            log::warn!("readiness: upstream not answering: {err}");
            HttpResponse::ServiceUnavailable()
                .json(json!({ "detail": "The upstream Lbasedb server is not answering." }))
        }
    }
}
