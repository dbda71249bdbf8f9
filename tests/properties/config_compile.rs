//! Config parse + compile (`portcullis check`: `config::load(.., Mode::Check)`, no runtime).

use crate::support::*;
use portcullis::config::{self, Mode};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn check_config(file: &Path, src: &str) {
    // Errors are fine; a panic fails the property.
    let _ = config::load_str(file, src, None, Mode::Check);
}

const YAML_TOKENS: &[&str] = &[
    "\n",
    "\n",
    "\n  ",
    "\n    ",
    "  ",
    ": ",
    ":",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ", ",
    "#",
    "'",
    "\"",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "!!map",
    "<<: *a",
    "? ",
    "|",
    ">",
    "---",
    "...",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "0x1F",
    ".inf",
    "listeners",
    "routes",
    "upstreams",
    "authenticators",
    "rate_limits",
    "limits",
    "admin",
    "store",
    "logging",
    "trusted_proxies",
    "scopes",
    "workers",
    "name",
    "bind",
    "tls",
    "match",
    "path",
    "path_prefix",
    "host",
    "auth",
    "any_of",
    "none",
    "type",
    "jwt",
    "api_key",
    "mtls",
    "echo",
    "url",
    "rate",
    "burst",
    "key",
    "secret",
    "issuer",
    "algorithms",
    "audiences",
    "127.0.0.1:0",
    "/",
    "/api",
    "1/s",
    "10s",
    "${HOME}",
    "${UNSET_PROPS_VAR}",
    "$$",
    "\t",
    "\u{feff}",
    "é",
];

fn yaml_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(YAML_TOKENS), 0..60).prop_map(|t| t.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, &'static str),
    ReplaceValue(usize, &'static str),
    DuplicateLine(usize),
    DeleteLine(usize),
    SwapLines(usize, usize),
    Indent(usize, usize),
}

const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "10000000",
    "1/h",
    "4294967295/s",
    "0/s",
    "99999999999999999999d",
    "18446744073709551615ms",
    "1.5s",
    "\"\"",
    "''",
    "~",
    "[]",
    "{}",
    "[a, b]",
    "{ a: 1 }",
    "none",
    "true",
    "yes",
    "${HOME}",
    "${UNSET_PROPS_VAR}",
    "\"${\"",
    "$$",
    "&x 1",
    "*x",
    "!!binary aGk=",
    "[::1]:0",
    "[::1]",
    "0.0.0.0:99999",
    "*.example.com",
    "*",
    "/a/../b",
    "/%2e",
    "api",
    "http://127.0.0.1:9",
    "https://127.0.0.1:9",
    "ftp://x",
    "http://a@b/",
    "certs/ca.crt",
    "certs",
    "/nonexistent",
    "gateway.yaml",
    "required",
    "optional",
    "maybe",
    "sha256:00",
    "\"\\u0000\"",
    "é",
    "\"a\\nb\"",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), prop::sample::select(YAML_TOKENS))
            .prop_map(|(p, t)| Mutation::Insert(p, t)),
        (any::<usize>(), prop::sample::select(VALUES))
            .prop_map(|(l, v)| Mutation::ReplaceValue(l, v)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), 0usize..6).prop_map(|(l, n)| Mutation::Indent(l, n)),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut s = src.to_owned();
    for m in muts {
        let mut lines: Vec<String> = s.lines().map(str::to_owned).collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        let nl = lines.len();
        let boundary = |s: &str, p: usize| {
            let mut p = p % (s.len() + 1);
            while !s.is_char_boundary(p) {
                p -= 1;
            }
            p
        };
        match m {
            Mutation::Delete(p, n) => {
                let a = boundary(&s, *p);
                let b = boundary(&s, (a + n).min(s.len()));
                s.replace_range(a..b.max(a), "");
                continue;
            }
            Mutation::Insert(p, t) => {
                let a = boundary(&s, *p);
                s.insert_str(a, t);
                continue;
            }
            Mutation::ReplaceValue(l, v) => {
                let line = &mut lines[l % nl];
                if let Some(i) = line.find(": ") {
                    line.truncate(i + 2);
                    line.push_str(v);
                } else {
                    line.push_str(v);
                }
            }
            Mutation::DuplicateLine(l) => {
                let line = lines[l % nl].clone();
                lines.insert(l % nl, line);
            }
            Mutation::DeleteLine(l) => {
                lines.remove(l % nl);
            }
            Mutation::SwapLines(a, b) => lines.swap(a % nl, b % nl),
            Mutation::Indent(l, n) => {
                let line = &mut lines[l % nl];
                let body = line.trim_start().to_owned();
                *line = format!("{}{body}", " ".repeat(*n));
            }
        }
        s = lines.join("\n");
        s.push('\n');
    }
    s
}

