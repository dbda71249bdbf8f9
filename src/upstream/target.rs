//! One address of an upstream ([`Target`]): where it is, how requests reach it ([`Transport`]),
//! and its [`TargetStats`].

use super::body::LimitedBody;
use super::pool::H1Pool;
use super::stats::TargetStats;
use crate::tls::HttpsClient;
use http::header::HeaderValue;
use http::uri::{Authority, Scheme};
use std::sync::Arc;

#[derive(Debug)]
pub struct Target {
    /// `scheme://authority` as configured: the target's name in metrics and logs.
    pub label: Arc<str>,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix from the URL, without trailing slash ("" for none).
    pub base_path: String,
    pub transport: Transport,
    pub stats: Arc<TargetStats>,
}

/// How requests reach an upstream. Either way `X-Forwarded-Host` carries the client's host.
#[derive(Debug)]
pub enum Transport {
    /// Plain HTTP/1.1: the gateway's own keep-alive pool ([`pool`]). The upstream gets the
    /// client's `Host`, or `host` (its own authority) when the client sent none.
    Pool {
        pool: Arc<H1Pool>,
        host: HeaderValue,
    },
    /// https (HTTP/1.1 or h2 by ALPN) and h2c: hyper-util's client. `Host` / `:authority` name
    /// the upstream itself (TLS names and HTTP/2's `:authority` must).
    Client(Box<HttpsClient<LimitedBody>>),
}
