#!/usr/bin/env python3
"""BENCHMARKS.md and a PNG chart from peerbench's raw JSON (one to three passes).

Medians over rounds of proxy CPU microseconds per request (the stable figure on a noisy box),
req/s, p99 and peak RSS; ratios against nginx, HAProxy and Envoy of the same pass; and the SPEC
section 6 targets, each marked met or not.
"""
import argparse
import os
import json
import statistics
import sys

SCEN = ["plain", "tls", "apikey", "jwt-rs256", "jwt-es256"]


def medians(path):
    data = json.load(open(path))
    cells = {}
    for r in data["records"]:
        if r.get("error") or "cpu_us_per_req" not in r:
            continue
        cells.setdefault((r["peer"], r["scenario"]), []).append(r)
    out = {}
    for k, rs in cells.items():
        out[k] = {
            "cpu": statistics.median(x["cpu_us_per_req"] for x in rs),
            "rps": statistics.median(x["rps"] for x in rs),
            "p99": statistics.median(x.get("p99_ms", 0) for x in rs),
            "rss": max(x.get("rss_peak_mib", 0) for x in rs),
            # user / kernel split, recorded by peerbench since 2026-11-28
            "user": statistics.median(x["user_us_per_req"] for x in rs) if all("user_us_per_req" in x for x in rs) else None,
            "sys": statistics.median(x["sys_us_per_req"] for x in rs) if all("sys_us_per_req" in x for x in rs) else None,
            "n": len(rs),
        }
    return data.get("meta", {}), out


