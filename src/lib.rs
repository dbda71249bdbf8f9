//! Portcullis: an authentication gateway.
//!
//! One request's path, in module order (docs/architecture.md walks it function by function): a
//! [`listener`] accepts TCP (and TLS from [`tls`]) and records the connection's facts ([`conn`]);
//! [`proxy`] takes one consistent [`config::Snapshot`] from the [`gateway`], finds the route
//! ([`route`], [`normalize`], [`router`]), runs the route's [`auth`] chain, rewrites the request at
//! the trust boundary ([`headers`]) and sends it to the [`upstream`]; the [`telemetry`] logging
//! phase records it. Refusals are [`error::Reject`]s with a typed [`error::Reason`].
//!
//! Around it: [`config`] (YAML -> compiled snapshot), [`keys`] and [`store`] (API keys in memory
//! and at rest), [`admin`] (the admin API), [`server`] (start, upkeep, reload, shutdown).
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_client;
pub mod assertion;
pub mod auth;
pub mod body;
pub mod clock;
pub mod config;
pub mod conn;
pub mod cors;
pub mod devpki;
pub mod digest;
pub mod error;
pub mod explain;
pub mod gateway;
pub mod headers;
pub mod keys;
pub mod listener;
pub mod normalize;
pub mod oauth;
pub mod oauth_server;
pub mod proxy;
pub mod return_target;
pub mod route;
pub mod router;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod values;

pub use tls::install_crypto_provider;
