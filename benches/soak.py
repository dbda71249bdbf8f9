#!/usr/bin/env python3
"""Helper for benches/soak.sh (Python 3 standard library only).

Subcommands:
  upstream   a small keep-alive HTTP/1.1 upstream on 127.0.0.1 serving GET /download?bytes=N
             (N bytes, Content-Length, written in 16 KiB pieces as the reader takes them) and
             answering anything else with a short 200; used by the slow-reader clients
  creds      mint HS256 JWTs and write the credential rotation for wrk (`Header<TAB>value` lines)
  load       the Python side of the mixed load: invalid API keys, invalid and fresh JWTs, uploads
             (complete, chunked, oversize, aborted), new connections (plain and TLS), TLS
             keep-alive, slow clients (headers a byte at a time, silent connections, slow and
             stalled readers) and an admin-API key churn; every request loop is bounded by
             --duration and every outcome is counted as expected or unexpected (JSON to --out)
  metrics    print the gateway's request total (sum of portcullis_requests_total) from /metrics
  report     flatness verdict + Markdown summary from the samples and the load statistics

Everything talks to 127.0.0.1 only.
"""

import argparse
import base64
import collections
import hashlib
import hmac
import http.client
import json
import os
import random
import select
import socket
import ssl
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# ------------------------------------------------------------------------------------------
# Credentials


def base62_u32(v, width):
    out = []
    while v > 0:
        out.append(BASE62[v % 62])
        v //= 62
    while len(out) < width:
        out.append("0")
    return "".join(reversed(out))


def api_key_checksum(body):
    """The gateway's key checksum: base62 of CRC-32 (IEEE), 6 characters (src/keys.rs)."""
    return base62_u32(zlib.crc32(body.encode()) & 0xFFFFFFFF, 6)


def unknown_api_key(env="live"):
    """A key in the issued format with a correct checksum that the gateway never issued."""
    body = "sk_%s_%s" % (env, "".join(random.choice(BASE62) for _ in range(32)))
    return body + api_key_checksum(body)


def bad_checksum_key(key):
    """`key` with its last checksum character changed: refused without a lookup."""
    last = key[-1]
    repl = random.choice([c for c in BASE62 if c != last])
    return key[:-1] + repl


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt_hs256(secret, claims, header=None):
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing = b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + b64u(
        json.dumps(claims, separators=(",", ":")).encode()
    )
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(sig)


def claims(iss, aud, sub, ttl, **extra):
    now = int(time.time())
    c = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + ttl,
         "jti": "soak-%016x" % random.getrandbits(64)}
    c.update(extra)
    return c


def invalid_jwts(secret, iss, aud):
    """One of each refused kind, fresh each call: (kind, token)."""
    now = int(time.time())
    good = jwt_hs256(secret, claims(iss, aud, "soak-user", 3600))
    h, p, s = good.split(".")
    tampered = h + "." + b64u(json.dumps(claims(iss, aud, "admin", 3600)).encode()) + "." + s
    none_alg = b64u(b'{"alg":"none","typ":"JWT"}') + "." + p + "."
    return [
        ("expired", jwt_hs256(secret, claims(iss, aud, "soak-user", -3600))),
        ("bad_signature", jwt_hs256("x" * 40, claims(iss, aud, "soak-user", 3600))),
        ("tampered_payload", tampered),
        ("wrong_audience", jwt_hs256(secret, claims(iss, "https://other.example", "u", 3600))),
        ("alg_none", none_alg),
        ("not_yet_valid", jwt_hs256(secret, claims(iss, aud, "u", 7200, nbf=now + 3600))),
        ("garbage", "abc.def.ghi"),
    ]


# ------------------------------------------------------------------------------------------
# upstream


class DownloadHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection from the gateway's pool is closed after 5 s
    disable_nagle_algorithm = True
    piece = b"\x01" * 16384

    def log_message(self, *a):  # quiet
        pass

    def _drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            got = self.rfile.read(min(n, 65536))
            if not got:
                break
            n -= len(got)

    def do_GET(self):
        self._drain()
        path, _, query = self.path.partition("?")
        if path.startswith("/download"):
            n = 0
            for kv in query.split("&"):
                if kv.startswith("bytes="):
                    n = int(kv[6:] or 0)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            try:
                while n > 0:
                    k = min(n, len(self.piece))
                    self.wfile.write(self.piece[:k])
                    n -= k
            except OSError:
                self.close_connection = True
            return
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


