//! `portcullis explain`: the denial reason for a bad token, the header set for a good one.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use jsonwebtoken::{encode, EncodingKey, Header};
use std::process::Command;

const SECRET: &str = "explain-test-secret-0123456789abcdef";

fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("explain")
        .arg("-c")
        .arg(dir.join("gw.yaml"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn explains_denials_and_the_upstream_headers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            "listeners: [{{ name: p, bind: 127.0.0.1:0 }}]\nupstreams: {{ users: {{ url: \"http://127.0.0.1:9\" }} }}\nauthenticators:\n  hs: {{ type: jwt, issuer: https://i.test, audiences: [gw], algorithms: [HS256], secret: \"{SECRET}\", claims_to_headers: {{ X-Auth-Role: role }} }}\nroutes:\n  - {{ name: users, match: {{ path_prefix: /api/users }}, upstream: users, auth: {{ any_of: [hs], scopes: [read] }} }}\n"
        ),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mk = |aud: &str, scope: &str| {
        let c = serde_json::json!({"iss": "https://i.test", "aud": aud, "sub": "alice", "exp": now + 600, "scope": scope, "role": "ops"});
        encode(
            &Header::default(),
            &c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let good = mk("gw", "read");
    let (code, text) = run(
        dir.path(),
        &[
            "--url",
            "http://api.test/api/./users/7",
            "-H",
            &format!("Authorization: Bearer {good}"),
            "-H",
            "X-Auth-Subject: mallory",
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("path: /api/./users/7 -> /api/users/7"),
        "{text}"
    );
    assert!(
        text.contains("route: users -> upstream users (http://127.0.0.1:9/api/users/7)"),
        "{text}"
    );
    assert!(
        text.contains("authenticate hs (jwt): ok, subject alice"),
        "{text}"
    );
    assert!(text.contains("scopes: ok"), "{text}");
    assert!(text.contains("  x-auth-subject: alice\n"), "{text}");
    assert!(text.contains("  x-auth-role: ops\n"), "{text}");
    assert!(!text.contains("mallory"), "{text}");
    assert!(
        !text.contains(&good),
        "explain must not print the token: {text}"
    );

    let (code, text) = run(
        dir.path(),
        &[
            "--url",
            "http://api.test/api/users",
            "-H",
            &format!("Authorization: Bearer {}", mk("other", "read")),
        ],
    );
    assert_eq!(code, 1);
    assert!(text.contains("DENY 401 token_wrong_audience"), "{text}");
    let (code, text) = run(
        dir.path(),
        &[
            "--url",
            "http://api.test/api/users",
            "-H",
            &format!("Authorization: Bearer {}", mk("gw", "write")),
        ],
    );
    assert_eq!(code, 1);
    assert!(text.contains("scopes: DENY"), "{text}");
    let (code, text) = run(dir.path(), &["--url", "http://api.test/nothing"]);
    assert_eq!(code, 1);
    assert!(text.contains("DENY 404 no_route"), "{text}");
}

/// `explain` judges credentials as the running gateway would: it reads the store (read-only) for
/// the API keys and the revoked tokens.
#[test]
fn explain_reads_the_keys_and_revocations_of_the_store() {
    use portcullis::keys::{generate_secret, Env, KeyRow};
    use portcullis::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data.db");
    let key = generate_secret(Env::Live);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    {
        let store = portcullis::store::sqlite::Sqlite::open(&db).unwrap();
        let row = KeyRow {
            subject: Some("svc-billing".into()),
            ..KeyRow::new("key_explain", &key)
        };
        store.insert_keys(&[row]).unwrap();
        store
            .insert_revocation("jti-revoked", now as i64 + 600)
            .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            "listeners: [{{ name: p, bind: 127.0.0.1:0 }}]\nstore: {{ sqlite: data.db }}\nupstreams: {{ e: {{ echo: true }} }}\nauthenticators:\n  keys: {{ type: api_key }}\n  hs: {{ type: jwt, issuer: https://i.test, audiences: [gw], algorithms: [HS256], secret: \"{SECRET}\" }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: e, auth: {{ any_of: [keys, hs] }} }}\n"
        ),
    )
    .unwrap();
    let (code, text) = run(
        dir.path(),
        &[
            "--url",
            "http://api.test/x",
            "-H",
            &format!("X-Api-Key: {key}"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("(read-only): 1 API keys, 1 revoked tokens"),
        "{text}"
    );
    assert!(
        text.contains("authenticate keys (api_key): ok, subject svc-billing"),
        "{text}"
    );
    assert!(text.contains("  x-auth-key-id: key_explain\n"), "{text}");
    let revoked = encode(
        &Header::default(),
        &serde_json::json!({"iss": "https://i.test", "aud": "gw", "sub": "alice", "exp": now + 600, "jti": "jti-revoked"}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (code, text) = run(
        dir.path(),
        &[
            "--url",
            "http://api.test/x",
            "-H",
            &format!("Authorization: Bearer {revoked}"),
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("DENY 401 token_revoked"), "{text}");
    // read only: the store file is as it was
    assert_eq!(std::fs::read(&db).unwrap(), before);
}

#[test]
fn explain_shows_the_rewritten_target() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        "listeners: [{ name: p, bind: 127.0.0.1:0 }]\nupstreams: { files: { url: \"http://127.0.0.1:9/store\" } }\nroutes:\n  - { name: files, match: { path_prefix: /files }, upstream: files, strip_prefix: /files, rewrite_prefix: /v2, auth: none }\n",
    )
    .unwrap();
    let (code, text) = run(dir.path(), &["--url", "http://api.test/files/a/./b"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("rewrite: /files/a/b -> /v2/a/b"), "{text}");
    assert!(text.contains("(http://127.0.0.1:9/store/v2/a/b)"), "{text}");
}

#[test]
fn explain_answers_a_cors_preflight_as_the_gateway_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        "listeners: [{ name: p, bind: 127.0.0.1:0 }]\nupstreams: { e: { echo: true } }\nauthenticators: { keys: { type: api_key } }\nroutes:\n  - { name: api, match: { path_prefix: /api, methods: [PUT] }, upstream: e, cors: { origins: [\"https://app.example.com\"], methods: [PUT] }, auth: { any_of: [keys] } }\n",
    )
    .unwrap();
    let ask = |origin: &str| {
        run(
            dir.path(),
            &[
                "--method",
                "OPTIONS",
                "--url",
                "http://api.test/api/x",
                "-H",
                &format!("Origin: {origin}"),
                "-H",
                "Access-Control-Request-Method: PUT",
            ],
        )
    };
    let (code, text) = ask("https://app.example.com");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("cors preflight: ALLOW 204"), "{text}");
    assert!(
        text.contains("access-control-allow-origin: https://app.example.com"),
        "{text}"
    );
    let (code, text) = ask("https://evil.example");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("cors preflight: DENY 403 cors_preflight_refused"),
        "{text}"
    );
}

#[test]
fn explain_shows_the_targets_the_host_and_the_identity_assertion() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        "listeners: [{ name: p, bind: 127.0.0.1:0 }]\nupstreams: { pool: { targets: [\"http://127.0.0.1:9/a\", \"http://127.0.0.1:10\"], balance: least_requests } }\nroutes:\n  - { name: lit, match: { path_prefix: /lit }, upstream: pool, host: internal.example:8080, identity_token: { header: X-Auth-Assertion, ttl: 60s, audience: files }, auth: none }\n  - { name: own, match: { path_prefix: /own }, upstream: pool, host: upstream, auth: none }\n",
    )
    .unwrap();
    let (code, text) = run(dir.path(), &["--url", "http://api.test/lit/x"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("(least_requests: http://127.0.0.1:9/a/lit/x, http://127.0.0.1:10/lit/x)"),
        "{text}"
    );
    assert!(text.contains("  host: internal.example:8080"), "{text}");
    assert!(
        text.contains("  x-auth-assertion: <a signed portcullis-assertion+jwt of this identity, audience files, valid 60s>"),
        "{text}"
    );
    let (code, text) = run(dir.path(), &["--url", "http://api.test/own/x"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("host: each target's own authority (host: upstream)"),
        "{text}"
    );
    assert!(!text.contains("  host: api.test"), "{text}");
}
