#!/usr/bin/env python3
"""Token minting helper for Portcullis interop tests.

Contract: read ONE JSON object from stdin, write ONE line to stdout, exit 0.
On any error: write one line ``{"error": "..."}`` to stdout and exit 1.
Nothing else is ever written to stdout (warnings may go to stderr).

Modes (see tests/interop/README.md for the full contract):

  {"mode": "sign", "lib": "pyjwt"|"jwcrypto", "alg": "RS256",
   "key": {<private JWK>}, "header": {...}, "claims": {...}}
      -> <compact JWS>

  {"mode": "keygen", "alg": "RS256", "kid": "optional"}
      -> {"private": {<JWK>}, "public": {<JWK>}}

  {"mode": "vectors"}
      -> [{"name": ..., "alg": ..., "jwk": {...}, "token": ...}, ...]

Requires the packages pinned in tests/interop/requirements.txt.
"""

import contextlib
import importlib
import importlib.util
import json
import os
import sys

SUPPORTED_ALGS = (
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384",
    "EdDSA",
)

# JWK members that are private (RFC 7518 section 6, RFC 8037 section 2).
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class UsageError(Exception):
    pass


def _require(obj, name, typ):
    if name not in obj:
        raise UsageError("missing field %r" % name)
    val = obj[name]
    if not isinstance(val, typ):
        raise UsageError("field %r has the wrong type" % name)
    return val


def _check_alg(alg):
    if alg not in SUPPORTED_ALGS:
        raise UsageError(
            "unsupported alg %r (supported: %s)" % (alg, ", ".join(SUPPORTED_ALGS))
        )


# ---------------------------------------------------------------- sign


def _clean_header(header):
    """Drop "alg" (the request's alg wins) and members whose value is null."""
    return {k: v for k, v in header.items() if v is not None and k != "alg"}


def sign_pyjwt(alg, key, header, claims):
    import jwt

    pyjwk = jwt.PyJWK(key, algorithm=alg)
    hdr = _clean_header(header)
    # PyJWT adds "typ": "JWT" unless the caller sets typ; a null typ in the
    # request means "no typ header", which PyJWT expresses as typ=None.
    if "typ" not in hdr:
        hdr["typ"] = None if header.get("typ", "JWT") is None else "JWT"
    return jwt.encode(claims, pyjwk.key, algorithm=alg, headers=hdr)


def sign_jwcrypto(alg, key, header, claims):
    from jwcrypto import jwk, jwt

    k = jwk.JWK(**key)
    hdr = _clean_header(header)
    hdr["alg"] = alg
    tok = jwt.JWT(header=hdr, claims=claims)
    tok.make_signed_token(k)
    return tok.serialize(compact=True)


def mode_sign(req):
    lib = _require(req, "lib", str)
    alg = _require(req, "alg", str)
    key = _require(req, "key", dict)
    header = req.get("header") or {}
    claims = req.get("claims")
    if claims is None:
        claims = {}
    if not isinstance(header, dict):
        raise UsageError("field 'header' must be an object")
    if not isinstance(claims, dict):
        raise UsageError("field 'claims' must be an object")
    _check_alg(alg)
    if lib == "pyjwt":
        return sign_pyjwt(alg, key, header, claims)
    if lib == "jwcrypto":
        return sign_jwcrypto(alg, key, header, claims)
    raise UsageError("unknown lib %r (use 'pyjwt' or 'jwcrypto')" % lib)


# ---------------------------------------------------------------- keygen


