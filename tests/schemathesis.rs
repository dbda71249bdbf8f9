//! The admin API against its own OpenAPI document: schemathesis (PyPI) generates requests for
//! every operation and checks that nothing answers 5xx and every answer matches the schema.
//! The config has an `oauth_server`, so `/admin/clients` and `/admin/oauth/keys` answer too.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let up = Upstream::start().await;
    let gw = Gw::start(&format!(
        "listeners: [{{ name: plain, bind: 127.0.0.1:0 }}]\nlogging: {{ audit: off }}\nupstreams: {{ rec: {{ url: \"{}\" }} }}\nauthenticators: {{ keys: {{ type: api_key }} }}\nroutes:\n  - {{ name: api, match: {{ path_prefix: / }}, upstream: rec, auth: {{ any_of: [keys] }} }}\n\
         oauth_server:\n  issuer: http://127.0.0.1:8443\n  listener: plain\n",
        up.url()
    ))
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/schemathesis.sh");
    let admin = gw.admin();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args([script, &admin, ADMIN_TOKEN])
            .env("ST_MAX_EXAMPLES", "15")
            .env("ST_TIME_CAP", "420")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis failed (is it installed? pip install -r tests/interop/requirements-schemathesis.txt):\n{text}"
    );
    eprintln!("{text}");
    assert!(
        text.contains("passed"),
        "no summary from schemathesis:\n{text}"
    );
    assert_eq!(up.count(), 0, "the admin API must never reach an upstream");
}
