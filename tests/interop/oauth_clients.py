"""OAuth client libraries, unchanged, against Portcullis' authorization server (tests/oauth.rs).

Reads JSON on stdin:
    {"issuer": "https://localhost:PORT", "ca": "/path/ca.crt", "audience": "https://api.test",
     "basic": {"id", "secret"}, "post": {"id", "secret"}, "special": {"id", "secret"},
     "special_post": {"id", "secret"}}
and runs, for each, what a user of the library would write. Prints one JSON line per check:
    {"check": NAME, "ok": true|false, "detail": ..., "token": ... (when one was issued)}
A check that raises is reported as not ok with the exception, never as a crash.

Libraries: authlib (OAuth2Session: client_credentials with client_secret_basic and _post,
RFC 7009 revoke, RFC 7662 introspect), requests-oauthlib (BackendApplicationClient), PyJWT
(PyJWKClient against the JWKS endpoint; verifies signature, iss, aud, exp and the at+jwt type).
"""

import json
import os
import sys
import traceback

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session as OAuthlibSession

cfg = json.load(sys.stdin)
ISS = cfg["issuer"]
CA = cfg["ca"]
# the test PKI's CA, for every library that uses requests (as a user's environment would set it)
os.environ["REQUESTS_CA_BUNDLE"] = CA
TOKEN = f"{ISS}/oauth2/token"
AUD = cfg["audience"]


def report(check, ok, detail="", token=None):
    out = {"check": check, "ok": bool(ok), "detail": detail}
    if token:
        out["token"] = token
    print(json.dumps(out), flush=True)


def run(check, f):
    try:
        f()
    except Exception as e:  # a library error is a failed check, reported with its trace
        report(check, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")


def verify_with_pyjwt(token):
    """PyJWT: the token's key from the JWKS endpoint, then signature, iss, aud, exp, typ."""
    jwks = jwt.PyJWKClient(f"{ISS}/oauth2/jwks", cache_keys=False,
                           ssl_context=__import__("ssl").create_default_context(cafile=CA))
    key = jwks.get_signing_key_from_jwt(token)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, key.key, algorithms=[header["alg"]], audience=AUD, issuer=ISS,
                        options={"require": ["exp", "iat", "sub", "jti", "client_id"]})
    if header.get("typ") != "at+jwt":
        raise ValueError(f"typ is {header.get('typ')!r}, not at+jwt")
    return claims


def authlib_flow(name, method):
    c = cfg[name]

    def f():
        s = OAuth2Session(c["id"], c["secret"], token_endpoint_auth_method=method, scope="read")
        tok = s.fetch_token(TOKEN, grant_type="client_credentials")
        claims = verify_with_pyjwt(tok["access_token"])
        ok = (claims["client_id"] == c["id"] and claims["sub"] == c["id"]
              and claims["scope"] == "read" and tok["token_type"].lower() == "bearer"
              and tok["expires_in"] > 0)
        report(f"authlib_{method}", ok, {"claims": claims, "scope": tok.get("scope")},
               tok["access_token"])
        # RFC 7662 and RFC 7009 with the same session (its client authentication)
        r = s.introspect_token(f"{ISS}/oauth2/introspect", token=tok["access_token"])
        body = r.json()
        report(f"authlib_{method}_introspect_active",
               r.status_code == 200 and body.get("active") is True
               and body.get("client_id") == c["id"], body)
        r = s.revoke_token(f"{ISS}/oauth2/revoke", token=tok["access_token"],
                           token_type_hint="access_token")
        report(f"authlib_{method}_revoke", r.status_code == 200, r.status_code)
        r = s.introspect_token(f"{ISS}/oauth2/introspect", token=tok["access_token"])
        report(f"authlib_{method}_introspect_revoked",
               r.status_code == 200 and r.json() == {"active": False}, r.json(),
               tok["access_token"])

    run(f"authlib_{method}", f)


def requests_oauthlib_flow():
    c = cfg["basic"]

    def f():
        s = OAuthlibSession(client=BackendApplicationClient(client_id=c["id"]))
        tok = s.fetch_token(token_url=TOKEN, client_id=c["id"], client_secret=c["secret"],
                            scope=["read"])
        claims = verify_with_pyjwt(tok["access_token"])
        report("requests_oauthlib", claims["client_id"] == c["id"], claims, tok["access_token"])

    run("requests_oauthlib", f)


def special_secret():
    """A secret with characters that need form-urlencoding, sent both ways: authlib's Basic
    header (which does not encode) and an RFC 6749 2.3.1 encoded one (requests by hand)."""
    c = cfg["special"]

    def f():
        s = OAuth2Session(c["id"], c["secret"], token_endpoint_auth_method="client_secret_basic")
        tok = s.fetch_token(TOKEN, grant_type="client_credentials")
        report("special_secret_authlib_basic", bool(tok.get("access_token")), "")
        p = cfg["special_post"]
        s = OAuth2Session(p["id"], p["secret"], token_endpoint_auth_method="client_secret_post")
        tok = s.fetch_token(TOKEN, grant_type="client_credentials")
        report("special_secret_authlib_post", bool(tok.get("access_token")), "")
        from urllib.parse import quote_plus
        r = requests.post(TOKEN, data={"grant_type": "client_credentials"},
                          auth=(quote_plus(c["id"]), quote_plus(c["secret"])))
        report("special_secret_rfc6749_encoded", r.status_code == 200, r.text[:200])
        r = requests.post(TOKEN, data={"grant_type": "client_credentials"},
                          auth=(c["id"], c["secret"] + "x"))
        report("special_secret_wrong_refused",
               r.status_code == 401 and r.json().get("error") == "invalid_client", r.text[:200])

    run("special_secret", f)


authlib_flow("basic", "client_secret_basic")
authlib_flow("post", "client_secret_post")
requests_oauthlib_flow()
special_secret()