def mode_keygen(req):
    from jwcrypto import jwk

    alg = _require(req, "alg", str)
    _check_alg(alg)
    kid = req.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise UsageError("field 'kid' must be a string")
    extra = {"kid": kid} if kid is not None else {}

    if alg.startswith("HS"):
        # RFC 7518 section 3.2: the key must be at least the hash size.
        bits = int(alg[2:])
        k = jwk.JWK.generate(kty="oct", size=bits, **extra)
        priv = k.export(as_dict=True)
        # For HMAC the verification key is the secret itself.
        return json.dumps({"private": priv, "public": dict(priv)})
    if alg[:2] in ("RS", "PS"):
        k = jwk.JWK.generate(kty="RSA", size=2048, **extra)
    elif alg == "ES256":
        k = jwk.JWK.generate(kty="EC", crv="P-256", **extra)
    elif alg == "ES384":
        k = jwk.JWK.generate(kty="EC", crv="P-384", **extra)
    elif alg == "EdDSA":
        k = jwk.JWK.generate(kty="OKP", crv="Ed25519", **extra)
    else:  # pragma: no cover - guarded by _check_alg
        raise UsageError("unsupported alg %r" % alg)
    priv = k.export_private(as_dict=True)
    pub = k.export_public(as_dict=True)
    leaked = [m for m in PRIVATE_MEMBERS if m in pub]
    if leaked:
        raise RuntimeError("public JWK contains private members %s" % leaked)
    return json.dumps({"private": priv, "public": pub})


# ---------------------------------------------------------------- vectors


def _jwcrypto_dir():
    spec = importlib.util.find_spec("jwcrypto")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("jwcrypto is not installed")
    return list(spec.submodule_search_locations)[0]


def _load_file_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load %s" % path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _b64(data):
    from jwcrypto.common import base64url_encode

    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64url_encode(data)


def _verification_jwk(key_dict):
    from jwcrypto import jwk

    k = jwk.JWK(**key_dict)
    if k["kty"] == "oct":
        return k.export(as_dict=True)
    pub = k.export_public(as_dict=True)
    for m in PRIVATE_MEMBERS:
        pub.pop(m, None)
    return pub


def _candidates(tests, cookbook, log):
    """Yield (name, alg, key_dict, compact_token). Missing sources are logged."""
    # RFC 7515 Appendix A.1-A.4 (A.5 is alg none, A.6/A.7 are JSON serializations).
    if tests is not None:
        for sec in ("A1", "A2", "A3", "A4"):
            try:
                ex = getattr(tests, sec + "_example")
                token = "%s.%s.%s" % (
                    _b64(ex["protected"]),
                    _b64(ex["payload"]),
                    _b64(ex["signature"]),
                )
                yield ("rfc7515-%s.%s" % (sec[0], sec[1:]), ex["alg"], dict(ex["key"]), token)
            except Exception as e:  # noqa: BLE001
                log("skip rfc7515-%s: %s" % (sec, e))
        # RFC 8037 Appendix A.4 (Ed25519 signing, key from A.1).
        try:
            ex = tests.E_Ed25519
            key = json.loads(ex["key_json"])
            yield ("rfc8037-A.4", ex["protected_header"]["alg"], key,
                   ex["jws_serialization_compact"])
        except Exception as e:  # noqa: BLE001
            log("skip rfc8037-A.4: %s" % e)
    # RFC 7520 section 4.1-4.4 compact serializations (4.5 detached, 4.6+ are
    # JSON-only or multi-signature, so they are not compact examples).
    if cookbook is not None:
        sections = (
            ("4.1", "4_1_3", "RSA_Private_Key_3_4"),
            ("4.2", "4_2_3", "RSA_Private_Key_3_4"),
            ("4.3", "4_3_3", "EC_Private_Key_3_2"),
            ("4.4", "4_4_3", "Symmetric_Key_MAC_3_5"),
        )
        from jwcrypto.common import base64url_decode

        for sec, suffix, keyname in sections:
            try:
                token = getattr(cookbook, "JWS_compact_" + suffix)
                key = dict(getattr(cookbook, keyname))
                hdr = json.loads(base64url_decode(token.split(".")[0]))
                yield ("rfc7520-" + sec, hdr["alg"], key, token)
            except Exception as e:  # noqa: BLE001
                log("skip rfc7520-%s: %s" % (sec, e))


