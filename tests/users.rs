//! Local users of the authorization server (SPEC section 7, `login.users`): managed through
//! `/admin/users` and `portcullis users add|list|passwd|remove`, stored as Argon2id PHC strings
//! that an independent library (Python's argon2-cffi) verifies, never shown back.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

fn config(with_server: bool) -> String {
    let server = if with_server {
        "oauth_server: { issuer: \"http://127.0.0.1:9\", listener: plain }\n"
    } else {
        ""
    };
    format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nupstreams: {{ e: {{ echo: true }} }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: e, auth: none }}\n{server}"
    )
}

/// The stored hash of `user`, read from the gateway's SQLite file.
fn stored_hash(gw: &Gw, user: &str) -> Option<String> {
    let db = rusqlite::Connection::open(gw.dir.path().join("data/portcullis.db")).unwrap();
    db.query_row(
        "SELECT password_hash FROM oauth_users WHERE username = ?1",
        [user],
        |r| r.get(0),
    )
    .ok()
}

/// Whether argon2-cffi accepts `password` for `hash`.
fn argon2_cffi_verifies(hash: &str, password: &str) -> bool {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom argon2 import PasswordHasher\nfrom argon2.exceptions import VerifyMismatchError\ntry:\n    PasswordHasher().verify(sys.argv[1], sys.argv[2]); print('ok')\nexcept VerifyMismatchError:\n    print('mismatch')",
            hash,
            password,
        ])
        .output()
        .expect("python3 with argon2-cffi (pip install -r tests/interop/requirements.txt)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "argon2-cffi is missing or failed (pip install -r tests/interop/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim() == "ok"
}

fn no_secret(v: &Value, password: &str) {
    let text = v.to_string();
    assert!(!text.contains(password), "{text}");
    assert!(!text.contains("argon2"), "{text}");
    assert!(!text.contains("password"), "{text}");
}

#[tokio::test]
async fn users_are_managed_through_the_admin_api_and_stored_as_argon2id() {
    let gw = Gw::start(&config(true)).await;
    let (c, admin) = (plain_client(), gw.admin());
    let pw = "correct horse battery";
    let (st, v) = admin_call(
        &c,
        &admin,
        Method::POST,
        "/admin/users",
        Some(json!({"username": "alice", "password": pw, "scopes": ["read:profile", "openid"]})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["username"], "alice");
    assert_eq!(v["scopes"], json!(["read:profile", "openid"]));
    no_secret(&v, pw);
    let hash = stored_hash(&gw, "alice").unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(argon2_cffi_verifies(&hash, pw));
    assert!(!argon2_cffi_verifies(&hash, "correct horse battery!"));

    // a second user with the same password has another salt, so another hash
    let (st, _) = admin_call(
        &c,
        &admin,
        Method::POST,
        "/admin/users",
        Some(json!({"username": "bob@example.com", "password": pw})),
    )
    .await;
    assert_eq!(st, 201);
    assert_ne!(stored_hash(&gw, "bob@example.com").unwrap(), hash);

    let (st, v) = admin_call(&c, &admin, Method::GET, "/admin/users", None).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob@example.com"]);
    no_secret(&v, pw);
    let (st, v) = admin_call(&c, &admin, Method::GET, "/admin/users/alice", None).await;
    assert_eq!((st, v["username"].as_str()), (200, Some("alice")));

    // a new password replaces the hash; scopes alone leave it
    let (st, v) = admin_call(
        &c,
        &admin,
        Method::PATCH,
        "/admin/users/alice",
        Some(json!({"password": "another long one"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let new_hash = stored_hash(&gw, "alice").unwrap();
    assert!(argon2_cffi_verifies(&new_hash, "another long one"));
    assert!(!argon2_cffi_verifies(&new_hash, pw));
    let (st, v) = admin_call(
        &c,
        &admin,
        Method::PATCH,
        "/admin/users/alice",
        Some(json!({"scopes": ["read:profile"]})),
    )
    .await;
    assert_eq!((st, v["scopes"].clone()), (200, json!(["read:profile"])));
    assert_eq!(stored_hash(&gw, "alice").unwrap(), new_hash);

    // refusals, each with its reason, and nothing stored
    for (body, status, words) in [
        (
            json!({"username": "alice", "password": "whatever12"}),
            409,
            "already exists",
        ),
        (
            json!({"username": "a b", "password": "whatever12"}),
            400,
            "username",
        ),
        (
            json!({"username": "carol", "password": "short"}),
            400,
            "at least 8",
        ),
        (
            json!({"username": "carol", "password": "new\nline12"}),
            400,
            "control",
        ),
        (
            json!({"username": "carol", "password": "whatever12", "scopes": ["a b"]}),
            400,
            "scope",
        ),
        (
            json!({"username": "carol", "password": "whatever12", "admin": true}),
            400,
            "admin",
        ),
    ] {
        let (st, v) = admin_call(&c, &admin, Method::POST, "/admin/users", Some(body)).await;
        assert_eq!(st, status, "{v}");
        assert!(
            v["error_description"].as_str().unwrap().contains(words),
            "{v}"
        );
    }
    assert_eq!(stored_hash(&gw, "carol"), None);
    let (st, _) = admin_call(
        &c,
        &admin,
        Method::PATCH,
        "/admin/users/nobody",
        Some(json!({"password": "whatever12"})),
    )
    .await;
    assert_eq!(st, 404);

    let (st, _) = admin_call(&c, &admin, Method::DELETE, "/admin/users/alice", None).await;
    assert_eq!(st, 204);
    assert_eq!(stored_hash(&gw, "alice"), None);
    let (st, _) = admin_call(&c, &admin, Method::DELETE, "/admin/users/alice", None).await;
    assert_eq!(st, 404);
    let (st, _) = admin_call(&c, &admin, Method::GET, "/admin/users/alice", None).await;
    assert_eq!(st, 404);

    // every change is in the admin audit trail, without a password
    let db = rusqlite::Connection::open(gw.dir.path().join("data/portcullis.db")).unwrap();
    let mut st = db
        .prepare("SELECT action, target, detail FROM admin_audit WHERE action LIKE '%_user' ORDER BY seq")
        .unwrap();
    let rows: Vec<(String, String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        rows,
        [
            ("create_user".into(), "alice".into(), String::new()),
            (
                "create_user".into(),
                "bob@example.com".into(),
                String::new()
            ),
            ("update_user".into(), "alice".into(), "password".into()),
            ("update_user".into(), "alice".into(), "scopes".into()),
            ("delete_user".into(), "alice".into(), String::new()),
        ]
    );
}

/// The CLI with `stdin` on standard input.
fn cli_with_input(admin: &str, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .args(["--admin", admin])
        .env("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_sets_passwords_and_removes_users() {
    let gw = Gw::start(&config(true)).await;
    let admin = gw.admin();
    let a = admin.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        cli_with_input(
            &a,
            &["users", "add", "dave", "--scopes", "read:profile, openid"],
            "s3cret-passphrase\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("username: dave"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
    let hash = stored_hash(&gw, "dave").unwrap();
    assert!(
        argon2_cffi_verifies(&hash, "s3cret-passphrase"),
        "the line end is not part of it"
    );

    let (code, out, _) = cli_async(admin.clone(), vec!["users".into(), "list".into()]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("USERNAME") && out.contains("dave") && out.contains("read:profile"),
        "{out}"
    );

    let a = admin.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        cli_with_input(&a, &["users", "passwd", "dave"], "a-new-passphrase\r\n")
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let hash = stored_hash(&gw, "dave").unwrap();
    assert!(argon2_cffi_verifies(&hash, "a-new-passphrase"));

    let (code, out, _) = cli_async(
        admin.clone(),
        vec!["users".into(), "remove".into(), "dave".into()],
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "removed dave\n"));
    let (code, _, err) = cli_async(
        admin.clone(),
        vec!["users".into(), "remove".into(), "dave".into()],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("404") && err.contains("no such user"), "{err}");
    // a password too short is refused with the reason, exit 1
    let a = admin.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        cli_with_input(&a, &["users", "add", "erin"], "short\n")
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("at least 8"), "{err}");
}

#[tokio::test]
async fn without_an_authorization_server_there_are_no_users() {
    let gw = Gw::start(&config(false)).await;
    let (st, v) = admin_call(
        &plain_client(),
        &gw.admin(),
        Method::POST,
        "/admin/users",
        Some(json!({"username": "alice", "password": "whatever12"})),
    )
    .await;
    assert_eq!(st, 404);
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("oauth_server is not configured"));
}
