//! The config file: YAML -> raw serde structs ([`raw`], `deny_unknown_fields`) -> compiled section
//! by section ([`compile`]) -> one immutable [`Snapshot`] that the request path reads without locks.
//!
//! Everything that can be decided from the file is decided here, once: TLS server configs, the
//! route table, upstream clients, header names. Each runtime type compiles itself from its raw
//! section (`Upstream::compile`, `RateLimit::compile`, `JwtAuthn::compile`, `Route::compile`,
//! ...); the sections that are only configuration live here ([`listeners`], [`store`],
//! [`snapshot`]). Compiling writes nothing: the side effects of running a config (the dev PKI,
//! the audit file) are the [`start`] step's. `serde_yaml` stays confined to this module.

pub mod compile;
pub mod issues;
pub mod listeners;
pub mod load;
pub mod locate;
pub mod oauth;
pub mod raw;
pub mod snapshot;
pub mod start;
pub mod store;

pub use issues::{ConfigErrors, ConfigIssue};
pub use load::{load, load_str, parse};
pub use snapshot::Snapshot;

/// `Run` puts the config to work (may write `tls.generate_missing` files, opens the audit log);
/// `Check` only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Check,
}

/// The config as it serves, as JSON: every section with its defaults, `${VAR}`s replaced by their
/// values, and secrets redacted (the values of `secret`, `client_secret` and `token_sha256`,
/// and the password of every URL that carries one).
pub fn effective(raw: &raw::RawConfig) -> serde_json::Value {
    fn redact(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    if matches!(k.as_str(), "secret" | "client_secret" | "token_sha256")
                        && !val.is_null()
                    {
                        *val = serde_json::Value::String("<redacted>".into());
                    } else {
                        redact(val);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(redact),
            serde_json::Value::String(s) => *s = crate::values::redact_url(s),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(raw).unwrap_or(serde_json::Value::Null);
    redact(&mut v);
    v
}

/// The admin API's address in `file` (`admin.bind`, with `${VAR}`s replaced; the default when
/// absent) and whether it speaks TLS, read without compiling the rest (the CLI's admin commands).
pub fn admin_address(file: &std::path::Path) -> Result<(String, bool), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let admin = &doc["admin"];
    let bind = match admin["bind"].as_str() {
        Some(b) => crate::values::interpolate(b)
            .map_err(|e| format!("{}: admin.bind: {e}", file.display()))?,
        None => "127.0.0.1:9901".into(),
    };
    Ok((bind, admin["tls"].is_mapping()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn issues(src: &str) -> Vec<ConfigIssue> {
        match load_str(Path::new("t.yaml"), src, None, Mode::Check) {
            Ok(_) => vec![],
            Err(e) => e.issues,
        }
    }

    const BASE: &str =
        "listeners:\n  - name: a\n    bind: 127.0.0.1:0\nupstreams:\n  echo: { echo: true }\n";

    #[test]
    fn a_key_given_twice_is_an_error_with_both_lines() {
        let src = format!("{BASE}  echo: {{ url: http://127.0.0.1:1 }}\n");
        let i = issues(&src);
        assert_eq!(i.len(), 1, "{i:?}");
        assert_eq!(i[0].path, "upstreams.echo");
        assert_eq!(i[0].at, Some((6, 3)));
        assert!(i[0].message.contains("line 5"), "{}", i[0].message);
    }

    #[test]
    fn upstreams_may_not_point_at_the_gateway_itself() {
        let src = "listeners:\n  - name: a\n    bind: 0.0.0.0:8080\nadmin: { bind: 127.0.0.1:9901 }\nupstreams:\n  adm: { url: http://localhost:9901 }\n  me: { url: http://127.0.0.1:8080/x }\n  other: { url: http://127.0.0.1:8081 }\n";
        let got: Vec<String> = issues(src).into_iter().map(|i| i.path).collect();
        assert_eq!(got, vec!["upstreams.adm.url", "upstreams.me.url"]);
    }

    #[test]
    fn generate_missing_problems_name_the_tls_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("server.crt"), "x").expect("write");
        let src = "listeners:\n  - name: a\n    bind: 127.0.0.1:0\n    tls: { cert: server.crt, key: server.key, generate_missing: true }\n";
        let i = match load_str(&dir.path().join("t.yaml"), src, None, Mode::Check) {
            Ok(_) => vec![],
            Err(e) => e.issues,
        };
        assert_eq!(i.len(), 1, "{i:?}");
        assert_eq!(i[0].path, "listeners[0].tls.generate_missing");
        assert!(
            i[0].message.contains("only some files are missing"),
            "{i:?}"
        );
    }

    #[test]
    fn minimal_config_compiles() {
        let src = format!(
            "{BASE}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: echo\n    auth: none\n"
        );
        assert_eq!(issues(&src), vec![]);
    }

    #[test]
    fn unknown_field_is_located() {
        let src = "listeners:\n  - name: a\n    bnd: x\n";
        let i = issues(src);
        assert_eq!(i.len(), 2, "{i:?}");
        assert_eq!(i[0].path, "listeners[0].bnd");
        assert!(i[0].message.contains("unknown field `bnd`"), "{:?}", i[0]);
        assert_eq!(i[0].at.map(|a| a.0), Some(3));
        // and, the typo taken out, what the listener then lacks
        assert_eq!(i[1].path, "listeners[0]");
        assert_eq!(i[1].message, "missing field `bind`");
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let src = format!(
            "{BASE}routes:\n  - name: r\n    match: {{ path_prefix: /a }}\n    upstream: nope\n    auth: none\n  - name: r\n    match: {{ path: /b, methods: [G T] }}\n    upstream: echo\n    auth: {{ any_of: [ghost] }}\n"
        );
        let i = issues(&src);
        let paths: Vec<&str> = i.iter().map(|x| x.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "routes[0].upstream",
                "routes[1].name",
                "routes[1].match.methods[0]",
                "routes[1].auth.any_of[0]"
            ]
        );
        assert_eq!(i[0].at, Some((9, 5)));
    }
}