/// A config built from the schema (SPEC section 2) with values drawn from awkward pools, so that
/// most documents parse and compile reaches its semantic checks.
struct Picks<'a> {
    r: &'a [u16],
    i: usize,
}

impl Picks<'_> {
    fn n(&mut self, m: usize) -> usize {
        let v = self.r.get(self.i).copied().unwrap_or(0) as usize;
        self.i += 1;
        v % m
    }
    fn flag(&mut self) -> bool {
        self.n(2) == 0
    }
    fn raw<'p>(&mut self, pool: &[&'p str]) -> &'p str {
        pool[self.n(pool.len())]
    }
    /// An enum value, rarely one the schema does not have.
    fn variant<'p>(&mut self, good: &[&'p str], bad: &'p str) -> &'p str {
        if self.n(40) == 39 {
            bad
        } else {
            self.raw(good)
        }
    }
    /// A scalar, usually double-quoted (JSON escapes are valid YAML), sometimes bare; now and
    /// then one that cannot parse.
    fn v(&mut self, pool: &[&str]) -> String {
        let x = if self.n(200) == 199 {
            self.raw(P_BAD)
        } else {
            self.raw(pool)
        };
        let plain = !x.is_empty()
            && x.chars()
                .all(|c| c.is_ascii_alphanumeric() || "./_-".contains(c));
        if plain && self.flag() {
            x.to_owned()
        } else {
            serde_json::to_string(x).unwrap()
        }
    }
    /// `, key: value` on `out`, one time in `one_in` (the value drawn only then).
    fn opt<D: std::fmt::Display>(
        &mut self,
        out: &mut String,
        one_in: usize,
        key: &str,
        val: impl FnOnce(&mut Self) -> D,
    ) {
        if self.n(one_in) == 0 {
            let v = val(self);
            out.push_str(&format!(", {key}: {v}"));
        }
    }
    fn list(&mut self, pool: &[&str], max: usize) -> String {
        let k = self.n(max + 1);
        let items: Vec<String> = (0..k).map(|_| self.v(pool)).collect();
        format!("[{}]", items.join(", "))
    }
}

