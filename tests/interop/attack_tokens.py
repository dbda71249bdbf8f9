#!/usr/bin/env python3
"""Attack-token helper for tests/attacks_jwt.rs (docs/attack-cases.md section 6).

mint.py signs well-formed tokens through PyJWT and jwcrypto. The attack cases also need things
those APIs refuse to produce on purpose: validly signed tokens whose header or payload bytes are
chosen exactly (duplicate members, `b64: false` with an ordinary payload segment, `1e999`, a
nested JWT as the payload), a P-384 key signing under the name ES256, an HMAC with an empty key,
a 1024-bit RSA key, the RSA public key in the byte forms an HMAC-confusion attacker uses, a
self-signed certificate for `x5c`, and a compact JWE. The primitives come from `cryptography`
(OpenSSL) and jwcrypto; nothing here shares code with the gateway.

Contract (same as mint.py): stdin is one JSON object, or a JSON array of them (batch); stdout is
one line per object, in order: the result, or {"error": "..."} for that object; exit 1 if any
object failed. Nothing else is written to stdout.

Modes:

  {"mode": "keygen_rsa", "bits": 1024, "kid": "k"}
      -> {"private": {<JWK>}, "public": {<JWK>}}
  {"mode": "key_forms", "public": {<RSA public JWK>}}
      -> {"spki_pem": "-----BEGIN PUBLIC KEY-----\\n...", "spki_der": <b64url>,
          "pkcs1_der": <b64url>}
  {"mode": "selfsigned", "private": {<JWK>}, "cn": "attacker"}
      -> {"x5c": <standard base64 of the DER certificate>}
  {"mode": "sign_raw", "alg": "RS256", "key": {<private JWK>}, "header": "<text>",
   "payload": "<text>"}
      -> base64url(header) "." base64url(payload) "." base64url(signature over those two)
      HS*: the key is an oct JWK ("k" may be empty). ES*: any curve (the signature is r||s of
      the key's own size, so a P-384 key "signing ES256" gives 96 bytes).
  {"mode": "jwe", "public": {<RSA public JWK>}, "alg": "RSA-OAEP", "enc": "A256GCM",
   "kid": "k", "plaintext": "<text>"}
      -> a compact JWE (5 segments) made by jwcrypto
"""

import base64
import json
import sys

# The request contract, field checks and batch loop are mint.py's (same directory: the script's
# directory is sys.path[0]).
from mint import UsageError, _require, main


def b64url(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mode_keygen_rsa(req):
    from jwcrypto import jwk

    bits = _require(req, "bits", int)
    extra = {}
    if req.get("kid") is not None:
        extra["kid"] = _require(req, "kid", str)
    k = jwk.JWK.generate(kty="RSA", size=bits, **extra)
    return json.dumps(
        {"private": k.export_private(as_dict=True), "public": k.export_public(as_dict=True)}
    )


def mode_key_forms(req):
    from cryptography.hazmat.primitives import serialization
    from jwcrypto import jwk

    pub = jwk.JWK(**_require(req, "public", dict)).get_op_key("verify")
    spki_pem = pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pkcs1_der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return json.dumps(
        {
            "spki_pem": spki_pem.decode("ascii"),
            "spki_der": b64url(spki_der),
            "pkcs1_der": b64url(pkcs1_der),
        }
    )


def mode_selfsigned(req):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    from jwcrypto import jwk

    key = jwk.JWK(**_require(req, "private", dict)).get_op_key("sign")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, req.get("cn") or "attacker")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return json.dumps({"x5c": base64.b64encode(der).decode("ascii")})


def _hash(alg):
    from cryptography.hazmat.primitives import hashes

    bits = alg[2:]
    return {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[bits]


def _sign(alg, key, data):
    import hmac

    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from jwcrypto import jwk

    if alg.startswith("HS"):
        if key.get("kty") != "oct":
            raise UsageError("HS* needs an oct key")
        secret = b64url_decode(key.get("k", ""))
        return hmac.new(secret, data, "sha" + alg[2:]).digest()
    k = jwk.JWK(**key).get_op_key("sign")
    h = _hash(alg)
    if alg.startswith("RS"):
        return k.sign(data, padding.PKCS1v15(), h)
    if alg.startswith("PS"):
        return k.sign(data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
    if alg.startswith("ES"):
        r, s = decode_dss_signature(k.sign(data, ec.ECDSA(h)))
        size = (k.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise UsageError("unsupported alg %r" % alg)


def mode_sign_raw(req):
    alg = _require(req, "alg", str)
    key = _require(req, "key", dict)
    header = _require(req, "header", str)
    payload = _require(req, "payload", str)
    signing_input = b64url(header) + "." + b64url(payload)
    sig = _sign(alg, key, signing_input.encode("ascii"))
    return signing_input + "." + b64url(sig)


def mode_jwe(req):
    from jwcrypto import jwe, jwk

    pub = jwk.JWK(**_require(req, "public", dict))
    hdr = {"alg": _require(req, "alg", str), "enc": _require(req, "enc", str)}
    if req.get("kid") is not None:
        hdr["kid"] = req["kid"]
    e = jwe.JWE(_require(req, "plaintext", str).encode("utf-8"), protected=json.dumps(hdr))
    e.add_recipient(pub)
    return e.serialize(compact=True)


MODES = {
    "keygen_rsa": mode_keygen_rsa,
    "key_forms": mode_key_forms,
    "selfsigned": mode_selfsigned,
    "sign_raw": mode_sign_raw,
    "jwe": mode_jwe,
}


if __name__ == "__main__":
    sys.exit(main(MODES))
