//! The authorization server's pages (SPEC section 7): sign-in, consent and error, rendered on
//! the server. No script and no external asset: one small style sheet inline, allowed by its
//! hash in the `Content-Security-Policy` the pages are sent with, so a value that slipped past
//! escaping still could not run or load anything. Every value from a client registration, a
//! request or a user (client names, scopes, usernames, messages) is HTML-escaped; forms post to
//! a relative path only and carry the interaction's CSRF token. Plain forms with native controls,
//! a label per field and one heading: they need no JavaScript.

use http::header::{self, HeaderName, HeaderValue};
use std::fmt::Write as _;
use std::sync::LazyLock;

const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;background:#f3f4f6;color:#111827}\
main{max-width:26rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:.75rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}\
h1{font-size:1.25rem;margin:0 0 1rem}p{margin:.5rem 0}label{display:block;margin:.75rem 0 .25rem;font-weight:600}\
input[type=text],input[type=password]{box-sizing:border-box;width:100%;padding:.6rem;border:1px solid #d1d5db;border-radius:.375rem;font:inherit}\
button{margin-top:1rem;padding:.6rem 1rem;border:0;border-radius:.375rem;font:inherit;font-weight:600;cursor:pointer;background:#1d4ed8;color:#fff}\
button.secondary{background:#e5e7eb;color:#111827;margin-left:.5rem}.error{color:#b91c1c;background:#fef2f2;padding:.5rem .75rem;border-radius:.375rem}\
ul{padding-left:1.25rem}li{margin:.25rem 0}code{font-size:.9em}.muted{color:#6b7280;font-size:.875rem}hr{border:0;border-top:1px solid #e5e7eb;margin:1.25rem 0}";

/// `Content-Security-Policy` of every page: nothing but the inline sheet above, forms to this
/// origin, never framed.
static CSP: LazyLock<String> = LazyLock::new(|| {
    use base64::Engine as _;
    let hash =
        base64::engine::general_purpose::STANDARD.encode(crate::digest::sha256(STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
});

/// The headers every page is sent with.
pub fn headers() -> Vec<(HeaderName, HeaderValue)> {
    let csp = HeaderValue::from_str(&CSP)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    vec![
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ]
}

/// `s` for HTML text and double-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"referrer\" content=\"no-referrer\"><title>{}</title><style>{STYLE}</style></head>\n<body><main>\n{body}</main></body></html>\n",
        escape(title)
    )
}

/// The hidden fields every form carries.
fn form_state(out: &mut String, interaction: &str, csrf: &str) {
    let _ = write!(
        out,
        "<input type=\"hidden\" name=\"interaction\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(interaction),
        escape(csrf)
    );
}

/// What the sign-in page shows.
pub struct SignIn<'a> {
    /// The client the user is signing in for (its registered name).
    pub client_name: &'a str,
    /// Where the forms post: a path on this origin.
    pub action: &'a str,
    pub interaction: &'a str,
    pub csrf: &'a str,
    /// Local users may sign in with a password (`login.users`).
    pub users: bool,
    /// The username typed before, after a failure.
    pub username: &'a str,
    /// Why the last attempt failed (one message for a wrong password, an unknown user and a
    /// lock, so the page tells nothing about the account).
    pub error: Option<&'a str>,
    /// External providers (`login.providers`): (name, label).
    pub providers: &'a [(&'a str, &'a str)],
}

pub fn sign_in(p: &SignIn<'_>) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Sign in</h1>\n<p>to continue to <strong>{}</strong></p>\n",
        escape(p.client_name)
    );
    if let Some(e) = p.error {
        let _ = writeln!(b, "<p class=\"error\" role=\"alert\">{}</p>", escape(e));
    }
    if p.users {
        let _ = write!(b, "<form method=\"post\" action=\"{}\">", escape(p.action));
        form_state(&mut b, p.interaction, p.csrf);
        let _ = write!(
            b,
            "<input type=\"hidden\" name=\"step\" value=\"password\">\
             <label for=\"username\">Username</label><input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required maxlength=\"64\" value=\"{}\">\
             <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"1024\">\
             <button type=\"submit\">Sign in</button></form>",
            escape(p.username)
        );
        b.push('\n');
    }
    if !p.providers.is_empty() {
        if p.users {
            b.push_str("<hr>");
        }
        for (name, label) in p.providers {
            let _ = write!(b, "<form method=\"post\" action=\"{}\">", escape(p.action));
            form_state(&mut b, p.interaction, p.csrf);
            let _ = writeln!(
                b,
                "<input type=\"hidden\" name=\"provider\" value=\"{}\"><button type=\"submit\">Continue with {}</button></form>",
                escape(name),
                escape(label)
            );
        }
    }
    page("Sign in", &b)
}

/// What the consent page shows.
pub struct Consent<'a> {
    pub client_name: &'a str,
    pub action: &'a str,
    pub interaction: &'a str,
    pub csrf: &'a str,
    /// Who is signed in.
    pub user: &'a str,
    /// Each scope asked for, with its description when the config gives one.
    pub scopes: &'a [(&'a str, Option<&'a str>)],
}

pub fn consent(p: &Consent<'_>) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Allow access?</h1>\n<p><strong>{}</strong> asks to act for you, <strong>{}</strong>:</p>\n<ul>\n",
        escape(p.client_name),
        escape(p.user)
    );
    for (scope, description) in p.scopes {
        match description {
            Some(d) => {
                let _ = writeln!(
                    b,
                    "<li>{} <span class=\"muted\">(<code>{}</code>)</span></li>",
                    escape(d),
                    escape(scope)
                );
            }
            None => {
                let _ = writeln!(b, "<li><code>{}</code></li>", escape(scope));
            }
        }
    }
    b.push_str("</ul>\n");
    let _ = write!(b, "<form method=\"post\" action=\"{}\">", escape(p.action));
    form_state(&mut b, p.interaction, p.csrf);
    b.push_str(
        "<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>\n\
         <p class=\"muted\">You can withdraw this later; the app then loses the access.</p>\n",
    );
    page("Allow access?", &b)
}

