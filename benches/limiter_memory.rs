//! Rate-limiter memory under many distinct clients (SPEC section 6: "rate-limiter memory bounded
//! under 1 000 000 distinct clients").
//!
//! Runs the real `RateLimit` (governor state in a DashMap, behind the `max_clients` ceiling) on a
//! fake clock, feeds it distinct client keys as the gateway builds them (`ip|203.0.113.7`,
//! `ip|2001:db8::…`), and reports the process RSS growth per tracked client:
//! 1. 1 000 000 IPv4 clients within one refill window, default ceiling (1 000 000): all tracked;
//! 2. the window passes and the periodic sweep runs: nothing is tracked any more;
//! 3. 3 000 000 IPv6 clients into a one-hour window (the sweep can free nothing) with
//!    `max_clients: 1000000`: never more than the ceiling, and a client tracked last is still
//!    limited.
//!
//! `cargo bench --bench limiter_memory`; under `cargo test` it runs with 20 000 clients.

use governor::clock::FakeRelativeClock;
use portcullis::auth::rate_limit::{LimitKey, LimitSpec, RateLimit, DEFAULT_MAX_CLIENTS};
use std::time::{Duration, Instant};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ipv4(i: usize) -> String {
    format!("ip|10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn ipv6(i: usize) -> String {
    format!(
        "ip|2001:db8:{:x}:{:x}::{:x}",
        i >> 32,
        (i >> 16) & 0xffff,
        i & 0xffff
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = if full { 1_000_000 } else { 20_000 };
    let base = rss_kib();

    // 1. n distinct clients inside one refill window (100/s, burst 200: a 2 s window)
    let clock = FakeRelativeClock::default();
    let spec = LimitSpec {
        count: 100,
        per: Duration::from_secs(1),
        burst: 200,
    };
    let l = RateLimit::with_clock("standard", spec, LimitKey::Ip, clock.clone()).expect("limit");
    assert_eq!(l.max_clients(), DEFAULT_MAX_CLIENTS);
    let t = Instant::now();
    for i in 0..n {
        l.check(&ipv4(i)).expect("a first request is allowed");
    }
    let took = t.elapsed();
    let grown = rss_kib().saturating_sub(base);
    assert_eq!(l.keys(), n, "every client inside the window is tracked");
    println!("process RSS at the start: {:.1} MiB", mib(base));
    println!(
        "{n} distinct IPv4 clients in one window: {} tracked, RSS +{:.1} MiB ({:.0} bytes per client), {:.0} ns per new client",
        l.keys(),
        mib(grown),
        grown as f64 * 1024.0 / n as f64,
        took.as_nanos() as f64 / n as f64
    );

    // 2. the window passes; the periodic sweep frees them all
    clock.advance(Duration::from_secs(3));
    let t = Instant::now();
    l.sweep();
    println!(
        "after the window and one sweep ({:.0} ms): {} tracked, RSS +{:.1} MiB over the start",
        t.elapsed().as_secs_f64() * 1000.0,
        l.keys(),
        mib(rss_kib().saturating_sub(base))
    );
    assert_eq!(l.keys(), 0);
    drop(l);

    // 3. 3n IPv6 clients into a one-hour window, ceiling n: the sweep cannot help, the ceiling does
    let spec = LimitSpec {
        count: 1000,
        per: Duration::from_secs(3600),
        burst: 1000,
    };
    let l = RateLimit::with_clock("hourly", spec, LimitKey::Ip, FakeRelativeClock::default())
        .expect("limit");
    l.set_max_clients(n);
    let mut most = 0;
    let t = Instant::now();
    for i in 0..3 * n {
        l.check(&ipv6(i)).expect("a first request is allowed");
        if i % 1024 == 0 {
            most = most.max(l.keys());
        }
    }
    let took = t.elapsed();
    l.sweep();
    most = most.max(l.keys());
    let grown3 = rss_kib().saturating_sub(base);
    println!(
        "{} distinct IPv6 clients in a one-hour window, max_clients {n}: at most {most} tracked, RSS +{:.1} MiB over the start, {:.0} ns per new client",
        3 * n,
        mib(grown3),
        took.as_nanos() as f64 / (3 * n) as f64
    );
    assert!(most <= n + 1, "{most} tracked, ceiling {n}");
    if full {
        // three times the clients, longer keys: memory stays near one ceiling's worth
        assert!(
            grown3 < grown * 3 / 2,
            "RSS grew {} KiB for 3n clients against {} KiB for n",
            grown3,
            grown
        );
    }
    // the client seen last is tracked and limited
    let last = ipv6(3 * n - 1);
    for _ in 1..1000 {
        l.check(&last).expect("within the burst");
    }
    assert!(l.check(&last).is_err(), "the burst is used up");
}