const P_DUR: &[&str] = &[
    "0",
    "10s",
    "500ms",
    "1h",
    "90d",
    "1s",
    "0s",
    "18446744073709551615ms",
    "999999999999999ms",
    " 30s ",
    "1m",
];
const P_NUM: &[&str] = &[
    "0",
    "1",
    "2",
    "8192",
    "16384",
    "1048576",
    "1048577",
    "1000000",
    "1000001",
    "10000000",
    "4294967295",
    "4294967296",
    "18446744073709551615",
];
const P_RATE: &[&str] = &[
    "1/s",
    "4294967295/s",
    "1000000000/s",
    "999999999/s",
    "1/min",
    "1/h",
    "2/hour",
    " 5 / s ",
    "1/m",
];
/// Scalars that fail at the parse level wherever they go (serde stops at the first one, so they
/// are rare: most documents must get through to the semantic checks).
const P_BAD: &[&str] = &[
    "-1s",
    "1.5s",
    "",
    "${UNSET_PROPS_VAR}",
    "s",
    "-1",
    "1e3",
    "0x10",
    "18446744073709551616",
    "99999999999999999999d",
    "18446744073709551615s",
    "213503982334601d",
    "0/s",
    "10/d",
    "x",
    "/",
    "1/",
];
const P_ADDR: &[&str] = &[
    "127.0.0.1:0",
    "127.0.0.1:8080",
    "[::1]:0",
    "0.0.0.0:8443",
    "localhost:80",
    "127.0.0.1",
    "127.0.0.1:99999",
    ":80",
    "",
];
const P_HOST: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "*.",
    "*",
    "a..b",
    "[::1]",
    "[]",
    "[x]",
    "1.2.3.4",
    "api.example.com:443",
    "-a.b",
    "localhost",
    "",
];
const P_PATH: &[&str] = &[
    "/", "/api", "/api/", "api", "/a/../b", "/%2e", "/a%2fb", "", "/a;b", "//",
];
const P_NAME: &[&str] = &["a", "b", "echo", "hs", "keys", "m", "lim", "", "a b", "é"];
const P_URL: &[&str] = &[
    "http://127.0.0.1:9",
    "https://127.0.0.1:9",
    "http://[::1]:9/base/",
    "ftp://x",
    "http://",
    "127.0.0.1:9",
    "http://a@b/",
    "http://h/?q=1",
    "http://h:99999",
    "http://h/%zz",
    "https://h",
];
const P_FILE: &[&str] = &[
    "certs/server.crt",
    "certs/server.key",
    "certs/ca.crt",
    "certs/client-ca.crt",
    "missing.pem",
    "",
    "certs",
    "gateway.yaml",
];
const P_ALG: &[&str] = &[
    "HS256", "RS256", "ES256", "EdDSA", "none", "hs256", "PS512", "ES512", "",
];
const P_TOKEN_FROM: &[&str] = &[
    "header",
    "cookie:tok",
    "query:t",
    "cookie:",
    "query:",
    "body",
];
const P_LIMIT_KEY: &[&str] = &[
    "identity",
    "ip",
    "header:X-Tenant",
    "header:",
    "header:bad name",
    "x",
];
const P_METHOD: &[&str] = &["GET", "get", "G T", "", "PURGE", "CONNECT"];
const P_LEVEL: &[&str] = &["info", "debug", "warn,portcullis=trace", "[", "a=b=c", ""];
const P_BOOL: &[&str] = &["true", "false"];
const P_SHA: &[&str] = &[
    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    "sha256:abc",
    "sha256:gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg",
    "",
];