def _verify(alg, jwk_dict, token):
    from jwcrypto import jwk, jws
    from jwcrypto.common import base64url_decode

    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise ValueError("not a compact JWS with attached payload")
    hdr = json.loads(base64url_decode(parts[0]))
    if hdr.get("alg") != alg:
        raise ValueError("header alg %r != %r" % (hdr.get("alg"), alg))
    if hdr.get("b64") is False or "crit" in hdr:
        raise ValueError("unencoded payload / crit header")
    if any(m in jwk_dict for m in PRIVATE_MEMBERS if m != "k"):
        raise ValueError("verification key contains private members")
    s = jws.JWS()
    s.deserialize(token)
    s.allowed_algs = [alg]
    s.verify(jwk.JWK(**jwk_dict), alg=alg)
    return True


def mode_vectors(_req):
    log = lambda msg: print("mint.py vectors: " + msg, file=sys.stderr)  # noqa: E731
    base = _jwcrypto_dir()
    tests = cookbook = None
    try:
        tests = importlib.import_module("jwcrypto.tests")
    except Exception as e:  # noqa: BLE001
        try:
            tests = _load_file_module("_jwcrypto_tests", os.path.join(base, "tests.py"))
        except Exception as e2:  # noqa: BLE001
            log("cannot load tests.py: %s / %s" % (e, e2))
    try:
        cookbook = _load_file_module(
            "_jwcrypto_tests_cookbook", os.path.join(base, "tests-cookbook.py")
        )
    except Exception as e:  # noqa: BLE001
        log("cannot load tests-cookbook.py: %s" % e)

    out = []
    for name, alg, key, token in _candidates(tests, cookbook, log):
        try:
            vk = _verification_jwk(key)
            _verify(alg, vk, token)
        except Exception as e:  # noqa: BLE001
            log("drop %s (%s): %s" % (name, alg, e))
            continue
        out.append({"name": name, "alg": alg, "jwk": vk, "token": token})
    if not out:
        raise RuntimeError("no test vector could be extracted and verified")
    return json.dumps(out)


# ---------------------------------------------------------------- main

MODES = {"sign": mode_sign, "keygen": mode_keygen, "vectors": mode_vectors}


def run_one(req, modes=MODES):
    if not isinstance(req, dict):
        raise UsageError("each request must be a JSON object")
    mode = req.get("mode")
    if mode not in modes:
        raise UsageError("unknown mode %r (use %s)" % (mode, ", ".join(modes)))
    # Anything a library prints goes to stderr: stdout carries one line.
    with contextlib.redirect_stdout(sys.stderr):
        line = modes[mode](req)
    if "\n" in line:
        raise RuntimeError("internal error: output contains a newline")
    return line


def error_line(e):
    msg = str(e) or e.__class__.__name__
    return json.dumps({"error": "%s: %s" % (e.__class__.__name__, msg)})


def main(modes=MODES):
    """One JSON object in -> one line out. A JSON array in (batch) -> one line per element, in
    order, each either the result or an {"error": ...} line; exit 1 if any failed. `modes` maps
    a request's "mode" to its function (attack_tokens.py passes its own)."""
    try:
        raw = sys.stdin.read()
        try:
            req = json.loads(raw)
        except ValueError as e:
            raise UsageError("stdin is not valid JSON: %s" % e)
        if isinstance(req, list):
            failed = False
            for item in req:
                try:
                    sys.stdout.write(run_one(item, modes) + "\n")
                except Exception as e:  # noqa: BLE001
                    failed = True
                    sys.stdout.write(error_line(e) + "\n")
            sys.stdout.flush()
            return 1 if failed else 0
        line = run_one(req, modes)
    except Exception as e:  # noqa: BLE001
        sys.stdout.write(error_line(e) + "\n")
        sys.stdout.flush()
        return 1
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
