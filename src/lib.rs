//! Portcullis: an authentication gateway.
//!
//! The request path, in module order: a [`listener`] accepts TCP (and TLS from [`tls`]), hands each
//! request to [`proxy`], which takes one consistent [`config::Snapshot`], normalizes the path
//! ([`normalize`]), picks a route ([`router`]), runs the route's [`auth`] chain and forwards the
//! request through [`forward`] with the header rules of the trust boundary.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_client;
pub mod audit;
pub mod auth;
pub mod body;
pub mod config;
pub mod devpki;
pub mod echo;
pub mod error;
pub mod explain;
pub mod forward;
pub mod keys;
pub mod listener;
pub mod locate;
pub mod normalize;
pub mod proxy;
pub mod router;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod telemetry_metrics;
pub mod tls;
pub mod upstream_pool;
pub mod values;

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent; call before any TLS use.
pub fn install_crypto_provider() {
    // An Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