fn grammar_config(r: &[u16]) -> String {
    let mut p = Picks { r, i: 0 };
    let mut y = String::new();
    let mut w = |s: String| {
        y.push_str(&s);
        y.push('\n');
    };
    w("listeners:".into());
    for _ in 0..p.n(3) {
        let mut l = format!("  - name: {}\n    bind: {}", p.v(P_NAME), p.v(P_ADDR));
        if p.n(3) == 0 {
            l.push_str(&format!(
                "\n    tls: {{ cert: {}, key: {}",
                p.v(P_FILE),
                p.v(P_FILE)
            ));
            p.opt(&mut l, 2, "generate_missing", |p| p.raw(P_BOOL));
            if p.flag() {
                l.push_str(&format!(
                    ", client_auth: {{ mode: {}, ca: {} }}",
                    p.variant(&["none", "optional", "required"], "maybe"),
                    p.v(P_FILE)
                ));
            }
            p.opt(&mut l, 4, "self_signed", |p| p.list(P_HOST, 2));
            l.push_str(" }");
        }
        w(l);
    }
    if p.flag() {
        w(format!(
            "limits: {{ header_timeout: {}, idle_timeout: {}, body_timeout: {}, max_header_bytes: {}, max_body_bytes: {}, max_connections: {}, shutdown_timeout: {} }}",
            p.v(P_DUR), p.v(P_DUR), p.v(P_DUR), p.v(P_NUM), p.v(P_NUM), p.v(P_NUM), p.v(P_DUR)
        ));
    }
    w(format!(
        "logging: {{ format: {}, level: {}, audit: off }}",
        p.variant(&["json", "pretty"], "xml"),
        p.v(P_LEVEL)
    ));
    if p.flag() {
        w(format!(
            "trusted_proxies: {}",
            p.list(
                &["10.0.0.0/8", "::1", "1.2.3.4/33", "x", "0.0.0.0/0", ""],
                3
            )
        ));
    }
    if p.flag() {
        w(format!(
            "admin: {{ bind: {}, token_sha256: {} }}",
            p.v(P_ADDR),
            p.v(P_SHA)
        ));
    }
    match p.n(5) {
        0 => w(format!(
            "store: {{ sqlite: {} }}",
            p.v(&["data/x.db", "", "/"])
        )),
        1 => w(format!(
            "store: {{ postgres: {}, resync: {} }}",
            p.v(&[
                "postgres://u@127.0.0.1:1/db",
                "postgresql://",
                "mysql://x",
                ""
            ]),
            p.v(P_DUR)
        )),
        2 => w(format!(
            "store: {{ sqlite: data/x.db, redis: {}, on_redis_error: {}, redis_timeout: {} }}",
            p.v(&[
                "redis://127.0.0.1:1",
                "redis://",
                "rediss://h",
                "http://x",
                ""
            ]),
            p.v(&["local", "deny", "allow", "x"]),
            p.v(P_DUR)
        )),
        _ => {}
    }
    w("upstreams:".into());
    for _ in 0..p.n(3) {
        let name = p.v(P_NAME);
        if p.flag() {
            w(format!("  {name}: {{ echo: {} }}", p.raw(P_BOOL)));
        } else {
            let mut u = format!("  {name}: {{ url: {}", p.v(P_URL));
            for (k, pool) in [("timeout", P_DUR), ("connect_timeout", P_DUR)] {
                p.opt(&mut u, 3, k, |p| p.v(pool));
            }
            p.opt(&mut u, 3, "ca", |p| p.v(P_FILE));
            p.opt(&mut u, 3, "http2", |p| p.raw(P_BOOL));
            u.push_str(" }");
            w(u);
        }
    }
    if p.flag() {
        w("rate_limits:".into());
        for _ in 0..p.n(3) {
            let mut r = format!("  {}: {{ rate: {}", p.v(P_NAME), p.v(P_RATE));
            p.opt(&mut r, 2, "burst", |p| p.v(P_NUM));
            p.opt(&mut r, 3, "key", |p| p.v(P_LIMIT_KEY));
            r.push_str(" }");
            w(r);
        }
    }
    w("authenticators:".into());
    for _ in 0..p.n(4) {
        let name = p.v(P_NAME);
        match p.n(4) {
            0 => w(format!("  {name}: {{ type: mtls }}")),
            1 => w(format!(
                "  {name}: {{ type: api_key, envs: {} }}",
                p.list(&["live", "test", "prod"], 2)
            )),
            2 if p.n(20) == 19 => w(format!("  {name}: {{ type: other }}")),
            _ => {
                let mut j = format!(
                    "  {name}: {{ type: jwt, issuer: {}, audiences: {}, algorithms: {}",
                    p.v(&["https://i.test", ""]),
                    p.list(&["gw", ""], 2),
                    p.list(P_ALG, 2)
                );
                match p.n(6) {
                    0 => j.push_str(&format!(
                        ", secret: {}",
                        p.v(&["s3cr3t-0123456789abcdef0123456789", "", "short"])
                    )),
                    1 => j.push_str(&format!(", public_key: {}", p.v(P_FILE))),
                    2 => j.push_str(&format!(", jwks_file: {}", p.v(P_FILE))),
                    3 => j.push_str(&format!(
                        ", jwks_url: {}",
                        p.v(&["https://127.0.0.1:9/jwks", "http://127.0.0.1:9/jwks", "x"])
                    )),
                    4 => j.push_str(", discovery: true"),
                    _ => {}
                }
                for (k, pool) in [
                    ("leeway", P_DUR),
                    ("jwks_refresh", P_DUR),
                    ("jwks_cooldown", P_DUR),
                    ("jwks_max_stale", P_DUR),
                    ("require_typ", &["at+jwt", "", "JWT"][..]),
                    ("scopes_claim", &["scp", "", "scope"][..]),
                ] {
                    p.opt(&mut j, 4, k, |p| p.v(pool));
                }
                p.opt(&mut j, 3, "token_from", |p| p.list(P_TOKEN_FROM, 3));
                if p.n(4) == 0 {
                    j.push_str(&format!(
                        ", verify_cache: {{ max_entries: {} }}",
                        p.v(P_NUM)
                    ));
                }
                if p.n(4) == 0 {
                    j.push_str(&format!(
                        ", claims_to_headers: {{ {}: {} }}",
                        p.v(&["x-auth-role", "x-other", "bad name", "", "X-Auth-Subject"]),
                        p.v(&["role", "", "sub"])
                    ));
                }
                j.push_str(" }");
                w(j);
            }
        }
    }
    if p.n(3) == 0 {
        w(format!("scopes: {{ superscope: {} }}", p.v(&["root", ""])));
    }
    w("routes:".into());
    for _ in 0..p.n(4) {
        let mut m = Vec::new();
        if p.n(3) == 0 {
            m.push(format!("host: {}", p.v(P_HOST)));
        }
        match p.n(4) {
            0 => m.push(format!("path: {}", p.v(P_PATH))),
            1 | 2 => m.push(format!("path_prefix: {}", p.v(P_PATH))),
            _ => {}
        }
        if p.n(3) == 0 {
            m.push(format!("methods: {}", p.list(P_METHOD, 2)));
        }
        let auth = if p.n(3) == 0 {
            "none".to_owned()
        } else {
            let mut a = format!("{{ any_of: {}", p.list(P_NAME, 2));
            p.opt(&mut a, 3, "scopes", |p| p.list(&["read", "", "root"], 2));
            p.opt(&mut a, 4, "scopes_any", |p| p.list(&["read", "a"], 2));
            p.opt(&mut a, 3, "rate_limit", |p| p.v(P_NAME));
            p.opt(&mut a, 4, "require_client_cert", |p| p.raw(P_BOOL));
            a.push_str(" }");
            a
        };
        let mut r = format!(
            "  - {{ name: {}, match: {{ {} }}, upstream: {}, auth: {auth}",
            p.v(P_NAME),
            m.join(", "),
            p.v(P_NAME)
        );
        p.opt(&mut r, 4, "max_body_bytes", |p| p.v(P_NUM));
        p.opt(&mut r, 4, "forward_credentials", |p| p.raw(P_BOOL));
        p.opt(&mut r, 4, "pre_auth_rate_limit", |p| p.v(P_NAME));
        r.push_str(" }");
        w(r);
    }
    if p.n(4) == 0 {
        w(format!("workers: {}", p.v(P_NUM)));
    }
    y
}

