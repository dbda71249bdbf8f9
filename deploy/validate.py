"""Structural checks of deploy/ that no off-the-shelf validator makes: the files agree with each
other and with the gateway's source. Run by deploy/validate.sh (which installs PyYAML and
`dockerfile`); each subcommand prints what it checked, or every problem it found and exits 1.

    python3 deploy/validate.py dockerfile|config|k8s-policy|dashboard|prometheus [args]
"""

import fnmatch
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")

# Top-level keys of RawConfig (src/config/raw.rs) and the store keys of cluster mode.
CONFIG_KEYS = {"listeners", "limits", "logging", "trusted_proxies", "upstreams", "authenticators",
               "rate_limits", "scopes", "admin", "store", "routes", "workers", "oauth_server",
               "identity_providers"}
STORE_KEYS = {"sqlite", "postgres", "redis", "redis_ca", "on_redis_error", "redis_timeout", "resync"}
ON_REDIS_ERROR = {"local", "deny", "allow"}

# Labels of each metric, from src/telemetry/{metrics,process}.rs and src/admin/status.rs.
METRIC_LABELS = {
    "portcullis_build_info": {"version"},
    "portcullis_requests_total": {"route", "status"},
    "portcullis_request_duration_seconds_bucket": {"route", "le"},
    "portcullis_request_duration_seconds_sum": {"route"},
    "portcullis_request_duration_seconds_count": {"route"},
    "portcullis_upstream_duration_seconds_bucket": {"route", "le"},
    "portcullis_upstream_duration_seconds_sum": {"route"},
    "portcullis_upstream_duration_seconds_count": {"route"},
    "portcullis_auth_decisions_total": {"authenticator", "decision", "reason"},
    "portcullis_upstream_errors_total": {"route", "kind"},
    "portcullis_rate_limited_total": {"route"},
    "portcullis_open_connections": {"listener"},
    "portcullis_connections_total": {"listener"},
    "portcullis_tls_handshake_failures_total": {"listener", "reason"},
    "portcullis_config_reloads_total": {"result"},
    "portcullis_config_last_reload_success_timestamp_seconds": set(),
    "portcullis_jwks_refreshes_total": {"source", "result"},
    "portcullis_api_keys_active": set(),
    "portcullis_audit_dropped_total": set(),
    "portcullis_store_up": {"backend"},
    "portcullis_redis_fallback_total": set(),
    "portcullis_keys_loaded": set(),
    "portcullis_store_changes_applied": set(),
    "portcullis_upstream_target_requests_total": {"upstream", "target"},
    "portcullis_upstream_target_failures_total": {"upstream", "target"},
    "portcullis_upstream_target_ejections_total": {"upstream", "target"},
    "portcullis_upstream_target_healthy": {"upstream", "target"},
    "portcullis_upstream_target_in_flight": {"upstream", "target"},
    "portcullis_upstream_health_checks_total": {"upstream", "target", "result"},
    "portcullis_upstream_retries_total": {"upstream"},
    "process_cpu_seconds_total": set(),
    "process_resident_memory_bytes": set(),
    "process_virtual_memory_bytes": set(),
    "process_open_fds": set(),
    "process_max_fds": set(),
    "process_start_time_seconds": set(),
    "up": set(),
}
PLANNED: set[str] = set()  # metrics a panel shows before src/ exports them
TARGET_LABELS = {"job", "instance", "replica"}  # added by Prometheus / deploy/prometheus.yml


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def finish(name, problems, summary):
    if problems:
        for p in problems:
            print(f"{name}: {p}")
        sys.exit(1)
    print(summary)


