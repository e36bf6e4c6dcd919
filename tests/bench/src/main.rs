//! `plugd-bench`: the measurements behind docs/benchmarks.md, as one small client binary.
//!
//! - `rtt`: POST round trips on keep-alive connections to a plugin socket (p50/p99, req/s), N clients;
//!   `--method GET` for Engine API calls (the AuthZ overhead, tests/bench/authz.sh).
//! - `enable`: time from `POST /plugins/{name}/enable` to the plugin's socket answering, and to the
//!   API call returning, against plugd or dockerd (the same Engine API).
//!
//! Figures are printed as tab-separated lines so the bench script can tabulate them; nothing here
//! asserts a threshold.
#![forbid(unsafe_code)]

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::net::UnixStream;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Round trips of one request on keep-alive connections.
    Rtt {
        /// Plugin socket.
        #[arg(long)]
        socket: PathBuf,
        /// Request path.
        #[arg(long, default_value = "/VolumeDriver.Get")]
        path: String,
        /// HTTP method.
        #[arg(long, default_value = "POST")]
        method: String,
        /// Request body.
        #[arg(long, default_value = "{\"Name\":\"bench\"}\n")]
        body: String,
        /// Concurrent keep-alive clients.
        #[arg(long, default_value_t = 1)]
        clients: usize,
        /// Requests per round (split across clients).
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Rounds; the median round is reported, like the dockerd reference.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Label printed in the first column.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Enable a (disabled) plugin and time readiness.
    Enable {
        /// Engine API socket (plugd or dockerd).
        #[arg(long)]
        api: PathBuf,
        /// Plugin name.
        #[arg(long)]
        name: String,
        /// Socket that answers once the plugin is ready.
        #[arg(long)]
        plugin_socket: PathBuf,
        /// Label printed in the first column.
        #[arg(long, default_value = "")]
        label: String,
    },
}

async fn connect(
    socket: &Path,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = UnixStream::connect(socket).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    send(sender, "POST", path, body).await
}

async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "")
        .header("Accept", "application/vnd.docker.plugins.v1.2+json")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn rtt_round(
    socket: &Path,
    method: &str,
    path: &str,
    body: &Bytes,
    clients: usize,
    requests: usize,
) -> anyhow::Result<(Duration, Duration, f64)> {
    let per_client = requests.div_ceil(clients);
    let mut senders = Vec::new();
    for _ in 0..clients {
        let mut s = connect(socket).await?;
        let (status, reply) = send(&mut s, method, path, body.clone()).await?;
        if status != 200 {
            bail!(
                "warm-up request answered {status}: {}",
                String::from_utf8_lossy(&reply)
            );
        }
        senders.push(s);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut s in senders {
        let body = body.clone();
        let path = path.to_string();
        let method = method.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_client);
            for _ in 0..per_client {
                let t = Instant::now();
                let (status, _) = send(&mut s, &method, &path, body.clone()).await?;
                if status != 200 {
                    bail!("request answered {status}");
                }
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let wall = start.elapsed();
    all.sort();
    Ok((
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.len() as f64 / wall.as_secs_f64(),
    ))
}

async fn api(socket: &Path, method: &str, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let mut s = connect(socket).await?;
    s.ready().await?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "api")
        .body(Full::new(Bytes::new()))?;
    let resp = s.send_request(req).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

async fn enable(
    api_sock: &Path,
    name: &str,
    plugin_socket: &Path,
) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let call = {
        let api_sock = api_sock.to_path_buf();
        let path = format!("/v1.41/plugins/{name}/enable?timeout=30");
        tokio::spawn(async move {
            api(&api_sock, "POST", &path)
                .await
                .map(|r| (r, start.elapsed()))
        })
    };
    let deadline = start + Duration::from_secs(30);
    let answered = loop {
        if let Ok(mut s) = connect(plugin_socket).await
            && let Ok((200, _)) = post(&mut s, "/Plugin.Activate", Bytes::new()).await
        {
            break start.elapsed();
        }
        if Instant::now() > deadline {
            bail!("plugin socket {} never answered", plugin_socket.display());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let ((status, body), returned) = call.await??;
    if status != 200 {
        bail!(
            "enable answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((answered, returned))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Rtt {
            socket,
            path,
            method,
            body,
            clients,
            requests,
            rounds,
            label,
        } => {
            let body = Bytes::from(body);
            let mut results = Vec::new();
            for _ in 0..rounds {
                results.push(
                    rtt_round(&socket, &method, &path, &body, clients, requests)
                        .await
                        .context("round")?,
                );
            }
            results.sort_by_key(|r| r.0);
            let (p50, p99, rps) = results[results.len() / 2];
            let best = results.iter().map(|r| r.2).fold(0.0, f64::max);
            println!(
                "rtt\t{label}\tclients={clients}\tp50_us={:.0}\tp99_us={:.0}\treq_s={rps:.0}\tbest_req_s={best:.0}",
                us(p50),
                us(p99)
            );
        }
        Cmd::Enable {
            api: api_sock,
            name,
            plugin_socket,
            label,
        } => {
            let (answered, returned) = enable(&api_sock, &name, &plugin_socket).await?;
            println!(
                "enable\t{label}\tsocket_answers_ms={:.1}\tapi_returns_ms={:.1}",
                answered.as_secs_f64() * 1e3,
                returned.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
