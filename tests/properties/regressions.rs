//! Regressions: minimal inputs found by the properties of the other modules and by the fuzz
//! targets (fuzz/README.md). Each stays until src is fixed.

use crate::support::*;
use portcullis::config::{self, Mode};

/// Found by `rate_limits_never_panic` and `config_compile_never_panics_on_grammar_configs`:
/// governor computes the bucket tolerance as `interval * (burst - 1)` in u64 nanoseconds, which
/// overflows from `rate: 1/h, burst: 5124097` (or `1/min` with `burst: 307445736`): a panic in
/// `portcullis check` and config reload in debug builds, a silently wrapped (wrong) bucket in
/// release builds. Such a quota must be refused with a config error, or work.
#[test]
fn regression_rate_limit_burst_overflow() {
    let yaml = "listeners: [{ name: a, bind: \"127.0.0.1:0\" }]\nupstreams: { echo: { echo: true } }\nrate_limits: { big: { rate: 1/h, burst: 5124097 } }\n";
    let dir = config_fixture();
    let file = dir.path().join("gateway.yaml");
    let compiled =
        std::panic::catch_unwind(|| config::load_str(&file, yaml, None, Mode::Check).map(|_| ()));
    assert!(compiled.is_ok(), "config compile panicked on:\n{yaml}");
    assert!(
        matches!(compiled, Ok(Err(_))),
        "the overflowing burst must be a config error (release builds would wrap it):\n{yaml}"
    );
    for (count, per, burst) in [
        (1u32, 3600u64, 5_124_097u32),
        (1, 60, 307_445_736),
        (1, 60, u32::MAX),
    ] {
        let spec = portcullis::auth::rate_limit::LimitSpec {
            count,
            per: std::time::Duration::from_secs(per),
            burst,
        };
        let r = std::panic::catch_unwind(|| {
            if let Ok(l) = portcullis::auth::rate_limit::RateLimit::new(
                "big",
                spec,
                portcullis::auth::rate_limit::LimitKey::Ip,
            ) {
                let _ = l.check("ip|127.0.0.1");
            }
        });
        assert!(
            r.is_ok(),
            "RateLimit::new/check panicked on {count}/{per}s burst {burst}"
        );
    }
}
