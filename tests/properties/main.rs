//! Property tests (proptest) over the crate's public API: everything here parses input an attacker
//! (or, for the config, an operator's typo) controls, and must never panic. One test binary
//! (`cargo test --test properties`), one module per topic:
//!
//! - [`path_normalization`]: path normalization against an independent REFERENCE MODEL of SPEC
//!   section 5, idempotence, confinement to the root;
//! - [`api_keys`]: API key shape and checksum (a reference CRC-32 and base62 written here), the
//!   key ring and key hashing;
//! - [`credential_extraction`]: credential extraction (`Bearer`, `Api-Key`, `X-Api-Key`, token
//!   cookies and query parameters) against reference models, and the stripping of consumed
//!   credentials;
//! - [`trust_boundary`]: the header rewrite at the trust boundary (what the upstream may see, and
//!   what the client gets back);
//! - [`routing`]: host checks, normalization and routing (`route::resolve`), `;` parameters
//!   included, and `client_ip` behind trusted proxies;
//! - [`jwt_validity`]: JWT structure, claims (a reference model of SPEC section 2's validity
//!   rules) and the whole verify path (`auth::evaluate`) on arbitrary and mutated tokens, HMAC and
//!   RSA;
//! - [`small_parsers`]: durations, rates, rate-limit quotas, RFC 3339, `sha256:` hashes, JWK Sets,
//!   sign-in return targets (against the WHATWG URL parser),
//!   client certificates;
//! - [`config_compile`]: config parse + compile (what `portcullis check` runs) on arbitrary YAML,
//!   mutated copies of the shipped `gateway.yaml` and grammar-generated configs (no panic);
//! - [`config_model`]: the `limits` section against a REFERENCE MODEL (which fields are wrong,
//!   all reported in one run, each at its line; the compiled values when none is);
//! - [`regressions`]: minimal failing inputs found by these properties and the fuzz targets;
//! - [`support`]: what several modules share (the proptest config, strategies, reference helpers,
//!   the JWT authenticators, the shipped config).
//!
//! Failing inputs are not persisted (`failure_persistence: None`): a failure found by these or by
//! the fuzz targets in `fuzz/` becomes an explicit regression test in [`regressions`].
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "../common/mod.rs"]
mod common;

mod api_keys;
mod config_compile;
mod config_model;
mod credential_extraction;
mod jwt_validity;
mod path_normalization;
mod regressions;
mod routing;
mod small_parsers;
mod support;
mod trust_boundary;
