//! The embedded Lbasedb-compatible server, on the `lbasedb` crate: the
//! default upstream of `serve`, the `lbasedb` subcommand, and the upstream of
//! every test. It answers as the upstream's HTTP server does
//! (`shared/LBASEDB_API.md`).

pub mod datatype;
mod error;
pub mod files;
mod handlers;
pub mod names;
pub mod perms;
pub mod query;
pub mod scan;
pub mod supervisor;

use std::io;
use std::net::{SocketAddr, TcpListener};

use std::sync::Arc;

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use lbasedb::prelude::Conn;

use crate::config::LbasedbSettings;

pub use error::LbError;
pub use handlers::API_VERSION;

/// A running embedded server: where it listens, and its task.
pub struct EmbeddedServer {
    addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<io::Result<()>>,
}

impl EmbeddedServer {
    /// Starts the server. Every request must carry `settings.secret`
    /// unless `settings.open` says to serve anyone, as the upstream does.
    /// `own_signals`: whether SIGTERM stops it (on its own), or its owner
    /// does. A data folder that holds more columns than the open-file
    /// limit lets it open is refused before anything is opened, with a
    /// `files::TooManyFiles` error that says how to raise the limit.
    pub async fn start(settings: &LbasedbSettings, own_signals: bool) -> io::Result<Self> {
        let secret = match (&settings.secret, settings.open) {
            (Some(secret), _) if secret.len() < 16 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "LBASEDB_SECRET must be 16 bytes or more",
                ));
            }
            (Some(secret), _) => Secret(Some(Arc::from(secret.as_str()))),
            (None, true) => Secret(None),
            (None, false) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "set LBASEDB_SECRET (and the same on `serve`), or pass --open to serve \
                     every feed to anyone who reaches the port",
                ));
            }
        };
        let workers = settings.workers.max(1);
        let connections = settings.max_connections.max(1);
        let files = files::FileBudget::new(files::open_file_limit(), connections as u64);
        files::preflight(&settings.data, &files).map_err(files::TooManyFiles::error)?;
        crate::fsperm::private_tree(&settings.data)?;
        let secret = web::Data::new(secret);
        let limits = web::Data::new(settings.limits);
        let locks =
            web::Data::new((!settings.unlocked).then(crate::lock::InProcessLocks::unbounded));
        let budget =
            web::Data::new(crate::budget::Budget::new(settings.limits.max_bytes_in_flight));
        let files = web::Data::new((files, tokio::sync::Mutex::new(())));
        let folder = web::Data::new(handlers::DataFolder(settings.data.clone()));
        let path = settings.data.to_str().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the Lbasedb data path is not UTF-8")
        })?;
        let conn = web::Data::new(Conn::new(path).await?);
        let listener = if settings.listen_stdin {
            listener_from_stdin()?
        } else {
            TcpListener::bind(&settings.bind)?
        };
        let addr = listener.local_addr()?;
        let limit = usize::try_from(settings.payload_limit).unwrap_or(usize::MAX);
        let json_limit = limit.min(usize::try_from(settings.limits.max_json_body).unwrap_or(limit));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(require_secret))
                .app_data(secret.clone())
                .app_data(limits.clone())
                .app_data(locks.clone())
                .app_data(budget.clone())
                .app_data(files.clone())
                .app_data(folder.clone())
                .app_data(conn.clone())
                .app_data(web::PayloadConfig::new(limit))
                .app_data(web::JsonConfig::default().limit(json_limit))
                .app_data(web::Data::new(handlers::JsonLimit(json_limit)))
                .configure(routes)
                .default_service(web::to(|| async { HttpResponse::NotFound().finish() }))
        })
        .workers(workers)
        .max_connections(connections.div_ceil(workers));
        let server = if own_signals { server } else { server.disable_signals() };
        let server = server.listen(listener)?.run();
        let handle = server.handle();
        // A server only accepts while its future is polled: spawn it now, so
        // it serves alongside the proxy rather than after it.
        let task = tokio::spawn(server);
        Ok(Self { addr, handle, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    pub async fn run_until_stopped(self) -> io::Result<()> {
        self.task.await.map_err(io::Error::other)?
    }
}

/// The listening socket `serve` hands its embedded upstream as standard
/// input (`--listen-stdin`): `serve` keeps it open across restarts of
/// this process, so the port is never free for another to take.
fn listener_from_stdin() -> io::Result<TcpListener> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let listener = TcpListener::from(fd);
    // Anything but a listening TCP socket has no local address to give.
    listener.local_addr().map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--listen-stdin: standard input is not a listening socket ({err})"),
        )
    })?;
    Ok(listener)
}

/// The secret requests must carry; `None` serves anyone.
struct Secret(Option<Arc<str>>);

/// Refuses, before any handler reads the request, one that does not carry
/// the secret: no port of ours serves data to whoever can reach it.
async fn require_secret(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody, BoxBody>>, actix_web::Error> {
    let expected = req.app_data::<web::Data<Secret>>().and_then(|s| s.0.clone());
    let Some(expected) = expected else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let sent = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if sent.is_some_and(|sent| crate::secret::constant_time_eq(sent, expected.as_bytes())) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let refusal = HttpResponse::Unauthorized().json(LbError::new(
        "permission denied",
        "this server answers only requests that carry its secret",
    ));
    Ok(req.into_response(refusal).map_into_right_body())
}

/// A resource and its methods: `resource!("/size", get => h::size_get, put => h::size_set)`.
macro_rules! resource {
    ($path:literal, $($method:ident => $handler:path),+ $(,)?) => {
        web::resource($path)$(.route(web::$method().to($handler)))+
    };
}

/// Every path and method of the upstream, as its API table lists them; any
/// other method on these paths gets actix-web's 405 with an `Allow` header,
/// as upstream.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use handlers as h;
    cfg.service(resource!("/version", get => h::version))
        .service(resource!("/feed",
            get => h::feed_list, post => h::feed_add, patch => h::feed_rename, delete => h::feed_remove))
        .service(resource!("/col",
            get => h::col_list, post => h::col_add, patch => h::col_rename, delete => h::col_remove))
        .service(resource!("/size", get => h::size_get, put => h::size_set))
        .service(resource!("/data",
            get => h::data_get, post => h::data_push, put => h::data_save, patch => h::data_patch))
        .service(resource!("/bytes",
            get => h::bytes_get, post => h::bytes_push, put => h::bytes_save, patch => h::bytes_patch,
            delete => h::bytes_reset))
        .service(resource!("/raw", get => h::raw_get, post => h::raw_set));
}
