//! What the upstream client costs per request: awc (the proxy's) against
//! hyper-util's pooled client, each on one actix-rt worker thread as the
//! proxy's workers are, `CONCURRENCY` requests at a time, `GET URL` with
//! its body read, CPU time of this process from `/proc/self/stat`. Run it
//! against `lbasedb-proxy lbasedb --open` (see `docs/performance.md`):
//!
//!   cargo run --release --example upstream_client_ab -- awc|hyper URL [REQUESTS] [CONCURRENCY]

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};

/// User and system CPU time of this process, in clock ticks (1/100 s).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command's closing parenthesis: utime is the 12th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

enum Client {
    Awc(awc::Client),
    Hyper(
        hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            Empty<Bytes>,
        >,
    ),
}

impl Client {
    async fn get(&self, url: &str) -> usize {
        match self {
            Client::Awc(client) => {
                let mut response = client.get(url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.body().await.unwrap().len()
            }
            Client::Hyper(client) => {
                let uri: http::Uri = url.parse().unwrap();
                let response = client.get(uri).await.unwrap();
                assert_eq!(response.status(), 200);
                response.into_body().collect().await.unwrap().to_bytes().len()
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).cloned().unwrap_or_else(|| "awc".into());
    let url = args.get(2).cloned().unwrap_or_else(|| "http://127.0.0.1:18680/version".into());
    let requests: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let concurrency: usize = args.get(4).and_then(|n| n.parse().ok()).unwrap_or(32);
    actix_rt::System::new().block_on(async move {
        let client = Rc::new(match kind.as_str() {
            "awc" => Client::Awc(
                awc::Client::builder()
                    .connector(awc::Connector::new().limit(concurrency * 2))
                    .disable_timeout()
                    .disable_redirects()
                    .no_default_headers()
                    .finish(),
            ),
            "hyper" => Client::Hyper(
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_max_idle_per_host(concurrency * 2)
                    .build_http(),
            ),
            other => panic!("awc or hyper, not {other}"),
        });
        // Warm: connections made, caches filled.
        for _ in 0..1000 {
            client.get(&url).await;
        }
        let (started, ticks) = (Instant::now(), cpu_ticks());
        let each = requests / concurrency;
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                actix_rt::spawn(async move {
                    for _ in 0..each {
                        client.get(&url).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let (elapsed, ticks) = (started.elapsed(), cpu_ticks() - ticks);
        let made = each * concurrency;
        println!(
            "{kind}: {made} requests at c={concurrency} in {:.2} s ({:.0}/s), {:.1} us CPU a request",
            elapsed.as_secs_f64(),
            made as f64 / elapsed.as_secs_f64(),
            ticks as f64 * 10_000.0 / made as f64
        );
    });
}