def cmd_upstream(a):
    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 256

    srv = Server((HOST, a.port), DownloadHandler)
    print("upstream listening on %s:%d" % (HOST, srv.server_address[1]), flush=True)
    srv.serve_forever()


# ------------------------------------------------------------------------------------------
# creds


def cmd_creds(a):
    keys = [l.strip() for l in open(a.keys) if l.strip()]
    lines = []
    for i, k in enumerate(keys):
        # both header forms the api_key authenticator accepts
        lines.append("X-Api-Key\t" + k if i % 2 == 0 else "Authorization\tApi-Key " + k)
    for i in range(a.jwts):
        tok = jwt_hs256(a.secret, claims(a.iss, a.aud, "soak-wrk-%d" % i, a.ttl, scope="read:users"))
        lines.append("Authorization\tBearer " + tok)
    random.shuffle(lines)
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d credentials (%d keys, %d JWTs) to %s" % (len(lines), len(keys), a.jwts, a.out))


# ------------------------------------------------------------------------------------------
# load


class Stats:
    """Outcome counts per kind, each outcome marked expected or not; a few examples kept."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = collections.defaultdict(collections.Counter)
        self.bad = collections.defaultdict(collections.Counter)
        self.examples = collections.defaultdict(list)

    def add(self, kind, outcome, expected, detail=None):
        with self.lock:
            (self.ok if expected else self.bad)[kind][outcome] += 1
            if not expected and len(self.examples[kind]) < 5:
                self.examples[kind].append("%s: %s" % (outcome, (detail or "")[:300]))

    def dump(self):
        with self.lock:
            kinds = sorted(set(self.ok) | set(self.bad))
            return {
                k: {
                    "expected": dict(self.ok[k]),
                    "unexpected": dict(self.bad[k]),
                    "examples": self.examples[k],
                }
                for k in kinds
            }


class Ctx:
    def __init__(self, a):
        self.a = a
        self.deadline = time.monotonic() + a.duration
        self.stats = Stats()
        self.keys = [l.strip() for l in open(a.keys) if l.strip()]
        self.revoked = a.revoked_key
        self.tls = ssl.create_default_context(cafile=a.ca)
        self.header_timeout = a.header_timeout
        self.idle_timeout = a.idle_timeout
        self.pause = a.pause

    def running(self):
        return time.monotonic() < self.deadline

    def left(self):
        return self.deadline - time.monotonic()

    def nap(self, s=None):
        time.sleep(min(self.pause if s is None else s, max(self.left(), 0)))

    def valid_jwt(self, sub=None, scope="read:users"):
        a = self.a
        return jwt_hs256(a.secret, claims(a.iss, a.aud, sub or "soak-py-%x" % random.getrandbits(48), 600, scope=scope))

    def valid_cred(self):
        if random.random() < 0.5:
            return ("X-Api-Key", random.choice(self.keys))
        return ("Authorization", "Bearer " + self.valid_jwt())


def conn(ctx, tls, timeout=15):
    if tls:
        return http.client.HTTPSConnection(HOST, ctx.a.tls, timeout=timeout, context=ctx.tls)
    return http.client.HTTPConnection(HOST, ctx.a.plain, timeout=timeout)


def raw_socket(ctx, tls, timeout=30, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((HOST, ctx.a.tls if tls else ctx.a.plain))
    if tls:
        s = ctx.tls.wrap_socket(s, server_hostname=HOST)
    return s


def request(ctx, c, kind, method, path, headers, body=None, want=200, secret=None, check=None):
    """One request on http.client connection `c`; records the outcome. Returns the connection
    to use next (a new one after an error or a close)."""
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        ok = r.status == want
        detail = "%s %s -> %d %s" % (method, path, r.status, data[:200])
        if ok and secret and secret.encode() in data:
            ctx.stats.add(kind, "credential_echoed", False, detail)
        elif ok and check and not check(r, data):
            ctx.stats.add(kind, "%d_bad_body" % r.status, False, detail)
        else:
            ctx.stats.add(kind, str(r.status), ok, detail)
        if r.will_close:
            c.close()
    except (OSError, http.client.HTTPException) as e:
        ctx.stats.add(kind, "error:" + type(e).__name__, False, "%s %s: %r" % (method, path, e))
        c.close()
    return c


# --- valid / invalid request loops -----------------------------------------------------------


def w_invalid_keys(ctx, i):
    """Keep-alive; every answer must be 401 and never echo the key."""
    c = conn(ctx, tls=(i % 2 == 1))
    base = ctx.keys[0]
    while ctx.running():
        variant = random.choice(["bad_checksum", "unknown", "revoked", "foreign", "bad_checksum_auth"])
        if variant == "bad_checksum":
            k, h = bad_checksum_key(random.choice(ctx.keys)), "X-Api-Key"
        elif variant == "bad_checksum_auth":
            k, h = bad_checksum_key(base), "Authorization"
        elif variant == "unknown":
            k, h = unknown_api_key(random.choice(["live", "test"])), "X-Api-Key"
        elif variant == "revoked":
            k, h = ctx.revoked, "X-Api-Key"
        else:
            k, h = "foreign-%032x" % random.getrandbits(128), "X-Api-Key"
        v = "Api-Key " + k if h == "Authorization" else k
        c = request(ctx, c, "invalid_api_key", "GET", "/api/users/%d" % random.randint(1, 999),
                    {h: v}, want=401, secret=k)
        ctx.nap()
    c.close()


def w_invalid_jwt(ctx, i):
    a = ctx.a
    c = conn(ctx, tls=(i % 2 == 1))
    while ctx.running():
        for _variant, tok in invalid_jwts(a.secret, a.iss, a.aud):
            if not ctx.running():
                break
            c = request(ctx, c, "invalid_jwt", "GET", "/api/orders", {"Authorization": "Bearer " + tok},
                        want=401, secret=tok)
            ctx.nap()
    c.close()


def w_fresh_jwt(ctx, i):
    """A newly minted token (new subject, new jti) every request, on the rate-limited route:
    fills and evicts the verified-token cache and the per-identity limiter's keys."""
    c = conn(ctx, tls=False)
    while ctx.running():
        tok = ctx.valid_jwt()
        c = request(ctx, c, "fresh_jwt", "GET", "/limited/items", {"Authorization": "Bearer " + tok},
                    check=lambda r, d: b'"x-auth-method"' in d)
        ctx.nap()
    c.close()


