//! The process metrics every Prometheus client library exports (`process_*`: CPU, memory, file
//! descriptors, start time), read from `/proc/self` when `/metrics` is scraped. Elsewhere than
//! Linux they are left out.

use std::fmt::Write as _;

/// `/proc` counts CPU time in USER_HZ ticks, 100 a second on every Linux architecture we build
/// for (the kernel converts from its own HZ).
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says about this process.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads the stats, or `None` where there is no `/proc/self/stat`.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after the last
    // `)` are split on spaces; there, utime is field 14, so index 11 (field 3 is index 0).
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    let (utime, stime) = (num(11)?, num(12)?);
    let start_ticks = num(19);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let max_fds = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok());
    Some(ProcessStats {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        resident_bytes: kib("VmRSS:"),
        virtual_bytes: kib("VmSize:"),
        open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
        max_fds,
        start_time_seconds: boot
            .zip(start_ticks)
            .map(|(b, t)| b as f64 + t as f64 / USER_HZ),
    })
}

/// Appends the `process_*` families (nothing where `/proc` is missing).
pub fn render(o: &mut String) {
    let Some(s) = read() else { return };
    let mut one = |name: &str, kind: &str, help: &str, v: f64| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    one(
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, in seconds.",
        s.cpu_seconds,
    );
    one(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        s.resident_bytes as f64,
    );
    one(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        s.virtual_bytes as f64,
    );
    one(
        "process_open_fds",
        "gauge",
        "Open file descriptors (sockets included).",
        s.open_fds as f64,
    );
    if let Some(m) = s.max_fds {
        one(
            "process_max_fds",
            "gauge",
            "The most file descriptors the process may open.",
            m as f64,
        );
    }
    if let Some(t) = s.start_time_seconds {
        one(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch, in seconds.",
            t,
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_process_reads_itself() {
        let s = super::read().expect("/proc/self/stat");
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        // stdin, stdout, stderr and the read_dir handle at least
        assert!(s.open_fds >= 3, "{s:?}");
        assert!(s.max_fds.is_some_and(|m| m >= s.open_fds), "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = s.start_time_seconds.expect("start time");
        assert!(started <= now + 1.0 && started > now - 86_400.0, "{s:?}");
    }
}
