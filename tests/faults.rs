//! Faults around the gateway, each with nothing lost: the disk filling up under an admin write,
//! and the store's file system turning read-only.
//! (More fault tests live beside the code they exercise: upstream refusing/resetting/hanging in
//! proxy.rs, JWKS endpoints down in oidc.rs, kill -9 during key creation in keys.rs, SIGHUP with
//! a broken config in process.rs.)

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;
use serde_json::json;
use std::process::Command;

/// A tmpfs of `kib` KiB at `dir`, unmounted on drop. Needs root (CI runs as root on this kind of
/// machine); fails loudly otherwise, never passes silently.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, kib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill the disk and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
    p
}

fn gateway_yaml(db: &std::path::Path, up: &Upstream) -> String {
    format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ sqlite: "{db}" }}
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators: {{ keys: {{ type: api_key }} }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}
"#,
        db = db.display(),
        url = up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_admin_write_cleanly_and_serving_goes_on() {
    let up = Upstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let _fs = Tmpfs::mount(&data, 2048);
    let gw = Gw::start(&gateway_yaml(&data.join("keys.db"), &up)).await;
    let http = plain_client();
    let create = |name: &'static str| {
        let http = http.clone();
        let admin = gw.admin();
        async move {
            admin_call(
                &http,
                &admin,
                reqwest::Method::POST,
                "/admin/keys",
                Some(json!({ "name": name })),
            )
            .await
        }
    };
    let use_key = |key: String| {
        let req = http
            .get(format!("{}/x", gw.http("plain")))
            .header("x-api-key", key);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let (st, before) = create("before").await;
    assert_eq!(st, 201, "{before}");
    let key_before = before["key"].as_str().unwrap().to_owned();

    let filler = fill(&data);
    // Every write now fails: 503 with a clear error, no key handed out.
    let mut refused = 0;
    for _ in 0..20 {
        let (st, body) = create("during").await;
        if st == 503 {
            assert_eq!(body["error"], "store_unavailable", "{body}");
            assert!(body.get("key").is_none(), "{body}");
            refused += 1;
        } else {
            // SQLite may still fit a page or two in its WAL; the disk fills within a few writes.
            assert_eq!(st, 201, "{body}");
        }
    }
    assert!(refused > 0, "the disk never filled up");
    // Serving goes on from memory.
    assert_eq!(use_key(key_before.clone()).await, 200);

    std::fs::remove_file(&filler).unwrap();
    let (st, after) = create("after").await;
    assert_eq!(st, 201, "{after}");
    assert_eq!(
        use_key(after["key"].as_str().unwrap().to_owned()).await,
        200
    );

    // Nothing half-written: the file is consistent, and it holds exactly the keys that were
    // answered 201 (memory and disk agree).
    let store = portcullis::store::sqlite::Sqlite::open(&data.join("keys.db")).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    use portcullis::store::Store;
    let on_disk = store.load_keys().unwrap().len();
    let (_, listed) = admin_call(
        &http,
        &gw.admin(),
        reqwest::Method::GET,
        "/admin/keys",
        None,
    )
    .await;
    assert_eq!(on_disk, listed["keys"].as_array().unwrap().len());
    assert_eq!(on_disk, 2 + (20 - refused));
}

/// Marks files immutable (`chattr +i`: even root cannot write them, through descriptors opened
/// before as well), and writable again on drop.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: Vec<std::path::PathBuf>) -> Immutable {
        for f in &files {
            let out = Command::new("chattr").arg("+i").arg(f).output().unwrap();
            assert!(
                out.status.success(),
                "chattr +i {} (needs root and an ext4-like file system): {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Immutable(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(f).status();
        }
    }
}

/// The SQLite file and its write-ahead log become unwritable under a running gateway (made
/// immutable: root ignores file modes, so a mode change would prove nothing here). Admin writes
/// (create, rotate, revoke) fail with 503 `store_unavailable` and hand out no key, memory is not
/// changed, serving goes on; once the files are writable again writes succeed, and the file holds
/// exactly the keys that were answered 201.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_store_fails_admin_writes_cleanly_and_recovers() {
    let up = Upstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("keys.db");
    let gw = Gw::start(&gateway_yaml(&db, &up)).await;
    let http = plain_client();
    let admin = gw.admin();
    let call = |method: reqwest::Method, path: String, body: Option<serde_json::Value>| {
        let (http, admin) = (http.clone(), admin.clone());
        async move { admin_call(&http, &admin, method, &path, body).await }
    };
    let use_key = |key: String| {
        let req = http
            .get(format!("{}/x", gw.http("plain")))
            .header("x-api-key", key);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let (st, first) = call(
        reqwest::Method::POST,
        "/admin/keys".into(),
        Some(json!({"name": "first"})),
    )
    .await;
    assert_eq!(st, 201, "{first}");
    let key = first["key"].as_str().unwrap().to_owned();
    let id = first["id"].as_str().unwrap().to_owned();

    let mut files = vec![db.clone()];
    let wal = root.path().join("keys.db-wal");
    if wal.exists() {
        files.push(wal);
    }
    let frozen = Immutable::set(files);
    for (method, path, body) in [
        (
            reqwest::Method::POST,
            "/admin/keys".to_owned(),
            Some(json!({"name": "during"})),
        ),
        (
            reqwest::Method::POST,
            format!("/admin/keys/{id}/rotate"),
            None,
        ),
        (reqwest::Method::DELETE, format!("/admin/keys/{id}"), None),
    ] {
        let (st, body) = call(method.clone(), path.clone(), body).await;
        assert_eq!(st, 503, "{method} {path}: {body}");
        assert_eq!(body["error"], "store_unavailable", "{body}");
        assert!(body.get("key").is_none(), "{body}");
    }
    // Nothing changed in memory: the key is neither rotated nor revoked, and serving goes on.
    assert_eq!(use_key(key.clone()).await, 200);
    let (_, listed) = call(reqwest::Method::GET, format!("/admin/keys/{id}"), None).await;
    assert_eq!(listed["status"], "active", "{listed}");

    drop(frozen);
    let (st, after) = call(
        reqwest::Method::POST,
        "/admin/keys".into(),
        Some(json!({"name": "after"})),
    )
    .await;
    assert_eq!(st, 201, "{after}");
    assert_eq!(
        use_key(after["key"].as_str().unwrap().to_owned()).await,
        200
    );
    assert_eq!(use_key(key).await, 200);

    let store = portcullis::store::sqlite::Sqlite::open(&db).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
    use portcullis::store::Store;
    let mut names: Vec<String> = store
        .load_keys()
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["after", "first"]);
}
