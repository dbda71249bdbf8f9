#!/usr/bin/env bash
# Instructions per request of the plain proxy path under callgrind (repeatable on a noisy box):
# nginx answers as the upstream, the release gateway runs under valgrind, wrk warms up, the
# counters are zeroed, a measured 10 s wrk load runs, and the dump is divided by wrk's request
# count. Then `cgtool.py self|callees|callers $CG_DIR/cg.out.1 N [FUNCTION]` (beside this script) lists
# self costs per request or breaks one function down.
#
#   benches/load/callgrind/cg.sh          (needs valgrind, nginx, wrk, curl; build --release first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$here/../../.." && pwd)"
CG_DIR="${CG_DIR:-$ROOT/target/callgrind}"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}"
mkdir -p "$CG_DIR"
for f in nginx-up.conf gw.yaml; do sed "s#\${CG_DIR}#$CG_DIR#g" "$here/$f" > "$CG_DIR/$f"; done
cd "$CG_DIR"
rm -f cg.out* gw.db*
nginx -c "$CG_DIR/nginx-up.conf" -p "$CG_DIR" & ngx=$!
RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file=cg.out --dump-instr=no "$BIN" run -c gw.yaml > gw.log 2>&1 & vg=$!
trap 'kill $vg $ngx 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18081/ && break; sleep 0.5; done
wrk -t1 -c8 -d3s http://127.0.0.1:18081/ > /dev/null
callgrind_control -z $vg > /dev/null
wrk -t1 -c8 -d10s http://127.0.0.1:18081/ > wrk.out
callgrind_control -d $vg > /dev/null
reqs=$(awk '/requests in/ {print $1}' wrk.out)
total=$(callgrind_annotate cg.out.1 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "requests $reqs  instructions $total  per request $((total / reqs))  (dump: $CG_DIR/cg.out.1)"
