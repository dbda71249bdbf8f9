#!/usr/bin/env bash
# The load benchmark: Portcullis beside nginx, HAProxy and Envoy on this machine, in one
# interleaved run (peerbench.py, copied from the team's harness), then BENCHMARKS.md and
# docs/bench.png from the raw results.
#
#   benches/load/run.sh                   5 rounds x 10 s, all scenarios (about 40 min)
#   benches/load/run.sh --rounds 3        fewer rounds
#   benches/load/run.sh --quick           smoke: 1 round x 3 s
#   benches/load/run.sh --no-install ...  never apt-get / pip
#
# Two passes: (1) every peer and scenario with Portcullis' verified-token cache on (its default;
# the load reuses one token); (2) HAProxy and Envoy against Portcullis with the cache off
# (`verify_cache: {max_entries: 0}`) for the JWT scenarios. Each comparison is within one pass.
# Scratch files, fixtures and raw results go to target/peerbench/ (BENCH_HOME).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
rounds=()
[[ " $* " == *" --rounds "* || " $* " == *" --quick "* ]] || rounds=(--rounds 5)

cargo build --release --manifest-path "$root/Cargo.toml" >&2
export PORTCULLIS_BIN="$root/target/release/portcullis"
export BENCH_HOME="${BENCH_HOME:-$root/target/peerbench}"
mkdir -p "$BENCH_HOME/results"
export CANDIDATE_CMD="exec bash $here/candidate.sh"
export CANDIDATE_VERSION_CMD="$PORTCULLIS_BIN --version"

export CANDIDATE_NAME=portcullis
"$here/peers.sh" "${rounds[@]}" "$@" > "$BENCH_HOME/pass1.md"
pass1="$(ls -t "$BENCH_HOME"/results/run-*.json | head -1)"

export CANDIDATE_NAME=portcullis-nocache PORTCULLIS_BENCH_VERIFY_CACHE=0
"$here/peers.sh" --no-install "${rounds[@]}" --peers haproxy,envoy --scenarios jwt-rs256,jwt-es256 \
  "$@" > "$BENCH_HOME/pass2.md"
pass2="$(ls -t "$BENCH_HOME"/results/run-*.json | head -1)"

python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib >&2 || true
python3 "$here/report.py" "$pass1" "$pass2" --md "$root/BENCHMARKS.md" --png "$root/docs/bench.png"
echo "wrote $root/BENCHMARKS.md and $root/docs/bench.png (raw: $pass1, $pass2)" >&2
