#!/usr/bin/env python3
"""Bounded load test of the local stack (`make load`, or `make up` first, then this).

N concurrent clients send GloVe queries (with and without filters) to the coordinator's
HTTP route for T seconds, through the real binaries under cargo-lambda's emulator and a
real local S3 server. Reports throughput, p50/p99 latency and errors, and the resident
memory of every function process after the warm-up and at the end. Fails (exit 1) on
any error, any answer without k hits, or memory growth beyond --max-growth-mb in any
process (with a small SQUASH_CACHE_BYTES, as `make load` sets, the workers' caches
evict all the time, so growth would show a leak or a cache over its budget).
Stdlib only.
"""
import argparse
import importlib.util
import json
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("http_latency", HERE / "http-latency.py")
http_latency = importlib.util.module_from_spec(spec)
spec.loader.exec_module(http_latency)


def rss_mb(pid):
    """Resident memory of a process in MiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def function_pids(stack_dir):
    pids = {}
    for f in sorted(Path(stack_dir).glob("*.pid")):
        name = f.stem
        if name == "coordinator" or name.startswith("worker-"):
            pids[name] = int(f.read_text().strip())
    return pids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--index", default="glove")
    ap.add_argument("--queries", default="data/glove/queries.npy")
    ap.add_argument("--filters", default="data/glove/filters-8.jsonl",
                    help="filters for every other query (a filters-*.jsonl of the prepared workload)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--stack-dir", default=os.environ.get("STACK_DIR", "target/local-stack"))
    ap.add_argument("--max-growth-mb", type=float, default=48.0)
    a = ap.parse_args()

    url = f"http://127.0.0.1:{a.port}/lambda-url/squash-coordinator/v1/indexes/{a.index}/search"
    queries = http_latency.read_npy(a.queries)
    filters = [None] * len(queries)
    if a.filters and Path(a.filters).exists():
        with open(a.filters) as f:
            filters = [json.loads(line) for line in f]
    bodies = []
    for i, q in enumerate(queries):
        body = {"vector": q, "k": a.k}
        if i % 2 == 1 and i < len(filters) and filters[i] is not None:
            body["filter"] = filters[i]
        bodies.append(json.dumps(body).encode())

    def one(body):
        req = urllib.request.Request(url, body, {"content-type": "application/json"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = json.load(r)
                status = r.status
        except urllib.error.HTTPError as e:
            return (time.perf_counter() - t0) * 1000.0, f"HTTP {e.code}: {e.read()[:200]!r}"
        except (urllib.error.URLError, OSError, ValueError) as e:
            return (time.perf_counter() - t0) * 1000.0, f"{type(e).__name__}: {e}"
        ms = (time.perf_counter() - t0) * 1000.0
        if status != 200 or len(answer.get("hits", [])) == 0 or answer.get("partial"):
            return ms, f"HTTP {status}, {len(answer.get('hits', []))} hits, partial={answer.get('partial')}"
        return ms, None

    for body in bodies[: a.warmup]:
        _, err = one(body)
        if err:
            sys.exit(f"load-test: warm-up query failed: {err}")
    pids = function_pids(a.stack_dir)
    if not pids:
        sys.exit(f"load-test: no function processes in {a.stack_dir} (make up first)")
    before = {n: rss_mb(p) for n, p in pids.items()}

    lock = threading.Lock()
    latencies, errors = [], []
    deadline = time.perf_counter() + a.seconds

    def client(seed):
        rng = random.Random(seed)
        mine, bad = [], []
        while time.perf_counter() < deadline:
            ms, err = one(bodies[rng.randrange(len(bodies))])
            (bad if err else mine).append(err or ms)
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(s,)) for s in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = {n: rss_mb(p) for n, p in pids.items()}

    n = len(latencies) + len(errors)
    print(f"load-test: {a.clients} clients x {a.seconds:.0f} s against {url}")
    if latencies:
        print(f"  {n} queries, {n / wall:.1f} queries/s, p50 {http_latency.pct(latencies, 50):.2f} ms, "
              f"p99 {http_latency.pct(latencies, 99):.2f} ms, {len(errors)} errors")
    failed = False
    if errors or not latencies:
        failed = True
        for e in errors[:5]:
            print(f"  error: {e}")
    growth = 0.0
    for name in pids:
        b, e = before[name], after[name]
        if b is None or e is None:
            print(f"  {name}: process gone during the run")
            failed = True
            continue
        growth = max(growth, e - b)
        print(f"  {name}: RSS {b:.1f} -> {e:.1f} MiB ({e - b:+.1f})")
    if growth > a.max_growth_mb:
        print(f"  memory grew by {growth:.1f} MiB in one process (limit {a.max_growth_mb} MiB)")
        failed = True
    print("load-test:", "FAIL" if failed else "pass (0 errors, memory bounded)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
