//! Active health checks (`upstreams.NAME.health`): every `interval`, a `GET path` to each target
//! (from its host's root: a target URL's path prefix is not added; its own connection pool,
//! `User-Agent: portcullis-health-check`); a 2xx or 3xx answer within
//! `timeout` passes. `unhealthy_threshold` failures in a row take a target out of the rotation,
//! `healthy_threshold` passes in a row bring it back. Targets start in the rotation and are
//! checked at once. The task ends when the upstream is no longer served (it holds a weak
//! reference only).

use super::target::Target;
use crate::config::issues::Issues;
use crate::config::raw::RawHealth;
use crate::tls::HttpsClientOptions;
use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Request, Uri};
use http_body_util::Empty;
use rustls::pki_types::CertificateDer;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Debug)]
pub struct HealthCheck {
    pub path: PathAndQuery,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    /// The upstream's transport settings, which the checks share.
    transport: CheckTransport,
}

/// How the checks reach the targets: as the upstream's requests do.
#[derive(Debug)]
pub(super) struct CheckTransport {
    pub http2_only: bool,
    pub ca: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
}

impl HealthCheck {
    pub(super) fn compile(
        at: &str,
        raw: &RawHealth,
        transport: CheckTransport,
        issues: &mut Issues,
    ) -> Option<HealthCheck> {
        let before = issues.len();
        let path = health_path(raw.path.as_str())
            .map_err(|e| issues.add(format!("{at}.path"), e))
            .ok();
        let interval = raw.interval.map_or(Duration::from_secs(5), |d| d.0);
        let timeout = raw.timeout.map_or(Duration::from_secs(1), |d| d.0);
        if interval < Duration::from_millis(100) {
            issues.add(format!("{at}.interval"), "at least 100ms");
        }
        if timeout.is_zero() || timeout > interval {
            issues.add(
                format!("{at}.timeout"),
                format!("more than 0 and at most the interval ({interval:?})"),
            );
        }
        let threshold =
            |v: Option<crate::values::Num>, field: &str, default, issues: &mut Issues| {
                let n = v.map_or(default, |n| n.0);
                if !(1..=100).contains(&n) {
                    issues.add(format!("{at}.{field}"), "between 1 and 100");
                }
                n as u32
            };
        let unhealthy = threshold(raw.unhealthy_threshold, "unhealthy_threshold", 2, issues);
        let healthy = threshold(raw.healthy_threshold, "healthy_threshold", 1, issues);
        if issues.len() > before {
            return None;
        }
        Some(HealthCheck {
            path: path?,
            interval,
            timeout,
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            transport,
        })
    }
}

/// Starts the checks of the `targets` of upstream `name`. Called once per upstream; the task
/// holds the targets weakly and ends when the upstream is no longer served.
pub(super) fn start(name: &str, targets: &Arc<[Target]>, check: &HealthCheck) {
    let client = match crate::tls::https_client::<Empty<Bytes>>(&HttpsClientOptions {
        ca: &check.transport.ca,
        connect_timeout: check.transport.connect_timeout.min(check.timeout),
        idle_timeout: check.interval * 2,
        http2: true,
        http2_only: check.transport.http2_only,
    }) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(upstream = %name, error = %e, "health checks cannot start");
            return;
        }
    };
    // (target index, what to GET): the path from the host's root, the target's own path
    // prefix not added
    let uris: Vec<(usize, Uri)> = targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            Uri::builder()
                .scheme(t.scheme.clone())
                .authority(t.authority.clone())
                .path_and_query(check.path.clone())
                .build()
                .ok()
                .map(|u| (i, u))
        })
        .collect();
    let weak: Weak<[Target]> = Arc::downgrade(targets);
    let name = name.to_owned();
    let (interval, timeout) = (check.interval, check.timeout);
    let (unhealthy, healthy) = (check.unhealthy_threshold, check.healthy_threshold);
    let mut runs = vec![(0u32, 0u32); targets.len()];
    tokio::spawn(async move {
        loop {
            if weak.strong_count() == 0 {
                return;
            }
            let mut set = tokio::task::JoinSet::new();
            for (i, uri) in &uris {
                let (i, client, uri) = (*i, client.clone(), uri.clone());
                set.spawn(async move { (i, probe(&client, uri, timeout).await) });
            }
            let results = set.join_all().await;
            let Some(targets) = weak.upgrade() else {
                return;
            };
            for (i, result) in results {
                let (Some(t), Some(run)) = (targets.get(i), runs.get_mut(i)) else {
                    continue;
                };
                let s = &t.stats;
                match result {
                    Ok(()) => {
                        s.checks_ok.fetch_add(1, Relaxed);
                        *run = (run.0.saturating_add(1), 0);
                        if s.is_down() && run.0 >= healthy {
                            s.set_down(false);
                            tracing::info!(upstream = %name, target = %t.label, "upstream target passes its health checks again: back in the rotation");
                        }
                    }
                    Err(why) => {
                        s.checks_failed.fetch_add(1, Relaxed);
                        *run = (0, run.1.saturating_add(1));
                        if !s.is_down() && run.1 >= unhealthy {
                            s.set_down(true);
                            tracing::warn!(upstream = %name, target = %t.label, failed = run.1, reason = %why, "upstream target fails its health checks: out of the rotation");
                        }
                    }
                }
            }
            drop(targets);
            tokio::time::sleep(interval).await;
        }
    });
}

/// One check: `Ok` for a 2xx or 3xx answer within `timeout`, else why not.
async fn probe(
    client: &crate::tls::HttpsClient<Empty<Bytes>>,
    uri: Uri,
    timeout: Duration,
) -> Result<(), String> {
    let req = Request::get(uri)
        .header(http::header::USER_AGENT, "portcullis-health-check")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(if e.is_connect() {
            "connect failed".to_owned()
        } else {
            "connection failed".to_owned()
        }),
        Ok(Ok(resp)) => {
            let status = resp.status();
            // the body is not read: dropping it closes the connection if it was not empty
            if status.is_success() || status.is_redirection() {
                Ok(())
            } else {
                Err(format!("answered {}", status.as_u16()))
            }
        }
    }
}

/// The health check's path, as a request target.
fn health_path(path: &str) -> Result<PathAndQuery, String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}`: a path starting with /"));
    }
    path.parse::<PathAndQuery>()
        .map_err(|e| format!("`{path}` is not a request path: {e}"))
}
