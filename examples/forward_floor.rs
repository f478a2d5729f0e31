//! The floor under the proxy's CPU per request: a bare forwarder with none
//! of the proxy's work (no authentication, grant, limits, metrics, audit,
//! access log or request id), only the HTTP machinery on both sides, to
//! set beside nginx's `proxy_pass` and lbasedb-proxy under the same load
//! (`bench/floor.sh`, docs/performance.md "The floor of the crates").
//!
//! - `actix`: actix-web's server and awc's client, as the proxy has them
//!   (one worker a core, the request and the answer streamed, headers
//!   chosen by the proxy's own rules, `proxy::headers`).
//! - `hyper`: hyper's HTTP/1 server and hyper-util's pooled client on a
//!   tokio runtime of one thread a core.
//!
//!   cargo run --release --example forward_floor -- actix|hyper LISTEN UPSTREAM
//!
//! e.g. `forward_floor actix 127.0.0.1:18983 http://127.0.0.1:18980`.

use std::net::SocketAddr;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lbasedb_proxy::proxy::headers::{forward_request_header, forward_response_header};

async fn actix_forward(
    req: HttpRequest,
    body: web::Payload,
    client: web::Data<awc::Client>,
    upstream: web::Data<String>,
) -> HttpResponse {
    let url = format!("{}{}", upstream.get_ref(), req.uri());
    let mut out = client.request(req.method().clone(), url);
    for (name, value) in req.headers() {
        if forward_request_header(req.headers(), name) {
            out = out.append_header((name.clone(), value.clone()));
        }
    }
    match out.send_stream(body).await {
        Ok(answer) => {
            let mut response = HttpResponse::build(answer.status());
            for (name, value) in answer.headers() {
                if forward_response_header(answer.headers(), name) {
                    response.append_header((name.clone(), value.clone()));
                }
            }
            response.streaming(answer)
        }
        Err(err) => HttpResponse::BadGateway().body(err.to_string()),
    }
}

fn actix(listen: SocketAddr, upstream: String, workers: usize) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(
        HttpServer::new(move || {
            let client = awc::Client::builder()
                .connector(awc::Connector::new().limit(256))
                .disable_timeout()
                .disable_redirects()
                .no_default_headers()
                .finish();
            App::new()
                .app_data(web::Data::new(client))
                .app_data(web::Data::new(upstream.clone()))
                .default_service(web::to(actix_forward))
        })
        .workers(workers)
        .bind(listen)?
        .run(),
    )
}

type HyperClient = Client<HttpConnector, Incoming>;

async fn hyper_forward(
    mut req: hyper::Request<Incoming>,
    client: HyperClient,
    upstream: std::sync::Arc<str>,
) -> Result<hyper::Response<Incoming>, String> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = format!("{upstream}{path}").parse().map_err(|e| format!("{e}"))?;
    req.headers_mut().remove(hyper::header::HOST);
    req.headers_mut().remove(hyper::header::CONNECTION);
    client.request(req).await.map_err(|e| e.to_string())
}

fn hyper(listen: SocketAddr, upstream: String, workers: usize) -> std::io::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?;
    runtime.block_on(async move {
        let client: HyperClient =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
        let upstream: std::sync::Arc<str> = upstream.into();
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    hyper_forward(req, client.clone(), upstream.clone())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "forward_floor actix|hyper LISTEN UPSTREAM";
    let (Some(kind), Some(listen), Some(upstream)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().map_err(std::io::Error::other)?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    match kind.as_str() {
        "actix" => actix(listen, upstream.trim_end_matches('/').into(), workers),
        "hyper" => hyper(listen, upstream.trim_end_matches('/').into(), workers),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
