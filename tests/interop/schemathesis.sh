#!/usr/bin/env bash
# Property-based conformance run of a live Portcullis admin API against its own OpenAPI document.
#
#   tests/interop/schemathesis.sh BASE_URL TOKEN      e.g. http://127.0.0.1:9901 "$ADMIN_TOKEN"
#
# Fetches the schema from BASE_URL/openapi.json (served by the gateway), sends every request to
# BASE_URL only (no proxy, no redirects followed), with `Authorization: Bearer TOKEN` (passed through
# the environment and a generated schemathesis.toml, not on a command line), and runs the
# checks not_a_server_error, status_code_conformance, content_type_conformance and
# response_schema_conformance over every operation (positive and negative data, all phases).
# Bounded: ST_MAX_EXAMPLES test cases per operation and phase, and a hard wall-clock cap.
# Exit status: 0 when no check failed; schemathesis's own status (1) on failures or errors;
# 124 when the time cap was hit; 2 on bad usage, a missing schemathesis, or a token for which
# GET /admin/keys is not 200 (with a wrong token every /admin/* check would pass on 401s).
# The schema's own endpoint (GET /openapi.json) is skipped by schemathesis when loading from a URL.
#
# Needs schemathesis as pinned in requirements-schemathesis.txt (4.x command line).
# Environment knobs (all optional):
#   SCHEMATHESIS     the schemathesis executable          (default: schemathesis on PATH)
#   ST_MAX_EXAMPLES  test cases per operation per phase    (default: 25)
#   ST_TIME_CAP      hard cap on the whole run, seconds    (default: 600)
#   ST_SEED          hypothesis seed                       (default: 20250101)
#   ST_WORKERS       concurrent workers                    (default: 1, deterministic order)
#   ST_REPORT_DIR    keep the JUnit report here            (default: a temp dir, removed)
# The store is changed: keys are created, rotated, deleted and imported, revocations are added,
# and POST /admin/reload is called. Use a throwaway gateway with a throwaway store.
set -euo pipefail

usage() { echo "usage: $0 BASE_URL TOKEN   (BASE_URL like http://127.0.0.1:9901)" >&2; exit 2; }
[ "$#" -eq 2 ] || usage
base_url=${1%/}
token=$2
case "$base_url" in http://* | https://*) ;; *) usage ;; esac
[ -n "$token" ] || usage

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
st=${SCHEMATHESIS:-schemathesis}
max_examples=${ST_MAX_EXAMPLES:-25}
time_cap=${ST_TIME_CAP:-600}
seed=${ST_SEED:-20250101}
workers=${ST_WORKERS:-1}

if ! command -v "$st" >/dev/null 2>&1; then
    echo "schemathesis.sh: '$st' not found; pip install -r $here/requirements-schemathesis.txt" >&2
    exit 2
fi
pinned=$(sed -n 's/^schemathesis==\([^ ]*\).*/\1/p' "$here/requirements-schemathesis.txt")
have=$("$st" --version 2>/dev/null | sed -n 's/.*version \([^ ]*\).*/\1/p')
if [ -n "$pinned" ] && [ "$have" != "$pinned" ]; then
    echo "schemathesis.sh: warning: schemathesis $have found, $pinned pinned" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-st.XXXXXX")
trap 'rm -rf "$work"' EXIT
report_dir=${ST_REPORT_DIR:-$work/report}
mkdir -p "$report_dir"
junit="$report_dir/schemathesis-junit.xml"

# Config: the token (from the environment, so it is not on a command line); no persistent cache;
# /readyz may answer its documented 503 (not ready) without that counting as a server error.
# Running from $work keeps any stray schemathesis.toml and a .hypothesis directory out of the way.
cat >"$work/schemathesis.toml" <<'EOF'
[cache]
enabled = false

[headers]
Authorization = "Bearer ${PORTCULLIS_ST_TOKEN}"

[[operations]]
include-path = "/readyz"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]
EOF

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
cmd=(
    "$st" --config-file "$work/schemathesis.toml" --no-color run "$base_url/openapi.json"
    --url "$base_url"
    --checks "$checks"
    --max-examples "$max_examples"
    --seed "$seed"
    --workers "$workers"
    --generation-database none
    --max-redirects 0
    --request-timeout 10
    --wait-for-schema 30
    --report junit --report-junit-path "$junit"
)

# With a wrong token every /admin/* call would get its documented 401 and the run would pass.
# Waits up to 30 s for the gateway to accept connections.
status=$(
    env -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY -u http_proxy -u https_proxy -u all_proxy \
        PORTCULLIS_ST_TOKEN="$token" python3 - "$base_url" <<'EOF' || true
import os, sys, time, urllib.error, urllib.request
token = os.environ["PORTCULLIS_ST_TOKEN"]
req = urllib.request.Request(sys.argv[1] + "/admin/keys", headers={"Authorization": "Bearer " + token})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + 30  # the gateway may still be starting
while True:
    try:
        print(opener.open(req, timeout=10).status)
    except urllib.error.HTTPError as e:
        print(e.code)
    except Exception as e:
        if time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        print(f"unreachable ({e})")
    break
EOF
)
if [ "$status" != "200" ]; then
    echo "schemathesis.sh: GET $base_url/admin/keys with the token answered ${status:-nothing}, not 200" >&2
    exit 2
fi

echo "schemathesis.sh: schemathesis $have against $base_url (max-examples $max_examples, seed $seed, cap ${time_cap}s)"
start=$(date +%s)
set +e
(
    cd "$work"
    # Requests go to base_url only: no proxy from the environment.
    export NO_PROXY='*' no_proxy='*'
    unset HTTP_PROXY HTTPS_PROXY ALL_PROXY http_proxy https_proxy all_proxy
    export HYPOTHESIS_STORAGE_DIRECTORY="$work/hypothesis"
    export PORTCULLIS_ST_TOKEN="$token"
    exec timeout --kill-after=10 "$time_cap" "${cmd[@]}"
)
rc=$?
set -e
elapsed=$(($(date +%s) - start))

# Summary from the JUnit report: one test case per operation, plus one for the stateful phase.
summary=""
if [ -s "$junit" ]; then
    summary=$(python3 - "$junit" <<'EOF' || true
import sys
import xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
passed, failed, skipped, bad = 0, 0, 0, []
for case in cases:
    kinds = {child.tag for child in case}
    if kinds & {"failure", "error"}:
        failed += 1
        bad.append(case.get("name", "?"))
    elif "skipped" in kinds:
        skipped += 1
    else:
        passed += 1
for name in bad:
    print(f"  failed: {name}")
print(f"schemathesis: {passed} passed, {failed} failed, {skipped} skipped")
EOF
    )
fi
echo "----"
[ -n "$summary" ] && echo "$summary"
[ -n "${ST_REPORT_DIR:-}" ] && echo "schemathesis.sh: JUnit report kept: $junit"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "schemathesis.sh: FAILED: time cap of ${time_cap}s reached" >&2
    exit 124
elif [ "$rc" -ne 0 ]; then
    echo "schemathesis.sh: FAILED (schemathesis exit $rc) in ${elapsed}s"
else
    echo "schemathesis.sh: OK in ${elapsed}s"
fi
exit "$rc"
