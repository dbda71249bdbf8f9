#!/usr/bin/env bash
# Soak test: a mixed load against a release build of the gateway for SOAK_SECONDS (default 600),
# sampling the gateway's RSS (/proc/PID/status VmRSS) and open file descriptors (/proc/PID/fd)
# every SOAK_INTERVAL seconds (default 30). Prints a Markdown table as it goes (stdout, and
# appended to SOAK_RESULTS), then judges whether both are flat after warm-up: the mean of the last
# third of the samples against the mean of the second third (RSS growth under SOAK_RSS_TOLERANCE,
# default 0.10; fds within +-SOAK_FD_TOLERANCE, default 10), and whether the fd count is back to
# its idle baseline once the load has stopped.
# Exit status: 0 flat and every client outcome as expected; 1 not flat, or the gateway died or did
# not exit 0 on SIGTERM at the end; 2 setup failure; 3 flat, but some client outcomes were not the
# expected ones (a valid request refused, a slow client never closed, ...: listed in the results).
#
#   benches/soak.sh                          10 minutes
#   SOAK_SECONDS=120 benches/soak.sh         a short run
#   SOAK_SKIP_BUILD=1 benches/soak.sh        use the existing target/release/portcullis
#
# Everything it starts listens on, and every request goes to, 127.0.0.1 (ephemeral ports):
#   - the gateway (`portcullis run`): a plain and a TLS listener (dev PKI from `portcullis
#     dev-pki`), the built-in echo upstream, an api_key and an HS256 jwt authenticator, a
#     rate-limited route, a SQLite store in a temp dir, an admin listener (token from
#     `portcullis admin-token`); keys are made with `portcullis keys create`;
#   - a small Python upstream (benches/soak.py upstream) that serves large downloads for the
#     slow-reader clients;
#   - the load, each kind from its own workers:
#       wrk (bulk, keep-alive; plain and TLS): valid API keys and valid JWTs, rotated per request
#         by a Lua script, paced by wrk's delay() (SOAK_WRK_DELAY_MS) so the soak does not take the
#         whole machine;
#       benches/soak.py load: invalid API keys (bad checksum, unknown, revoked, foreign), invalid
#         JWTs (expired, bad signature, tampered, wrong audience, alg none, not yet valid, garbage),
#         freshly minted JWTs on a rate-limited route (fills and evicts the verified-token cache
#         and the limiter's keys), uploads (Content-Length, chunked, oversize -> 413, aborted
#         mid-body), new connections per request (plain and TLS handshakes), TLS keep-alive,
#         slowloris heads and HTTP/2 prefaces a byte at a time, silent connections (plain, and no
#         ClientHello on the TLS port), slow and stalled readers of a 64 MiB download, and an
#         admin-API key churn (create, use, rotate, revoke).
# If wrk is not installed, the bulk valid load runs as extra Python workers instead (install wrk
# with `apt-get install -y wrk` for a heavier load; this script installs nothing).
# Only the processes it started are stopped, by PID, when it exits.
#
# Knobs: SOAK_SECONDS (600), SOAK_INTERVAL (30), SOAK_RSS_TOLERANCE (0.10), SOAK_FD_TOLERANCE (10),
# SOAK_WRK_CONNECTIONS (16 plain; TLS gets half), SOAK_WRK_DELAY_MS (4, per connection between
# requests), SOAK_PY_SCALE (1: multiplies the Python worker counts), SOAK_PY_PAUSE (0.005 s between
# a Python worker's requests), SOAK_KEYS (20 API keys), SOAK_RESULTS (benches/soak-results.md),
# SOAK_WORKDIR (default: a new temp dir, removed at exit unless SOAK_KEEP=1), PORTCULLIS_BIN.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

