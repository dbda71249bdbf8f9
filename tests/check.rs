//! `portcullis check` (and `run`) on the shipped config and on broken ones: every error names the
//! file, line, column and field.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::Command;

fn check(yaml: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gw.yaml");
    std::fs::write(&f, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("check").arg("-c").arg(&f);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).replace(&f.display().to_string(), "FILE");
    (out.status.code().unwrap_or(-1), text)
}

const HEAD: &str =
    "listeners:\n  - name: public\n    bind: 127.0.0.1:0\nupstreams:\n  echo: { echo: true }\n";
const ROUTE: &str =
    "routes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: echo\n    auth: none\n";

#[test]
fn the_shipped_config_passes() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", shipped])
        .env_remove("PORTCULLIS_WORKERS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shipped config's commented `oauth_server` example, uncommented as its comment says
/// (the section, the `own` authenticator, `own` on the api route), passes `check` too.
#[test]
fn the_shipped_oauth_example_passes_once_uncommented() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.yaml")).unwrap();
    let block = |first: &str| -> String {
        let start = shipped
            .find(first)
            .unwrap_or_else(|| panic!("no `{first}` in gateway.yaml"));
        shipped[start..]
            .lines()
            .take_while(|l| l.starts_with("# ") && l.trim() != "#")
            .map(|l| format!("{}\n", &l[2..]))
            .collect()
    };
    let section = block("# oauth_server:");
    let own = block("#   own:");
    assert!(section.contains("issuer:") && own.contains("oauth_server: true"));
    let yaml = format!("{shipped}\n{section}")
        .replacen("authenticators:\n", &format!("authenticators:\n{own}"), 1)
        .replacen(
            "any_of: [keys, client_cert]",
            "any_of: [keys, client_cert, own]",
            1,
        );
    assert!(yaml.contains("any_of: [keys, client_cert, own]"));
    let (code, text) = check(&yaml, &[]);
    assert_eq!(code, 0, "{text}\n---\n{yaml}");
}

#[test]
fn broken_configs_name_file_line_and_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{HEAD}{ROUTE}limits:\n  header_timout: 5s\n"),
            "FILE:12:3: limits.header_timout: unknown field `header_timout`, expected one of `header_timeout`",
        ),
        (
            format!("{HEAD}{ROUTE}limits:\n  idle_timeout: 5 minutes\n"),
            "FILE:12:3: limits.idle_timeout: `5 minutes`: unknown unit",
        ),
        (
            format!("{HEAD}{ROUTE}trusted_proxies: [\"${{PORTCULLIS_TEST_UNSET_VAR}}\"]\n"),
            "trusted_proxies[0]: environment variable PORTCULLIS_TEST_UNSET_VAR is not set",
        ),
        (
            format!("{HEAD}routes:\n  - name: r\n    match: {{ path_prefix: / }}\n    upstream: users\n    auth: none\n"),
            "FILE:9:5: routes[0].upstream: unknown upstream `users` (defined: echo)",
        ),
        (
            "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n      cert: /nonexistent/server.crt\n      key: /nonexistent/server.key\n".to_owned(),
            "FILE:5:7: listeners[0].tls.cert: cannot read /nonexistent/server.crt",
        ),
        (
            format!("{HEAD}{ROUTE}  - name: r\n    match: {{ path: /x }}\n    upstream: echo\n    auth: none\n"),
            "FILE:11:5: routes[1].name: duplicate route name `r`",
        ),
        (
            format!("{HEAD}{ROUTE}rate_limits:\n  std: {{ rate: 10/s, max_clients: 0 }}\n"),
            "FILE:12:22: rate_limits.std.max_clients: must be at least 1",
        ),
        (
            format!("{HEAD}routes:\n  - name: r\n    match: {{ path_prefix: /a/../b }}\n    upstream: echo\n"),
            "routes[0]: missing field `auth`",
        ),
    ];
    for (yaml, want) in cases {
        let (code, err) = check(&yaml, &[]);
        assert_eq!(code, 1, "{yaml}\n{err}");
        assert!(err.contains(want), "want `{want}` in:\n{err}\n---\n{yaml}");
    }
}