# --------------------------------------------------------------------------------------------
def dockerignore_excludes(patterns, path):
    """moby's rule: the last pattern matching the path or one of its parent folders wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.strip("/")
        if any(fnmatch.fnmatchcase(c, p) for c in candidates):
            excluded = not neg
    return excluded


def check_dockerfile():
    import dockerfile

    cmds = dockerfile.parse_file(os.path.join(DEPLOY, "Dockerfile"))
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        ignore = [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    problems, args, stages = [], {}, []
    for c in cmds:
        if c.cmd == "ARG" and "=" in c.value[0]:
            k, v = c.value[0].split("=", 1)
            args[k] = v
        elif c.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), c.value[0])
            stages.append({"image": image, "user": None, "cmds": []})
            if "$" in image:
                problems.append(f"FROM {c.value[0]}: no default for the build argument")
            elif "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1]
                                              or image.endswith(":latest")):
                problems.append(f"FROM {image}: pin a tag or digest")
        else:
            stages[-1]["cmds"].append(c)
            if c.cmd == "USER":
                stages[-1]["user"] = c.value[0]
            if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from=") for f in c.flags):
                for src in c.value[:-1]:
                    if not os.path.exists(os.path.join(ROOT, src)):
                        problems.append(f"{c.cmd} {src}: not in the build context (repo root)")
                    elif dockerignore_excludes(ignore, src):
                        problems.append(f"{c.cmd} {src}: excluded by .dockerignore")
    final = stages[-1]
    user = (final["user"] or "").split(":")[0]
    if not user.isdigit() or user == "0":
        problems.append(f"final stage USER {final['user']!r}: want a numeric non-root uid")
    for want in ("ENTRYPOINT", "CMD"):
        found = [c for c in final["cmds"] if c.cmd == want]
        if not found:
            problems.append(f"final stage has no {want}")
        elif not found[-1].json:
            problems.append(f"{want} must be exec form (JSON): there is no shell in the image")
    if not any(c.cmd == "EXPOSE" for c in final["cmds"]):
        problems.append("final stage has no EXPOSE")
    for secret in ("target", ".git", "data", "certs/server.key", "deploy/.env"):
        if not dockerignore_excludes(ignore, secret):
            problems.append(f".dockerignore lets {secret} into the build context")
    finish("Dockerfile", problems,
           f"{len(stages)} stages ({', '.join(s['image'] for s in stages)}), final USER "
           f"{final['user']}, COPY sources present and not ignored")


# --------------------------------------------------------------------------------------------
def env_refs(value):
    """The ${VAR}s a config value reads (`$${` is a literal)."""
    if isinstance(value, dict):
        return set().union(*(env_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(env_refs(v) for v in value))
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", str(value)))


def check_config(compose_json):
    path = os.path.join(DEPLOY, "gateway.cluster.yaml")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(os.path.join(DEPLOY, "k8s", "gateway.yaml"), encoding="utf-8") as f:
        copy = f.read()
    cfg = yaml.safe_load(text)
    problems = []
    if copy != text:
        problems.append("deploy/k8s/gateway.yaml differs from deploy/gateway.cluster.yaml "
                        "(cp deploy/gateway.cluster.yaml deploy/k8s/gateway.yaml)")
    problems += [f"unknown top-level key {k}" for k in set(cfg) - CONFIG_KEYS]
    store = cfg.get("store") or {}
    problems += [f"unknown store key {k}" for k in set(store) - STORE_KEYS]
    if not {"postgres", "redis"} <= set(store) or "sqlite" in store:
        problems.append("store: cluster mode wants postgres and redis, and no sqlite")
    if store.get("on_redis_error") not in ON_REDIS_ERROR:
        problems.append(f"store.on_redis_error: one of {sorted(ON_REDIS_ERROR)}")
    ups, auths, limits = (set(cfg.get(k) or {}) for k in ("upstreams", "authenticators", "rate_limits"))
    for r in cfg.get("routes") or []:
        if r.get("upstream") not in ups:
            problems.append(f"route {r.get('name')}: unknown upstream {r.get('upstream')}")
        auth = r.get("auth")
        if isinstance(auth, dict):
            problems += [f"route {r['name']}: unknown authenticator {a}"
                         for a in auth.get("any_of", []) if a not in auths]
            if "rate_limit" in auth and auth["rate_limit"] not in limits:
                problems.append(f"route {r['name']}: unknown rate limit {auth['rate_limit']}")
    admin_port = str(cfg["admin"]["bind"]).rsplit(":", 1)[1]
    listener_ports = {str(l["bind"]).rsplit(":", 1)[1] for l in cfg["listeners"]}
    needed = env_refs(cfg)

    # compose: every replica gets every variable the config reads, and publishes its ports.
    compose = load_json(compose_json)
    gateways = {n: s for n, s in compose["services"].items() if n.startswith("gateway-")}
    if len(gateways) < 2:
        problems.append("compose: fewer than two gateway replicas")
    for name, svc in gateways.items():
        missing = needed - set(svc.get("environment") or {})
        if missing:
            problems.append(f"compose {name}: no value for {sorted(missing)}")
        mounts = {v["target"]: v for v in svc.get("volumes", [])}
        cm = mounts.get("/etc/portcullis/gateway.yaml")
        if not cm or not cm.get("read_only") or not cm["source"].endswith("gateway.cluster.yaml"):
            problems.append(f"compose {name}: gateway.cluster.yaml not mounted read-only")
        targets = {str(p["target"]) for p in svc.get("ports", [])}
        if not (listener_ports | {admin_port}) <= targets:
            problems.append(f"compose {name}: publishes {sorted(targets)}, config listens on "
                            f"{sorted(listener_ports | {admin_port})}")
        if not svc.get("read_only") or "ALL" not in svc.get("cap_drop", []):
            problems.append(f"compose {name}: want read_only and cap_drop [ALL]")

    # Kubernetes: the container's env covers the config's variables too.
    dep = next(d for d in load_all(os.path.join(DEPLOY, "k8s", "deployment.yaml"))
               if d["kind"] == "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    missing = needed - {e["name"] for e in c.get("env", [])}
    if missing:
        problems.append(f"k8s deployment: no env for {sorted(missing)}")
    ports = {str(p["containerPort"]) for p in c["ports"]}
    if not (listener_ports | {admin_port}) <= ports:
        problems.append(f"k8s deployment: containerPorts {sorted(ports)} miss the config's")
    finish("config", problems,
           f"k8s copy identical; keys, route references ok; variables {sorted(needed)} set by "
           f"compose ({', '.join(sorted(gateways))}) and the Deployment")


# --------------------------------------------------------------------------------------------
def seconds(duration):
    """The config's durations (`0`, `500ms`, `30s`, `15m`, `24h`, `90d`), in seconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)?", str(duration))
    if not m:
        raise ValueError(f"not a duration: {duration}")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]
    return int(m.group(1)) * unit