SOAK_SECONDS="${SOAK_SECONDS:-600}"
SOAK_INTERVAL="${SOAK_INTERVAL:-30}"
SOAK_RSS_TOLERANCE="${SOAK_RSS_TOLERANCE:-0.10}"
SOAK_FD_TOLERANCE="${SOAK_FD_TOLERANCE:-10}"
SOAK_WRK_CONNECTIONS="${SOAK_WRK_CONNECTIONS:-16}"
SOAK_WRK_DELAY_MS="${SOAK_WRK_DELAY_MS:-4}"
SOAK_PY_SCALE="${SOAK_PY_SCALE:-1}"
SOAK_PY_PAUSE="${SOAK_PY_PAUSE:-0.01}"
SOAK_KEYS="${SOAK_KEYS:-20}"
SOAK_RESULTS="${SOAK_RESULTS:-$here/soak-results.md}"
HEADER_TIMEOUT=5
IDLE_TIMEOUT=15
MAX_BODY=1048576
ISS="https://soak.portcullis.test"
AUD="https://api.soak.portcullis.test"

log() { echo "soak: $*" >&2; }
die() { log "$*"; exit 2; }

command -v python3 >/dev/null || die "python3 is needed"
(( SOAK_SECONDS >= SOAK_INTERVAL )) || die "SOAK_SECONDS must be at least SOAK_INTERVAL"

# ---- build -----------------------------------------------------------------------------------
if [[ -n "${PORTCULLIS_BIN:-}" ]]; then
  BIN="$PORTCULLIS_BIN"
