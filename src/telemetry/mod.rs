//! What the gateway tells its operators: the tracing [`subscriber`] (JSON or pretty, reloadable),
//! and the logging phase of every request ([`log_request`]: the access line, the [`metrics`] and the [`audit`]
//! record, in one call after the response head).

pub mod audit;
pub mod metrics;
pub mod process;
pub mod subscriber;

use crate::auth::identity::Identity;
use crate::error::{Reason, Source};
use audit::{Audit, AuditRecord};
use http::HeaderValue;
use metrics::Metrics;
use std::net::IpAddr;
use std::sync::Arc;

/// The decision about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The chain allowed it; `failure`: why it then failed anyway (the upstream, or the
    /// client's body), if it did.
    Allow { failure: Option<Reason> },
    /// Refused, before or by the chain.
    Deny(Reason),
}

/// What one request came to.
pub struct RequestLog<'a> {
    /// Ours or a client's checked against `[A-Za-z0-9._:-]`: always ASCII.
    pub request_id: &'a HeaderValue,
    pub listener: &'a str,
    pub route: Option<&'a Arc<str>>,
    pub method: &'a str,
    /// The path as the client sent it.
    pub path: &'a str,
    pub client_ip: IpAddr,
    /// Who the chain found the request to be: allowed, or refused by an authorizer.
    pub identity: Option<&'a Identity>,
    /// The authenticator that decided (whose credential proved the identity or was refused).
    pub authenticator: Option<&'a Arc<str>>,
    pub decision: Decision,
    pub status: u16,
    pub latency_us: u64,
    /// From sending the request upstream to its response head, when it was sent.
    pub upstream_us: Option<u64>,
    /// An authorization server event (`token_issued`, `client_auth_failed`, ...).
    pub event: Option<&'static str>,
    /// The `jti` of the token the event is about (never the token).
    pub token_id: Option<&'a str>,
}

/// The logging phase (pingora's `logging` hook): the metrics and the audit line of one request,
/// and at debug level a log event. Fields are formatted only for the outputs that are on.
pub fn log_request(metrics: &Metrics, audit: &Audit, r: &RequestLog<'_>) {
    let id = r.identity;
    let rid = || r.request_id.to_str().unwrap_or("-");
    let (reason, failure) = match r.decision {
        Decision::Allow { failure } => (None, failure),
        Decision::Deny(reason) => (Some(reason), None),
    };
    let decision = match r.decision {
        Decision::Allow { .. } => "allow",
        Decision::Deny(_) => "deny",
    };
    // The audit log is the per-request log; this event is for debugging, in the log's format.
    tracing::debug!(
        target: "access",
        request_id = rid(),
        listener = %r.listener,
        route = r.route.map_or("-", |r| &**r),
        method = %r.method,
        path = r.path,
        client_ip = %r.client_ip,
        auth_method = id.map_or("-", |i| i.method.as_str()),
        subject = id.and_then(|i| i.subject.as_deref()).unwrap_or("-"),
        decision,
        reason = reason.or(failure).map_or("-", Reason::name),
        status = r.status,
        latency_us = r.latency_us,
        "request"
    );
    metrics.request(r.route, r.status, r.latency_us, r.upstream_us);
    if let Some(route) = r.route {
        let authn = r.authenticator.or_else(|| id.map(|i| i.method.label()));
        match r.decision {
            Decision::Allow { failure } => {
                metrics.decision(authn, true, "ok");
                if let Some(u) = failure.filter(|u| u.source() == Source::Upstream) {
                    metrics.upstream_error(route, u.name());
                }
            }
            Decision::Deny(reason) => {
                if reason == Reason::RateLimited {
                    metrics.rate_limited(route);
                }
                metrics.decision(authn, false, reason.name());
            }
        }
    }
    if audit.enabled() {
        audit.record(&AuditRecord {
            request_id: rid(),
            listener: r.listener,
            route: r.route.map(|r| &**r),
            method: r.method,
            path: r.path,
            client_ip: r.client_ip,
            auth_method: id.map(|i| i.method.as_str()),
            authenticator: r.authenticator.map(|a| &**a),
            key_id: id.and_then(|i| i.key_id.as_deref()),
            subject: id.and_then(|i| i.subject.as_deref()),
            issuer: id.and_then(|i| i.issuer.as_deref()),
            decision,
            reason: reason.map(Reason::name),
            failure: failure.map(Reason::name),
            status: r.status,
            latency_us: r.latency_us,
            event: r.event,
            token_id: r.token_id,
        });
    }
}