fn run_config_property<S: Strategy>(cases: u32, strategy: S, to_yaml: impl Fn(S::Value) -> String)
where
    S::Value: std::fmt::Debug,
{
    let dir = config_fixture();
    let file: PathBuf = dir.path().join("gateway.yaml");
    let mut runner = proptest::test_runner::TestRunner::new(cfg(cases));
    let result = runner.run(&strategy, |v| {
        let yaml = to_yaml(v);
        let outcome = std::panic::catch_unwind(|| check_config(&file, &yaml));
        prop_assert!(outcome.is_ok(), "config compile panicked on:\n{}", yaml);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn shipped_config_compiles_in_check_mode() {
    let dir = config_fixture();
    let file = dir.path().join("gateway.yaml");
    if let Err(e) = config::load_str(&file, GATEWAY_YAML, None, Mode::Check) {
        panic!("the shipped gateway.yaml does not compile: {e}");
    }
}

#[test]
fn config_compile_never_panics_on_yaml_soup() {
    run_config_property(256, yaml_soup(), |s| s);
}

#[test]
fn config_compile_never_panics_on_mutated_gateway_yaml() {
    run_config_property(256, prop::collection::vec(mutation(), 1..5), |muts| {
        apply(GATEWAY_YAML, &muts)
    });
}

#[test]
fn config_compile_never_panics_on_grammar_configs() {
    run_config_property(512, prop::collection::vec(any::<u16>(), 240), |r| {
        grammar_config(&r)
    });
}

/// Deep nesting must come back as an error, not exhaust the stack (serde_yaml has a recursion
/// limit; the locator walks an event stream).
#[test]
fn config_compile_survives_deep_nesting() {
    let dir = config_fixture();
    let file = dir.path().join("gateway.yaml");
    for depth in [100usize, 1000, 10_000] {
        for (open, close) in [("[", "]"), ("{a: ", "}"), ("- ", "")] {
            let doc = if open == "- " {
                (0..depth.min(2000))
                    .map(|i| format!("{}- x", " ".repeat(i * 2)))
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                format!("listeners: {}1{}", open.repeat(depth), close.repeat(depth))
            };
            check_config(&file, &doc);
        }
    }
}