else
  target="${CARGO_TARGET_DIR:-$root/target}"
  [[ "$target" = /* ]] || target="$root/$target"   # cargo reads a relative one from the cwd
  BIN="$target/release/portcullis"
  if [[ "${SOAK_SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release (may wait for the target dir lock)"
    (cd "$root" && cargo build --release) >&2 || die "cargo build --release failed"
  fi
fi
[[ -x "$BIN" ]] || die "no binary at $BIN (build it, or set PORTCULLIS_BIN)"

# ---- processes we start, stopped by PID at exit ---------------------------------------------
pids=()        # helpers: upstream, wrk, python load
gw_pid=""
gw_stopped=0
W="${SOAK_WORKDIR:-}"
if [[ -z "$W" ]]; then W="$(mktemp -d "${TMPDIR:-/tmp}/portcullis-soak.XXXXXX")"; made_w=1; else mkdir -p "$W"; made_w=0; fi

cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  if [[ -n "$gw_pid" && "$gw_stopped" == 0 ]]; then
    kill -TERM "$gw_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$gw_pid" 2>/dev/null || true
  fi
  for p in "${pids[@]}"; do
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [[ "$made_w" == 1 && "${SOAK_KEEP:-0}" != 1 ]]; then rm -rf "$W"; else log "work dir kept: $W"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- fixtures --------------------------------------------------------------------------------
free_ports() {  # N distinct free loopback ports
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r PLAIN TLS ADMIN UPSTREAM <<<"$(free_ports 4)"

"$BIN" dev-pki --out "$W/certs" >/dev/null || die "dev-pki failed"
tok_out="$("$BIN" admin-token)"
ADMIN_TOKEN="$(sed -n 's/^token: //p' <<<"$tok_out")"
ADMIN_SHA="$(sed -n 's/^token_sha256: //p' <<<"$tok_out")"
[[ -n "$ADMIN_TOKEN" && -n "$ADMIN_SHA" ]] || die "admin-token printed no token"
JWT_SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
mkdir -p "$W/data"

cat >"$W/gateway.yaml" <<EOF
# written by benches/soak.sh
listeners:
  - name: plain
    bind: 127.0.0.1:$PLAIN
  - name: tls
    bind: 127.0.0.1:$TLS
    tls:
      cert: certs/server.crt
      key: certs/server.key
limits:
  header_timeout: ${HEADER_TIMEOUT}s
  idle_timeout: ${IDLE_TIMEOUT}s
  max_body_bytes: $MAX_BODY
  shutdown_timeout: 5s
logging: { format: json, level: warn, audit: "off" }
admin:
  bind: 127.0.0.1:$ADMIN
  token_sha256: "$ADMIN_SHA"
store:
  sqlite: data/soak.db
upstreams:
  echo:
    echo: true
  downloads:
    url: http://127.0.0.1:$UPSTREAM
    timeout: 30s
authenticators:
  keys:
    type: api_key
  jwt:
    type: jwt
    issuer: $ISS
    audiences: [$AUD]
    algorithms: [HS256]
    secret: "$JWT_SECRET"
    leeway: 5s
    verify_cache: { max_entries: 2000 }
rate_limits:
  per_subject: { rate: 1000/s, burst: 1000, key: identity }
routes:
  - name: health
    match: { path: /health }
    upstream: echo
    auth: none
  - name: downloads
    match: { path_prefix: /download }
    upstream: downloads
    auth: { any_of: [keys, jwt] }
  - name: upload
    match: { path_prefix: /upload, methods: [POST, PUT] }
    upstream: echo
    auth: { any_of: [keys, jwt] }
    max_body_bytes: $MAX_BODY
  - name: limited
    match: { path_prefix: /limited }
    upstream: echo
    auth: { any_of: [jwt], rate_limit: per_subject }
  - name: api
    match: { path_prefix: /api }
    upstream: echo
    auth: { any_of: [keys, jwt] }
EOF
"$BIN" check -c "$W/gateway.yaml" >&2 || die "the soak config does not pass \`portcullis check\`"

python3 "$here/soak.py" upstream --port "$UPSTREAM" >"$W/upstream.log" 2>&1 &
pids+=($!)

"$BIN" run -c "$W/gateway.yaml" >"$W/gateway.log" 2>&1 &
gw_pid=$!

http_status() {  # URL -> status code, or 000
  python3 - "$1" <<'EOF'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
try:
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
    c.request("GET", u.path)
    print(c.getresponse().status)
except OSError:
    print("000")
EOF
}
for i in $(seq 1 100); do
  kill -0 "$gw_pid" 2>/dev/null || { cat "$W/gateway.log" >&2; die "the gateway exited at start"; }
  [[ "$(http_status "http://127.0.0.1:$ADMIN/readyz")" == 200 ]] && break
  (( i < 100 )) || die "the gateway is not ready after 20 s"
  sleep 0.2
done
for i in $(seq 1 50); do
  grep -q "listening" "$W/upstream.log" && break
  (( i < 50 )) || die "the download upstream did not start"
  sleep 0.2
done

export PORTCULLIS_ADMIN_TOKEN="$ADMIN_TOKEN"
adm=(--admin "http://127.0.0.1:$ADMIN")
: >"$W/keys.txt"
for i in $(seq 1 "$SOAK_KEYS"); do
  env=live; (( i % 4 == 0 )) && env=test
  "$BIN" "${adm[@]}" keys create --name "soak-$i" --subject "soak-client-$i" --scopes "read:users" --env "$env" \
    | sed -n 's/^key: //p' >>"$W/keys.txt"
done
[[ "$(wc -l <"$W/keys.txt")" == "$SOAK_KEYS" ]] || die "could not create $SOAK_KEYS keys"
revoked_json="$("$BIN" "${adm[@]}" --json keys create --name soak-revoked)"
REVOKED_KEY="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$revoked_json")"
revoked_id="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["id"])' "$revoked_json")"
"$BIN" "${adm[@]}" keys revoke "$revoked_id" >/dev/null || die "keys revoke failed"
python3 "$here/soak.py" creds --keys "$W/keys.txt" --secret "$JWT_SECRET" --iss "$ISS" --aud "$AUD" \
  --jwts 64 --ttl $((SOAK_SECONDS + 3600)) --out "$W/creds.tsv" >&2

# Sanity: one valid request must pass before the soak starts.
first_key="$(head -1 "$W/keys.txt")"
st="$(python3 - "$PLAIN" "$first_key" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/api/users", headers={"X-Api-Key": sys.argv[2]})
print(c.getresponse().status)
EOF
)"
[[ "$st" == 200 ]] || die "a request with a fresh key answered $st, not 200"

cat >"$W/rotate.lua" <<'EOF'
-- wrk: rotate credentials (`Header<TAB>value` lines of args[1]) and paths per request;
-- delay() paces each connection by args[2] ms.
local creds, paths = {}, { "/api/users", "/api/users/42", "/api/orders?page=3&sort=desc",
                           "/api/items/7/parts", "/health" }
local i, pace = 0, 0
function init(args)
  for line in io.lines(args[1]) do
    local h, v = line:match("^([^\t]+)\t(.*)$")
    if h then creds[#creds + 1] = { h, v } end
  end
  pace = tonumber(args[2]) or 0
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  i = math.random(#creds)
end
function request()
  i = i % #creds + 1
  local c = creds[i]
  return wrk.format("GET", paths[(i % #paths) + 1], { [c[1]] = c[2] })
end
function delay()
  return pace
end
EOF

# ---- sampling --------------------------------------------------------------------------------
rss_kib()   { awk '/^VmRSS:/ {print $2}' "/proc/$gw_pid/status"; }
hwm_kib()   { awk '/^VmHWM:/ {print $2}' "/proc/$gw_pid/status"; }
threads()   { awk '/^Threads:/ {print $2}' "/proc/$gw_pid/status"; }
fd_count()  { find "/proc/$gw_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
gw_requests() { python3 "$here/soak.py" metrics --admin-port "$ADMIN"; }

prev_req=0; prev_t=0
sample() {  # sample T LABEL -> prints and appends a row, records samples.tsv
  local t="$1" label="$2" rss fds hwm thr req rate
  kill -0 "$gw_pid" 2>/dev/null || { log "the gateway (pid $gw_pid) is gone at t=$t"; return 1; }
  rss="$(rss_kib)"; fds="$(fd_count)"; hwm="$(hwm_kib)"; thr="$(threads)"; req="$(gw_requests)"
  rate="-"
  if [[ "$label" == load && "$req" =~ ^[0-9]+$ && "$t" -gt "$prev_t" ]]; then
    rate=$(( (req - prev_req) / (t - prev_t) ))
    prev_req="$req"; prev_t="$t"
  fi
  printf '%s %s %s %s %s %s %s\n' "$t" "$rss" "$fds" "$hwm" "$thr" "$req" "${label%% *}" >>"$W/samples.tsv"
  local row
  row="$(printf '| %s | %s | %.1f | %.1f | %s | %s | %s | %s |' "$t" "$label" \
    "$(awk "BEGIN{print $rss/1024}")" \
    "$(awk "BEGIN{print $hwm/1024}")" "$fds" "$thr" "$req" "$rate")"
  echo "$row"
  echo "$row" >>"$SOAK_RESULTS"
}

have_wrk=0
command -v wrk >/dev/null 2>&1 && have_wrk=1
if (( have_wrk == 0 )); then
  log "wrk is not installed: the bulk valid load runs as Python workers instead (lighter)."
  log "for the full load: apt-get install -y wrk"
fi

if [[ ! -s "$SOAK_RESULTS" ]]; then
  printf '# Soak results\n\nWritten by `benches/soak.sh` (see its header for what the load is and how the\nverdict is computed); each run appends a section.\n' >"$SOAK_RESULTS"
fi
{
  echo
  echo "## Soak run $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "Duration ${SOAK_SECONDS} s, sample every ${SOAK_INTERVAL} s; $(nproc) CPUs; $("$BIN" --version);"
  echo "header_timeout ${HEADER_TIMEOUT}s, idle_timeout ${IDLE_TIMEOUT}s, max_body_bytes ${MAX_BODY}, verify_cache 2000 entries;"
  if (( have_wrk )); then
    echo "bulk load: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), ${SOAK_WRK_CONNECTIONS} plain + $((SOAK_WRK_CONNECTIONS / 2)) TLS keep-alive connections, ${SOAK_WRK_DELAY_MS} ms delay per connection between requests;"
  else
    echo "bulk load: Python workers (wrk not installed);"
  fi
  echo "Python load scale ${SOAK_PY_SCALE}, pause ${SOAK_PY_PAUSE} s. Row t=0 is idle, before the load; the last row is idle after it."
  echo
  echo "| t (s) | phase | RSS MiB | peak RSS MiB | open fds | threads | gateway requests | req/s |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|"
} | tee -a "$SOAK_RESULTS"

: >"$W/samples.tsv"
prev_req="$(gw_requests)"; prev_t=0
sample 0 "idle (before)"
idle_before="$(fd_count)"

# ---- load ------------------------------------------------------------------------------------
dur="$SOAK_SECONDS"
py_scale="$SOAK_PY_SCALE"
if (( have_wrk )); then
  wrk -t1 -c"$SOAK_WRK_CONNECTIONS" -d"${dur}s" --timeout 10s -s "$W/rotate.lua" \
    "http://127.0.0.1:$PLAIN/api/users" -- "$W/creds.tsv" "$SOAK_WRK_DELAY_MS" >"$W/wrk-plain.txt" 2>&1 &
  pids+=($!)
  wrk -t1 -c"$((SOAK_WRK_CONNECTIONS / 2 > 0 ? SOAK_WRK_CONNECTIONS / 2 : 1))" -d"${dur}s" --timeout 10s \
    -s "$W/rotate.lua" "https://127.0.0.1:$TLS/api/users" -- "$W/creds.tsv" "$SOAK_WRK_DELAY_MS" \
    >"$W/wrk-tls.txt" 2>&1 &
  pids+=($!)
fi
python3 "$here/soak.py" load --plain "$PLAIN" --tls "$TLS" --ca "$W/certs/ca.crt" \
  --admin-port "$ADMIN" --admin-token "$ADMIN_TOKEN" --keys "$W/keys.txt" --revoked-key "$REVOKED_KEY" \
  --secret "$JWT_SECRET" --iss "$ISS" --aud "$AUD" --duration "$dur" \
  --header-timeout "$HEADER_TIMEOUT" --idle-timeout "$IDLE_TIMEOUT" --max-body "$MAX_BODY" \
  --scale "$py_scale" --pause "$SOAK_PY_PAUSE" --out "$W/py-stats.json" >"$W/py-load.log" 2>&1 &
py_pid=$!
pids+=("$py_pid")
if (( have_wrk == 0 )); then
  # stand-in for wrk: more keep-alive valid-credential workers (TLS keep-alive, fresh JWTs)
  python3 "$here/soak.py" load --plain "$PLAIN" --tls "$TLS" --ca "$W/certs/ca.crt" \
    --admin-port "$ADMIN" --admin-token "$ADMIN_TOKEN" --keys "$W/keys.txt" --revoked-key "$REVOKED_KEY" \
    --secret "$JWT_SECRET" --iss "$ISS" --aud "$AUD" --duration "$dur" \
    --header-timeout "$HEADER_TIMEOUT" --idle-timeout "$IDLE_TIMEOUT" --max-body "$MAX_BODY" \
    --scale "$py_scale" --pause "$SOAK_PY_PAUSE" --out "$W/py-stats-2.json" >"$W/py-load-2.log" 2>&1 &
  pids+=($!)
fi

start=$(date +%s)
crashed=0
for (( t = SOAK_INTERVAL; t <= SOAK_SECONDS; t += SOAK_INTERVAL )); do
  now=$(date +%s)
  (( start + t > now )) && sleep $(( start + t - now ))
  sample "$t" "load" || { crashed=1; break; }
done

# ---- wind down -------------------------------------------------------------------------------
log "load period over; waiting for the clients to finish"
for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
settle=$((HEADER_TIMEOUT + IDLE_TIMEOUT + 10))
idle_after=""
if (( crashed == 0 )); then
  log "settling ${settle} s (header_timeout + idle_timeout + 10) before the idle sample"
  sleep "$settle"
  end_t=$(( $(date +%s) - start ))
  sample "$end_t" "idle (after)" || crashed=1
  idle_after="$(fd_count)"
fi
python3 "$here/soak.py" metrics --admin-port "$ADMIN" >/dev/null 2>&1 || true
python3 - "$ADMIN" >"$W/metrics-summary.md" <<'EOF' || true
import http.client, sys, re
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
c.request("GET", "/metrics"); text = c.getresponse().read().decode()
rows = []
for line in text.splitlines():
    m = re.match(r'(portcullis_(requests_total|upstream_errors_total|rate_limited_total|auth_decisions_total))\{(.*)\} (\S+)$', line)
    if m:
        rows.append("| %s | %s | %d |" % (m.group(2), m.group(3).replace('"', ''), int(float(m.group(4)))))
print("| metric | labels | count |\n|---|---|---:|")
print("\n".join(rows))
EOF

# Stop the gateway: it must drain and exit 0 within shutdown_timeout (5 s) + slack.
gw_exit="still running"
if kill -0 "$gw_pid" 2>/dev/null; then
  kill -TERM "$gw_pid"
  for _ in $(seq 1 150); do kill -0 "$gw_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$gw_pid" 2>/dev/null; then
    gw_exit="did not exit within 15 s of SIGTERM (killed)"
    kill -KILL "$gw_pid" 2>/dev/null || true
  else
    set +e; wait "$gw_pid"; gw_exit="exit $?"; set -e
  fi
else
  set +e; wait "$gw_pid"; gw_exit="crashed ($?)"; set -e
fi
gw_stopped=1

set +e
python3 "$here/soak.py" report --samples "$W/samples.tsv" --stats "$W/py-stats.json" \
  $( (( have_wrk )) && echo --wrk-plain "$W/wrk-plain.txt" --wrk-tls "$W/wrk-tls.txt" ) \
  --rss-tol "$SOAK_RSS_TOLERANCE" --fd-tol "$SOAK_FD_TOLERANCE" \
  --idle-before "$idle_before" ${idle_after:+--idle-after "$idle_after"} --settle "$settle" \
  --verdict-out "$W/verdict.md" --counts-out "$W/counts.md" >/dev/null
verdict_rc=$?
set -e
if (( crashed )) || [[ "$gw_exit" != "exit 0" ]]; then verdict_rc=1; fi

warn_lines="$(grep -c '"level":"WARN"' "$W/gateway.log" || true)"
err_lines="$(grep -c '"level":"ERROR"' "$W/gateway.log" || true)"
{
  echo
  (( crashed )) && echo "**The gateway died during the run** (see its log)." && echo
  cat "$W/verdict.md"
  echo
  echo "Gateway stop after the run (SIGTERM): $gw_exit. Gateway log: $warn_lines WARN and $err_lines ERROR lines (level warn, audit off)."
  if (( err_lines + warn_lines > 0 )); then
    echo
    echo "Most frequent log messages:"
    echo
    echo '```'
    python3 - "$W/gateway.log" <<'EOF' || true
import collections, json, sys
c = collections.Counter()
for line in open(sys.argv[1], errors="replace"):
    try:
        d = json.loads(line)
        c["%s %s" % (d.get("level"), d.get("fields", {}).get("message", ""))[:160]] += 1
    except ValueError:
        c[line.strip()[:160]] += 1
for m, n in c.most_common(8):
    print("%6d  %s" % (n, m))
EOF
    echo '```'
  fi
  echo
  echo "Requests by kind (client side):"
  echo
  cat "$W/counts.md"
  echo
  echo "Gateway metrics at the end (/metrics):"
  echo
  cat "$W/metrics-summary.md"
} | tee -a "$SOAK_RESULTS"
log "results appended to $SOAK_RESULTS"
exit "$verdict_rc"
