//! Faults around the gateway, each with nothing lost: the disk filling up under an admin write.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_admin_write_cleanly_and_serving_goes_on() {
    let up = Upstream::start().await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let _fs = Tmpfs::mount(&data, 2048);
    let gw = Gw::start(&format!(
        r#"
listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]
logging: {{ format: json, audit: off }}
store: {{ sqlite: "{db}" }}
upstreams: {{ rec: {{ url: "{url}" }} }}
authenticators: {{ keys: {{ type: api_key }} }}
routes:
  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}
"#,
        db = data.join("keys.db").display(),
        url = up.url()
    ))
    .await;
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
