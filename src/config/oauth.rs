//! The `oauth_server` section (SPEC section 7): the issuer, the listener that serves the
//! endpoints, signing (algorithm, rotation, the secrets key), token lifetimes and the endpoints'
//! own rate limits. The parts of the section that belong to the authorization code flow are
//! refused with a message until that flow is built: a configured option is enforced or refused,
//! never ignored.

use super::issues::Issues;
use super::listeners::ListenerCfg;
use super::raw::{RawConfig, RawOauthServer};
use crate::auth::jwt::IssuerKeys;
use crate::auth::rate_limit::{LimitKey, LimitSpec, RateLimit};
use crate::oauth::signing::{SecretsKey, SigAlg};
use crate::oauth::OauthState;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The compiled section.
#[derive(Debug)]
pub struct OauthServerCfg {
    /// An origin: `https://host[:port]` (or `http://` on loopback), no path.
    pub issuer: String,
    pub listener: Arc<str>,
    pub algorithm: SigAlg,
    pub rotate_every: Duration,
    pub publish_ahead: Duration,
    /// None: the start step reads (or writes) the `secrets-key` file beside the SQLite store.
    pub secrets_key: Option<SecretsKey>,
    /// As written, to tell whether a reload changed it.
    pub secrets_key_text: Option<String>,
    pub access_token_ttl: Duration,
    /// Per client address, before any secret is checked.
    pub pre_auth: Arc<RateLimit>,
    /// Failed client authentications per client and address.
    pub failed_auth: Arc<RateLimit>,
    /// The server's public keys as a key set (revocation and introspection check tokens with it).
    pub verifier: IssuerKeys,
}

impl OauthServerCfg {
    /// The longest an access token of this server can live (`ttl` of clients included).
    pub fn ttl_secs(&self) -> i64 {
        self.access_token_ttl.as_secs() as i64
    }
}

/// A built-in limit, or the serving config's when it was the same (its buckets are kept).
fn default_limit(
    name: &str,
    spec: LimitSpec,
    prev: Option<&Arc<RateLimit>>,
) -> Option<Arc<RateLimit>> {
    if let Some(p) = prev.filter(|p| p.spec == spec && &*p.name == name) {
        return Some(p.clone());
    }
    RateLimit::new(name, spec, LimitKey::Ip).ok().map(Arc::new)
}

fn named_limit(
    field: &str,
    name: Option<&str>,
    default: (&str, LimitSpec),
    limits: &BTreeMap<String, Arc<RateLimit>>,
    raw_names: &[&str],
    prev: Option<&Arc<RateLimit>>,
    issues: &mut Issues,
) -> Option<Arc<RateLimit>> {
    match name {
        Some(n) => match limits.get(n) {
            Some(l) => Some(l.clone()),
            None => {
                if !raw_names.contains(&n) {
                    issues.add(field, format!("no rate limit named `{n}` in rate_limits"));
                }
                None
            }
        },
        None => default_limit(default.0, default.1, prev),
    }
}