def w_tls_keepalive(ctx, i):
    c = conn(ctx, tls=True)
    while ctx.running():
        h, v = ctx.valid_cred()
        c = request(ctx, c, "tls_keepalive", "GET", "/api/users", {h: v},
                    check=lambda r, d: b'"x-auth-method"' in d)
        ctx.nap()
    c.close()


def w_new_conn(ctx, i):
    """Connection: close on every request (a TLS handshake each time on the TLS variant)."""
    tls = i % 2 == 1
    kind = "new_conn_tls" if tls else "new_conn_plain"
    while ctx.running():
        c = conn(ctx, tls=tls)
        h, v = ctx.valid_cred()
        request(ctx, c, kind, "GET", "/api/users", {h: v, "Connection": "close"},
                check=lambda r, d: b'"x-auth-method"' in d)
        c.close()
        ctx.nap(ctx.pause * 2)


# --- uploads ----------------------------------------------------------------------------------


def body_bytes_is(n):
    def check(_r, d):
        try:
            return json.loads(d).get("body_bytes") == n
        except ValueError:
            return False

    return check


def w_uploads(ctx, i):
    c = conn(ctx, tls=(i % 2 == 1))
    while ctx.running():
        h, v = ctx.valid_cred()
        r = random.random()
        if r < 0.55:  # Content-Length body, keep-alive
            n = random.choice([0, 1, 1000, 64 * 1024, random.randint(1, 900 * 1024)])
            c = request(ctx, c, "upload_length", "POST", "/upload", {h: v, "Content-Type": "application/octet-stream"},
                        body=os.urandom(n) if n < 4096 else b"u" * n, check=body_bytes_is(n))
        elif r < 0.8:  # chunked body, keep-alive
            pieces = [b"c" * random.randint(1, 32 * 1024) for _ in range(random.randint(1, 12))]
            n = sum(map(len, pieces))
            try:
                c.request("POST", "/upload", body=iter(pieces), headers={h: v}, encode_chunked=True)
                resp = c.getresponse()
                data = resp.read()
                ok = resp.status == 200 and body_bytes_is(n)(resp, data)
                ctx.stats.add("upload_chunked", str(resp.status) if ok else "%d_bad" % resp.status, ok,
                              str(data[:200]))
                if resp.will_close:
                    c.close()
            except (OSError, http.client.HTTPException) as e:
                ctx.stats.add("upload_chunked", "error:" + type(e).__name__, False, repr(e))
                c.close()
        elif r < 0.9:  # oversize: Content-Length over max_body_bytes -> 413, never the upstream
            upload_oversize(ctx, h, v, tls=(i % 2 == 1))
        else:  # aborted mid-body
            upload_abort(ctx, h, v, tls=(i % 2 == 1))
        ctx.nap()
    c.close()