/// A page that ends the flow here: no redirect (an unknown client or redirect URI, a request
/// that cannot be answered to the client).
pub fn error(title: &str, message: &str) -> String {
    page(
        title,
        &format!("<h1>{}</h1>\n<p>{}</p>\n", escape(title), escape(message)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVIL: &str = "<script>alert(1)</script>\"'&\u{0}";

    fn no_raw(html: &str) {
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("\"'&"), "{html}");
        assert!(!html.contains('\u{0}'), "{html}");
    }

    #[test]
    fn every_value_is_escaped() {
        let providers = [(EVIL, EVIL)];
        let html = sign_in(&SignIn {
            client_name: EVIL,
            action: EVIL,
            interaction: EVIL,
            csrf: EVIL,
            users: true,
            username: EVIL,
            error: Some(EVIL),
            providers: &providers,
        });
        no_raw(&html);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        let scopes = [(EVIL, Some(EVIL)), (EVIL, None)];
        let html = consent(&Consent {
            client_name: EVIL,
            action: EVIL,
            interaction: EVIL,
            csrf: EVIL,
            user: EVIL,
            scopes: &scopes,
        });
        no_raw(&html);
        no_raw(&error(EVIL, EVIL));
    }

    #[test]
    fn pages_load_nothing_and_run_nothing() {
        let providers = [("corp", "Corp SSO")];
        let pages = [
            sign_in(&SignIn {
                client_name: "Billing",
                action: "/oauth2/authorize/sign-in",
                interaction: "i1",
                csrf: "c1",
                users: true,
                username: "",
                error: None,
                providers: &providers,
            }),
            consent(&Consent {
                client_name: "Billing",
                action: "/oauth2/authorize/consent",
                interaction: "i1",
                csrf: "c1",
                user: "alice",
                scopes: &[("read:profile", Some("Read your profile"))],
            }),
            error("Unknown client", "This link is not valid."),
        ];
        for html in &pages {
            assert!(!html.contains("<script"));
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{html}"
            );
            assert!(!html.contains(" src="), "{html}");
            assert!(html.contains(&format!("<style>{STYLE}</style>")));
        }
        // each form carries the interaction and its CSRF token, and posts to this origin
        assert_eq!(pages[0].matches("name=\"csrf\" value=\"c1\"").count(), 2);
        assert!(pages[0].contains("<form method=\"post\" action=\"/oauth2/authorize/sign-in\">"));
        assert!(pages[1].contains("name=\"decision\" value=\"allow\""));
        assert!(pages[1].contains("Read your profile"));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_sheet() {
        use base64::Engine as _;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(crate::digest::sha256(STYLE.as_bytes()));
        let h = headers();
        let csp = h
            .iter()
            .find(|(k, _)| *k == header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .1
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.starts_with("default-src 'none'; "), "{csp}");
        assert!(csp.contains(&format!("style-src 'sha256-{hash}'")), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(h
            .iter()
            .any(|(k, v)| *k == header::CACHE_CONTROL && v == "no-store"));
    }
}
