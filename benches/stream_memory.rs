//! Streaming memory: a 200 MB upload and a 200 MB download through the real `portcullis` binary,
//! reporting the gateway's peak RSS (VmHWM) after start, after the upload and after the download.
//! Guards "bodies stream, never buffered whole": the peak must stay a small constant, not grow
//! with the body size.
//!
//! `cargo bench --bench stream_memory` runs the full 200 MB; under `cargo test` (no `--bench`) it
//! runs a 2 MB smoke pass so it cannot rot.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

type B = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn upstream(
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<B>, std::convert::Infallible> {
    if req.uri().path() == "/download" {
        let n: u64 = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("bytes="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
        tokio::spawn(async move {
            let chunk = Bytes::from(vec![1u8; 1 << 16]);
            let mut left = n;
            while left > 0 {
                let k = left.min(chunk.len() as u64) as usize;
                if tx.send(Ok(Frame::data(chunk.slice(..k)))).await.is_err() {
                    return;
                }
                left -= k as u64;
            }
        });
        return Ok(hyper::Response::new(StreamBody::new(Rx(rx)).boxed()));
    }
    let mut body = req.into_body();
    let mut n = 0u64;
    while let Some(Ok(f)) = body.frame().await {
        n += f.data_ref().map_or(0, |d| d.len() as u64);
    }
    Ok(hyper::Response::new(
        Full::new(Bytes::from(n.to_string()))
            .map_err(|e| match e {})
            .boxed(),
    ))
}

struct Rx(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);
impl futures_core::Stream for Rx {
    type Item = Result<Frame<Bytes>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let size: u64 = if full {
        200 * 1024 * 1024
    } else {
        2 * 1024 * 1024
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let up_addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), hyper::service::service_fn(upstream))
                    .await;
            });
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listeners: [{{name: p, bind: 127.0.0.1:0}}]\nlimits: {{ max_body_bytes: 1000000000 }}\nlogging: {{ format: json, level: warn }}\nworkers: 1\nupstreams: {{ u: {{ url: \"http://{up_addr}\" }} }}\nroutes:\n  - name: all\n    match: {{ path_prefix: / }}\n    upstream: u\n    auth: none\n"
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let pid = child.id();
    let mut addr = String::new();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["message"] == "listening" {
                addr = v["addr"].as_str().expect("addr").to_owned();
                break;
            }
        }
    }
    // keep draining the gateway's log so it never blocks on a full pipe
    std::thread::spawn(move || lines.for_each(drop));
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let idle = hwm_kib(pid);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![2u8; 1 << 20]);
        let mut left = size;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            if tx.send(Ok(chunk.slice(..k))).await.is_err() {
                return;
            }
            left -= k as u64;
        }
    });
    struct Up(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);
    impl futures_core::Stream for Up {
        type Item = Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    let t = std::time::Instant::now();
    let r = client
        .post(format!("http://{addr}/upload"))
        .body(reqwest::Body::wrap_stream(Up(rx)))
        .send()
        .await
        .expect("upload");
    let got: u64 = r.text().await.expect("body").parse().expect("count");
    assert_eq!(got, size, "upload lost bytes");
    let up_time = t.elapsed();
    let after_upload = hwm_kib(pid);
    let t = std::time::Instant::now();
    let mut r = client
        .get(format!("http://{addr}/download?bytes={size}"))
        .send()
        .await
        .expect("download");
    let mut n = 0u64;
    while let Some(c) = r.chunk().await.expect("chunk") {
        n += c.len() as u64;
    }
    assert_eq!(n, size, "download lost bytes");
    let down_time = t.elapsed();
    let after_download = hwm_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    let mib = |k: u64| k as f64 / 1024.0;
    println!("stream_memory: body {} MiB", size >> 20);
    println!("  gateway peak RSS after start:    {:7.1} MiB", mib(idle));
    println!(
        "  gateway peak RSS after upload:   {:7.1} MiB  ({:.0} MiB/s)",
        mib(after_upload),
        (size >> 20) as f64 / up_time.as_secs_f64()
    );
    println!(
        "  gateway peak RSS after download: {:7.1} MiB  ({:.0} MiB/s)",
        mib(after_download),
        (size >> 20) as f64 / down_time.as_secs_f64()
    );
    println!(
        "  growth over idle: {:.1} MiB for {} MiB streamed each way",
        mib(after_download.saturating_sub(idle)),
        size >> 20
    );
}