/// Checks `issuer`: an origin, https unless the host is loopback.
fn check_issuer(issuer: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{issuer}` {why}: give an origin such as https://auth.example.com or https://localhost:8443"
        ))
    };
    let uri: http::Uri = match issuer.parse() {
        Ok(u) => u,
        Err(_) => return bad("is not a URL"),
    };
    let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
        return bad("is not an absolute URL");
    };
    if auth.as_str().contains('@') {
        return bad("has user information");
    }
    if issuer.len() != scheme.len() + 3 + auth.as_str().len() {
        return bad("has a path, query or fragment (not even a trailing `/`)");
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match scheme {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => bad("is http on a host that is not loopback"),
        _ => bad("is not http(s)"),
    }
}

/// Refuses the parts of the section the authorization code flow will bring.
fn refuse_unbuilt(o: &RawOauthServer, raw: &RawConfig, issues: &mut Issues) {
    let later = "belongs to the authorization code flow, which this version does not have yet \
                 (client credentials only)";
    for (set, field) in [
        (
            o.authorization_code_ttl.is_some(),
            "oauth_server.authorization_code_ttl",
        ),
        (o.refresh_token.is_some(), "oauth_server.refresh_token"),
        (o.login.is_some(), "oauth_server.login"),
        (o.consent.is_some(), "oauth_server.consent"),
        (raw.identity_providers.is_some(), "identity_providers"),
    ] {
        if set {
            issues.add(field, later);
        }
    }
}

/// `oauth_server`. `limits`: the compiled `rate_limits`; `prev`: the serving config's section.
pub fn compile_oauth(
    raw: &RawConfig,
    state: &Arc<OauthState>,
    listeners: &[ListenerCfg],
    limits: &BTreeMap<String, Arc<RateLimit>>,
    prev: Option<&OauthServerCfg>,
    cluster: bool,
    issues: &mut Issues,
) -> Option<OauthServerCfg> {
    let Some(o) = &raw.oauth_server else {
        if raw.identity_providers.is_some() {
            issues.add(
                "identity_providers",
                "is only used by oauth_server (sign-in at /oauth2/authorize), which this version does not have yet",
            );
        }
        return None;
    };
    let before = issues.len();
    refuse_unbuilt(o, raw, issues);
    if let Err(e) = check_issuer(o.issuer.as_str()) {
        issues.add("oauth_server.issuer", e);
    }
    if !listeners.iter().any(|l| *l.name == *o.listener.as_str()) {
        issues.add(
            "oauth_server.listener",
            format!("no listener named `{}`", o.listener),
        );
    }
    let algorithm = match o.signing.algorithm.as_ref() {
        None => SigAlg::ES256,
        Some(a) => SigAlg::parse(a.as_str()).unwrap_or_else(|| {
            issues.add(
                "oauth_server.signing.algorithm",
                format!("`{a}`: use ES256, RS256 or EdDSA"),
            );
            SigAlg::ES256
        }),
    };
    let d = |v: Option<crate::values::Dur>, secs: u64| v.map_or(Duration::from_secs(secs), |d| d.0);
    let rotate_every = d(o.signing.rotate_every, 30 * 86_400);
    let publish_ahead = d(o.signing.publish_ahead, 3600);
    if rotate_every <= publish_ahead {
        issues.add(
            "oauth_server.signing.rotate_every",
            format!(
                "must be longer than publish_ahead ({}s): a key must sign for a while before the next one",
                publish_ahead.as_secs()
            ),
        );
    }
    let access_token_ttl = d(o.access_token_ttl, 900);
    if access_token_ttl < Duration::from_secs(1) || access_token_ttl > Duration::from_secs(86_400) {
        issues.add(
            "oauth_server.access_token_ttl",
            "must be between 1s and 24h",
        );
    }
    let secrets_key_text = o.signing.secrets_key.as_ref().map(|s| s.0.clone());
    let secrets_key = match &secrets_key_text {
        Some(t) => match SecretsKey::from_base64(t) {
            Ok(k) => Some(k),
            Err(e) => {
                issues.add("oauth_server.signing.secrets_key", e);
                None
            }
        },
        None if cluster => {
            issues.add(
                "oauth_server.signing.secrets_key",
                "required in cluster mode (store.postgres): every replica must open the same signing keys",
            );
            None
        }
        None => None,
    };
    let names: Vec<&str> = raw.rate_limits.keys().map(String::as_str).collect();
    let pre_auth = named_limit(
        "oauth_server.pre_auth_rate_limit",
        o.pre_auth_rate_limit.as_ref().map(|s| s.as_str()),
        (
            "oauth_server",
            LimitSpec {
                count: 50,
                per: Duration::from_secs(1),
                burst: 100,
            },
        ),
        limits,
        &names,
        prev.map(|p| &p.pre_auth),
        issues,
    );
    let failed_auth = named_limit(
        "oauth_server.failed_auth_limit",
        o.failed_auth_limit.as_ref().map(|s| s.as_str()),
        (
            "oauth_server_failed_auth",
            LimitSpec {
                count: 10,
                per: Duration::from_secs(60),
                burst: 10,
            },
        ),
        limits,
        &names,
        prev.map(|p| &p.failed_auth),
        issues,
    );
    if issues.len() > before {
        return None;
    }
    Some(OauthServerCfg {
        issuer: o.issuer.0.clone(),
        listener: Arc::from(o.listener.as_str()),
        algorithm,
        rotate_every,
        publish_ahead,
        secrets_key,
        secrets_key_text,
        access_token_ttl,
        pre_auth: pre_auth?,
        failed_auth: failed_auth?,
        verifier: IssuerKeys::new(state.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::check_issuer;

    #[test]
    fn the_issuer_is_an_origin() {
        for ok in [
            "https://auth.example.com",
            "https://localhost:8443",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:9",
        ] {
            assert_eq!(check_issuer(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("https://auth.example.com/", "path"),
            ("https://auth.example.com/tenant", "path"),
            ("https://a.example.com?x=1", "path"),
            ("http://auth.example.com", "not loopback"),
            ("ftp://x", "not http"),
            ("auth.example.com", "not"),
            ("https://u:p@a.example.com", "user information"),
        ] {
            let e = check_issuer(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
