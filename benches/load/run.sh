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
# Three passes: (1) every peer and scenario with Portcullis' verified-token cache on (its default;
# the load reuses one token); (2) HAProxy and Envoy against Portcullis with the cache off
# (`verify_cache: {max_entries: 0}`) for the JWT scenarios; (3) nginx against Portcullis with
# 1 000 000 API keys loaded (plain and apikey). Each comparison is within one pass.
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

# Pass 3: the apikey scenario with 1 000 000 more keys loaded, beside nginx (SPEC: "API key,
# 1 000 or 1 000 000 keys: at most nginx's plain figure"). The store is built once, through the
# admin API like any import, and copied for each round.
tmpl="$BENCH_HOME/keys-1m.db"
if [[ ! -s "$tmpl" ]]; then
  "$here/prepare_keys.sh" "$PORTCULLIS_BIN" "$tmpl" 1000000 >&2
fi
export CANDIDATE_NAME=portcullis-1m PORTCULLIS_BENCH_STORE_TEMPLATE="$tmpl"
unset PORTCULLIS_BENCH_VERIFY_CACHE
"$here/peers.sh" --no-install "${rounds[@]}" --peers nginx --scenarios plain,apikey \
  "$@" > "$BENCH_HOME/pass3.md"
pass3="$(ls -t "$BENCH_HOME"/results/run-*.json | head -1)"

python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib >&2 || true
python3 "$here/report.py" "$pass1" "$pass2" --pass3 "$pass3" --md "$root/BENCHMARKS.md" --png "$root/docs/bench.png"
echo "wrote $root/BENCHMARKS.md and $root/docs/bench.png (raw: $pass1, $pass2, $pass3)" >&2
