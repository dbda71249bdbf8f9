#!/usr/bin/env bash
# One Portcullis build in two configurations, interleaved in the same rounds beside nginx: the
# CPU per request of A over B is what to read (both rendered by candidate.sh; its knobs pick the
# configuration).
#
#   benches/load/variants.sh BIN "A_KNOBS" "B_KNOBS" [peerbench args]
#
#   # three round-robin targets against one (issue 16's "costs no more than one target"):
#   benches/load/variants.sh target/release/portcullis PORTCULLIS_BENCH_TARGETS=3 \
#     PORTCULLIS_BENCH_TARGETS=1 --rounds 5 --scenarios plain
#   # the signed identity assertion against none:
#   benches/load/variants.sh target/release/portcullis PORTCULLIS_BENCH_ASSERTION=1 "" \
#     --rounds 5 --scenarios apikey
#
# A is the `new` column, B the `old` one. Results go to target/peerbench/ like run.sh's.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$(realpath "${1:?BIN}")"; a="${2?A_KNOBS}"; b="${3?B_KNOBS}"; shift 3
export BENCH_HOME="${BENCH_HOME:-$root/target/peerbench}"
mkdir -p "$BENCH_HOME/results"
export PORTCULLIS_BIN="$bin"
export CANDIDATE_NAME=new CANDIDATE_CMD="$a exec bash $here/candidate.sh"
export CANDIDATE_VERSION_CMD="echo '$(basename "$bin") $a'"
export CANDIDATE2_NAME=old CANDIDATE2_CMD="$b exec bash $here/candidate.sh"
export CANDIDATE2_VERSION_CMD="echo '$(basename "$bin") ${b:-(defaults)}'"
exec "$here/peers.sh" --peers nginx "$@"