#[test]
fn every_compile_error_is_listed_and_env_vars_interpolate() {
    let yaml = format!(
        "{HEAD}trusted_proxies: [\"${{PC_TEST_NET}}\", bogus]\nroutes:\n  - name: a\n    match: {{ path_prefix: /x/ }}\n    upstream: nope\n    auth: {{ any_of: [ghost] }}\n  - name: b\n    match: {{ path: /y, methods: [\"G T\"] }}\n    upstream: echo\n    auth: none\n"
    );
    let (code, err) = check(&yaml, &[("PC_TEST_NET", "10.0.0.0/8")]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert!(lines[0].starts_with("FILE:6:"), "{err}");
    assert!(lines[0].contains("trusted_proxies[1]: `bogus` is not an IP address or CIDR"));
    assert!(lines[1].contains("routes[0].upstream: unknown upstream `nope`"));
    assert!(lines[2].contains("routes[0].auth.any_of[0]: unknown authenticator `ghost`"));
    assert!(lines[3].contains("routes[1].match.methods[0]"));
}

#[test]
fn run_refuses_a_broken_config_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("gw.yaml");
    std::fs::write(&f, "listeners: []\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("run")
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("listeners: at least one listener is required"));
}

#[test]
fn dev_pki_writes_a_usable_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["dev-pki", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    // the files it writes make a valid mTLS listener
    let yaml = "listeners:\n  - name: p\n    bind: 127.0.0.1:0\n    tls:\n      cert: server.crt\n      key: server.key\n      client_auth: { mode: required, ca: client-ca.crt }\n";
    std::fs::write(dir.path().join("gw.yaml"), yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c"])
        .arg(dir.path().join("gw.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = std::fs::metadata(dir.path().join("ca.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "private keys must not be group/world readable"
    );
}

/// `check` lists every schema error, each at its own field and line, in words of the config
/// (not the code's type names), and with them the errors in the rest of the config; `admin.bind`
/// may not be a listener's address.
#[test]
fn every_schema_error_is_listed_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = |extra: &str| {
        format!("{{ type: jwt, issuer: https://i.test, audiences: [gw], algorithms: [RS256], public_key: jwt.pub{extra} }}")
    };
    let yaml = format!(
        "{HEAD}{ROUTE}limits:\n  header_timout: 5s\n  idle_timout: 5s\nupstreams2: 1\nauthenticators:\n  zeta: {}\n  alpha: {}\n  mid: {}\nrate_limits:\n  a: {{ rate: \"${{PC_UNSET_A}}\" }}\n  b: {{ rate: 1/s, key: \"${{PC_UNSET_B}}\" }}\n",
        jwt(""),
        jwt(""),
        jwt(", leway: 5s"),
    );
    let f = dir.path().join("gw.yaml");
    std::fs::write(&f, &yaml).unwrap();
    let (code, err) = check_file(&f);
    assert_eq!(code, 1, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    for want in [
        "FILE:12:3: limits.header_timout: unknown field `header_timout`",
        "FILE:13:3: limits.idle_timout: unknown field `idle_timout`",
        "FILE:14:1: upstreams2: unknown field `upstreams2`",
        "FILE:18:",
        "authenticators.mid.leway: unknown field `leway`",
        "FILE:20:",
        "rate_limits.a.rate: environment variable PC_UNSET_A is not set",
        "FILE:21:",
        "rate_limits.b.key: environment variable PC_UNSET_B is not set",
    ] {
        assert!(err.contains(want), "want `{want}` in:\n{err}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("FILE:18:") && l.contains("authenticators.mid.leway")),
        "{err}"
    );
    // and in the same run, the errors the rest of the config has (each key file is missing)
    for a in ["zeta", "alpha", "mid"] {
        let want = format!("authenticators.{a}.public_key: cannot read");
        assert!(err.contains(&want), "want `{want}` in:\n{err}");
    }
    assert_eq!(lines.len(), 9, "{err}");

    // the code's type names never show
    let (code, err) = check(&format!("{HEAD}{ROUTE}scopes: 5\nlimits: 7\n"), &[]);
    assert_eq!(code, 1);
    assert!(!err.contains("Raw") && !err.contains("struct"), "{err}");
    assert!(err.contains("expected the scopes section"), "{err}");

    // a missing key file is named as resolved from the config's folder
    let (code, err) = check_file_in(
        &dir,
        &format!("{HEAD}{ROUTE}authenticators:\n  j: {}\n", jwt("")),
    );
    assert_eq!(code, 1);
    let resolved = dir.path().join("jwt.pub");
    assert!(
        err.contains(&format!(
            "authenticators.j.public_key: cannot read {}",
            resolved.display()
        )),
        "{err}"
    );

    // `run` could not bind the admin API where a listener is
    let (code, err) = check(
        "listeners:\n  - { name: public, bind: \"127.0.0.1:18999\" }\nadmin: { bind: \"127.0.0.1:18999\" }\n",
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("admin.bind: `127.0.0.1:18999` is also listener `public`'s address"),
        "{err}"
    );
}

fn check_file(f: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .arg("-c")
        .arg(f)
        .env_remove("PC_UNSET_A")
        .env_remove("PC_UNSET_B")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).replace(&f.display().to_string(), "FILE");
    (out.status.code().unwrap_or(-1), text)
}

fn check_file_in(dir: &tempfile::TempDir, yaml: &str) -> (i32, String) {
    let f = dir.path().join("other.yaml");
    std::fs::write(&f, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("check")
        .arg("-c")
        .arg(&f)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// TLS to the stores: what cannot work is refused at its field; what works but leaks is warned
/// about when the gateway starts.
#[test]
fn store_tls_settings_are_checked_and_cleartext_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    portcullis::devpki::generate(dir.path()).unwrap();
    let ca = dir.path().join("ca.crt");
    let base = format!("{HEAD}{ROUTE}");
    for (store, field, words) in [
        (
            "{ postgres: \"postgres://db.internal/x?sslmode=verify-full\" }",
            "store.postgres",
            "needs sslrootcert",
        ),
        (
            "{ postgres: \"postgres://db.internal/x?sslmode=verify-ca&sslrootcert=nope.pem\" }",
            "store.postgres",
            "sslrootcert: cannot read",
        ),
        (
            "{ postgres: \"postgres://db.internal/x?sslmode=sometimes\" }",
            "store.postgres",
            "sslmode=`sometimes`",
        ),
        (
            "{ sqlite: x.db, redis: \"redis://cache:6379\", redis_ca: ca.pem }",
            "store.redis_ca",
            "cannot read",
        ),
        (
            "{ sqlite: x.db, redis: \"rediss://cache:6379/#insecure\" }",
            "store.redis",
            "not supported",
        ),
    ] {
        let (code, err) = check(&format!("{base}store: {store}\n"), &[]);
        assert_eq!(code, 1, "{store}: {err}");
        assert!(
            err.contains(&format!("{field}: ")) && err.contains(words),
            "{store}: {err}"
        );
    }
    let (code, err) = check(
        &format!(
            "{base}store: {{ sqlite: x.db, redis: \"redis://cache:6379\", redis_ca: \"{}\" }}\n",
            ca.display()
        ),
        &[],
    );
    assert!(
        code == 1 && err.contains("only used with a rediss://"),
        "{err}"
    );

    let load = |store: &str| {
        let f = dir.path().join("gw.yaml");
        std::fs::write(&f, format!("{base}store: {store}\n")).unwrap();
        portcullis::config::load(&f, None, portcullis::config::Mode::Check).unwrap()
    };
    let remote_admin = "10.1.2.3:9901".parse().unwrap();
    let loopback_admin = "127.0.0.1:9901".parse().unwrap();
    let open = load(
        "{ postgres: \"postgres://u:pw@db.internal/x?sslmode=require\", redis: \"redis://cache.internal:6379\" }",
    );
    let w = portcullis::server::cleartext_warnings(&open, remote_admin);
    assert_eq!(w.len(), 3, "{w:#?}");
    assert!(w[0].contains("admin API listens on 10.1.2.3:9901 without TLS"));
    assert!(
        w[1].contains("sslmode=require") && !w[1].contains("pw"),
        "{}",
        w[1]
    );
    assert!(w[2].contains("without TLS: use a rediss://"));
    let closed = load(&format!(
        "{{ postgres: \"postgres://db.internal/x?sslmode=verify-full&sslrootcert={ca}\", redis: \"rediss://cache.internal:6380\", redis_ca: \"{ca}\" }}",
        ca = ca.display()
    ));
    assert_eq!(
        portcullis::server::cleartext_warnings(&closed, loopback_admin),
        Vec::<String>::new()
    );
    // on this machine, nothing crosses a network
    let local = load("{ postgres: \"postgres://127.0.0.1/x?sslmode=disable\", redis: \"redis://localhost:6379\" }");
    assert!(portcullis::server::cleartext_warnings(&local, loopback_admin).is_empty());
}
