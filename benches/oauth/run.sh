#!/usr/bin/env bash
# run.sh - client_credentials token throughput and CPU per token on ONE core:
# npm oidc-provider 8.8.1 beside the Portcullis gateway's OAuth server (when PORTCULLIS_BIN is set
# and has `clients create`). See README.md.
#
#   benches/oauth/run.sh                          3 rounds x 10 s (+3 s warm-up), ES256 and RS256
#   benches/oauth/run.sh --quick                  smoke: 1 round x 3 s
#   benches/oauth/run.sh --rounds 5 --duration 15 --algs ES256
#   PORTCULLIS_BIN=target/release/portcullis benches/oauth/run.sh
#   benches/oauth/run.sh --help                   every option (bench.py)
#
# Raw results: target/oauthbench/run-<stamp>.json and .md; the last run's server logs and
# configs: target/oauthbench/work/. All traffic on 127.0.0.1; every process it starts is stopped
# again (process group), also on Ctrl-C and errors.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if ! command -v wrk >/dev/null 2>&1 && [[ " $* " != *" --no-install "* ]] && command -v apt-get >/dev/null 2>&1; then
  echo "run.sh: installing wrk (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
fi
for tool in python3 node wrk openssl taskset; do
  command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: $tool not found on PATH" >&2; exit 2; }
done
if [[ -n "${PORTCULLIS_BIN:-}" && "$PORTCULLIS_BIN" != /* ]]; then
  # relative to where run.sh was called from; bench.py starts it from other directories
  PORTCULLIS_BIN="$(cd "$(dirname "$PORTCULLIS_BIN")" && pwd)/$(basename "$PORTCULLIS_BIN")"
  export PORTCULLIS_BIN
fi
mkdir -p "$root/target/oauthbench"

# bench.py handles SIGINT/SIGTERM itself (stops its process groups); exec so that the signal
# reaches it directly.
exec python3 "$here/bench.py" "$@"
