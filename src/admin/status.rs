//! Health, readiness and metrics: `/healthz`, `/readyz` (what is loaded, and each JWKS source's
//! state) and the Prometheus text of `/metrics` (the request counters of
//! [`crate::telemetry::metrics`] and the gauges read from the running gateway).

use super::api::{err, json_response, ApiError};
use crate::auth::jwt::jwks::JwksState;
use crate::auth::jwt::Keys;
use crate::body::GwBody;
use crate::gateway::Gateway;
use http::{header, HeaderValue, Response, StatusCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `/readyz` (SPEC section 4): ready once the config is compiled (always so while running: a
/// gateway starts only on a config that compiles, and a failed reload keeps the serving one), the
/// store has been read (every key and revocation in memory) and every remote key set has loaded
/// at least once: a route whose JWT authenticator has never had keys can only refuse valid
/// tokens. After that, a store or IdP outage does not make the gateway unready: it serves from
/// memory (the last good key set until `jwks_max_stale`), and `store_up`, `redis_up` and each
/// source's `state` say what is down. `reasons` lists why it is not ready.
pub fn readiness(gw: &Gateway) -> (bool, serde_json::Value) {
    let snap = gw.snapshot();
    let loaded = gw.keys().loaded.load(Ordering::Acquire);
    let mut reasons = Vec::new();
    if !loaded {
        reasons.push("the store has not been read yet".to_owned());
    }
    let mut jwks = Vec::new();
    for j in &snap.jwts {
        if let Keys::Remote(r) = &j.keys {
            let state = r.state();
            if state == JwksState::NeverLoaded {
                reasons.push(format!(
                    "authenticator `{}`: {} has never loaded",
                    j.name, r.location
                ));
            }
            jwks.push(serde_json::json!({"authenticator": &*j.name, "source": r.location.to_string(), "state": state}));
        }
    }
    let ready = reasons.is_empty();
    (
        ready,
        serde_json::json!({
            "ready": ready,
            "config": true,
            "store": loaded,
            "keys": loaded,
            "store_backend": gw.store_backend(),
            "store_up": gw.store_up(),
            "redis_up": snap.store.redis.as_ref().map(|l| l.is_up()),
            "jwks": jwks,
            "reasons": reasons,
        }),
    )
}

/// The Prometheus text exposition.
pub fn render_metrics(gw: &Gateway) -> String {
    use std::fmt::Write as _;
    let snap = gw.snapshot();
    let mut extra = String::new();
    let now = crate::clock::now_secs();
    let _ = writeln!(extra, "# HELP portcullis_api_keys_active API keys that are neither revoked nor expired.\n# TYPE portcullis_api_keys_active gauge\nportcullis_api_keys_active {}", gw.keys().active(now));
    let _ = writeln!(extra, "# HELP portcullis_jwks_refreshes_total JWKS fetches by source and result.\n# TYPE portcullis_jwks_refreshes_total counter");
    for r in &snap.remote_jwks {
        let (ok, failed) = r.fetch_counts();
        let src = r.location.to_string().replace(['"', '\\', '\n'], "_");
        let _ = writeln!(
            extra,
            "portcullis_jwks_refreshes_total{{source=\"{src}\",result=\"ok\"}} {ok}"
        );
        let _ = writeln!(
            extra,
            "portcullis_jwks_refreshes_total{{source=\"{src}\",result=\"error\"}} {failed}"
        );
    }
    let up = gw.store_up();
    let _ = writeln!(extra, "# HELP portcullis_store_up 1 while the key store (and, in cluster mode, its change feed) is reachable.\n# TYPE portcullis_store_up gauge\nportcullis_store_up{{backend=\"{}\"}} {}", gw.store_backend(), u8::from(up));
    // One family, all its samples together: Redis' line right after the store's.
    if let Some(l) = &snap.store.redis {
        let _ = writeln!(
            extra,
            "portcullis_store_up{{backend=\"redis\"}} {}",
            u8::from(l.is_up())
        );
    }
    let _ = writeln!(extra, "# HELP portcullis_keys_loaded API keys held in memory (any state).\n# TYPE portcullis_keys_loaded gauge\nportcullis_keys_loaded {}", gw.keys().len());
    if let Some(l) = &snap.store.redis {
        let _ = writeln!(extra, "# HELP portcullis_redis_fallback_total Rate-limit decisions made without Redis (on_redis_error applied).\n# TYPE portcullis_redis_fallback_total counter\nportcullis_redis_fallback_total {}", l.fallbacks.load(Ordering::Relaxed));
    }
    if let Some(f) = &gw.feed {
        let _ = writeln!(extra, "# HELP portcullis_store_changes_applied The last change number this replica applied from the store.\n# TYPE portcullis_store_changes_applied gauge\nportcullis_store_changes_applied {}", f.applied.load(Ordering::Relaxed));
    }
    let _ = writeln!(extra, "# HELP portcullis_audit_dropped_total Audit lines dropped (the writer fell behind) or lost to failed writes.\n# TYPE portcullis_audit_dropped_total counter\nportcullis_audit_dropped_total {}", crate::telemetry::audit::DROPPED.load(Ordering::Relaxed));
    upstream_metrics(&mut extra, &snap.upstreams);
    gw.metrics.render(&extra)
}

/// Per-target families of the http upstreams: requests, failures, ejections, whether each is in
/// the rotation, health checks, and requests sent again to another target.
fn upstream_metrics(
    out: &mut String,
    upstreams: &std::collections::BTreeMap<String, Arc<crate::upstream::Upstream>>,
) {
    use crate::upstream::stats::TargetStats;
    use crate::upstream::UpstreamKind;
    use std::fmt::Write as _;
    let http: Vec<(String, &crate::upstream::HttpUpstream)> = upstreams
        .values()
        .filter_map(|u| match &u.kind {
            UpstreamKind::Http(h) => Some((crate::telemetry::metrics::esc(&u.name), &**h)),
            UpstreamKind::Echo => None,
        })
        .collect();
    type Sample = fn(&TargetStats) -> u64;
    let families: [(&str, &str, &str, Sample); 4] = [
        ("portcullis_upstream_target_requests_total", "counter", "Requests sent to each upstream target (retries included).", |s| s.requests.load(Ordering::Relaxed)),
        ("portcullis_upstream_target_failures_total", "counter", "Connect failures, resets, timeouts and 5xx answers of each upstream target.", |s| s.failures.load(Ordering::Relaxed)),
        ("portcullis_upstream_target_ejections_total", "counter", "Times each upstream target was taken out of the rotation after consecutive failures.", |s| s.ejections.load(Ordering::Relaxed)),
        ("portcullis_upstream_target_healthy", "gauge", "1 while the upstream target is in the rotation (neither ejected nor failing its health checks).", |s| u64::from(s.in_rotation())),
    ];
    for (name, kind, help, sample) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (up, h) in &http {
            for t in h.targets.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{upstream=\"{up}\",target=\"{}\"}} {}",
                    t.label,
                    sample(&t.stats)
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP portcullis_upstream_target_in_flight Requests on each target of a least_requests upstream whose answer has not ended.\n# TYPE portcullis_upstream_target_in_flight gauge");
    for (up, h) in &http {
        if h.balance == crate::config::raw::Balance::LeastRequests {
            for t in h.targets.iter() {
                let _ = writeln!(
                    out,
                    "portcullis_upstream_target_in_flight{{upstream=\"{up}\",target=\"{}\"}} {}",
                    t.label,
                    t.stats.in_flight.load(Ordering::Relaxed)
                );
            }
        }
    }
    let _ = writeln!(out, "# HELP portcullis_upstream_health_checks_total Active health checks of each upstream target, by result.\n# TYPE portcullis_upstream_health_checks_total counter");
    for (up, h) in &http {
        if h.health.is_some() {
            for t in h.targets.iter() {
                for (result, n) in [
                    ("ok", &t.stats.checks_ok),
                    ("failed", &t.stats.checks_failed),
                ] {
                    let _ = writeln!(out, "portcullis_upstream_health_checks_total{{upstream=\"{up}\",target=\"{}\",result=\"{result}\"}} {}", t.label, n.load(Ordering::Relaxed));
                }
            }
        }
    }
    let _ = writeln!(out, "# HELP portcullis_upstream_retries_total Requests sent again to another target after a failure, by upstream.\n# TYPE portcullis_upstream_retries_total counter");
    for (up, h) in &http {
        let _ = writeln!(
            out,
            "portcullis_upstream_retries_total{{upstream=\"{up}\"}} {}",
            h.retried.load(Ordering::Relaxed)
        );
    }
}

/// `GET /readyz`: 200 when ready, else 503, with the document either way.
pub fn readyz(gw: &Gateway) -> Response<GwBody> {
    let (ready, doc) = readiness(gw);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &doc)
}

/// `GET /metrics`. Off the serving threads: the active-keys gauge walks every key (a million in
/// the largest stores), which would stall the requests sharing this worker. One render at a
/// time: concurrent scrapes wait here instead of filling the blocking pool.
pub async fn metrics(gw: Arc<Gateway>) -> Result<Response<GwBody>, ApiError> {
    static RENDER: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _one = RENDER.acquire().await;
    let text = tokio::task::spawn_blocking(move || render_metrics(&gw))
        .await
        .map_err(|_| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "metrics could not be rendered",
            )
        })?;
    let mut r = Response::new(GwBody::full(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(r)
}
