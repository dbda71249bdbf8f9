#!/usr/bin/env python3
"""oauthbench - client_credentials tokens per second and server CPU per token on ONE core:
npm oidc-provider 8.8.1 (op/server.mjs) beside the Portcullis gateway's built-in OAuth 2.0
authorization server (PORTCULLIS_BIN), for ES256 and RS256 JWT access tokens (RFC 9068).

Method (the style of benches/load/peerbench.py): the server under test is pinned to one CPU
(taskset), wrk to another; every measurement starts a fresh server, checks that one token is a
JWT with header typ at+jwt and the expected alg, runs an unmeasured wrk warm-up, then a measured
wrk run (token.lua POSTs grant_type=client_credentials with HTTP Basic client authentication and
counts the 200 answers that carry an access_token; any other answer or socket error fails the
measurement). tokens/s = tokens / wrk's duration; CPU per token = (utime+stime of every process
in the server's session, from /proc/PID/stat) / tokens. Rounds interleave the servers; medians
are reported. The floor is the signing cost on the server core (`openssl speed`, optionally the
aws-lc-rs loop in awslc-floor/), measured at the start of every round since the machine's speed
drifts during a run; "CPU / floor" is the median over rounds of CPU per token / its round's floor.

Everything listens on 127.0.0.1. Only processes started here are stopped, by process group.
See README.md.
"""
import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
OP_DIR = os.path.join(HERE, "op")
OP_SERVER = os.path.join(OP_DIR, "server.mjs")
LUA = os.path.join(HERE, "token.lua")
INTEROP_OP = os.path.join(ROOT, "tests", "interop", "op", "node_modules", "oidc-provider")
OIDC_PROVIDER_VERSION = "8.8.1"
CLIENT_ID = "bench"
RESOURCE = "https://api.bench"   # oidc-provider's resource server; portcullis' --audience
SCOPE = "read"
TTL_S = 900                        # 15m on both
ALGS = ("ES256", "RS256")
UNRESERVED = re.compile(r"^[A-Za-z0-9._~-]+$")

