#!/usr/bin/env bash
# Instructions per request of the plain proxy path under callgrind (repeatable on a noisy box):
# nginx answers as the upstream, the release gateway runs under valgrind, wrk warms up, the
# counters are zeroed, a measured 10 s wrk load runs, and the dump is divided by wrk's request
# count. Then `cgtool.py self|callees|callers $CG_DIR/cg.out.1 N [FUNCTION]` (beside this script) lists
# self costs per request or breaks one function down.
#
#   benches/load/callgrind/cg.sh          (needs valgrind, nginx, wrk, curl; build --release first)
#   CG_SCENARIO=jwt-rs256 .../cg.sh       the same route behind a JWT authenticator (static JWKS,
#                                         verified-token cache on, one token reused as in the load
#                                         benchmark; fixtures from ../gen_fixtures.py)
#   CG_TARGETS=3 .../cg.sh                the upstream as three round-robin targets (the same nginx
#                                         on three ports) instead of one url; CG_RETRY_ON_RESET=true
#                                         sets the upstream's retry_on_reset
#   CG_ASSERTION=1 .../cg.sh              the route sends a signed identity assertion
#                                         (identity_token, ttl 60s) to the upstream
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$here/../../.." && pwd)"
CG_DIR="${CG_DIR:-$ROOT/target/callgrind}"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}"
SCENARIO="${CG_SCENARIO:-plain}"
mkdir -p "$CG_DIR"
for f in nginx-up.conf gw.yaml; do sed "s#\${CG_DIR}#$CG_DIR#g" "$here/$f" > "$CG_DIR/$f"; done
if [[ "${CG_TARGETS:-1}" == 3 ]]; then
  sed -i 's#up: { url: "http://127.0.0.1:18080" }#up: { targets: ["http://127.0.0.1:18080", "http://127.0.0.1:18082", "http://127.0.0.1:18083"], retry_on_reset: '"${CG_RETRY_ON_RESET:-false}"' }#' "$CG_DIR/gw.yaml"
fi
if [[ "${CG_ASSERTION:-0}" == 1 ]]; then
  sed -i 's#auth: none }#auth: none, identity_token: { header: X-Auth-Assertion, ttl: 60s, audience: bench } }#' "$CG_DIR/gw.yaml"
fi
hdr=()
case "$SCENARIO" in
  plain) ;;
  jwt-rs256|jwt-es256)
    alg="${SCENARIO#jwt-}"
    fix="$CG_DIR/fixtures"
    [[ -s "$fix/jwt/load-$alg.jwt" ]] || python3 "$here/../gen_fixtures.py" --out "$fix" >/dev/null
    sed -i 's#auth: none#auth: { any_of: [bench_jwt] }#' "$CG_DIR/gw.yaml"
    cat >> "$CG_DIR/gw.yaml" <<YAML
authenticators:
  bench_jwt:
    type: jwt
    issuer: peerbench-issuer
    audiences: [peerbench-gateway]
    algorithms: [${alg^^}]
    jwks_file: $fix/jwt/jwks.json
    leeway: 60s
YAML
    hdr=(-H "Authorization: Bearer $(cat "$fix/jwt/load-$alg.jwt")") ;;
  *) echo "CG_SCENARIO: plain | jwt-rs256 | jwt-es256" >&2; exit 2 ;;
esac
cd "$CG_DIR"
rm -f cg.out* gw.db*
nginx -c "$CG_DIR/nginx-up.conf" -p "$CG_DIR" & ngx=$!
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file=cg.out --dump-instr=no "$BIN" run -c gw.yaml > gw.log 2>&1 & vg=$!
trap 'kill $vg $ngx 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18081/ && break; sleep 0.5; done
code="$(curl -s -o /dev/null -w '%{http_code}' "${hdr[@]}" http://127.0.0.1:18081/)"
[[ "$code" == 200 ]] || { echo "$SCENARIO: the check request got $code, not 200" >&2; exit 1; }
wrk -t1 -c8 -d3s "${hdr[@]}" http://127.0.0.1:18081/ > /dev/null
callgrind_control -z $vg > /dev/null
wrk -t1 -c8 -d10s "${hdr[@]}" http://127.0.0.1:18081/ > wrk.out
callgrind_control -d $vg > /dev/null
if grep -q "Non-2xx" wrk.out; then echo "$SCENARIO: wrk saw non-2xx answers:" >&2; cat wrk.out >&2; exit 1; fi
reqs=$(awk '/requests in/ {print $1}' wrk.out)
total=$(callgrind_annotate cg.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "$SCENARIO: requests $reqs  instructions $total  per request $((total / reqs))  (dump: $CG_DIR/cg.out.1)"