def check_k8s_policy(rendered):
    docs = load_all(rendered)
    kinds = {d["kind"] for d in docs}
    problems = [f"missing {k}" for k in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
                                         "HorizontalPodAutoscaler") if k not in kinds]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if dep["spec"].get("replicas", 1) < 2:
        problems.append("Deployment: fewer than 2 replicas")
    if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod securityContext: want runAsNonRoot and seccomp RuntimeDefault")
    cfg = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["gateway.yaml"])
    shutdown = seconds(cfg.get("limits", {}).get("shutdown_timeout", "30s"))
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if not (sc.get("readOnlyRootFilesystem") and sc.get("allowPrivilegeEscalation") is False
                and sc.get("capabilities", {}).get("drop") == ["ALL"]):
            problems.append(f"container {c['name']}: want readOnlyRootFilesystem, no privilege "
                            "escalation, capabilities drop [ALL]")
        if not (c.get("resources", {}).get("requests") and c["resources"].get("limits", {}).get("memory")):
            problems.append(f"container {c['name']}: want resource requests and a memory limit")
        probes = {k: c.get(k, {}).get("httpGet", {}).get("path")
                  for k in ("livenessProbe", "readinessProbe")}
        if probes != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
            problems.append(f"container {c['name']}: probes {probes}")
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if grace <= pre + shutdown:
            problems.append(f"terminationGracePeriodSeconds {grace} <= preStop {pre}s + "
                            f"shutdown_timeout {shutdown}s: drains would be SIGKILLed")
    hpa = next((d for d in docs if d["kind"] == "HorizontalPodAutoscaler"), None)
    if hpa and hpa["spec"].get("minReplicas", 1) < 2:
        problems.append("HPA: minReplicas below 2")
    if any(d["kind"] == "Secret" for d in docs):
        problems.append("a Secret is rendered: placeholders must not be applied")
    finish("k8s-policy", problems,
           f"{len(docs)} resources; non-root, read-only root, no capabilities, seccomp, probes, "
           f"grace {pod.get('terminationGracePeriodSeconds')}s > preStop + shutdown_timeout")