# benches/load/peerbench.py (same method) provides the process handling (Proc, STARTED, stop_all,
# CPU and RSS of a session from /proc) and small helpers (sys_cpu, to_ms, med, fmt). Importing it
# only defines them (and makes sure its BENCH_HOME folder exists); no .pyc is left in benches/load.
sys.path.insert(0, os.path.join(ROOT, "benches", "load"))
_dont_write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
import peerbench as pb  # noqa: E402
sys.dont_write_bytecode = _dont_write_bytecode


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A measurement (or a server start) failed; the message says why."""


# --------------------------------------------------------------------------
# processes: only ours, each in its own session, stopped by process group (pb.Proc); every
# one is in pb.STARTED until stopped, which pb.stop_all (signals, errors, the end) stops
# --------------------------------------------------------------------------
class Proc(pb.Proc):
    """pb.Proc, but stderr may go to a file of its own (oidc-provider's stdout carries the
    issuer line), and tail() shows both files."""

    def __init__(self, name, argv, cpus=None, env=None, stdout=None, stderr=None, cwd=None):
        self.name = name
        self.argv = (["taskset", "-c", cpus] if cpus else []) + list(argv)
        self.logpath = stdout or os.devnull          # pb.Proc's stdout file; its stop() closes logf
        self.stderr_path = stderr or self.logpath
        self.logf = open(self.logpath, "wb")
        self._err = self.logf if self.stderr_path == self.logpath else open(self.stderr_path, "wb")
        self.p = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.logf,
                                  stderr=self._err, start_new_session=True, env=env, cwd=cwd)
        self.sid = self.p.pid
        pb.STARTED.append(self)

    def stop(self):
        super().stop()
        if self._err is not self.logf:
            self._err.close()

    def tail(self, n=15):
        lines = []
        for path in dict.fromkeys([self.stderr_path, self.logpath]):
            try:
                with open(path, errors="replace") as f:
                    lines += f.readlines()[-n:]
            except OSError:
                pass
        return "".join(lines[-n:]).strip()


def port_free(port):
    """True when nothing listens on 127.0.0.1:port and we could bind it ourselves."""
    if pb.port_busy(port):
        return False
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
# HTTP (stdlib; http.client never uses proxy variables)
# --------------------------------------------------------------------------
def http_request(method, url, body=None, headers=None, timeout=5.0):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        raise BenchError(f"only http:// URLs are used here, not {url}")
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    try:
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def basic_auth(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def b64url_json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class Target:
    """A started server: where to ask for tokens and what the answers should look like."""

    def __init__(self, proc, token_url, client_id, secret, body, issuer, audience):
        self.proc = proc
        self.token_url = token_url
        self.client_id = client_id
        self.secret = secret
        self.auth = basic_auth(client_id, secret)
        self.body = body
        self.issuer = issuer
        self.audience = audience


def check_token(t, alg):
    """One token request before load. Returns [{check, pass, required, detail}]."""
    checks = []

    def add(name, ok, required, detail=""):
        checks.append({"check": name, "pass": bool(ok), "required": required, "detail": str(detail)[:300]})

    hdrs = {"Authorization": t.auth, "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json"}
    deadline = time.time() + 5.0          # readiness may precede the listener by a moment
    while True:
        try:
            status, rh, raw = http_request("POST", t.token_url, t.body.encode(), hdrs)
            break
        except ConnectionRefusedError as e:
            if time.time() < deadline and t.proc.alive():
                time.sleep(0.1)
                continue
            add("token request", False, True, f"{type(e).__name__}: {e}")
            return checks
        except Exception as e:  # noqa: BLE001
            add("token request", False, True, f"{type(e).__name__}: {e}")
            return checks
    add("status 200", status == 200, True, f"{status} {raw[:200]!r}")
    try:
        body = json.loads(raw)
    except ValueError:
        add("JSON body", False, True, raw[:200])
        return checks
    tok = body.get("access_token") if isinstance(body, dict) else None
    add("access_token present", isinstance(tok, str) and tok, True, list(body) if isinstance(body, dict) else body)
    if not isinstance(tok, str):
        return checks
    add("token_type Bearer", str(body.get("token_type", "")).lower() == "bearer", True, body.get("token_type"))
    parts = tok.split(".")
    try:
        if len(parts) != 3:
            raise ValueError(f"{len(parts)} parts")
        h, p = b64url_json(parts[0]), b64url_json(parts[1])
    except Exception as e:  # noqa: BLE001
        add("JWT (3 base64url JSON parts)", False, True, e)
        return checks
    add("JWT (3 base64url JSON parts)", True, True, f"{len(tok)} bytes")
    typ = str(h.get("typ", ""))
    add("header typ at+jwt", typ.lower() in ("at+jwt", "application/at+jwt"), True, typ)
    add("header alg = the run's alg", h.get("alg") == alg, True, f"{h.get('alg')} (expected {alg})")
    add("header kid", "kid" in h, False, h.get("kid"))
    add("iss", p.get("iss") == t.issuer, False, f"{p.get('iss')} (expected {t.issuer})")
    aud = p.get("aud")
    add("aud", t.audience in (aud if isinstance(aud, list) else [aud]), False, aud)
    add("client_id claim", p.get("client_id") == t.client_id, False, p.get("client_id"))
    add("sub", "sub" in p, False, p.get("sub"))
    add("jti", bool(p.get("jti")), False, p.get("jti"))
    add(f"scope {SCOPE}", SCOPE in str(p.get("scope", "")).split(), False, p.get("scope"))
    add(f"expires_in {TTL_S}", body.get("expires_in") == TTL_S, False, body.get("expires_in"))
    ie = (p.get("exp") or 0) - (p.get("iat") or 0)
    add(f"exp - iat = {TTL_S}", ie == TTL_S, False, ie)
    add("cache-control no-store", "no-store" in {k.lower(): v for k, v in rh.items()}.get("cache-control", ""),
        False, {k.lower(): v for k, v in rh.items()}.get("cache-control"))
    # a wrong secret must not get a token (informational: not what is measured)
    try:
        wrong = dict(hdrs, Authorization=basic_auth(t.client_id, "wrong-" + secrets.token_hex(8)))
        ws, _, wb = http_request("POST", t.token_url, t.body.encode(), wrong)
        add("wrong secret -> 401", ws == 401, False, f"{ws} {wb[:120]!r}")
    except Exception as e:  # noqa: BLE001
        add("wrong secret -> 401", False, False, e)
    return checks


# --------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------
def parse_wrk(out):
    r = {}
    m = re.search(r"^OAUTHBENCH ok=(\d+) bad=(\d+) requests=(\d+) duration_us=(\d+) connect=(\d+) "
                  r"read=(\d+) write=(\d+) status=(\d+) timeout=(\d+)", out, re.M)
    if m:
        (r["ok"], r["bad"], r["requests"], r["duration_us"], ec, er, ew, es, et) = (int(x) for x in m.groups())
        r["sock_err"] = ec + er + ew + et
        r["sock_err_detail"] = {"connect": ec, "read": er, "write": ew, "timeout": et}
        r["non2xx"] = es
    m = re.search(r"^OAUTHBENCH_FIRST_BAD (.*)$", out, re.M)
    if m:
        r["first_bad"] = m.group(1)[:240]
    for pct, v, u in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M):
        r[f"p{pct}_ms"] = pb.to_ms(v, u)
    return r


def run_wrk(cfg, t, duration, latency=True):
    cmd = (["taskset", "-c", cfg.load_cpus] if cfg.load_cpus else []) + [
        "wrk", "-t", str(cfg.threads), "-c", str(cfg.connections), "-d", f"{duration}s",
        "--timeout", "5s", "-s", LUA]
    if latency:
        cmd.append("--latency")
    cmd.append(t.token_url)
    env = dict(os.environ, OAUTHBENCH_AUTH=t.auth, OAUTHBENCH_BODY=t.body)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, env=env)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 30}s")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse_wrk(p.stdout)
    r["wrk_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    if p.returncode != 0 or "ok" not in r:
        raise BenchError(f"wrk failed (rc {p.returncode}): {(p.stderr or p.stdout)[-400:]}")
    if r["bad"] or r["sock_err"]:
        raise BenchError(f"{r['bad']} of {r['requests']} answers were not tokens"
                         + (f" (first: {r.get('first_bad')})" if r.get("first_bad") else "")
                         + (f"; socket errors {r['sock_err_detail']}" if r["sock_err"] else ""))
    if not r["ok"]:
        raise BenchError("wrk got no answers at all")
    return r


def wait_quiet(cfg, what):
    """Between measurements nothing of ours runs: wait (up to --quiet-wait s) until the box's
    busy CPU, sampled over 1 s, is at most --noise-threshold cores. Returns the last sample."""
    t0 = time.time()
    warned = False
    while True:
        b0, _ = pb.sys_cpu()
        time.sleep(1.0)
        b1, _ = pb.sys_cpu()
        busy = (b1 - b0) / pb.CLK_TCK
        if busy <= cfg.noise_threshold:
            return busy
        if time.time() - t0 >= cfg.quiet_wait:
            log(f"other load still {busy:.2f} cores after {cfg.quiet_wait:.0f}s; going ahead with {what}")
            return busy
        if not warned:
            log(f"other load {busy:.2f} cores > {cfg.noise_threshold}; waiting up to "
                f"{cfg.quiet_wait:.0f}s for quiet before {what}")
            warned = True


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------
def wait_until(pred, timeout, proc, what):
    """Poll pred() (truthy -> done) until timeout; fail early when proc exits."""
    t0 = time.time()
    last = None
    while time.time() - t0 < timeout:
        if proc is not None and not proc.alive():
            raise BenchError(f"{proc.name} exited (rc {proc.p.returncode}) while waiting for {what}:\n"
                             f"{proc.tail()}")
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last = e
        time.sleep(0.1)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what} ({last}); "
                     f"log tail:\n{proc.tail() if proc else ''}")


def op_install(allow_install):
    """The oidc-provider package directory to import: ./op/node_modules (own install, from
    op/package-lock.json), else the interop tests' install, else `npm ci` in ./op."""
    own = os.path.join(OP_DIR, "node_modules", "oidc-provider")

    def version(d):
        try:
            with open(os.path.join(d, "package.json")) as f:
                return json.load(f).get("version")
        except (OSError, ValueError):
            return None
    for d in (own, INTEROP_OP):
        v = version(d)
        if v == OIDC_PROVIDER_VERSION:
            return d
        if v:
            log(f"ignoring oidc-provider {v} at {d} (want {OIDC_PROVIDER_VERSION})")
    if not allow_install:
        raise BenchError(f"oidc-provider {OIDC_PROVIDER_VERSION} is not installed; run "
                         f"`npm ci` in {OP_DIR} (or drop --no-install)")
    if not shutil.which("npm"):
        raise BenchError("npm not found; cannot install oidc-provider")
    log(f"installing oidc-provider {OIDC_PROVIDER_VERSION}: npm ci in {OP_DIR}")
    p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OP_DIR, capture_output=True,
                       text=True, timeout=600)
    if p.returncode != 0 or version(own) != OIDC_PROVIDER_VERSION:
        raise BenchError(f"npm ci failed in {OP_DIR}: {(p.stderr or p.stdout)[-600:]}")
    return own


