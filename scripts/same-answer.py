#!/usr/bin/env python3
"""same-answer.py A B: exit 0 when two function replies (JSON) hold the same hits.

Used by lambda-smoke.sh to compare the arm64 build (under qemu) with the native one:
ids and attributes (every field but the distance) must be equal and distances equal to 1e-4 relative (the two builds
use different SIMD kernels); stats (timings, cache counters) are ignored. A reply with
an "error" never matches.
"""
import json
import math
import sys


def hits(reply):
    """The hit list of a coordinator or worker reply, as a one-element list."""
    if "error" in reply:
        raise SystemExit(f"error reply: {json.dumps(reply)[:300]}")
    if "hits" not in reply:
        raise SystemExit(f"no hits in reply: {json.dumps(reply)[:300]}")
    return [reply["hits"]]


def same(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if len(x) != len(y):
            return False
        for p, q in zip(x, y):
            rest = lambda h: {k: v for k, v in h.items() if k != "distance"}
            if rest(p) != rest(q):
                return False
            dp, dq = float(p.get("distance", 0)), float(q.get("distance", 0))
            if not math.isclose(dp, dq, rel_tol=1e-4, abs_tol=1e-6):
                return False
    return True


a, b = (hits(json.loads(s)) for s in sys.argv[1:3])
if not any(a):
    raise SystemExit("both replies are empty")
sys.exit(0 if same(a, b) else 1)
