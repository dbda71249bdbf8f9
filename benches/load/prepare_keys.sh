#!/usr/bin/env bash
# Builds a SQLite key store holding N API keys (foreign-format secrets, subjects bulk-<i>), the
# way a user would: a gateway on a side port and `portcullis keys import` through its admin API,
# in chunks under the admin body limit. Used by run.sh's 1 000 000-key pass.
#
#   benches/load/prepare_keys.sh BIN OUT.db N
set -euo pipefail
BIN="$1" OUT="$2" N="$3"
work="$(mktemp -d)"
trap 'kill "${gw:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
token="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
token_sha="sha256:$(printf %s "$token" | sha256sum | cut -d' ' -f1)"
cat > "$work/gw.yaml" <<YAML
listeners: [{ name: side, bind: "127.0.0.1:24991" }]
admin: { bind: "127.0.0.1:24992", token_sha256: "$token_sha" }
store: { sqlite: "$work/keys.db" }
logging: { audit: off, level: warn }
upstreams: { e: { echo: true } }
routes: [{ name: all, match: { path_prefix: / }, upstream: e, auth: none }]
YAML
python3 - "$work" "$N" <<'PY'
import secrets, sys
work, n = sys.argv[1], int(sys.argv[2])
chunk = 200_000
for c in range(0, n, chunk):
    with open(f"{work}/keys-{c // chunk:03d}.txt", "w") as f:
        for i in range(c, min(n, c + chunk)):
            f.write(f"bulk_{secrets.token_urlsafe(24)} bulk-{i}\n")
PY
"$BIN" run -c "$work/gw.yaml" > "$work/gw.log" 2>&1 & gw=$!
for _ in $(seq 1 200); do
  curl -fsS --noproxy '*' -o /dev/null http://127.0.0.1:24992/readyz 2>/dev/null && break
  kill -0 "$gw" 2>/dev/null || { cat "$work/gw.log" >&2; exit 1; }
  sleep 0.1
done
t0=$(date +%s)
for f in "$work"/keys-*.txt; do
  PORTCULLIS_ADMIN_TOKEN="$token" "$BIN" keys import "$f" --admin http://127.0.0.1:24992 >&2
done
echo "imported $N keys in $(( $(date +%s) - t0 )) s" >&2
kill -TERM "$gw"; wait "$gw" || true; gw=
mv "$work/keys.db" "$OUT"