class OidcProvider:
    name = "oidc-provider"

    def __init__(self, cfg):
        self.cfg = cfg
        self.pkg_dir = op_install(not cfg.no_install)
        if not shutil.which("node"):
            raise BenchError("node not found")

    def version(self):
        node = subprocess.run(["node", "-p", "process.version + ' (OpenSSL ' + process.versions.openssl + ')'"],
                              capture_output=True, text=True).stdout.strip()
        return f"oidc-provider {OIDC_PROVIDER_VERSION} ({self.pkg_dir}), node {node}"

    def start(self, alg, rundir):
        secret = secrets.token_urlsafe(32)        # base64url: unreserved characters only
        env = dict(os.environ, OAUTHBENCH_ALG=alg, OAUTHBENCH_CLIENT_ID=CLIENT_ID,
                   OAUTHBENCH_CLIENT_SECRET=secret, OAUTHBENCH_RESOURCE=RESOURCE,
                   OAUTHBENCH_TTL=str(TTL_S), OIDC_PROVIDER_DIR=self.pkg_dir,
                   NODE_ENV=os.environ.get("NODE_ENV", "production"))
        out = os.path.join(rundir, "op.stdout")
        proc = Proc(f"oidc-provider:{alg}", ["node", OP_SERVER], cpus=self.cfg.server_cpus, env=env,
                    stdout=out, stderr=os.path.join(rundir, "op.stderr.log"), cwd=OP_DIR)

        def issuer():
            with open(out) as f:
                line = f.readline()
            return line.strip() if line.endswith("\n") else None
        iss = wait_until(issuer, self.cfg.start_timeout, proc, "the issuer line on stdout")
        if not re.match(r"^http://127\.0\.0\.1:\d+$", iss):
            raise BenchError(f"unexpected issuer line {iss!r}")

        def discovery():
            st, _, b = http_request("GET", iss + "/.well-known/openid-configuration", timeout=2)
            return json.loads(b)["token_endpoint"] if st == 200 else None
        token_url = wait_until(discovery, self.cfg.start_timeout, proc, "discovery")
        # oidc-provider issues exactly the requested scopes (none when the request names none),
        # so the request asks for `read`: the tokens then carry the same scope as the candidate's
        return Target(proc, token_url, CLIENT_ID, secret,
                      f"grant_type=client_credentials&scope={SCOPE}", iss, RESOURCE)


