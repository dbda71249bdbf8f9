//! The JWT verify path on arbitrary input: `jwt::parse::parse`, `signature_valid`, and
//! `JwtAuthn::verify` with a static HMAC key. Never panics; never accepts (the fuzzer does not
//! know the secret).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::auth::jwt::keyset::KeySet;
use portcullis::auth::jwt::{self, JwtAuthn, Keys};
use portcullis::auth::request::{credential, CredentialSource};
use portcullis::auth::revocation::Revocations;
use std::sync::{Arc, LazyLock};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-fuzz";

static AUTHN: LazyLock<JwtAuthn> = LazyLock::new(|| JwtAuthn {
    name: Arc::from("fuzz"),
    issuer: "https://i.test".into(),
    audiences: vec!["gw".into()],
    algorithms: vec![jsonwebtoken::Algorithm::HS256],
    keys: Keys::Static(Arc::new(KeySet::from_secret(SECRET))),
    leeway: 0.0,
    require_typ: None,
    token_from: vec![CredentialSource::Header],
    cache: None,
    scopes_claim: "scope".into(),
    claims_to_headers: vec![],
    revocations: Arc::new(Revocations::default()),
    oauth: None,
});

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = jwt::verify::signature_valid(&KeySet::from_secret(SECRET), token);
    if let Ok(parsed) = jwt::parse::parse(token) {
        let _ = parsed.issuer();
        let r = RT.block_on(AUTHN.verify(&parsed, portcullis::clock::now()));
        assert!(
            r.is_err(),
            "a token not signed with the secret passed: {token:?}"
        );
    }
    if let Ok(v) = http::HeaderValue::from_bytes(data) {
        let _ = credential(&v, "Bearer");
    }
});
