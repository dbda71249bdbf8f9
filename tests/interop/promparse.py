"""Parses a Prometheus text exposition (stdin) with the Prometheus project's own Python client
parser, and fails on what that parser tolerates but the format forbids: a family split in two
(its samples not together), a family without a TYPE, a sample value that is not a number.
Prints the family count, or every problem and exits 1. Used by tests/common (check_exposition).
"""

import math
import sys

from prometheus_client.parser import text_string_to_metric_families

text = sys.stdin.read()
problems = []
seen = set()
count = 0
try:
    for fam in text_string_to_metric_families(text):
        count += 1
        if fam.name in seen:
            problems.append(f"family {fam.name} is split: its samples are not together")
        seen.add(fam.name)
        if fam.type == "unknown":
            problems.append(f"family {fam.name} has no # TYPE")
        for s in fam.samples:
            if not isinstance(s.value, (int, float)) or (math.isnan(s.value) and "NaN" not in text):
                problems.append(f"{s.name}{s.labels}: bad value {s.value!r}")
except Exception as e:  # the parser's own refusal
    problems.append(f"prometheus_client refused the text: {e}")
if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{count} families")
