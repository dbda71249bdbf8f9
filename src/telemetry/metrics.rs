//! Prometheus metrics, kept in atomics and written out as text on `GET /metrics`. Label values
//! are route, listener, authenticator and upstream names and stable reasons: never a subject, key
//! or token.

/// DashMaps keyed by route names hash with foldhash instead of SipHash: the key is ours, not
/// the client's (a route, authenticator or upstream name and a fixed reason), so there is nothing
/// to flood. SipHash over the route name was about 360 instructions a request under callgrind.
type DashMap<K, V> = dashmap::DashMap<K, V, foldhash::fast::RandomState>;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bucket bounds in microseconds, and as the `le` label writes them (seconds).
const BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000, 10_000_000,
];
const BUCKETS_LE: [&str; 12] = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "1",
    "10",
];

/// One histogram series: a count per bucket (not cumulative: one increment an observation; the
/// exposition sums them) and the sum of the observations.
#[derive(Default)]
struct Histogram {
    /// `BUCKETS_US.len()` bounded buckets, then `+Inf`.
    counts: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, us: u64) {
        let i = BUCKETS_US.partition_point(|b| *b < us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Writes the series `name{label="value",le=...}` (cumulative buckets), `_sum` and `_count`.
    fn render(&self, o: &mut String, name: &str, label: &str, value: &str) {
        let mut cumulative = 0;
        for (i, le) in BUCKETS_LE.iter().chain(["+Inf"].iter()).enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "{name}_bucket{{{label}=\"{value}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "{name}_sum{{{label}=\"{value}\"}} {sum}");
        let _ = writeln!(o, "{name}_count{{{label}=\"{value}\"}} {cumulative}");
    }
}

/// Connections a listener has open now and has accepted in all.
#[derive(Default)]
pub struct ConnCounts {
    open: AtomicU64,
    accepted: AtomicU64,
}

/// Holds one connection open in [`Metrics`]' gauge until dropped.
pub struct OpenConn(Arc<ConnCounts>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: DashMap<(Arc<str>, u16), AtomicU64>,
    decisions: DashMap<(Arc<str>, &'static str, &'static str), AtomicU64>,
    upstream_errors: DashMap<(Arc<str>, &'static str), AtomicU64>,
    rate_limited: DashMap<Arc<str>, AtomicU64>,
    /// Request latency by route (`-`: refused before a route was found).
    latency: DashMap<Arc<str>, Histogram>,
    /// Upstream latency (request sent to response head) by route.
    upstream_latency: DashMap<Arc<str>, Histogram>,
    connections: DashMap<Arc<str>, Arc<ConnCounts>>,
    /// TLS handshakes that failed, by listener and reason.
    handshake_failures: DashMap<(Arc<str>, &'static str), AtomicU64>,
    /// Reloads: [succeeded, failed].
    reloads: [AtomicU64; 2],
    /// Unix seconds of the last successful reload (or of the start).
    last_reload_ok: AtomicU64,
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

fn observe(m: &DashMap<Arc<str>, Histogram>, k: &Arc<str>, us: u64) {
    if let Some(h) = m.get(k) {
        h.observe(us);
        return;
    }
    m.entry(k.clone()).or_default().observe(us);
}

/// A Prometheus label value, escaped (`\\`, `"`, newline).
pub fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

static NO_ROUTE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("-"));

/// One family's `# HELP` and `# TYPE` lines.
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics::default();
        m.last_reload_ok
            .store(crate::clock::now_secs().max(0) as u64, Ordering::Relaxed);
        m
    }

    /// One request answered: its status, its latency and, when it reached the upstream, the
    /// upstream's.
    pub fn request(
        &self,
        route: Option<&Arc<str>>,
        status: u16,
        latency_us: u64,
        upstream_us: Option<u64>,
    ) {
        let route = route.unwrap_or(&NO_ROUTE);
        bump(&self.requests, (route.clone(), status));
        observe(&self.latency, route, latency_us);
        if let Some(us) = upstream_us {
            observe(&self.upstream_latency, route, us);
        }
    }

    /// A request the HTTP parser refused before it became one (no route, no latency).
    pub fn parser_refusal(&self, status: u16) {
        bump(&self.requests, (NO_ROUTE.clone(), status));
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

    /// A connection accepted on `listener`: counted open until the guard is dropped.
    pub fn connection(&self, listener: &Arc<str>) -> OpenConn {
        let c = match self.connections.get(listener) {
            Some(c) => c.clone(),
            None => self
                .connections
                .entry(listener.clone())
                .or_default()
                .clone(),
        };
        c.open.fetch_add(1, Ordering::Relaxed);
        c.accepted.fetch_add(1, Ordering::Relaxed);
        OpenConn(c)
    }

    pub fn handshake_failed(&self, listener: &Arc<str>, reason: &'static str) {
        bump(&self.handshake_failures, (listener.clone(), reason));
    }

    pub fn reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
        if ok {
            self.last_reload_ok
                .store(crate::clock::now_secs().max(0) as u64, Ordering::Relaxed);
        }
    }

    /// The exposition text; `extra` appends gauges owned elsewhere.
    pub fn render(&self, extra: &str) -> String {
        let mut o = String::with_capacity(8192);
        family(
            &mut o,
            "portcullis_build_info",
            "gauge",
            "The running build: 1, labelled with its version.",
        );
        let _ = writeln!(
            o,
            "portcullis_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        self.render_requests(&mut o);
        self.render_connections(&mut o);
        family(
            &mut o,
            "portcullis_config_reloads_total",
            "counter",
            "Config reloads (SIGHUP or POST /admin/reload) by result.",
        );
        for (i, result) in ["success", "failure"].iter().enumerate() {
            let n = self.reloads[i].load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "portcullis_config_reloads_total{{result=\"{result}\"}} {n}"
            );
        }
        family(
            &mut o,
            "portcullis_config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the config now serving was loaded (the start, or the last successful reload).",
        );
        let _ = writeln!(
            o,
            "portcullis_config_last_reload_success_timestamp_seconds {}",
            self.last_reload_ok.load(Ordering::Relaxed)
        );
        o.push_str(extra);
        super::process::render(&mut o);
        o
    }

    fn render_requests(&self, o: &mut String) {
        family(
            o,
            "portcullis_requests_total",
            "counter",
            "Requests by route and status (route `-`: refused before routing, parser refusals included).",
        );
        for e in self.requests.iter() {
            let (r, s) = e.key();
            let n = e.value().load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "portcullis_requests_total{{route=\"{}\",status=\"{s}\"}} {n}",
                esc(r)
            );
        }
        family(
            o,
            "portcullis_auth_decisions_total",
            "counter",
            "Auth decisions by authenticator, decision and reason.",
        );
        for e in self.decisions.iter() {
            let (a, d, r) = e.key();
            let n = e.value().load(Ordering::Relaxed);
            let _ = writeln!(o, "portcullis_auth_decisions_total{{authenticator=\"{}\",decision=\"{d}\",reason=\"{r}\"}} {n}", esc(a));
        }
        family(
            o,
            "portcullis_upstream_errors_total",
            "counter",
            "Upstream failures (502/504) by route and kind.",
        );
        for e in self.upstream_errors.iter() {
            let (u, k) = e.key();
            let n = e.value().load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "portcullis_upstream_errors_total{{route=\"{}\",kind=\"{k}\"}} {n}",
                esc(u)
            );
        }
        family(
            o,
            "portcullis_rate_limited_total",
            "counter",
            "Requests refused by a rate limit, by route.",
        );
        for e in self.rate_limited.iter() {
            let n = e.value().load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "portcullis_rate_limited_total{{route=\"{}\"}} {n}",
                esc(e.key())
            );
        }
        family(
            o,
            "portcullis_request_duration_seconds",
            "histogram",
            "Time from request head to response head, by route.",
        );
        for e in self.latency.iter() {
            let name = "portcullis_request_duration_seconds";
            e.value().render(o, name, "route", &esc(e.key()));
        }
        family(
            o,
            "portcullis_upstream_duration_seconds",
            "histogram",
            "Time from sending a request upstream to its response head (connecting included), by route.",
        );
        for e in self.upstream_latency.iter() {
            let name = "portcullis_upstream_duration_seconds";
            e.value().render(o, name, "route", &esc(e.key()));
        }
    }

    fn render_connections(&self, o: &mut String) {
        family(
            o,
            "portcullis_open_connections",
            "gauge",
            "Client connections open now, by listener (admin: the admin API).",
        );
        for e in self.connections.iter() {
            let n = e.value().open.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "portcullis_open_connections{{listener=\"{}\"}} {n}",
                esc(e.key())
            );
        }
        family(
            o,
            "portcullis_connections_total",
            "counter",
            "Client connections accepted, by listener.",
        );
        for e in self.connections.iter() {
            let n = e.value().accepted.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "portcullis_connections_total{{listener=\"{}\"}} {n}",
                esc(e.key())
            );
        }
        family(
            o,
            "portcullis_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed, by listener and reason (client_certificate_*: mutual TLS refused the client).",
        );
        for e in self.handshake_failures.iter() {
            let (l, r) = e.key();
            let n = e.value().load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "portcullis_tls_handshake_failures_total{{listener=\"{}\",reason=\"{r}\"}} {n}",
                esc(l)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_and_renders_cumulatively() {
        let h = Histogram::default();
        for us in [50, 100, 101, 2_000_000, 20_000_000] {
            h.observe(us);
        }
        let mut o = String::new();
        h.render(&mut o, "x", "route", "r");
        let bucket = |le: &str| -> u64 {
            let l = format!("x_bucket{{route=\"r\",le=\"{le}\"}} ");
            let line = o.lines().find(|x| x.starts_with(&l)).unwrap();
            line[l.len()..].parse().unwrap()
        };
        // `le` is inclusive: 100 us is in the 0.0001 bucket
        assert_eq!(bucket("0.0001"), 2);
        assert_eq!(bucket("0.00025"), 3);
        assert_eq!(bucket("1"), 3);
        assert_eq!(bucket("10"), 4);
        assert_eq!(bucket("+Inf"), 5);
        assert!(o.contains("x_count{route=\"r\"} 5\n"), "{o}");
        assert!(o.contains("x_sum{route=\"r\"} 22.000251\n"), "{o}");
    }
}