def upload_oversize(ctx, h, v, tls):
    n = ctx.a.max_body + 1 + random.randint(0, 1 << 20)
    try:
        s = raw_socket(ctx, tls, timeout=10)
        s.sendall(("POST /upload HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n" % (HOST, h, v, n)).encode())
        # The head says too much: the answer may come before any body byte is sent.
        r = http.client.HTTPResponse(s, method="POST")
        try:
            r.begin()
            status = r.status
        except socket.timeout:
            # It waits for the body: send it (the gateway must stop at max_body_bytes).
            try:
                s.sendall(b"o" * n)
            except OSError:
                pass
            r = http.client.HTTPResponse(s, method="POST")
            r.begin()
            status = r.status
        ctx.stats.add("upload_oversize", str(status), status == 413, "status %d" % status)
        s.close()
    except (OSError, http.client.HTTPException) as e:
        ctx.stats.add("upload_oversize", "error:" + type(e).__name__, False, repr(e))


def upload_abort(ctx, h, v, tls):
    n = random.randint(64 * 1024, 900 * 1024)
    try:
        s = raw_socket(ctx, tls, timeout=10)
        s.sendall(("POST /upload HTTP/1.1\r\nHost: %s\r\n%s: %s\r\nContent-Length: %d\r\n\r\n" % (HOST, h, v, n)).encode())
        s.sendall(b"a" * random.randint(1, n // 2))
        time.sleep(random.random() * 0.5)
        if random.random() < 0.5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
        s.close()
        ctx.stats.add("upload_aborted", "aborted", True)
    except OSError as e:
        ctx.stats.add("upload_aborted", "error:" + type(e).__name__, False, repr(e))


# --- slow clients -----------------------------------------------------------------------------


def wait_closed(s, limit):
    """Read (discarding) until EOF/reset or `limit` seconds. Returns (closed, seconds, bytes)."""
    t0 = time.monotonic()
    got = 0
    while time.monotonic() - t0 < limit:
        try:
            s.settimeout(max(0.05, limit - (time.monotonic() - t0)))
            d = s.recv(65536)
            if not d:
                return True, time.monotonic() - t0, got
            got += len(d)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            return True, time.monotonic() - t0, got
    return False, time.monotonic() - t0, got


def closed_outcome(ctx, kind, closed, secs, limit_desc):
    # The gateway must close within its deadline (+ slack for a loaded 2-core machine).
    if closed:
        ctx.stats.add(kind, "closed_by_gateway", True)
    else:
        ctx.stats.add(kind, "not_closed", False, "still open after %.1f s (%s)" % (secs, limit_desc))


def w_slowloris(ctx, i):
    """Request heads (or an HTTP/2 preface) a byte at a time, never finished: the gateway must
    close the connection at header_timeout."""
    variant = ["plain", "tls", "h2c_preface"][i % 3]
    kind = "slowloris_" + variant
    key = random.choice(ctx.keys)
    if variant == "h2c_preface":
        payload = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 64
    else:
        payload = ("GET /api/users HTTP/1.1\r\nHost: %s\r\nX-Api-Key: %s\r\nUser-Agent: %s\r\n" % (
            HOST, key, "s" * 300)).encode()
    while ctx.running():
        try:
            s = raw_socket(ctx, tls=(variant == "tls"), timeout=10)
        except OSError as e:
            ctx.stats.add(kind, "connect_error:" + type(e).__name__, False, repr(e))
            ctx.nap(1)
            continue
        t0 = time.monotonic()
        limit = ctx.header_timeout + 10
        closed = False
        pos = 0
        try:
            while time.monotonic() - t0 < limit and pos < len(payload):
                s.send(payload[pos:pos + 1])
                pos += 1
                # readable means the gateway answered (408) or closed
                r, _, _ = select.select([s], [], [], 0.3)
                if r:
                    closed, _, _ = wait_closed(s, 2)
                    if closed:
                        break
            if not closed:
                closed, _, _ = wait_closed(s, max(0.1, limit - (time.monotonic() - t0)))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            closed = True
        secs = time.monotonic() - t0
        if closed and secs < ctx.header_timeout - 1.5:
            ctx.stats.add(kind, "closed_early", True)  # safe, but worth a look: counted apart
        else:
            closed_outcome(ctx, kind, closed, secs, "header_timeout %ss" % ctx.header_timeout)
        s.close()


def w_silent(ctx, i):
    """Connections that send nothing (plain: no request; TLS: no ClientHello): closed at
    header_timeout."""
    tls_port = i % 2 == 1
    kind = "silent_tls_port" if tls_port else "silent_plain"
    while ctx.running():
        try:
            s = socket.create_connection((HOST, ctx.a.tls if tls_port else ctx.a.plain), timeout=10)
        except OSError as e:
            ctx.stats.add(kind, "connect_error:" + type(e).__name__, False, repr(e))
            ctx.nap(1)
            continue
        limit = ctx.header_timeout + 10
        closed, secs, _ = wait_closed(s, limit)
        if closed and secs < ctx.header_timeout - 1.5:
            ctx.stats.add(kind, "closed_early", True)
        else:
            closed_outcome(ctx, kind, closed, secs, "header_timeout %ss" % ctx.header_timeout)
        s.close()


def w_slow_reader(ctx, i):
    """GET a large download through the gateway with a small receive buffer and read it slowly;
    then either abandon it (close mid-body) or stop reading: the gateway must cut the stalled
    response after idle_timeout."""
    tls = i % 2 == 1
    size = 64 * 1024 * 1024
    n_iter = 0
    while ctx.running():
        n_iter += 1
        stall = (n_iter + i) % 2 == 0
        kind = ("slow_reader_stall" if stall else "slow_reader_abandon") + ("_tls" if tls else "")
        h, v = ctx.valid_cred()
        try:
            s = raw_socket(ctx, tls, timeout=30, rcvbuf=8192)
            s.sendall(("GET /download?bytes=%d HTTP/1.1\r\nHost: %s\r\n%s: %s\r\n\r\n" % (size, HOST, h, v)).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                d = s.recv(1024)
                if not d:
                    raise ConnectionError("closed before the response head")
                head += d
            status = head.split(b" ", 2)[1]
            if status != b"200":
                ctx.stats.add(kind, "status_" + status.decode(), False, head[:300].decode("latin-1"))
                s.close()
                ctx.nap(1)
                continue
            got = len(head.split(b"\r\n\r\n", 1)[1])
            read_for = random.uniform(5, 20)
            t0 = time.monotonic()
            while time.monotonic() - t0 < read_for and ctx.running():
                d = s.recv(1024)
                if not d:
                    raise ConnectionError("closed mid-body after %d bytes" % got)
                got += len(d)
                time.sleep(0.05)  # ~20 KiB/s
            if not ctx.running():
                s.close()
                break
            if not stall:
                s.close()
                ctx.stats.add(kind, "abandoned_mid_body", True)
                continue
            # Stop reading. With idle_timeout the gateway must cut the response.
            wait = ctx.idle_timeout + 5
            end = time.monotonic() + wait
            while time.monotonic() < end and ctx.running():
                time.sleep(0.5)
            if not ctx.running():
                s.close()
                break
            closed, secs, more = wait_closed(s, 30)
            if closed and got + more < size:
                ctx.stats.add(kind, "cut_by_gateway", True)
            elif closed:
                ctx.stats.add(kind, "completed", False, "whole body arrived despite stall (buffers?)")
            else:
                ctx.stats.add(kind, "not_cut", False,
                              "after stalling %ds, still streaming (%d bytes more in %.0fs)" % (wait, more, secs))
            s.close()
        except (OSError, ConnectionError, IndexError) as e:
            ctx.stats.add(kind, "error:" + type(e).__name__, False, repr(e))
            ctx.nap(1)


# --- admin churn ------------------------------------------------------------------------------


def admin_call(ctx, method, path, body=None):
    c = http.client.HTTPConnection(HOST, ctx.a.admin_port, timeout=15)
    try:
        hdr = {"Authorization": "Bearer " + ctx.a.admin_token}
        if body is not None:
            hdr["Content-Type"] = "application/json"
            body = json.dumps(body)
        c.request(method, path, body=body, headers=hdr)
        r = c.getresponse()
        data = r.read()
        return r.status, (json.loads(data) if data else None)
    finally:
        c.close()


def w_admin_churn(ctx, i):
    """Every few seconds: create a key, use it, rotate it with no grace, check the old secret is
    refused and the new one passes, revoke it, check it is refused."""
    kind = "admin_churn"
    n = 0
    while ctx.running():
        n += 1
        try:
            st, doc = admin_call(ctx, "POST", "/admin/keys", {"name": "soak-churn-%d" % n})
            if st != 201:
                ctx.stats.add(kind, "create_%d" % st, False, str(doc))
                ctx.nap(5)
                continue
            kid, k1 = doc["id"], doc["key"]

            def use(step, k, want):
                c = conn(ctx, tls=False)
                request(ctx, c, kind + ":" + step, "GET", "/api/users", {"X-Api-Key": k}, want=want)
                c.close()

            use("use_new", k1, 200)
            last = k1
            st, doc = admin_call(ctx, "POST", "/admin/keys/%s/rotate" % kid, {"grace": "0"})
            if st != 200:
                ctx.stats.add(kind, "rotate_%d" % st, False, str(doc))
            else:
                last = doc["key"]
                use("old_after_rotate", k1, 401)
                use("use_rotated", last, 200)
            st, _ = admin_call(ctx, "DELETE", "/admin/keys/%s" % kid)
            ctx.stats.add(kind + ":revoke", str(st), st == 204)
            use("after_revoke", last, 401)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            ctx.stats.add(kind, "error:" + type(e).__name__, False, repr(e))
        ctx.nap(5)


WORKERS = [
    # (function, how many at scale 1)
    (w_invalid_keys, 2),
    (w_invalid_jwt, 2),
    (w_fresh_jwt, 2),
    (w_tls_keepalive, 1),
    (w_new_conn, 2),
    (w_uploads, 2),
    (w_slowloris, 6),
    (w_silent, 4),
    (w_slow_reader, 4),
    (w_admin_churn, 1),
]


def cmd_load(a):
    ctx = Ctx(a)
    threads = []
    for fn, n in WORKERS:
        for i in range(max(1, int(round(n * a.scale)))):
            def run(fn=fn, i=i):
                try:
                    fn(ctx, i)
                except Exception as e:  # a bug in a worker: counted, never silent
                    ctx.stats.add(fn.__name__, "worker_crash:" + type(e).__name__, False, repr(e))
            t = threading.Thread(target=run, name="%s-%d" % (fn.__name__, i), daemon=True)
            t.start()
            threads.append(t)
    print("python load: %d workers for %d s" % (len(threads), a.duration), flush=True)
    last = 0
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.monotonic() > ctx.deadline + 60:
            print("python load: some workers still running 60 s after the deadline; stopping", flush=True)
            break
        if a.out and time.monotonic() - last > 30:  # partial results survive a crash
            last = time.monotonic()
            write_json(a.out, ctx.stats.dump())
    write_json(a.out, ctx.stats.dump())
    print("python load: done", flush=True)


def write_json(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------
# metrics


def fetch_metrics(port):
    c = http.client.HTTPConnection(HOST, port, timeout=5)
    c.request("GET", "/metrics")
    r = c.getresponse()
    text = r.read().decode()
    c.close()
    return text


def cmd_metrics(a):
    try:
        text = fetch_metrics(a.admin_port)
    except OSError:
        print("-")
        return
    total = 0
    for line in text.splitlines():
        if line.startswith("portcullis_requests_total{"):
            total += int(float(line.rsplit(" ", 1)[1]))
    print(total)


# ------------------------------------------------------------------------------------------
# report


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def parse_wrk(path):
    out = {"requests": None, "non2xx": 0, "socket_errors": "", "rps": None, "raw": ""}
    try:
        text = open(path).read()
    except OSError:
        return out
    out["raw"] = text.strip()
    for line in text.splitlines():
        line = line.strip()
        if " requests in " in line:
            out["requests"] = int(line.split()[0])
        elif line.startswith("Non-2xx or 3xx responses:"):
            out["non2xx"] = int(line.split(":")[1])
        elif line.startswith("Socket errors:"):
            out["socket_errors"] = line.split(":", 1)[1].strip()
        elif line.startswith("Requests/sec:"):
            out["rps"] = float(line.split(":")[1])
    return out


def cmd_report(a):
    rows = []
    for line in open(a.samples):
        p = line.split()
        # t rss_kib fds hwm_kib threads requests phase; only rows under load are judged
        if len(p) >= 7 and p[0].isdigit() and p[6] == "load":
            rows.append((int(p[0]), int(p[1]), int(p[2])))  # t, rss KiB, fds
    out = []
    ok = True
    if len(rows) < 6:
        out.append("**Verdict: INCONCLUSIVE** — only %d samples under load (need at least 6)." % len(rows))
        ok = False
    else:
        n = len(rows)
        second = rows[n // 3: 2 * n // 3]
        last = rows[2 * n // 3:]
        rss2, rss3 = mean([r[1] for r in second]), mean([r[1] for r in last])
        fd2, fd3 = mean([r[2] for r in second]), mean([r[2] for r in last])
        growth = (rss3 - rss2) / rss2 if rss2 else float("inf")
        rss_ok = growth < a.rss_tol
        fd_ok = abs(fd3 - fd2) <= a.fd_tol
        ok = rss_ok and fd_ok
        out.append("Flatness after warm-up (the first third of the samples is warm-up; mean of the "
                   "last third vs mean of the second third):")
        out.append("")
        out.append("| metric | second third (t=%d..%d s) | last third (t=%d..%d s) | change | limit | |"
                   % (second[0][0], second[-1][0], last[0][0], last[-1][0]))
        out.append("|---|---:|---:|---:|---:|---|")
        out.append("| RSS MiB | %.1f | %.1f | %+.1f %% | < %+.0f %% | %s |" % (
            rss2 / 1024, rss3 / 1024, growth * 100, a.rss_tol * 100, "flat" if rss_ok else "GROWING"))
        out.append("| open fds | %.1f | %.1f | %+.1f | ± %d | %s |" % (
            fd2, fd3, fd3 - fd2, a.fd_tol, "flat" if fd_ok else "DRIFTING"))
        # a simple trend over everything after warm-up, for the record
        post = rows[n // 3:]
        if len(post) >= 2:
            ts = [r[0] for r in post]
            tm, rm = mean(ts), mean([r[1] for r in post])
            den = sum((t - tm) ** 2 for t in ts)
            slope = sum((t - tm) * (r[1] - rm) for t, r in zip(ts, post)) / den if den else 0
            out.append("")
            out.append("RSS trend after warm-up (least squares): %+.1f KiB/min; peak RSS under load %.1f MiB."
                       % (slope * 60, max(r[1] for r in rows) / 1024))
    if a.idle_before is not None and a.idle_after is not None:
        idle_ok = a.idle_after <= a.idle_before + a.fd_tol
        out.append("")
        out.append("Open fds idle before the load: %d; idle after the load (load stopped, %d s settle): %d -> %s."
                   % (a.idle_before, a.settle, a.idle_after,
                      "back to the baseline" if idle_ok else "NOT back to the baseline (possible fd leak)"))
        ok = ok and idle_ok
    # unexpected outcomes
    stats = {}
    if a.stats and os.path.exists(a.stats):
        stats = json.load(open(a.stats))
    unexpected = {k: v["unexpected"] for k, v in stats.items() if v["unexpected"]}
    out.append("")
    out.append("**Verdict: %s**" % ("FLAT" if ok else "NOT FLAT"))
    if unexpected:
        out.append("")
        out.append("Unexpected client outcomes: %s (counts and examples below)." % ", ".join(
            "%s %s" % (k, "/".join("%s x%d" % kv for kv in sorted(v.items()))) for k, v in sorted(unexpected.items())))
    else:
        out.append("")
        out.append("Every client outcome was an expected one (valid -> 200, refused -> 401/413, slow clients "
                   "closed or cut by the gateway).")
    text = "\n".join(out)
    with open(a.verdict_out, "w") as f:
        f.write(text + "\n")
    # counts table
    c = ["| kind | client | expected outcomes | unexpected outcomes |", "|---|---|---|---|"]
    for label, path in [("wrk plain keep-alive (valid keys + JWTs)", a.wrk_plain), ("wrk TLS keep-alive (valid keys + JWTs)", a.wrk_tls)]:
        if not path:
            continue
        w = parse_wrk(path)
        if w["requests"] is None:
            c.append("| %s | wrk | (no result) | |" % label)
            continue
        good = w["requests"] - w["non2xx"]
        bad = []
        if w["non2xx"]:
            bad.append("non-2xx: %d" % w["non2xx"])
        if w["socket_errors"]:
            bad.append("socket errors: %s" % w["socket_errors"])
        c.append("| %s | wrk | 2xx: %d (%.0f req/s) | %s |" % (label, good, w["rps"] or 0, "; ".join(bad) or "0"))
    for k in sorted(stats):
        v = stats[k]
        exp = ", ".join("%s: %d" % kv for kv in sorted(v["expected"].items())) or "-"
        une = ", ".join("%s: %d" % kv for kv in sorted(v["unexpected"].items())) or "0"
        c.append("| %s | python | %s | %s |" % (k, exp, une))
    with open(a.counts_out, "w") as f:
        f.write("\n".join(c) + "\n")
        ex = [(k, v["examples"]) for k, v in sorted(stats.items()) if v["examples"]]
        if ex:
            f.write("\nExamples of unexpected outcomes:\n\n")
            for k, e in ex:
                for x in e:
                    f.write("- `%s`: %s\n" % (k, x.replace("|", "\\|").replace("\n", " ")))
    print(text)
    sys.exit(1 if not ok else 3 if unexpected else 0)


# ------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    u = sub.add_parser("upstream")
    u.add_argument("--port", type=int, required=True)

    cr = sub.add_parser("creds")
    cr.add_argument("--keys", required=True)
    cr.add_argument("--secret", required=True)
    cr.add_argument("--iss", required=True)
    cr.add_argument("--aud", required=True)
    cr.add_argument("--jwts", type=int, default=64)
    cr.add_argument("--ttl", type=int, default=7200)
    cr.add_argument("--out", required=True)

    ld = sub.add_parser("load")
    ld.add_argument("--plain", type=int, required=True)
    ld.add_argument("--tls", type=int, required=True)
    ld.add_argument("--ca", required=True)
    ld.add_argument("--admin-port", type=int, required=True)
    ld.add_argument("--admin-token", required=True)
    ld.add_argument("--keys", required=True)
    ld.add_argument("--revoked-key", required=True)
    ld.add_argument("--secret", required=True)
    ld.add_argument("--iss", required=True)
    ld.add_argument("--aud", required=True)
    ld.add_argument("--duration", type=int, required=True)
    ld.add_argument("--header-timeout", type=float, required=True)
    ld.add_argument("--idle-timeout", type=float, required=True)
    ld.add_argument("--max-body", type=int, required=True)
    ld.add_argument("--scale", type=float, default=1.0)
    ld.add_argument("--pause", type=float, default=0.01)
    ld.add_argument("--out", required=True)

    m = sub.add_parser("metrics")
    m.add_argument("--admin-port", type=int, required=True)

    r = sub.add_parser("report")
    r.add_argument("--samples", required=True)
    r.add_argument("--stats")
    r.add_argument("--wrk-plain")
    r.add_argument("--wrk-tls")
    r.add_argument("--rss-tol", type=float, default=0.10)
    r.add_argument("--fd-tol", type=int, default=10)
    r.add_argument("--idle-before", type=int)
    r.add_argument("--idle-after", type=int)
    r.add_argument("--settle", type=int, default=0)
    r.add_argument("--verdict-out", required=True)
    r.add_argument("--counts-out", required=True)

    a = ap.parse_args()
    {"upstream": cmd_upstream, "creds": cmd_creds, "load": cmd_load, "metrics": cmd_metrics,
     "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
