#!/usr/bin/env bash
# A/B of two Portcullis builds in one interleaved run, beside nginx: CPU per request of OLD and NEW
# on the same machine in the same rounds (the ratio NEW/OLD is what to read; each also against
# nginx).
#
#   benches/load/ab.sh OLD_BIN NEW_BIN [peerbench args, e.g. --rounds 3 --scenarios plain,tls]
#
# Both builds run through candidate.sh (the same rendered configs). Results go to
# target/peerbench/ (BENCH_HOME) like run.sh's; the Markdown table is printed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
old="$(realpath "${1:?OLD_BIN}")"; new="$(realpath "${2:?NEW_BIN}")"; shift 2
export BENCH_HOME="${BENCH_HOME:-$root/target/peerbench}"
mkdir -p "$BENCH_HOME/results"
export PORTCULLIS_BIN="$new"
export CANDIDATE_NAME=new CANDIDATE_CMD="exec bash $here/candidate.sh"
export CANDIDATE_VERSION_CMD="'$new' --version"
export CANDIDATE2_NAME=old CANDIDATE2_CMD="PORTCULLIS_BIN='$old' exec bash $here/candidate.sh"
export CANDIDATE2_VERSION_CMD="'$old' --version"
exec "$here/peers.sh" --peers nginx "$@"
