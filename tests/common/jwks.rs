//! A JWKS endpoint on loopback (HTTP/1.1 and h2c) whose body the test can change: it counts its
//! fetches, wakes waiters on each, and can be told to hang.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct JwksServer {
    pub addr: std::net::SocketAddr,
    hits: Arc<AtomicUsize>,
    hit: Arc<tokio::sync::Notify>,
    body: Arc<Mutex<String>>,
    /// When set, requests are accepted and never answered.
    hang: Arc<AtomicBool>,
}

impl JwksServer {
    /// Serves `body` at any path.
    pub async fn start(body: String) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let hit = Arc::new(tokio::sync::Notify::new());
        let body = Arc::new(Mutex::new(body));
        let hang = Arc::new(AtomicBool::new(false));
        let (h, n, b, hg) = (hits.clone(), hit.clone(), body.clone(), hang.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (h, n, b, hg) = (h.clone(), n.clone(), b.clone(), hg.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        // counted before the body is read: a fetch that `hits()` did not count
                        // yet when read after `serve` gets the new body
                        h.fetch_add(1, Ordering::SeqCst);
                        n.notify_waiters();
                        let body = b.lock().unwrap().clone();
                        let hang = hg.load(Ordering::SeqCst);
                        async move {
                            if hang {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
                });
            }
        });
        JwksServer {
            addr,
            hits,
            hit,
            body,
            hang,
        }
    }

    /// Serves `body` from now on.
    pub fn serve(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }

    /// From now on, accepts requests and never answers them.
    pub fn hang(&self) {
        self.hang.store(true, Ordering::SeqCst);
    }

    /// How many times the endpoint has been fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the endpoint has been fetched more than `n` times.
    pub async fn wait_hits_above(&self, n: usize) {
        loop {
            let notified = self.hit.notified();
            if self.hits() > n {
                return;
            }
            tokio::time::timeout(Duration::from_secs(20), notified)
                .await
                .expect("the JWKS endpoint was not fetched");
        }
    }
}