def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:.{nd}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pass1")
    ap.add_argument("pass2", nargs="?")
    ap.add_argument("--pass3", help="nginx against Portcullis with 1 000 000 API keys loaded")
    ap.add_argument("--md", required=True)
    ap.add_argument("--png")
    a = ap.parse_args()
    meta, m1 = medians(a.pass1)
    m2 = medians(a.pass2)[1] if a.pass2 else {}
    m3 = medians(a.pass3)[1] if a.pass3 else {}
    peers = ["portcullis", "nginx", "haproxy", "envoy"]
    get = lambda m, p, s, k: m.get((p, s), {}).get(k)
    lines = ["# Benchmarks", "",
             "Produced by `benches/load/run.sh` (peerbench: nginx, HAProxy, Envoy and Portcullis on one",
             "core each, one worker, wrk -t2 -c64 keep-alive, medians over rounds; see benches/load/).",
             "CPU µs/request is the proxy's own utime+stime per completed request. Compare only within",
             "one run: this machine is shared and noisy.", "",
             f"Run started {meta.get('started', '?')} on {meta.get('host', '?')}, "
             f"{meta.get('rounds', '?')} interleaved rounds of {meta.get('duration', '?')} s "
             f"(+{meta.get('warmup', '?')} s warm-up); pinning: {meta.get('pinning', '?')}.", "",
             "Versions: " + "; ".join(f"{k}: {v}" for k, v in meta.get("versions", {}).items()
                                      if k != "direct") + ".", "",
             "Crypto floor on the proxy core (`openssl speed`): " + ", ".join(
                 f"{k} {v:.1f}" for k, v in (meta.get("crypto_floor") or {}).items()) + ".", "",
             f"Raw results: `{os.path.relpath(a.pass1)}`" + (f"; pass 2 (cache off): `{os.path.relpath(a.pass2)}`" if a.pass2 else "")
             + (f"; pass 3 (1 000 000 keys): `{os.path.relpath(a.pass3)}`" if a.pass3 else "")
             + " (under target/, not committed).", "",
             "![proxy CPU µs per request](docs/bench.png)", "",
             "## CPU µs per request (median)", "",
             "| scenario | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers)]
    for s in SCEN:
        lines.append(f"| {s} | " + " | ".join(fmt(get(m1, p, s, "cpu")) for p in peers) + " |")
    if m2:
        for s in ["jwt-rs256", "jwt-es256"]:
            row = [fmt(get(m2, "portcullis-nocache", s, "cpu")), "-", fmt(get(m2, "haproxy", s, "cpu")), fmt(get(m2, "envoy", s, "cpu"))]
            lines.append(f"| {s} (cache off, pass 2) | " + " | ".join(row) + " |")
    if m3:
        lines.append("| plain (pass 3) | - | " + fmt(get(m3, "nginx", "plain", "cpu")) + " | - | - |")
        lines.append("| apikey, 1 000 000 keys (pass 3) | " + fmt(get(m3, "portcullis-1m", "apikey", "cpu"))
                     + " | " + fmt(get(m3, "nginx", "apikey", "cpu")) + " (1 000 keys) | - | - |")
    if any(get(m1, p, s, "user") is not None for p in peers for s in SCEN):
        lines += ["", "## The same CPU, user + kernel µs per request (median)", "",
                  "| scenario | " + " | ".join(peers) + " |", "|---|" + "---:|" * len(peers)]
        for s in SCEN:
            lines.append(f"| {s} | " + " | ".join(
                f"{fmt(get(m1, p, s, 'user'))} + {fmt(get(m1, p, s, 'sys'))}" if get(m1, p, s, "user") is not None else "n/a"
                for p in peers) + " |")
    lines += ["", "## req/s, p99 ms, peak RSS MiB (median)", "",
              "| scenario | peer | req/s | p99 ms | RSS MiB |", "|---|---|---:|---:|---:|"]
    for s in SCEN:
        for p in peers:
            if (p, s) in m1:
                c = m1[(p, s)]
                lines.append(f"| {s} | {p} | {c['rps']:.0f} | {c['p99']:.2f} | {c['rss']:.1f} |")
    for p in ["portcullis-1m", "nginx"]:
        if (p, "apikey") in m3:
            c = m3[(p, "apikey")]
            lines.append(f"| apikey (pass 3) | {p} | {c['rps']:.0f} | {c['p99']:.2f} | {c['rss']:.1f} |")
    # targets
    t = []
    def check(name, val, limit):
        if val is None or limit is None:
            t.append((name, "n/a", "n/a", "not measured"))
        else:
            t.append((name, f"{val:.2f}", f"{limit:.2f}", "met" if val <= limit else "NOT met"))
    ng_plain = get(m1, "nginx", "plain", "cpu")
    ng_tls = get(m1, "nginx", "tls", "cpu")
    pc = lambda s: get(m1, "portcullis", s, "cpu")
    check("plain CPU vs nginx plain", pc("plain"), ng_plain)
    check("tls CPU vs nginx tls", pc("tls"), ng_tls)
    check("apikey (1 000 keys) CPU vs nginx plain", pc("apikey"), ng_plain)
    check("jwt-rs256 cached CPU vs 1.1 x nginx plain", pc("jwt-rs256"), ng_plain and 1.1 * ng_plain)
    check("jwt-es256 cached CPU vs 1.1 x nginx plain", pc("jwt-es256"), ng_plain and 1.1 * ng_plain)
    if m2:
        for s in ["jwt-rs256", "jwt-es256"]:
            hp = get(m2, "haproxy", s, "cpu")
            check(f"{s} cache off CPU vs 0.9 x HAProxy", get(m2, "portcullis-nocache", s, "cpu"), hp and 0.9 * hp)
    if m3:
        check("apikey (1 000 000 keys) CPU vs nginx plain (pass 3)", get(m3, "portcullis-1m", "apikey", "cpu"),
              get(m3, "nginx", "plain", "cpu"))
        check("apikey (1 000 000 keys) p99 vs nginx apikey p99 (pass 3)", get(m3, "portcullis-1m", "apikey", "p99"),
              get(m3, "nginx", "apikey", "p99"))
        check("apikey (1 000 000 keys) peak RSS MiB under load vs 400", get(m3, "portcullis-1m", "apikey", "rss"), 400.0)
    check("plain peak RSS MiB under load vs 20 (idle is below it)", get(m1, "portcullis", "plain", "rss"), 20.0)
    for s in SCEN:
        ev = get(m1, "envoy", s, "cpu")
        check(f"{s} CPU vs 0.5 x Envoy", pc(s), ev and 0.5 * ev)
        check(f"{s} p99 vs nginx p99", get(m1, "portcullis", s, "p99"), get(m1, "nginx", s, "p99"))
    lines += ["", "## SPEC section 6 targets (this run)", "", "| target | Portcullis | limit | |", "|---|---:|---:|---|"]
    lines += [f"| {a_} | {b} | {c} | {d} |" for a_, b, c, d in t]
    # The profile notes (kept by hand beside this script) follow the measured tables.
    analysis = os.path.join(os.path.dirname(os.path.abspath(__file__)), "analysis.md")
    if os.path.exists(analysis):
        lines += ["", open(analysis, encoding="utf-8").read().rstrip()]
    open(a.md, "w").write("\n".join(lines) + "\n")
    if a.png:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            print("matplotlib missing: no chart", file=sys.stderr)
            return 0
        fig, ax = plt.subplots(figsize=(9, 4.5))
        w = 0.2
        for i, p in enumerate(peers):
            vals = [get(m1, p, s, "cpu") or 0 for s in SCEN]
            ax.bar([x + i * w for x in range(len(SCEN))], vals, w, label=p)
        ax.set_xticks([x + 1.5 * w for x in range(len(SCEN))])
        ax.set_xticklabels(SCEN)
        ax.set_ylabel("proxy CPU µs / request (lower is better)")
        ax.set_title("One core, one worker, medians (Portcullis: verified-token cache on)")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