class Portcullis:
    name = "portcullis"

    def __init__(self, cfg):
        self.cfg = cfg
        b = os.environ.get("PORTCULLIS_BIN", "")
        # started from a run directory: make a relative path absolute, look a bare name up on PATH
        self.bin = (os.path.abspath(b) if os.sep in b else shutil.which(b) or b) if b else ""
        self.next_port = cfg.port_base

    def unavailable(self):
        """None when the candidate can run, else why not."""
        if not self.bin:
            return "PORTCULLIS_BIN is not set"
        if not (os.path.isfile(self.bin) and os.access(self.bin, os.X_OK)):
            return f"PORTCULLIS_BIN={self.bin} is not an executable file"
        try:
            p = subprocess.run([self.bin, "clients", "create", "--help"], capture_output=True,
                               text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"`{self.bin} clients create --help` failed: {e}"
        if p.returncode != 0:
            first = (p.stderr or p.stdout).strip().splitlines()[:1]
            return (f"{self.bin} has no `clients create` command yet"
                    + (f" ({first[0]})" if first else ""))
        return None

    def version(self):
        p = subprocess.run([self.bin, "--version"], capture_output=True, text=True, timeout=20)
        return f"{p.stdout.strip() or '?'} ({self.bin})"

    def ports(self):
        """(public, admin): two free loopback ports below the ephemeral range."""
        for _ in range(50):
            a, b = self.next_port, self.next_port + 1
            self.next_port += 2
            if self.next_port >= self.cfg.port_base + 100:
                self.next_port = self.cfg.port_base
            if port_free(a) and port_free(b):
                return a, b
        raise BenchError(f"no two free ports in {self.cfg.port_base}..{self.cfg.port_base + 99}; "
                         "set --port-base")

    def start(self, alg, rundir):
        port, aport = self.ports()
        admin_token = secrets.token_hex(32)
        token_sha = "sha256:" + __import__("hashlib").sha256(admin_token.encode()).hexdigest()
        secrets_key = base64.b64encode(secrets.token_bytes(32)).decode()
        issuer = f"http://127.0.0.1:{port}"
        db = os.path.join(rundir, "gw.db")
        conf = f"""# written by benches/oauth/bench.py ({alg})
listeners: [{{ name: public, bind: "127.0.0.1:{port}" }}]
logging: {{ level: warn, audit: off }}
store: {{ sqlite: {json.dumps(db)} }}
admin: {{ bind: "127.0.0.1:{aport}", token_sha256: "{token_sha}" }}
upstreams: {{ echo: {{ echo: true }} }}
routes: [{{ name: all, match: {{ path_prefix: / }}, upstream: echo, auth: none }}]
# the load comes from one address: the token endpoint's per-address limit (default 50/s) is
# raised so that it is checked on every request but never refuses one here
rate_limits: {{ bench: {{ rate: 999999999/s, key: ip }} }}
oauth_server:
  issuer: {issuer}
  listener: public
  signing: {{ algorithm: {alg}, secrets_key: "{secrets_key}" }}
  access_token_ttl: 15m
  pre_auth_rate_limit: bench
"""
        path = os.path.join(rundir, "gateway.yaml")
        with open(path, "w") as f:
            f.write(conf)
        env = dict(os.environ, PORTCULLIS_WORKERS=str(self.cfg.workers),
                   TOKIO_WORKER_THREADS=str(self.cfg.workers),
                   RUST_LOG=os.environ.get("PORTCULLIS_BENCH_RUST_LOG", "warn"))
        env.pop("PORTCULLIS_ADMIN_TOKEN", None)
        proc = Proc(f"portcullis:{alg}", [self.bin, "run", "-c", path], cpus=self.cfg.server_cpus,
                    env=env, stdout=os.path.join(rundir, "portcullis.log"), cwd=rundir)

        def ready():
            return http_request("GET", f"http://127.0.0.1:{aport}/readyz", timeout=1)[0] == 200
        wait_until(ready, self.cfg.start_timeout, proc, f"admin /readyz on 127.0.0.1:{aport}")

        cmd = (["taskset", "-c", self.cfg.load_cpus] if self.cfg.load_cpus else []) + [
            self.bin, "clients", "create", "--admin", f"http://127.0.0.1:{aport}", "--name", CLIENT_ID,
            "--grant", "client_credentials", "--scopes", SCOPE, "--audience", RESOURCE]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30,
                               env=dict(env, PORTCULLIS_ADMIN_TOKEN=admin_token))
        except subprocess.TimeoutExpired:
            raise BenchError("`clients create` did not finish within 30s")
        with open(os.path.join(rundir, "clients-create.log"), "w") as f:
            f.write(f"$ {' '.join(cmd)}\nrc={p.returncode}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
        cid = re.search(r"^\s*client_id:\s*(\S+)\s*$", p.stdout, re.M)
        sec = re.search(r"^\s*client_secret:\s*(\S+)\s*$", p.stdout, re.M)
        if p.returncode != 0 or not cid or not sec:
            raise BenchError(f"`clients create` failed (rc {p.returncode}); stdout: {p.stdout[-300:]!r} "
                             f"stderr: {p.stderr[-300:]!r}")
        client_id, secret = cid.group(1).strip("\"'"), sec.group(1).strip("\"'")
        if not secret.startswith("pcs_"):
            log(f"note: client_secret does not start with pcs_ ({secret[:6]}...)")
        if not (UNRESERVED.match(client_id) and UNRESERVED.match(secret)):
            log("note: client_id/secret hold characters outside RFC 3986 unreserved; "
                "sent unencoded in Basic auth as the contract says")
        return Target(proc, issuer + "/oauth2/token", client_id, secret,
                      "grant_type=client_credentials", issuer, RESOURCE)


# --------------------------------------------------------------------------
# one measurement
# --------------------------------------------------------------------------
def measure(cfg, server, alg, rnd, workdir):
    rec = {"server": server.name, "alg": alg, "round": rnd}
    if cfg.quiet_wait > 0:
        rec["load_before_cores"] = wait_quiet(cfg, f"{server.name} {alg}")
    rundir = os.path.join(workdir, f"r{rnd}-{server.name}-{alg}")
    shutil.rmtree(rundir, ignore_errors=True)
    os.makedirs(rundir)
    rec["rundir"] = rundir
    t = None
    try:
        t = server.start(alg, rundir)
        checks = check_token(t, alg)
        rec["checks"] = checks
        failed = [c for c in checks if c["required"] and not c["pass"]]
        if failed:
            raise BenchError("token check failed: " + "; ".join(f"{c['check']} ({c['detail']})" for c in failed))
        if cfg.warmup > 0:
            w = run_wrk(cfg, t, cfg.warmup, latency=False)
            rec["warmup_tokens"] = w["ok"]
        proc = t.proc
        (u0, k0), t0 = proc.cpu_split(), time.time()
        b0, st0 = pb.sys_cpu()
        r = run_wrk(cfg, t, cfg.duration)
        b1, st1 = pb.sys_cpu()
        (u1, k1), t1 = proc.cpu_split(), time.time()
        if not proc.alive():
            raise BenchError(f"server exited during the run: {proc.tail()}")
        rec.update({k: v for k, v in r.items() if k != "first_bad"})
        n = r["ok"]
        wall = t1 - t0
        cpu = (u1 - u0) + (k1 - k0)
        rec["tokens"] = n
        rec["tokens_per_s"] = n / (r["duration_us"] / 1e6)
        rec["cpu_s"] = cpu
        rec["cpu_us_per_token"] = cpu / n * 1e6
        rec["user_us_per_token"] = (u1 - u0) / n * 1e6
        rec["sys_us_per_token"] = (k1 - k0) / n * 1e6
        rec["server_core_util"] = cpu / wall
        rec["wrk_us_per_token"] = r["wrk_cpu_s"] / n * 1e6
        rec["wrk_core_util"] = r["wrk_cpu_s"] / wall
        # CPU busy on the box that is neither the server nor wrk (other tenants, builds,
        # ksoftirqd, ...) and hypervisor steal, in cores
        rec["foreign_cores"] = max(0.0, (b1 - b0) / pb.CLK_TCK - cpu - r["wrk_cpu_s"]) / wall
        rec["steal_cores"] = (st1 - st0) / pb.CLK_TCK / wall
        hwm, rss = proc.rss_kb()
        rec["rss_peak_mib"] = hwm / 1024.0
        rec["rss_mib"] = rss / 1024.0
    except BenchError as e:
        rec["error"] = str(e)
    except Exception as e:  # noqa: BLE001  (a harness bug must not leave servers running)
        rec["error"] = f"internal error: {type(e).__name__}: {e}"
    finally:
        if t is not None:
            t.proc.stop()
        else:
            for p in list(pb.STARTED):      # a start that failed half-way
                p.stop()
    return rec


# --------------------------------------------------------------------------
# signing floors: measured at the start of every round (the machine's speed drifts by several
# per cent over a run), each measurement's CPU per token is divided by its own round's floor
# --------------------------------------------------------------------------
OPENSSL_SPEED_ALG = {"ES256": "ecdsap256", "RS256": "rsa2048"}


def signing_floor(cpus, seconds, algs=ALGS):
    """`openssl speed` sign cost on the server core (system OpenSSL), in µs per signature, for
    the run's algorithms (openssl speed spends `seconds` on signing and as long on verifying)."""
    names = [OPENSSL_SPEED_ALG[a] for a in ALGS if a in algs]
    cmd = (["taskset", "-c", cpus] if cpus else []) + ["openssl", "speed", "-seconds", str(seconds)] + names
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + 4 * seconds * len(names))
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"openssl speed failed: {e}")
        return None
    res = {}
    m = re.search(r"^rsa 2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", p.stdout, re.M)
    if m:
        res["RS256"] = {"sign_per_s": float(m.group(1)), "sign_us": 1e6 / float(m.group(1)),
                        "verify_us": 1e6 / float(m.group(2))}
    m = re.search(r"^\s*256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", p.stdout, re.M)
    if m:
        res["ES256"] = {"sign_per_s": float(m.group(1)), "sign_us": 1e6 / float(m.group(1)),
                        "verify_us": 1e6 / float(m.group(2))}
    if not res:
        log(f"could not parse openssl speed output: {p.stdout[-300:]} {p.stderr[-300:]}")
    return res or None


