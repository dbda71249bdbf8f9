//! The API key lifecycle through the real CLI and admin API: create, use, rotate with grace,
//! revoke, restart; import in both formats; checksum and env checks; JWT revocation; admin API
//! errors; crash safety under `kill -9`; reload through the admin API.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::{json, Value};
use std::process::Command;

fn gateway_yaml(up: &Upstream, extra: &str) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
admin: {{ bind: "127.0.0.1:0", token_sha256: "{sha}" }}
store: {{ sqlite: data/keys.db }}
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators:
  keys: {{ type: api_key }}
  live_keys: {{ type: api_key, envs: [live] }}
  hs: {{ type: jwt, issuer: https://i.test, audiences: [gw], algorithms: [HS256], secret: "0123456789abcdef0123456789abcdef-keys" }}
routes:
  - {{ name: live-only, match: {{ path_prefix: /live }}, upstream: rec, auth: {{ any_of: [live_keys] }} }}
  - {{ name: jwt, match: {{ path_prefix: /jwt }}, upstream: rec, auth: {{ any_of: [hs] }} }}
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}
{extra}"#,
        sha = admin_token_sha256(),
        url = up.url()
    )
}

fn line(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
        .trim()
        .to_owned()
}

async fn with_key(base: &str, key: &str, path: &str) -> u16 {
    plain_client()
        .get(format!("{base}{path}"))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A gateway process on `gateway_yaml(up, "")` in a directory of its own (removed when the
/// returned `TempDir` drops), and the config's path for restarts.
fn start_in_tempdir(up: &Upstream) -> (tempfile::TempDir, std::path::PathBuf, GwProcess) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.yaml");
    std::fs::write(&cfg, gateway_yaml(up, "")).unwrap();
    let gw = GwProcess::start(&cfg, 1);
    (dir, cfg, gw)
}

fn admin_url(gw: &GwProcess) -> String {
    format!("http://{}", gw.addrs["admin"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_use_rotate_revoke_and_restart_through_the_cli() {
    let up = Upstream::start().await;
    let (_dir, cfg, gw) = start_in_tempdir(&up);
    let admin = admin_url(&gw);
    let base = format!("http://{}", gw.addrs["plain"]);

    let (code, out, err) = cli_async(
        admin.clone(),
        [
            "keys",
            "create",
            "--name",
            "billing",
            "--subject",
            "svc-billing",
            "--scopes",
            "read:invoices write:invoices",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let key = line(&out, "key: ");
    let id = line(&out, "id: ");
    assert!(key.starts_with("sk_live_") && key.len() == 46, "{key}");
    assert_eq!(with_key(&base, &key, "/invoices").await, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-auth-method"), Some("api_key"));
    assert_eq!(seen.header("x-auth-key-id"), Some(id.as_str()));
    assert_eq!(seen.header("x-auth-subject"), Some("svc-billing"));
    assert_eq!(
        seen.header("x-auth-scopes"),
        Some("read:invoices write:invoices")
    );
    assert_eq!(
        seen.header("x-api-key"),
        None,
        "the key must not be forwarded"
    );
    // the Authorization form works too
    let r = plain_client()
        .get(format!("{base}/x"))
        .header("authorization", format!("api-key  {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // list and show never carry the secret
    let (_, list, _) = cli_async(admin.clone(), vec!["keys".into(), "list".into()]).await;
    assert!(
        list.contains(&id) && list.contains("svc-billing") && !list.contains(&key),
        "{list}"
    );
    let (_, shown, _) = cli_async(
        admin.clone(),
        vec!["--json".into(), "keys".into(), "show".into(), id.clone()],
    )
    .await;
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["status"], "active");
    assert!(!shown.contains(&key[12..]), "{shown}");

    // `--rate` takes the config's rate grammar (`10/m`), kept as `10/min`
    let (code, out, err) = cli_async(
        admin.clone(),
        ["keys", "create", "--name", "paced", "--rate", "10/m"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(line(&out, "rate_limit: "), "10/min", "{out}");

    // rotate with grace: old and new both work
    let (code, out, _) = cli_async(
        admin.clone(),
        vec![
            "keys".into(),
            "rotate".into(),
            id.clone(),
            "--grace".into(),
            "1h".into(),
        ],
    )
    .await;
    assert_eq!(code, 0);
    let key2 = line(&out, "key: ");
    assert_eq!(
        with_key(&base, &key, "/a").await,
        200,
        "old key within grace"
    );
    assert_eq!(with_key(&base, &key2, "/a").await, 200);
    // a second rotation with grace 0 ends both earlier secrets at once
    let (_, out, _) = cli_async(
        admin.clone(),
        vec![
            "keys".into(),
            "rotate".into(),
            id.clone(),
            "--grace".into(),
            "0".into(),
        ],
    )
    .await;
    let key3 = line(&out, "key: ");
    assert_eq!(with_key(&base, &key, "/a").await, 401);
    assert_eq!(with_key(&base, &key2, "/a").await, 401);
    assert_eq!(with_key(&base, &key3, "/a").await, 200);

    // a second key, revoked: refused on the very next request
    let (_, out, _) = cli_async(
        admin.clone(),
        ["keys", "create", "--name", "tmp", "--env", "test"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let tkey = line(&out, "key: ");
    let tid = line(&out, "id: ");
    assert!(tkey.starts_with("sk_test_"));
    assert_eq!(with_key(&base, &tkey, "/a").await, 200);
    // a test key on a live-only route
    assert_eq!(with_key(&base, &tkey, "/live").await, 401);
    assert_eq!(with_key(&base, &key3, "/live").await, 200);
    let (code, out, _) = cli_async(
        admin.clone(),
        vec!["keys".into(), "revoke".into(), tid.clone()],
    )
    .await;
    assert_eq!((code, out.trim()), (0, format!("revoked {tid}").as_str()));
    assert_eq!(with_key(&base, &tkey, "/a").await, 401);
    // refused as revoked, not as unknown: what the operator sees in the metrics (and logs)
    let revoked = |m: &str| {
        m.lines()
            .filter(|l| {
                l.contains("authenticator=\"keys\",decision=\"deny\",reason=\"api_key_revoked\"")
            })
            .count()
    };
    assert_eq!(revoked(&get_text(&format!("{admin}/metrics")).await), 1);

    // restart: keys, rotations and revocations are all still in force
    drop(gw);
    let gw = GwProcess::start(&cfg, 1);
    let base = format!("http://{}", gw.addrs["plain"]);
    assert_eq!(with_key(&base, &key3, "/a").await, 200);
    assert_eq!(with_key(&base, &key, "/a").await, 401);
    assert_eq!(with_key(&base, &key2, "/a").await, 401);
    assert_eq!(with_key(&base, &tkey, "/a").await, 401);
    let admin = admin_url(&gw);
    assert_eq!(revoked(&get_text(&format!("{admin}/metrics")).await), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_a_thousand_keys_in_both_formats() {
    let up = Upstream::start().await;
    let gw = Gw::start(&gateway_yaml(&up, "")).await;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = String::from("# migrated from Kong\n");
    let mut json_items = Vec::new();
    for i in 0..1000 {
        lines.push_str(&format!("pk_{:032x} client-{i:04}\n", i * 7919 + 1));
        json_items.push(
            json!({"key": format!("legacy-{i:05}-{}", "x".repeat(20)), "id": format!("legacy.{i}"),
            "subject": format!("json-{i}"), "scopes": ["read", format!("tenant:{i}")]}),
        );
    }
    std::fs::write(dir.path().join("keys.txt"), &lines).unwrap();
    std::fs::write(
        dir.path().join("keys.json"),
        serde_json::to_string(&json_items).unwrap(),
    )
    .unwrap();
    for f in ["keys.txt", "keys.json"] {
        let (code, out, err) = cli_async(
            gw.admin(),
            vec![
                "keys".into(),
                "import".into(),
                dir.path().join(f).display().to_string(),
            ],
        )
        .await;
        assert_eq!((code, out.trim()), (0, "imported 1000"), "{f}: {err}");
    }
    let base = gw.http("plain");
    for i in 0..1000 {
        assert_eq!(
            with_key(&base, &format!("pk_{:032x}", i * 7919 + 1), "/x").await,
            200,
            "line key {i}"
        );
        assert_eq!(
            up.last().header("x-auth-subject"),
            Some(format!("client-{i:04}").as_str())
        );
        assert_eq!(
            with_key(&base, &format!("legacy-{i:05}-{}", "x".repeat(20)), "/x").await,
            200,
            "json key {i}"
        );
        let seen = up.last();
        assert_eq!(
            seen.header("x-auth-subject"),
            Some(format!("json-{i}").as_str())
        );
        assert_eq!(
            seen.header("x-auth-key-id"),
            Some(format!("legacy.{i}").as_str())
        );
        assert_eq!(
            seen.header("x-auth-scopes"),
            Some(format!("read tenant:{i}").as_str())
        );
    }
    // a foreign key has no environment: an authenticator that accepts only `envs: [live]`
    // refuses it
    assert_eq!(
        with_key(&base, &format!("pk_{:032x}", 1), "/live").await,
        401
    );
    // importing the same keys again is refused, clearly, and nothing is duplicated
    let (code, _, err) = cli_async(
        gw.admin(),
        vec![
            "keys".into(),
            "import".into(),
            dir.path().join("keys.txt").display().to_string(),
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.contains("409") && err.contains("already imported"),
        "{err}"
    );
    let (_, out, _) = cli_async(
        gw.admin(),
        vec!["--json".into(), "keys".into(), "list".into()],
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["keys"].as_array().unwrap().len(), 2000);
    // a key in our format with a wrong checksum is refused at import and at the door
    let (_, out, _) = cli_async(
        gw.admin(),
        ["keys", "create", "--name", "x"].map(String::from).to_vec(),
    )
    .await;
    let key = line(&out, "key: ");
    let mut bad = key.clone().into_bytes();
    bad[20] = if bad[20] == b'a' { b'b' } else { b'a' };
    let bad = String::from_utf8(bad).unwrap();
    let before = up.count();
    let r = plain_client()
        .get(format!("{base}/x"))
        .header("x-api-key", &bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Api-Key realm=\"portcullis\""
    );
    assert_eq!(up.count(), before);
    std::fs::write(dir.path().join("bad.txt"), format!("{bad} someone\n")).unwrap();
    let (code, _, err) = cli_async(
        gw.admin(),
        vec![
            "keys".into(),
            "import".into(),
            dir.path().join("bad.txt").display().to_string(),
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("checksum"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_and_validates() {
    let up = Upstream::start().await;
    // read by this test only (the variable is the process's)
    std::env::set_var("PC_TEST_SUPERSCOPE", "root-from-env");
    let gw = Gw::start(&gateway_yaml(
        &up,
        "scopes: { superscope: \"${PC_TEST_SUPERSCOPE}\" }\n",
    ))
    .await;
    let c = plain_client();
    let admin = gw.admin();
    let r = c.get(format!("{admin}/admin/keys")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"portcullis-admin\""
    );
    let r = c
        .get(format!("{admin}/admin/keys"))
        .bearer_auth("wrong-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(format!("{admin}/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error_description"]
            .as_str()
            .unwrap()
            .contains("invalid JSON"),
        "{v}"
    );
    let r = c
        .post(format!("{admin}/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "a", "bogus": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(format!("{admin}/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "a", "rate_limit": "fast"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .get(format!("{admin}/admin/keys/nope"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // metadata never carries a hash or secret
    let created: Value = c
        .post(format!("{admin}/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "m", "rate_limit": " 2 / m"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // the config's rate grammar, kept in its canonical form
    assert_eq!(created["rate_limit"], "2/min", "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let listed = c
        .get(format!("{admin}/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(&key[12..]) && !listed.contains("hash"),
        "{listed}"
    );
    // the key's own rate limit replaces the route's (the route has none): 2 per minute
    let base = gw.http("plain");
    assert_eq!(with_key(&base, &key, "/a").await, 200);
    assert_eq!(with_key(&base, &key, "/a").await, 200);
    assert_eq!(with_key(&base, &key, "/a").await, 429);
    // two different keys in one request
    let r = c
        .get(format!("{base}/a"))
        .header("x-api-key", &key)
        .header("authorization", "Api-Key sk_live_other")
        .send()
        .await
        .unwrap();
    // a credential offered in more than one place (SPEC section 2)
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_request");
    // health, readiness, metrics and the OpenAPI document need no token
    assert_eq!(
        c.get(format!("{admin}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: Value = c
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    let metrics = c
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_requests_total{route=\"api\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_rate_limited_total{route=\"api\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_api_keys_active 1"),
        "{metrics}"
    );
    assert!(!metrics.contains(&key[8..]));
    check_exposition(&metrics);
    let doc: Value = c
        .get(format!("{admin}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let cfg: Value = c
        .get(format!("{admin}/admin/config"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cfg["authenticators"]["hs"]["secret"], "<redacted>");
    assert_eq!(cfg["admin"]["token_sha256"], "<redacted>");
    // what serves: defaults filled in, `${VAR}` replaced by its value
    assert_eq!(cfg["limits"]["header_timeout"], "10s", "{cfg}");
    assert_eq!(cfg["routes"][0]["name"], "live-only");
    assert_eq!(cfg["upstreams"]["rec"]["url"], up.url().as_str(), "{cfg}");
    assert_eq!(cfg["scopes"]["superscope"], "root-from-env", "{cfg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_jti_is_refused_cached_or_not_and_after_restart() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let up = Upstream::start().await;
    let (_dir, cfg, gw) = start_in_tempdir(&up);
    let base = format!("http://{}", gw.addrs["plain"]);
    let now = unix_now();
    let token = encode(&Header::default(), &json!({"iss": "https://i.test", "aud": "gw", "sub": "u", "exp": now + 600, "jti": "tok-42"}),
        &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef-keys")).unwrap();
    let call = |t: String, b: String| async move {
        plain_client()
            .get(format!("{b}/jwt"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(call(token.clone(), base.clone()).await, 200);
    assert_eq!(call(token.clone(), base.clone()).await, 200); // now cached
    let until = portcullis::clock::rfc3339(now + 600, 0);
    let (code, out, err) = cli_async(
        admin_url(&gw),
        vec![
            "tokens".into(),
            "revoke".into(),
            "tok-42".into(),
            "--until".into(),
            until,
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked jti tok-42"));
    assert_eq!(call(token.clone(), base.clone()).await, 401);
    drop(gw);
    let gw = GwProcess::start(&cfg, 1);
    let base = format!("http://{}", gw.addrs["plain"]);
    assert_eq!(
        call(token, base).await,
        401,
        "a revocation must survive a restart"
    );
}

/// kill -9 in the middle of concurrent creations, rotations and revocations, with request load
/// on the data plane: after a restart every answered change holds (created keys work, rotated
/// keys work with their new secret, revoked keys are refused) and the file is consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_answered_creation_rotation_or_revocation() {
    let up = Upstream::start().await;
    let (dir, cfg, mut gw) = start_in_tempdir(&up);
    let admin = admin_url(&gw);
    let base = format!("http://{}", gw.addrs["plain"]);
    let c = plain_client();
    let create = {
        let (c, admin) = (c.clone(), admin.clone());
        move |name: String| {
            let (c, admin) = (c.clone(), admin.clone());
            async move {
                let r = c
                    .post(format!("{admin}/admin/keys"))
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&json!({ "name": name }))
                    .send()
                    .await
                    .ok()?;
                if r.status() != 201 {
                    return None;
                }
                let v: Value = r.json().await.ok()?;
                Some((v["id"].as_str()?.to_owned(), v["key"].as_str()?.to_owned()))
            }
        }
    };
    // Keys to rotate and to revoke during the load, made before it.
    let mut to_rotate = Vec::new();
    let mut to_revoke = Vec::new();
    for i in 0..40 {
        to_rotate.push(create(format!("rot{i}")).await.unwrap());
        to_revoke.push(create(format!("rev{i}")).await.unwrap());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered_ops = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // data-plane load with a valid key
    let load = {
        let (stop, base, key) = (stop.clone(), base.clone(), to_rotate[0].1.clone());
        tokio::spawn(async move {
            let c = plain_client();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = c
                    .get(format!("{base}/load"))
                    .header("x-api-key", &key)
                    .send()
                    .await;
            }
        })
    };
    // One writer: runs `op` over `items` until stopped; returns the keys of the answered ones.
    fn writer<I, F, Fut>(
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        answered: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        items: Vec<I>,
        op: F,
    ) -> tokio::task::JoinHandle<Vec<String>>
    where
        I: Send + 'static,
        F: Fn(I) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Option<String>> + Send,
    {
        tokio::spawn(async move {
            let mut done = Vec::new();
            for item in items {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if let Some(k) = op(item).await {
                    done.push(k);
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            done
        })
    }
    let creator = writer(stop.clone(), answered_ops.clone(), (0..1000).collect(), {
        let create = create.clone();
        move |i: i32| {
            let create = create.clone();
            async move { create(format!("new{i}")).await.map(|k| k.1) }
        }
    });
    let rotator = writer(stop.clone(), answered_ops.clone(), to_rotate.clone(), {
        let (c, admin) = (c.clone(), admin.clone());
        move |(id, _): (String, String)| {
            let req = c
                .post(format!("{admin}/admin/keys/{id}/rotate"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"grace": "1h"}));
            async move {
                let r = req.send().await.ok().filter(|r| r.status() == 200)?;
                let v: Value = r.json().await.ok()?;
                Some(v["key"].as_str()?.to_owned())
            }
        }
    });
    let revoker = writer(stop.clone(), answered_ops.clone(), to_revoke.clone(), {
        let (c, admin) = (c.clone(), admin.clone());
        move |(id, key): (String, String)| {
            let req = c
                .delete(format!("{admin}/admin/keys/{id}"))
                .bearer_auth(ADMIN_TOKEN);
            async move {
                req.send().await.ok().filter(|r| r.status() == 204)?;
                Some(key)
            }
        }
    });
    // kill -9 once some 40 changes have been answered, with the three writers still going
    while answered_ops.load(std::sync::atomic::Ordering::Relaxed) < 40 {
        tokio::task::yield_now().await;
    }
    let pid = gw.child.id();
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let _ = gw.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let created = creator.await.unwrap();
    let rotated = rotator.await.unwrap();
    let revoked = revoker.await.unwrap();
    load.await.unwrap();
    assert!(
        !created.is_empty() && !rotated.is_empty() && !revoked.is_empty(),
        "created {} rotated {} revoked {}",
        created.len(),
        rotated.len(),
        revoked.len()
    );
    let store = portcullis::store::sqlite::Sqlite::open(&dir.path().join("data/keys.db")).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    drop(store);

    let gw = GwProcess::start(&cfg, 1);
    let base = format!("http://{}", gw.addrs["plain"]);
    for k in created.iter().chain(&rotated) {
        assert_eq!(
            with_key(&base, k, "/a").await,
            200,
            "an answered key was lost"
        );
    }
    for k in &revoked {
        assert_eq!(
            with_key(&base, k, "/a").await,
            401,
            "an answered revocation was lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_through_the_admin_api() {
    let up = Upstream::start().await;
    let gw = Gw::start(&gateway_yaml(&up, "")).await;
    let c = plain_client();
    let file = gw.dir.path().join("gateway.yaml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, good.replace("upstream: rec", "upstream: missing")).unwrap();
    let r = c
        .post(format!("{}/admin/reload", gw.admin()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("unknown upstream `missing`"),
        "{v}"
    );
    // the config shown is the one serving, not the refused file
    let shown: Value = c
        .get(format!("{}/admin/config", gw.admin()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let routes = shown["routes"].as_array().unwrap();
    assert!(routes.iter().all(|r| r["upstream"] == "rec"), "{shown}");
    // traffic continues on the old config
    let (_, out, _) = cli_async(
        gw.admin(),
        ["keys", "create", "--name", "r"].map(String::from).to_vec(),
    )
    .await;
    let key = line(&out, "key: ");
    assert_eq!(with_key(&gw.http("plain"), &key, "/a").await, 200);
    std::fs::write(
        &file,
        good.replace("path_prefix: /jwt", "path_prefix: /token"),
    )
    .unwrap();
    let r = c
        .post(format!("{}/admin/reload", gw.admin()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // /jwt is now served by the api-key catch-all route
    assert_eq!(with_key(&gw.http("plain"), &key, "/jwt").await, 200);
}

#[test]
fn the_first_start_writes_an_admin_token_to_a_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(&cfg, "listeners: [{ name: p, bind: 127.0.0.1:0 }]\nadmin: { bind: 127.0.0.1:0 }\nlogging: { format: json }\nupstreams: { e: { echo: true } }\nroutes: [{ name: r, match: { path: /x }, upstream: e, auth: none }]\n").unwrap();
    // a fresh store: the first start must print the token
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 = dir2.path().join("gw.yaml");
    std::fs::copy(&cfg, &cfg2).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&cfg2)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut seen = Vec::new();
    let file = loop {
        let l = lines.next().unwrap().unwrap();
        let v: Value = serde_json::from_str(&l).unwrap_or(Value::Null);
        seen.push(l);
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("first start: a new admin token"))
        {
            break std::path::PathBuf::from(v["file"].as_str().unwrap());
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    // the token is in a file beside the store, for the owner only, and in no log line
    assert_eq!(file, dir2.path().join("data/admin-token"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(token.starts_with("pca_"));
    assert!(seen.iter().all(|l| !l.contains(&token)), "{seen:#?}");
    // the second start prints no token
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "-c"])
        .arg(&cfg2)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut listening = 0;
    while listening < 2 {
        let l = lines.next().unwrap().unwrap();
        assert!(!l.contains(&token), "the token was printed again");
        if l.contains("\"listening\"") {
            listening += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let db =
        portcullis::store::sqlite::Sqlite::open(&dir2.path().join("data/portcullis.db")).unwrap();
    use portcullis::store::Store;
    let stored = db.setting("admin_token_sha256").unwrap().unwrap();
    assert_eq!(
        stored,
        format!(
            "sha256:{}",
            portcullis::digest::hex_lower(&portcullis::keys::hash_key(&token))
        )
    );
}

/// A key's last use reaches the store within the upkeep period (a batched write off the request
/// path, queued on first use rather than found by scanning every key) and survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_use_times_are_written_to_the_store_and_survive_a_restart() {
    use portcullis::store::Store;
    let up = Upstream::start().await;
    let (dir, cfg, mut gw) = start_in_tempdir(&up);
    let admin = admin_url(&gw);
    let base = format!("http://{}", gw.addrs["plain"]);
    let mut ids = Vec::new();
    let mut keys = Vec::new();
    for name in ["used", "unused"] {
        let (code, out, err) = cli_async(
            admin.clone(),
            ["keys", "create", "--name", name]
                .map(String::from)
                .to_vec(),
        )
        .await;
        assert_eq!(code, 0, "{err}");
        keys.push(line(&out, "key: "));
        ids.push(line(&out, "id: "));
    }
    let before = portcullis::clock::now_secs();
    for _ in 0..3 {
        assert_eq!(with_key(&base, &keys[0], "/x").await, 200);
    }
    let db = dir.path().join("data/keys.db");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let last_used = |id: &str| {
        let store = portcullis::store::sqlite::Sqlite::open(&db).unwrap();
        store
            .load_keys()
            .unwrap()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap()
            .last_used_at
    };
    // the time in memory once the three uses are done; the store must catch up with it
    let (_, shown, _) = cli_async(
        admin.clone(),
        vec![
            "--json".into(),
            "keys".into(),
            "show".into(),
            ids[0].clone(),
        ],
    )
    .await;
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let in_memory = shown["last_used_at"].as_str().unwrap().to_owned();
    let written = loop {
        if let Some(t) = last_used(&ids[0]) {
            if portcullis::clock::rfc3339(t, 0) == in_memory {
                break t;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the last use ({in_memory}) was not written to the store within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(written >= before, "{written} < {before}");
    assert_eq!(last_used(&ids[1]), None, "an unused key has no last use");

    // after a restart the time comes back from the store
    let _ = gw.child.kill();
    let _ = gw.child.wait();
    gw = GwProcess::start(&cfg, 1);
    for (id, used) in ids.iter().zip([true, false]) {
        let (_, shown, _) = cli_async(
            admin_url(&gw),
            vec!["--json".into(), "keys".into(), "show".into(), id.clone()],
        )
        .await;
        let shown: Value = serde_json::from_str(&shown).unwrap();
        let want = used.then(|| portcullis::clock::rfc3339(written, 0));
        assert_eq!(
            shown["last_used_at"].as_str(),
            want.as_deref(),
            "last_used_at after restart: {shown}"
        );
    }
}

/// The CLI as people use it: it finds the admin API from the config (or PORTCULLIS_ADMIN_URL),
/// takes scopes with commas and dates for expiry, says whether the token is missing or wrong,
/// lists and lifts token revocations, refuses a revocation that ends in the past, revokes a key
/// twice without an error, and exits 1 on a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finds_the_admin_api_and_takes_what_people_type() {
    let up = Upstream::start().await;
    let gw = Gw::start(&gateway_yaml(&up, "")).await;
    let admin_port = gw.running.as_ref().unwrap().admin_addr.port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.yaml");
    std::fs::write(
        &cfg,
        format!("admin: {{ bind: \"0.0.0.0:{admin_port}\" }}\n"),
    )
    .unwrap();
    let run = |args: Vec<String>, env: Vec<(&'static str, String)>| async move {
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
            cmd.args(&args)
                .env_remove("PORTCULLIS_ADMIN_URL")
                .env_remove("PORTCULLIS_ADMIN_TOKEN");
            for (k, v) in env {
                cmd.env(k, v);
            }
            let out = cmd.output().unwrap();
            (
                out.status.code().unwrap(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    };
    let token = vec![("PORTCULLIS_ADMIN_TOKEN", ADMIN_TOKEN.to_owned())];
    let c = cfg.display().to_string();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // the admin API found through -c (admin.bind, 0.0.0.0 reached on loopback)
    let (code, out, err) = run(
        args(&[
            "keys",
            "create",
            "-c",
            &c,
            "--name",
            "cli",
            "--scopes",
            "read,write  admin",
            "--expires",
            "2099-01-01",
        ]),
        token.clone(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(line(&out, "scopes: "), "read write admin", "{out}");
    assert_eq!(
        line(&out, "expires_at: "),
        "2099-01-01T00:00:00.000000Z",
        "{out}"
    );
    let id = line(&out, "id: ");
    // and through PORTCULLIS_ADMIN_URL
    let mut env = token.clone();
    env.push(("PORTCULLIS_ADMIN_URL", gw.admin()));
    let (code, out, err) = run(args(&["keys", "show", &id]), env).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("name: cli"), "{out}");
    // revoking twice: both succeed
    for _ in 0..2 {
        let (code, _, err) = run(args(&["keys", "revoke", &id, "-c", &c]), token.clone()).await;
        assert_eq!(code, 0, "{err}");
    }
    // a missing token and a wrong one say so
    let (code, _, err) = run(args(&["keys", "list", "-c", &c]), vec![]).await;
    assert_eq!(code, 1);
    assert!(err.contains("set PORTCULLIS_ADMIN_TOKEN"), "{err}");
    let (code, _, err) = run(
        args(&["keys", "list", "-c", &c]),
        vec![("PORTCULLIS_ADMIN_TOKEN", "pca_wrong".to_owned())],
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("refused the token"), "{err}");
    // token revocations: listed, lifted; one that ends in the past is refused
    let (code, out, err) = run(
        args(&["tokens", "revoke", "jti-cli", "--until", "1h", "-c", &c]),
        token.clone(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked jti jti-cli until"), "{out}");
    let (_, out, _) = run(args(&["tokens", "list", "-c", &c]), token.clone()).await;
    assert!(out.contains("jti-cli"), "{out}");
    let (code, out, err) = run(
        args(&["tokens", "unrevoke", "jti-cli", "-c", &c]),
        token.clone(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("lifted"), "{out}");
    let (_, out, _) = run(args(&["tokens", "list", "-c", &c]), token.clone()).await;
    assert!(!out.contains("jti-cli"), "{out}");
    let (code, _, err) = run(
        args(&[
            "tokens",
            "revoke",
            "jti-old",
            "--until",
            "2001-01-01",
            "-c",
            &c,
        ]),
        token.clone(),
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("400") && err.contains("in the past"), "{err}");
    // usage errors are user errors: exit 1
    let (code, _, err) = run(args(&["keys", "create"]), vec![]).await;
    assert_eq!(code, 1, "{err}");
    let (code, _, _) = run(args(&["--json", "run"]), vec![]).await;
    assert_eq!(code, 1);
    // --help describes every option, and shows each only where it does something
    let (code, help, _) = run(args(&["keys", "create", "--help"]), vec![]).await;
    assert_eq!(code, 0);
    let options: Vec<&str> = help
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('-'))
        .collect();
    assert!(options.len() >= 8, "{help}");
    for o in &options {
        // `--name <NAME>  A name for people` : the flag, then words
        let words = o.split("  ").filter(|w| !w.trim().is_empty()).count();
        assert!(words >= 2, "undescribed option `{o}` in:\n{help}");
    }
    for opt in [
        "--admin",
        "--json",
        "--config",
        "--scopes",
        "--expires",
        "--rate",
    ] {
        assert!(help.contains(opt), "{opt} missing from keys create --help");
    }
    let (_, help, _) = run(args(&["run", "--help"]), vec![]).await;
    assert!(
        !help.contains("--admin") && !help.contains("--json"),
        "admin options shown where they do nothing:\n{help}"
    );
}