# --------------------------------------------------------------------------------------------
def check_dashboard():
    dash = load_json(os.path.join(DEPLOY, "grafana", "portcullis-dashboard.json"))
    # What the gateway exports: the `# TYPE` lines it writes, or the (name, type) pairs it hands
    # to its family writer (a histogram is three series); the process_* names it writes.
    exported = set()
    for dirpath, _, files in os.walk(os.path.join(ROOT, "src")):
        for fn in (f for f in files if f.endswith(".rs")):
            with open(os.path.join(dirpath, fn), encoding="utf-8") as f:
                text = f.read()
            pairs = re.findall(r"# TYPE (portcullis_\w+) (\w+)", text)
            pairs += re.findall(r'"(portcullis_\w+)",\s*"(counter|gauge|histogram)"', text)
            pairs += re.findall(r'"(process_\w+)",\s*"(counter|gauge)"', text)
            for name, kind in pairs:
                exported |= ({name + s for s in ("_bucket", "_sum", "_count")}
                             if kind == "histogram" else {name})
    known = {m for m in METRIC_LABELS if m != "up"}
    problems = [f"{m} is listed here but src/ does not export it" for m in sorted(known - exported - PLANNED)]
    problems += [f"src/ exports {m}: add it to METRIC_LABELS and a panel" for m in sorted(exported - known)]
    ids, used, exprs = set(), set(), 0
    if not isinstance(dash.get("schemaVersion"), int):
        problems.append("no schemaVersion")
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in dash.get("templating", {}).get("list", [])):
        problems.append("no Prometheus data source variable")
    for p in dash["panels"]:
        if p["id"] in ids:
            problems.append(f"duplicate panel id {p['id']}")
        ids.add(p["id"])
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {p['title']!r}: data source is not ${{datasource}}")
        for t in p.get("targets", []):
            expr = t["expr"]
            exprs += 1
            names = set(re.findall(r"\b(portcullis_[a-z0-9_]+|process_[a-z_]+|up)\b(?=\s*[{\[)])", expr))
            if not names:
                problems.append(f"panel {p['title']!r}: no known metric in {expr}")
            for n in names - set(METRIC_LABELS):
                problems.append(f"panel {p['title']!r}: unknown metric {n}")
            used |= names
            allowed = TARGET_LABELS.union(*(METRIC_LABELS.get(n, set()) for n in names))
            for grp in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
                for label in (x.strip() for x in grp.split(",") if x.strip()):
                    if label not in allowed:
                        problems.append(f"panel {p['title']!r}: label {label} is on none of "
                                        f"{sorted(names)}")
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
                if label not in allowed:
                    problems.append(f"panel {p['title']!r}: legend label {label} is on none of "
                                    f"{sorted(names)}")
    missing = {m for m in METRIC_LABELS if not m.endswith(("_sum", "_count"))} - used
    problems += [f"no panel shows {m}" for m in sorted(missing)]
    pending = sorted(PLANNED - exported)
    finish("dashboard", problems,
           f"{sum(p['type'] != 'row' for p in dash['panels'])} panels, {exprs} queries over "
           f"{len(used)} metrics, labels match"
           + (f"; not exported by src/ yet (cluster mode): {', '.join(pending)}" if pending else ""))


# --------------------------------------------------------------------------------------------
def check_prometheus(compose_json):
    prom = load_yaml(os.path.join(DEPLOY, "prometheus.yml"))
    compose = load_json(compose_json)
    cfg = load_yaml(os.path.join(DEPLOY, "gateway.cluster.yaml"))
    admin_port = str(cfg["admin"]["bind"]).rsplit(":", 1)[1]
    problems = []
    job = next((j for j in prom["scrape_configs"] if j["job_name"] == "portcullis"), None)
    if not job:
        finish("prometheus", ["no portcullis job"], "")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    gateways = {n for n in compose["services"] if n.startswith("gateway-")}
    hosts = {t.rsplit(":", 1)[0] for t in targets}
    if hosts != gateways:
        problems.append(f"targets {sorted(hosts)} are not the compose gateways {sorted(gateways)}")
    problems += [f"target {t}: the admin port is {admin_port}" for t in targets
                 if t.rsplit(":", 1)[1] != admin_port]
    allowed = set(cfg["admin"].get("hosts", []))
    problems += [f"target {t}: {h} is not in admin.hosts (the admin API would answer 421)"
                 for t in targets for h in [t.rsplit(":", 1)[0]] if h not in allowed]
    cred = job.get("authorization", {}).get("credentials_file", "")
    svc = compose["services"]["prometheus"]
    # compose's rendered form always carries the absolute target.
    mounted = {s["target"] for s in svc.get("secrets", [])}
    if cred not in mounted:
        problems.append(f"credentials_file {cred} is not a secret compose mounts ({sorted(mounted)})")
    finish("prometheus", problems,
           f"job portcullis scrapes {', '.join(sorted(targets))} with the admin token from {cred}")


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {
        "dockerfile": check_dockerfile,
        "config": check_config,
        "k8s-policy": check_k8s_policy,
        "dashboard": check_dashboard,
        "prometheus": check_prometheus,
    }[cmd](*rest)
