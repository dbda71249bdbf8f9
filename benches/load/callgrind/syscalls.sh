#!/usr/bin/env bash
# System calls per proxied request, Portcullis beside nginx (the kernel half of the CPU per
# request): nginx-up.conf answers as the upstream, the release gateway (gw.yaml) and an nginx
# proxy configured like peerbench's (nginx-proxy.conf) each take a `wrk -t1 -c8 -d5s` load under
# `strace -c -f`, and the counts are divided by wrk's request count. strace slows both alike;
# only the counts matter. Then, without strace, `perf stat` counts the wakeups each proxy
# performs (sched:sched_wakeup: waking a sleeping wrk or upstream costs kernel time in the
# waker) and its own context switches, per request.
#
#   benches/load/callgrind/syscalls.sh     (needs strace, nginx, wrk, curl, perf; build --release first)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$here/../../.." && pwd)"
CG_DIR="${CG_DIR:-$ROOT/target/syscalls}"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/portcullis}"
mkdir -p "$CG_DIR"
for f in nginx-up.conf nginx-proxy.conf gw.yaml; do sed "s#\${CG_DIR}#$CG_DIR#g" "$here/$f" > "$CG_DIR/$f"; done
cd "$CG_DIR"
rm -f gw.db*
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
nginx -c "$CG_DIR/nginx-up.conf" -p "$CG_DIR" & pids+=($!)
nginx -c "$CG_DIR/nginx-proxy.conf" -p "$CG_DIR" & pids+=($!)
RUST_LOG=warn PORTCULLIS_WORKERS=1 "$BIN" run -c gw.yaml > gw.log 2>&1 & gw=$!; pids+=($gw)
for port in 18081 18082; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
done
measure() {   # measure NAME PORT PID...
  local name="$1" port="$2"; shift 2
  wrk -t1 -c8 -d2s "http://127.0.0.1:$port/" > /dev/null
  local args=(); for p in "$@"; do args+=(-p "$p"); done
  strace -c -f -o "$CG_DIR/strace-$name.txt" "${args[@]}" & local st=$!
  sleep 1   # strace attaches
  wrk -t1 -c8 -d5s "http://127.0.0.1:$port/" > "$CG_DIR/wrk-$name.txt"
  kill -INT $st; wait $st || true
  local reqs; reqs=$(awk '/requests in/ {print $1}' "$CG_DIR/wrk-$name.txt")
  echo "## $name: $reqs requests; system calls per request"
  awk -v n="$reqs" '$1 ~ /^[0-9.]+$/ && NF >= 5 { c = $4; name = $NF; if (name != "total") printf "  %-16s %6.2f\n", name, c / n }' \
    "$CG_DIR/strace-$name.txt" | sort -k2 -rn | awk '$2 >= 0.01'
  if command -v perf > /dev/null; then
    local list; list=$(IFS=,; echo "$*")
    perf stat -e sched:sched_wakeup,context-switches -p "$list" -o "$CG_DIR/perf-$name.txt" -- sleep 4 & local pf=$!
    wrk -t1 -c8 -d4s "http://127.0.0.1:$port/" > "$CG_DIR/wrk2-$name.txt"
    wait $pf || true
    reqs=$(awk '/requests in/ {print $1}' "$CG_DIR/wrk2-$name.txt")
    awk -v n="$reqs" '/sched:sched_wakeup|context-switches/ { gsub(",", "", $1); printf "  %-16s %6.2f per request (perf)\n", $2, $1 / n }' "$CG_DIR/perf-$name.txt"
  fi
}
measure portcullis 18081 $(ls /proc/$gw/task)
ngx_worker=$(pgrep -P "${pids[1]}" nginx | head -1)
measure nginx 18082 "$ngx_worker"