AWSLC_DIR = os.path.join(HERE, "awslc-floor")


def awslc_floor_exe(cfg):
    """The aws-lc-rs floor program (awslc-floor/, what Portcullis links), built first with
    --awslc-floor build: its path, or None when off, not built (mode auto) or the build fails.
    Called once, before the rounds (a build must not run next to a measurement)."""
    target = os.path.join(cfg.out, "awslc-floor-target")
    exe = os.path.join(target, "release", "oauthbench-awslc-floor")
    if cfg.awslc_floor == "off":
        return None
    if cfg.awslc_floor == "build" or not os.path.exists(exe):
        if cfg.awslc_floor == "auto":
            log("aws-lc floor: not built; `--awslc-floor build` builds it (cargo, about a minute)")
            return None
        if not shutil.which("cargo"):
            log("aws-lc floor: cargo not found; skipped")
            return None
        base = ["cargo", "build", "--release", "--manifest-path", os.path.join(AWSLC_DIR, "Cargo.toml"),
                "--target-dir", target]
        log("aws-lc floor: cargo build --release (awslc-floor/)")
        for cmd in (base + ["--offline"], base):       # the crates are usually cached already
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
            except subprocess.TimeoutExpired:
                log("aws-lc floor: cargo build timed out; skipped")
                return None
            if p.returncode == 0:
                break
        else:
            log(f"aws-lc floor: cargo build failed; skipped: {p.stderr[-400:]}")
            return None
    return exe


def awslc_version():
    try:
        lock = open(os.path.join(AWSLC_DIR, "Cargo.lock")).read()
        m = re.search(r'name = "aws-lc-rs"\nversion = "([^"]+)"', lock)
        return f"aws-lc-rs {m.group(1)}" if m else "aws-lc-rs ?"
    except OSError:
        return "aws-lc-rs ?"


