//! Config compilation against a REFERENCE MODEL, for the `limits` section (every field a
//! duration or a count with its own range): the model, written here from SPEC section 2 and the
//! README, says which fields are wrong; `check` must report exactly those, each at its own path
//! (every one, not only the first), and when nothing is wrong the compiled limits must be the
//! values written, defaults for the rest.

use crate::support::*;
use portcullis::config::{self, Mode};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::time::Duration;

/// (field, is a duration, default).
const FIELDS: &[(&str, bool, u64)] = &[
    ("header_timeout", true, 10_000),
    ("idle_timeout", true, 60_000),
    ("body_timeout", true, 60_000),
    ("shutdown_timeout", true, 30_000),
    ("max_header_bytes", false, 16_384),
    ("max_body_bytes", false, 10 * 1024 * 1024),
    ("max_connections", false, 10_000),
];

const DURS: &[&str] = &[
    "0",
    "1ms",
    "500ms",
    "10s",
    "1m",
    "2h",
    "90d",
    " 30s ",
    "-1s",
    "1.5s",
    "",
    "s",
    "10",
    "1w",
    "18446744073709551615ms",
    "18446744073709551616ms",
    "213503982334601d",
];
const NUMS: &[&str] = &[
    "0",
    "1",
    "8191",
    "8192",
    "16384",
    "1048576",
    "1048577",
    "1000000",
    "1000001",
    " 7 ",
    "-1",
    "1e3",
    "",
    "0x10",
    "18446744073709551615",
    "18446744073709551616",
];

fn ref_count(s: &str) -> Option<u64> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// What the model expects: the wrong fields, or every field's value (milliseconds or count).
fn model(values: &[Option<&str>]) -> Result<Vec<u64>, BTreeSet<String>> {
    let mut wrong = BTreeSet::new();
    let mut out = Vec::new();
    for ((field, is_dur, default), v) in FIELDS.iter().zip(values) {
        let val = match v {
            None => Some(*default),
            Some(s) if *is_dur => ref_duration(s).and_then(|d| u64::try_from(d.as_millis()).ok()),
            Some(s) => ref_count(s),
        };
        let ok = match (*field, val) {
            (_, None) => false,
            ("header_timeout" | "idle_timeout" | "body_timeout", Some(0)) => false,
            ("max_header_bytes", Some(n)) => (8192..=1_048_576).contains(&n),
            ("max_connections", Some(n)) => (1..=1_000_000).contains(&n),
            _ => true,
        };
        if !ok {
            wrong.insert(format!("limits.{field}"));
        }
        out.push(val.unwrap_or(0));
    }
    if wrong.is_empty() {
        Ok(out)
    } else {
        Err(wrong)
    }
}

fn limits_values() -> impl Strategy<Value = Vec<Option<&'static str>>> {
    FIELDS
        .iter()
        .map(|(_, is_dur, _)| {
            let pool = if *is_dur { DURS } else { NUMS };
            prop::option::of(prop::sample::select(pool)).boxed()
        })
        .collect::<Vec<_>>()
}

#[test]
fn the_limits_section_is_judged_as_the_model_says() {
    let dir = config_fixture();
    let file = dir.path().join("gateway.yaml");
    let mut runner = proptest::test_runner::TestRunner::new(cfg(512));
    let result = runner.run(&limits_values(), |values| {
        let fields: Vec<String> = FIELDS
            .iter()
            .zip(&values)
            .filter_map(|((f, _, _), v)| v.map(|v| format!("{f}: {}", serde_json::to_string(v).unwrap())))
            .collect();
        let yaml = format!(
            "listeners: [{{ name: a, bind: \"127.0.0.1:0\" }}]\nlimits: {{ {} }}\nupstreams: {{ e: {{ echo: true }} }}\nroutes: [{{ name: r, match: {{ path_prefix: / }}, upstream: e, auth: none }}]\n",
            fields.join(", ")
        );
        let got = config::load_str(&file, &yaml, None, Mode::Check);
        match (model(&values), got) {
            (Ok(want), Ok(snap)) => {
                let l = &snap.limits;
                let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap();
                let have = vec![
                    ms(l.header_timeout),
                    ms(l.idle_timeout),
                    ms(l.body_timeout),
                    ms(l.shutdown_timeout),
                    l.max_header_bytes as u64,
                    l.max_body_bytes,
                    l.max_connections as u64,
                ];
                prop_assert_eq!(have, want, "{}", yaml);
            }
            (Err(want), Err(e)) => {
                let have: BTreeSet<String> = e.issues.iter().map(|i| i.path.clone()).collect();
                prop_assert_eq!(&have, &want, "{}\n{}", yaml, e);
                for i in &e.issues {
                    prop_assert!(i.at.is_some(), "{} has no line: {}", i.path, yaml);
                }
            }
            (Ok(_), Err(e)) => prop_assert!(false, "the model accepts, check refuses:\n{}\n{}", yaml, e),
            (Err(want), Ok(_)) => prop_assert!(false, "check accepts, the model finds {:?} wrong:\n{}", want, yaml),
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
