#!/usr/bin/env python3
"""Per-request costs from a callgrind dump (benches/load/callgrind/cg.sh writes one).

  cgtool.py self    DUMP REQUESTS            self cost per request, top 45 functions
  cgtool.py callees DUMP REQUESTS FUNCTION   inclusive cost of each call FUNCTION makes
  cgtool.py callers DUMP REQUESTS SUBSTRING  inclusive cost of calls into SUBSTRING, by caller
"""
import collections
import re
import sys


def read(path):
    """Yields ('self', fn, cost) and ('call', fn, callee, inclusive cost) from a callgrind file."""
    names = {}

    def name(tok):
        m = re.match(r"\((\d+)\)(?: (.*))?", tok)
        if not m:
            return tok
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), tok)

    cur = callee = None
    after_calls = False
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("fn="):
            cur = name(line[3:])
        elif line.startswith("cfn="):
            callee = name(line[4:])
        elif line.startswith(("cfi=", "cfl=")):
            pass
        elif line.startswith("calls="):
            after_calls = True
        elif line and (line[0].isdigit() or line[0] in "+-*"):
            parts = line.split()
            if len(parts) < 2 or not cur:
                after_calls = False
                continue
            cost = int(parts[1])
            yield ("call", cur, callee, cost) if after_calls else ("self", cur, cost)
            after_calls = False


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    mode, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    by = collections.Counter()
    for rec in read(path):
        if mode == "self" and rec[0] == "self":
            by[rec[1]] += rec[2]
        elif mode == "callees" and rec[0] == "call" and rec[1] == arg:
            by[rec[2]] += rec[3]
        elif mode == "callers" and rec[0] == "call" and arg in (rec[2] or ""):
            by[rec[1]] += rec[3]
    if mode == "self":
        print(f"total {sum(by.values())} per request {sum(by.values()) / n:.0f}")
    for k, v in by.most_common(45 if mode == "self" else 25):
        print(f"{v / n:8.0f} {k[:170]}")


if __name__ == "__main__":
    main()