def awslc_floor(cfg, exe):
    """One run of the aws-lc-rs floor program on the server core: {alg: {sign_per_s, sign_us}}
    (both algorithms, `--floor-seconds` each), or None when it fails."""
    cmd = (["taskset", "-c", cfg.server_cpus] if cfg.server_cpus else []) + [exe, str(cfg.floor_seconds)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60 + 4 * cfg.floor_seconds)
        res = json.loads(p.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        log(f"aws-lc floor: run failed: {e}")
        return None
    return res if isinstance(res, dict) else None


def timed_floor(cfg, what, fn):
    """Wait for quiet as before a measurement, then run fn() (one floor program, a child of
    ours). Returns (fn's result, {load_before_cores, foreign_cores}): foreign_cores is the
    CPU that processes other than the floor program used meanwhile, in cores."""
    info = {}
    if cfg.quiet_wait > 0:
        info["load_before_cores"] = wait_quiet(cfg, what)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    (b0, _), t0 = pb.sys_cpu(), time.time()
    res = fn()
    (b1, _), t1 = pb.sys_cpu(), time.time()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    if t1 - t0 > 0:
        info["foreign_cores"] = max(0.0, (b1 - b0) / pb.CLK_TCK - own) / (t1 - t0)
    return res, info


def round_floors(cfg, rnd, algs, awslc_exe):
    """The floors of round rnd, measured at its start on the server core: {round, openssl,
    openssl_load_before_cores, openssl_foreign_cores, awslc, awslc_...} (a floor that could
    not be measured is None)."""
    fr = {"round": rnd}
    log(f"r{rnd} signing floor: openssl speed -seconds {cfg.floor_seconds} "
        f"{' '.join(OPENSSL_SPEED_ALG[a] for a in ALGS if a in algs)} on CPU {cfg.server_cpus or 'any'}")
    fr["openssl"], info = timed_floor(cfg, f"the r{rnd} signing floor",
                                      lambda: signing_floor(cfg.server_cpus, cfg.floor_seconds, algs))
    fr.update({f"openssl_{k}": v for k, v in info.items()})
    if fr["openssl"]:
        log(f"r{rnd} signing floor: " + ", ".join(f"{a} {fr['openssl'][a]['sign_us']:.1f} µs/sign"
                                                  for a in ALGS if a in fr["openssl"])
            + f"  foreign {info.get('foreign_cores', 0):.2f}")
    if awslc_exe:
        fr["awslc"], info = timed_floor(cfg, f"the r{rnd} aws-lc floor", lambda: awslc_floor(cfg, awslc_exe))
        fr.update({f"awslc_{k}": v for k, v in info.items()})
        if fr["awslc"]:
            log(f"r{rnd} aws-lc floor: " + ", ".join(f"{a} {fr['awslc'][a]['sign_us']:.1f} µs/sign"
                                                     for a in ALGS if a in fr["awslc"])
                + f"  foreign {info.get('foreign_cores', 0):.2f}")
    return fr


def attach_floors(rec, fr):
    """Put the floors of the record's own round, and its CPU per token divided by them, into
    the record: floor_sign_us / cpu_per_floor (openssl), awslc_floor_sign_us /
    cpu_per_awslc_floor (aws-lc-rs), when that floor was measured."""
    if not fr:
        return
    for src, pre in (("openssl", ""), ("awslc", "awslc_")):
        f = ((fr.get(src) or {}).get(rec["alg"]) or {}).get("sign_us")
        if not f:
            continue
        rec[f"{pre}floor_sign_us"] = f
        if not rec.get("error") and rec.get("cpu_us_per_token"):
            rec[f"cpu_per_{pre}floor"] = rec["cpu_us_per_token"] / f


def summarize_floors(per_round, src, algs):
    """Median (and min, max) over rounds of one floor source: {alg: {sign_us, sign_us_min,
    sign_us_max, sign_per_s, [verify_us,] rounds}}, or None when no round measured it."""
    out = {}
    for a in algs:
        vs = [(fr.get(src) or {}).get(a) for fr in per_round]
        vs = [v for v in vs if v and v.get("sign_us")]
        if not vs:
            continue
        us = [v["sign_us"] for v in vs]
        g = {"sign_us": statistics.median(us), "sign_us_min": min(us), "sign_us_max": max(us),
             "sign_per_s": pb.med([v.get("sign_per_s") for v in vs]), "rounds": len(vs)}
        if any("verify_us" in v for v in vs):
            g["verify_us"] = pb.med([v.get("verify_us") for v in vs])
        out[a] = g
    return out or None


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def aggregate(records, servers, algs):
    agg = {}
    for s in servers:
        for a in algs:
            rs = [r for r in records if r["server"] == s and r["alg"] == a]
            if not rs:
                continue
            ok = [r for r in rs if not r.get("error")]
            g = {"runs": len(rs), "ok_runs": len(ok),
                 "errors": sorted({r["error"][:300] for r in rs if r.get("error")})}
            for k in ("tokens_per_s", "cpu_us_per_token", "user_us_per_token", "sys_us_per_token",
                      "server_core_util", "p50_ms", "p99_ms", "rss_peak_mib", "foreign_cores",
                      "steal_cores", "wrk_core_util"):
                g[k] = pb.med([r.get(k) for r in ok])
            # each run's CPU per token over the floor of its own round, median over rounds
            for k in ("cpu_per_floor", "cpu_per_awslc_floor"):
                vals = [r[k] for r in ok if r.get(k) is not None]
                g[k] = statistics.median(vals) if vals else None
                g[f"{k}_runs"] = len(vals)
            if ok:
                tps = [r["tokens_per_s"] for r in ok]
                cpu = [r["cpu_us_per_token"] for r in ok]
                g["tps_spread_pct"] = (max(tps) - min(tps)) / statistics.median(tps) * 100
                g["cpu_spread_pct"] = (max(cpu) - min(cpu)) / statistics.median(cpu) * 100
            agg[(s, a)] = g
    return agg


def markdown(meta, agg, servers, algs, checks, skipped):
    L = [f"Run {meta['started']} on {meta['host']}; {meta['rounds']} interleaved round(s), "
         f"wrk -t{meta['threads']} -c{meta['connections']} -d{meta['duration']}s "
         f"(+{meta['warmup']}s warm-up) with token.lua; medians shown. Pinning: {meta['pinning']}.", ""]
    fl = meta.get("signing_floor") or {}
    al = meta.get("awslc_floor") or {}

    def floor_txt(d):
        out = []
        for a in algs:
            v = d.get(a)
            if not v:
                continue
            n = v["rounds"]
            out.append(f"{a} {v['sign_us']:.1f} µs" + (
                f" (min {v['sign_us_min']:.1f}, max {v['sign_us_max']:.1f} over {n} rounds)" if n > 1
                else " (1 round)"))
        return ", ".join(out)
    if fl or al:
        ossl = " ".join(meta["versions"].get("openssl (system)", "OpenSSL").split()[:2])
        parts = ([f"`openssl speed` (system {ossl}): {floor_txt(fl)}"] if fl else []) + (
            [f"{al.get('version', 'aws-lc-rs')}: {floor_txt(al)}"] if al else [])
        L.append("Signing floor on the server core, one signature, measured at the start of every round "
                 "(median over rounds): " + "; ".join(parts) + "."
                 + " \"CPU ÷ … floor\" = median over rounds of each run's CPU per token ÷ the floor "
                   "measured at the start of its own round.")
        L.append("")
    cand = "portcullis" in servers
    head = ["server", "alg", "tokens/s", "CPU µs/token", "CPU ÷ signing floor (OpenSSL)"]
    if al:
        head.append("CPU ÷ aws-lc floor")
    if cand:
        head += ["CPU ÷ oidc-provider", "tokens/s ÷ oidc-provider"]
    head += ["user / sys µs", "server core util", "p50 / p99 ms", "peak RSS MiB",
             "spread tokens/s / CPU", "other load (cores)"]
    L.append("| " + " | ".join(head) + " |")
    L.append("|---|---|" + "---:|" * (len(head) - 2))
    for a in algs:
        base = agg.get(("oidc-provider", a), {})
        for s in servers:
            g = agg.get((s, a))
            if g is None:
                continue
            if not g["ok_runs"]:
                L.append("| " + " | ".join([s, a, "FAILED: " + " / ".join(g["errors"])[:200].replace("|", "/")
                                            .replace("\n", " ")] + [""] * (len(head) - 3)) + " |")
                continue

            def ratio(x, y):
                return f"{x / y:.2f}" if x and y else "n/a"

            def per_floor(k):
                n = g.get(f"{k}_runs") or 0
                if g.get(k) is None:
                    return "n/a"
                return f"{g[k]:.2f}" + (f" ({n}/{g['ok_runs']} runs)" if n < g["ok_runs"] else "")
            row = [s, a, pb.fmt(g["tokens_per_s"]), pb.fmt(g["cpu_us_per_token"], 1),
                   per_floor("cpu_per_floor")]
            if al:
                row.append(per_floor("cpu_per_awslc_floor"))
            if cand:
                if s == "oidc-provider":
                    row += ["1.00", "1.00"]
                else:
                    row += [ratio(g["cpu_us_per_token"], base.get("cpu_us_per_token") if base.get("ok_runs") else None),
                            ratio(g["tokens_per_s"], base.get("tokens_per_s") if base.get("ok_runs") else None)]
            row += [f"{pb.fmt(g['user_us_per_token'], 1)} / {pb.fmt(g['sys_us_per_token'], 1)}",
                    pb.fmt(g["server_core_util"], 2),
                    f"{pb.fmt(g['p50_ms'], 2)} / {pb.fmt(g['p99_ms'], 2)}",
                    pb.fmt(g["rss_peak_mib"], 1),
                    f"{pb.fmt(g.get('tps_spread_pct'), 0, '%')} / {pb.fmt(g.get('cpu_spread_pct'), 0, '%')}",
                    pb.fmt(g["foreign_cores"], 2)]
            if g["ok_runs"] < g["runs"]:
                row[2] += f" ({g['ok_runs']}/{g['runs']} runs ok)"
            L.append("| " + " | ".join(row) + " |")
    L.append("")
    noisy = [f"{s} {a}" for (s, a), g in agg.items() if g["ok_runs"] and (g["foreign_cores"] or 0) > meta["noise_threshold"]]
    if noisy:
        L.append(f"**Noisy:** other processes used more than {meta['noise_threshold']} cores during "
                 f"the median run of {', '.join(noisy)}; those figures are not reliable (re-run on a quiet machine).")
        L.append("")
    noisy_floors = [f"r{fr['round']} {name} ({fr[f'{src}_foreign_cores']:.2f})"
                    for fr in meta.get("floors_by_round") or []
                    for src, name in (("openssl", "OpenSSL"), ("awslc", "aws-lc"))
                    if fr.get(src) and (fr.get(f"{src}_foreign_cores") or 0) > meta["noise_threshold"]]
    if noisy_floors:
        L.append(f"**Noisy floor:** other processes used more than {meta['noise_threshold']} cores while "
                 f"these floors were measured: {', '.join(noisy_floors)}; the ratios of those rounds "
                 "are not reliable.")
        L.append("")
    for s, why in skipped.items():
        L.append(f"**{s} skipped:** {why}")
        L.append("")
    if checks:
        L.append("**Token check before load (first round; ✔ = as expected; required checks fail the run)**")
        L.append("")
        cols = [k for k in checks]
        L.append("| check | required | " + " | ".join(f"{s} {a}" for s, a in cols) + " |")
        L.append("|---|---|" + "---|" * len(cols))
        names = []
        for cs in checks.values():
            for c in cs:
                if c["check"] not in [n for n, _ in names]:
                    names.append((c["check"], c["required"]))
        for name, req in names:
            row = []
            for k in cols:
                c = next((c for c in checks[k] if c["check"] == name), None)
                row.append("n/a" if c is None else ("✔" if c["pass"] else "✘ " + c["detail"][:60]
                                                    .replace("|", "/").replace("\n", " ")))
            L.append(f"| {name} | {'yes' if req else 'info'} | " + " | ".join(row) + " |")
        L.append("")
    L.append("**Versions**")
    L.append("")
    for k, v in meta["versions"].items():
        L.append(f"- {k}: {v}")
    return "\n".join(L)


# --------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of unmeasured wrk warm-up per run")
    ap.add_argument("--algs", default=",".join(ALGS), help="comma list of ES256, RS256")
    ap.add_argument("--servers", default="oidc-provider,portcullis",
                    help="comma list; portcullis runs only when PORTCULLIS_BIN has `clients create`")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round x 3 s (warm-up 3 s)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="PORTCULLIS_WORKERS for the candidate")
    ap.add_argument("--server-cpus", default="1", help="CPU list (taskset) for the server under test")
    ap.add_argument("--load-cpus", default="0", help="CPU list (taskset) for wrk")
    ap.add_argument("--no-pin", action="store_true", help="do not taskset anything")
    ap.add_argument("--floor-seconds", type=int, default=3, help="seconds per algorithm of the "
                    "signing floors measured at the start of every round (openssl speed -seconds; "
                    "the aws-lc loop)")
    ap.add_argument("--no-floor", action="store_true", help="skip the signing floors")
    ap.add_argument("--awslc-floor", choices=("auto", "build", "off"), default="auto",
                    help="the aws-lc-rs signing floor (awslc-floor/): auto = run it when already "
                         "built, build = cargo build it first if needed, off")
    ap.add_argument("--noise-threshold", type=float, default=0.3, help="re-run a measurement when "
                    "other processes used more than this many cores during it")
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="before each measurement, "
                    "wait up to this many seconds for other load to drop below --noise-threshold")
    ap.add_argument("--noise-retries", type=int, default=1, help="max re-runs per noisy measurement "
                    "(the quieter one is kept)")
    ap.add_argument("--start-timeout", type=float, default=30.0, help="seconds to wait for a server")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("OAUTHBENCH_PORT_BASE", "25400")),
                    help="the candidate's listener/admin ports come from PORT_BASE..+99 (keep it "
                         "below the ephemeral port range)")
    ap.add_argument("--no-install", action="store_true", help="never run npm ci")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "oauthbench"))
    cfg = ap.parse_args()
    if cfg.quick:
        cfg.rounds, cfg.duration = 1, 3
    if cfg.rounds < 1 or cfg.duration < 1 or cfg.warmup < 0:
        ap.error("--rounds and --duration must be >= 1, --warmup >= 0")
    algs = [a.strip().upper() for a in cfg.algs.split(",") if a.strip()]
    bad = [a for a in algs if a not in ALGS]
    if bad or not algs:
        ap.error(f"unknown --algs {bad}; known: {','.join(ALGS)}")
    want = [s.strip() for s in cfg.servers.split(",") if s.strip()]
    bad = [s for s in want if s not in ("oidc-provider", "portcullis")]
    if bad or not want:
        ap.error(f"unknown --servers {bad}; known: oidc-provider,portcullis")
    ncpu = os.cpu_count() or 1
    if cfg.no_pin or ncpu < 2:
        if not cfg.no_pin:
            log(f"WARNING: {ncpu} CPU(s): server and wrk cannot be pinned apart; running unpinned")
        cfg.server_cpus = cfg.load_cpus = None
    for tool in ["wrk", "openssl", "node"] + (["taskset"] if cfg.server_cpus else []):
        if not shutil.which(tool):
            sys.exit(f"oauthbench: {tool} not found on PATH")
    try:
        lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        if lo <= cfg.port_base + 99 and cfg.port_base <= hi:
            log(f"WARNING: ports {cfg.port_base}..{cfg.port_base + 99} overlap the ephemeral range "
                f"{lo}-{hi}; set --port-base below {lo - 100}")
    except (OSError, ValueError):
        pass

    os.makedirs(cfg.out, exist_ok=True)
    workdir = os.path.join(cfg.out, "work")      # scratch of the latest run only
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)

    servers, skipped = [], {}
    try:
        if "oidc-provider" in want:
            servers.append(OidcProvider(cfg))
        if "portcullis" in want:
            c = Portcullis(cfg)
            why = c.unavailable()
            if why:
                skipped["portcullis"] = why
                log(f"SKIPPING the candidate (portcullis): {why}")
            else:
                servers.append(c)
    except BenchError as e:
        sys.exit(f"oauthbench: {e}")
    if not servers:
        sys.exit("oauthbench: nothing to measure")
    names = [s.name for s in servers]

    def on_signal(signum, _frame):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)    # one clean-up, even when signals repeat
        log(f"{signal.Signals(signum).name}: stopping every process this run started")
        pb.stop_all()
        sys.exit(128 + signum)
    # SIGINT too: a shell without job control starts background jobs with SIGINT ignored
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    versions = {}
    for s in servers:
        try:
            versions[s.name] = s.version()
        except Exception as e:  # noqa: BLE001
            versions[s.name] = f"? ({e})"
    versions["wrk"] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "wrk"],
                                     capture_output=True, text=True).stdout or "?"
    versions["openssl (system)"] = subprocess.run(["openssl", "version"], capture_output=True,
                                                  text=True).stdout.strip()
    versions["kernel"] = platform.release()
    cpu_model = "?"
    try:
        cpu_model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    pin = ("none" if not cfg.server_cpus else
           f"server on CPU {cfg.server_cpus}, wrk on CPU {cfg.load_cpus}; candidate PORTCULLIS_WORKERS={cfg.workers}")
    meta = {"started": datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            "host": f"{ncpu} CPUs, {cpu_model}", "rounds": cfg.rounds, "duration": cfg.duration,
            "warmup": cfg.warmup, "threads": cfg.threads, "connections": cfg.connections,
            "noise_threshold": cfg.noise_threshold, "algs": algs, "servers": names, "skipped": skipped, "pinning": pin, "versions": versions,
            "client": {"id_oidc_provider": CLIENT_ID, "resource_audience": RESOURCE, "scope": SCOPE,
                       "ttl_s": TTL_S}}
    log(f"servers={names} algs={algs} rounds={cfg.rounds} x {cfg.duration}s (+{cfg.warmup}s warm-up); pin: {pin}")

    records, checks, floors = [], {}, []
    try:
        # the aws-lc floor program is built (if asked) once, here; the floors themselves are
        # measured at the start of every round
        awslc_exe = None if cfg.no_floor else awslc_floor_exe(cfg)
        for rnd in range(cfg.rounds):
            fr = None
            if not cfg.no_floor:
                fr = round_floors(cfg, rnd, algs, awslc_exe)
                floors.append(fr)
            for alg in algs:
                order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
                for s in order:
                    rec = measure(cfg, s, alg, rnd, workdir)
                    attempts = 1
                    while (not rec.get("error") and attempts <= cfg.noise_retries
                           and rec.get("foreign_cores", 0) > cfg.noise_threshold):
                        log(f"r{rnd} {s.name:>13} {alg} noisy: other load {rec['foreign_cores']:.2f} "
                            f"cores > {cfg.noise_threshold}; re-running")
                        time.sleep(2)
                        again = measure(cfg, s, alg, rnd, workdir)
                        attempts += 1
                        if not again.get("error") and again["foreign_cores"] < rec["foreign_cores"]:
                            rec = again
                    rec["attempts"] = attempts
                    attach_floors(rec, fr)
                    records.append(rec)
                    if rnd == 0 and rec.get("checks"):
                        checks[(s.name, alg)] = rec["checks"]
                    if rec.get("error"):
                        log(f"r{rnd} {s.name:>13} {alg} ERROR {rec['error'][:600]}")
                    else:
                        log(f"r{rnd} {s.name:>13} {alg} {rec['tokens_per_s']:>8.0f} tokens/s  "
                            f"cpu {rec['cpu_us_per_token']:.1f} µs/token (user {rec['user_us_per_token']:.1f} "
                            f"sys {rec['sys_us_per_token']:.1f})  util {rec['server_core_util']:.2f}  "
                            f"p99 {rec.get('p99_ms', 0):.2f} ms  wrk-core {rec['wrk_core_util']:.2f}  "
                            f"foreign {rec['foreign_cores']:.2f}  rss {rec['rss_peak_mib']:.0f} MiB")
    finally:
        pb.stop_all()

    if not cfg.no_floor:
        # per round (floors_by_round) and, in the former places, the median over rounds
        meta["floors_by_round"] = floors
        meta["signing_floor"] = summarize_floors(floors, "openssl", algs)
        meta["awslc_floor"] = summarize_floors(floors, "awslc", ALGS)
        if meta["awslc_floor"]:
            meta["awslc_floor"]["version"] = awslc_version()
    agg = aggregate(records, names, algs)
    md = markdown(meta, agg, names, algs, checks, skipped)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    summary = {f"{s}|{a}": g for (s, a), g in agg.items()}
    jpath = os.path.join(cfg.out, f"run-{stamp}.json")
    with open(jpath, "w") as f:
        json.dump({"meta": meta, "summary": summary, "records": records}, f, indent=1)
    with open(os.path.join(cfg.out, f"run-{stamp}.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    log(f"raw results: {jpath} (and .md); server logs of this run: {workdir}")
    failed = [k for k, g in agg.items() if not g["ok_runs"]]
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pb.stop_all()
        print("\noauthbench: interrupted; stopped every process it had started", file=sys.stderr)
        sys.exit(130)
