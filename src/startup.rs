//! Builds the application: the embedded upstream when no `LBASEDB_URL` is
//! set, the HTTP server, and every route, wired in `routes`.

use std::io;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::Logger;
use actix_web::{App, HttpServer, ResponseError, web};

use crate::config::{LbasedbSettings, Settings};
use crate::error::ApiError;
use crate::health;
use crate::lbasedb::EmbeddedServer;
use crate::proxy::{self, ProxyState};

pub struct Application {
    port: u16,
    upstream: String,
    server: Server,
    embedded: Option<EmbeddedServer>,
}

impl Application {
    pub async fn build(settings: Settings) -> io::Result<Self> {
        let embedded = match settings.lbasedb_url {
            Some(_) => None,
            None => {
                let embedded_settings = LbasedbSettings {
                    bind: "127.0.0.1:0".into(),
                    data: settings.embedded_data_path(),
                    payload_limit: settings.body_limit,
                    workers: settings.lbasedb_workers,
                };
                Some(EmbeddedServer::start(&embedded_settings).await?)
            }
        };
        let upstream = match (&settings.lbasedb_url, &embedded) {
            (Some(url), _) => check_upstream_url(url)?,
            (None, Some(embedded)) => format!("http://{}", embedded.addr()),
            (None, None) => unreachable!("no URL means an embedded upstream"),
        };

        let listener = TcpListener::bind(&settings.bind)?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let state = web::Data::new(ProxyState::new(&upstream, &settings));
        let workers = settings.workers;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(access_log())
                .app_data(state.clone())
                // Built here, so each worker gets its own client and pool.
                .app_data(web::Data::new(proxy::build_client(&settings)))
                .configure(routes)
                .default_service(web::to(|| async { ApiError::NotFound.error_response() }))
        });
        // A client that hangs up must take its upstream request with it:
        // without this, actix-web keeps serving a half-closed connection.
        let mut server = server.h1_allow_half_closed(false);
        if let Some(workers) = workers {
            server = server.workers(workers.max(1));
        }
        let server = server.listen(listener)?.run();
        log::info!(
            "lbasedb-proxy listening on http://{addr}, upstream {upstream}{}",
            if embedded.is_some() {
                " (embedded)"
            } else {
                ""
            }
        );
        Ok(Self {
            port,
            upstream,
            server,
            embedded,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The upstream's base URL (the embedded server's when it runs one).
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub async fn run_until_stopped(self) -> io::Result<()> {
        match self.embedded {
            Some(embedded) => {
                let handle = embedded.handle();
                let result = self.server.await;
                // The embedded upstream lives exactly as long as the proxy.
                handle.stop(true).await;
                embedded.run_until_stopped().await?;
                result
            }
            None => self.server.await,
        }
    }
}

/// Every route and scope of the application.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .service(web::scope("/api").route("/proxy/{endpoint}", web::route().to(proxy::proxy)));
}

/// One line per request: peer, method, path, status, bytes, duration. The
/// query string is left out (it may carry secrets), and so are headers.
fn access_log() -> Logger {
    Logger::new(r#"%a "%{method}xi %U" %s %b %Dms"#)
        .custom_request_replace("method", |req| req.method().to_string())
}

fn check_upstream_url(url: &str) -> io::Result<String> {
    let invalid = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LBASEDB_URL {url:?}: {why}"),
        )
    };
    let uri: actix_web::http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid("only http:// upstreams are supported"));
    }
    if uri.host().is_none() {
        return Err(invalid("no host"));
    }
    if uri.query().is_some() {
        return Err(invalid("must not have a query"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}
