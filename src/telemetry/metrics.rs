//! Prometheus metrics, kept in atomics and written out as text on `GET /metrics`. Label values
//! are route, authenticator and upstream names and stable reasons: never a subject, key or token.

/// DashMaps keyed by route names hash with foldhash instead of SipHash: the key is ours, not
/// the client's (a route, authenticator or upstream name and a fixed reason), so there is nothing
/// to flood. SipHash over the route name was about 360 instructions a request under callgrind.
type DashMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    requests: DashMap<(Arc<str>, u16), AtomicU64>,
    decisions: DashMap<(Arc<str>, &'static str, &'static str), AtomicU64>,
    upstream_errors: DashMap<(Arc<str>, &'static str), AtomicU64>,
    rate_limited: DashMap<Arc<str>, AtomicU64>,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn bump<K: std::hash::Hash + Eq>(m: &DashMap<K, AtomicU64>, k: K) {
    if let Some(c) = m.get(&k) {
        c.fetch_add(1, Ordering::Relaxed);
        return;
    }
    m.entry(k).or_default().fetch_add(1, Ordering::Relaxed);
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

static NO_ROUTE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("-"));

impl Metrics {
    pub fn request(&self, route: Option<&Arc<str>>, status: u16, latency_us: u64) {
        bump(&self.requests, (route.unwrap_or(&NO_ROUTE).clone(), status));
        let secs = latency_us as f64 / 1e6;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
    }

    pub fn decision(&self, authenticator: Option<&Arc<str>>, allowed: bool, reason: &'static str) {
        let a = authenticator.unwrap_or(&NO_ROUTE).clone();
        bump(
            &self.decisions,
            (a, if allowed { "allow" } else { "deny" }, reason),
        );
    }

    pub fn upstream_error(&self, route: &Arc<str>, kind: &'static str) {
        bump(&self.upstream_errors, (route.clone(), kind));
    }

    pub fn rate_limited(&self, route: &Arc<str>) {
        bump(&self.rate_limited, route.clone());
    }

    /// The exposition text; `extra` appends gauges owned elsewhere.
    pub fn render(&self, extra: &str) -> String {
        let mut o = String::with_capacity(4096);
        o.push_str("# HELP portcullis_requests_total Requests by route and status.\n# TYPE portcullis_requests_total counter\n");
        for e in self.requests.iter() {
            let (r, s) = e.key();
            let _ = writeln!(
                o,
                "portcullis_requests_total{{route=\"{}\",status=\"{s}\"}} {}",
                esc(r),
                e.value().load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP portcullis_auth_decisions_total Auth decisions by authenticator, decision and reason.\n# TYPE portcullis_auth_decisions_total counter\n");
        for e in self.decisions.iter() {
            let (a, d, r) = e.key();
            let _ = writeln!(o, "portcullis_auth_decisions_total{{authenticator=\"{}\",decision=\"{d}\",reason=\"{r}\"}} {}", esc(a), e.value().load(Ordering::Relaxed));
        }
        o.push_str("# HELP portcullis_upstream_errors_total Upstream failures (502/504) by route and kind.\n# TYPE portcullis_upstream_errors_total counter\n");
        for e in self.upstream_errors.iter() {
            let (u, k) = e.key();
            let _ = writeln!(
                o,
                "portcullis_upstream_errors_total{{route=\"{}\",kind=\"{k}\"}} {}",
                esc(u),
                e.value().load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP portcullis_rate_limited_total Requests refused by a rate limit, by route.\n# TYPE portcullis_rate_limited_total counter\n");
        for e in self.rate_limited.iter() {
            let _ = writeln!(
                o,
                "portcullis_rate_limited_total{{route=\"{}\"}} {}",
                esc(e.key()),
                e.value().load(Ordering::Relaxed)
            );
        }
        o.push_str("# HELP portcullis_request_duration_seconds Time from request head to response head.\n# TYPE portcullis_request_duration_seconds histogram\n");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "portcullis_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "portcullis_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "portcullis_request_duration_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "portcullis_request_duration_seconds_count {count}");
        o.push_str(extra);
        o
    }
}
