#!/usr/bin/env python3
"""Latency of single queries through the local stack's HTTP route (make up first).

Warm: after a warm-up pass, every query's partitions are in the workers' caches.
Cold: `scripts/local-stack.sh restart` replaces every function process (new containers,
empty caches, manifest and segments read from S3), then one query is timed.
Prints p50/p99 (ms) and median work per query; stdlib only.
"""
import argparse, ast, json, statistics, struct, subprocess, sys, time, urllib.error, urllib.request


def read_npy(path):
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            sys.exit(f"{path}: not an .npy file")
        major = f.read(2)[0]
        hlen = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        if header["descr"] != "<f4" or header["fortran_order"]:
            sys.exit(f"{path}: expected C-order float32")
        rows, cols = header["shape"]
        data = struct.unpack(f"<{rows * cols}f", f.read(rows * cols * 4))
    return [list(data[r * cols:(r + 1) * cols]) for r in range(rows)]


def search(url, vector, filt):
    body = {"vector": vector, "k": 10}
    if filt is not None:
        body["filter"] = filt
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        answer = json.load(r)
    return (time.perf_counter() - t0) * 1000.0, answer["stats"]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def report(label, runs):
    ms = [m for m, _ in runs]
    med = lambda key: statistics.median(s[key] for _, s in runs)
    print(f"{label:>5}: n={len(ms):4d}  p50 {pct(ms, 50):7.2f} ms  p99 {pct(ms, 99):7.2f} ms  "
          f"(median: {med('invocations'):.0f} invocations, {med('cold_workers'):.0f} cold workers, "
          f"{med('gets'):.0f} GETs, {med('bytes_fetched') / 2**20:.1f} MiB fetched, "
          f"{med('partitions_searched'):.0f} partitions)")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--index", default="glove")
    ap.add_argument("--queries", default="data/glove/queries.npy")
    ap.add_argument("--filters", help="a filters-*.jsonl of the prepared workload (one per query)")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--warm", type=int, default=500)
    ap.add_argument("--cold", type=int, default=15)
    a = ap.parse_args()
    url = f"http://127.0.0.1:{a.port}/lambda-url/squash-coordinator/v1/indexes/{a.index}/search"
    queries = read_npy(a.queries)
    filters = [None] * len(queries)
    if a.filters:
        filters = [json.loads(line) for line in open(a.filters)]
    cold = []
    for i in range(a.cold):
        subprocess.run(["scripts/local-stack.sh", "restart"], check=True, stdout=subprocess.DEVNULL)
        cold.append(search(url, queries[i], filters[i]))
    for i in range(a.warmup):
        search(url, queries[i % len(queries)], filters[i % len(queries)])
    warm = [search(url, queries[i % len(queries)], filters[i % len(queries)]) for i in range(a.warm)]
    report("cold", cold)
    report("warm", warm)


if __name__ == "__main__":
    main()
