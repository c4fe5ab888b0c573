#!/usr/bin/env python3
"""Latency of queries through the local stack's HTTP route (make up first).

Single queries on `POST .../search`, and batches on `POST .../search/batch` (--batches,
e.g. 16,100), on the coordinator's own plan or a forced one (--plans auto,local,fanout).
Warm: after a warm-up pass, every query's segments are in the caches. Cold:
`scripts/local-stack.sh restart` replaces every function process (new containers, empty
caches, manifest and segments read from S3), then one query is timed. Prints p50/p99
(ms), median work per request, and queries per second per core: queries answered per
CPU-second the function processes used (from /proc), so a machine's other load does not
count. Standard library only.
"""
import argparse, ast, json, os, statistics, struct, subprocess, sys, time, urllib.error, urllib.request

STACK_DIR = os.environ.get("STACK_DIR", "target/local-stack")


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


def cpu_seconds():
    """CPU seconds used so far by the stack's function processes (coordinator, workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for name in os.listdir(STACK_DIR):
        if not name.endswith(".pid") or not (name.startswith("coordinator") or name.startswith("worker")):
            continue
        try:
            pid = open(os.path.join(STACK_DIR, name)).read().strip()
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            pass
    return total


def query(vector, filt, plan):
    body = {"vector": vector, "k": 10}
    if filt is not None:
        body["filter"] = filt
    if plan != "auto":
        body["params"] = {"plan": plan}
    return body


EMULATOR_ERRORS = 0


def post(url, body, timeout=300):
    """POSTs and times one request. An error answered by the emulator itself (not a JSON
    error of ours: cargo-lambda occasionally answers 500 without reaching the function) is
    counted and tried once more; an error of ours ends the run."""
    global EMULATOR_ERRORS
    for attempt in range(2):
        req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                answer = json.load(r)
            return (time.perf_counter() - t0) * 1000.0, answer
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            if '"error"' in text or attempt == 1:
                sys.exit(f"{url}: HTTP {e.code}: {text[:500]}")
            EMULATOR_ERRORS += 1
            print(f"  (the emulator answered HTTP {e.code} itself: {text[:120]}; trying once more)", flush=True)


def cold_post(url, body):
    """One query on new function processes. cargo-lambda's emulator can hand the first
    invocation after a restart to the killed process's pending poll, where it is lost:
    such a request times out and is tried again on freshly restarted processes."""
    for attempt in range(3):
        subprocess.run(["scripts/local-stack.sh", "restart"], check=True, stdout=subprocess.DEVNULL)
        time.sleep(0.2)
        try:
            return post(url, body, timeout=30)
        except TimeoutError:
            print(f"  (cold request lost by the emulator after a restart, attempt {attempt + 1}; retrying)", flush=True)
    sys.exit("cold requests keep timing out: is the stack up?")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def report(label, runs, queries_per_run, cpu_s):
    ms = [m for m, _ in runs]
    med = lambda key: statistics.median(s.get(key, 0) for _, s in runs)
    plans = sorted({s.get("plan", "?") for _, s in runs})
    per_core = len(runs) * queries_per_run / cpu_s if cpu_s > 0 else float("nan")
    line = {
        "label": label, "n": len(ms), "p50_ms": round(pct(ms, 50), 2), "p99_ms": round(pct(ms, 99), 2),
        "queries_per_cpu_s": round(per_core, 1), "plan": ",".join(plans),
        "invocations": med("invocations"), "cold_workers": med("cold_workers"), "gets": med("gets"),
        "mib_fetched": round(med("bytes_fetched") / 2**20, 2), "billed_ms": med("billed_ms"),
        "cost_usd_per_query": med("cost_usd") / (queries_per_run if "queries" in runs[0][1] else 1),
    }
    print(f"{label:>22}: n={len(ms):4d}  p50 {line['p50_ms']:8.2f} ms  p99 {line['p99_ms']:8.2f} ms  "
          f"{per_core:8.1f} queries/CPU-s  plan {line['plan']}, median {line['invocations']:.0f} invocations, "
          f"{line['cold_workers']:.0f} cold workers, {line['gets']:.0f} GETs, {line['mib_fetched']:.1f} MiB, "
          f"${line['cost_usd_per_query'] * 1e6:.3f}/M queries (model)", flush=True)
    return line


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--index", default="glove")
    ap.add_argument("--queries", default="data/glove/queries.npy")
    ap.add_argument("--filters", help="a filters-*.jsonl of the prepared workload (one per query)")
    ap.add_argument("--label", default="", help="written into each JSON line (e.g. the case)")
    ap.add_argument("--plans", default="auto", help="comma-separated: auto, local, fanout")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--warm", type=int, default=500)
    ap.add_argument("--cold", type=int, default=15)
    ap.add_argument("--batches", default="", help="batch sizes to time too, e.g. 16,100")
    ap.add_argument("--batch-runs", type=int, default=20, help="timed batches per size")
    ap.add_argument("--json-out", help="append one JSON line per measurement")
    a = ap.parse_args()
    base = f"http://127.0.0.1:{a.port}/lambda-url/squash-coordinator/v1/indexes/{a.index}"
    queries = read_npy(a.queries)
    filters = [None] * len(queries)
    if a.filters:
        filters = [json.loads(line) for line in open(a.filters)]
    n = len(queries)
    lines = []
    for plan in a.plans.split(","):
        tag = f"{a.label} {plan}".strip()
        cold = []
        for i in range(a.cold):
            ms, answer = cold_post(base + "/search", query(queries[i], filters[i], plan))
            cold.append((ms, answer["stats"]))
        if cold:
            lines.append(report(f"{tag} cold", cold, 1, float("nan")))
        for i in range(a.warmup):
            post(base + "/search", query(queries[i % n], filters[i % n], plan))
        c0 = cpu_seconds()
        warm = []
        for i in range(a.warm):
            ms, answer = post(base + "/search", query(queries[i % n], filters[i % n], plan))
            warm.append((ms, answer["stats"]))
        lines.append(report(f"{tag} warm", warm, 1, cpu_seconds() - c0))
        for size in [int(s) for s in a.batches.split(",") if s]:
            def batch(j):
                return {"queries": [query(queries[(j * size + q) % n], filters[(j * size + q) % n], plan) for q in range(size)]}
            post(base + "/search/batch", batch(0))  # warm-up
            c0 = cpu_seconds()
            runs = []
            for j in range(a.batch_runs):
                ms, answer = post(base + "/search/batch", batch(j))
                runs.append((ms, answer["stats"]))
            lines.append(report(f"{tag} batch {size}", runs, size, cpu_seconds() - c0))
    if EMULATOR_ERRORS:
        print(f"{EMULATOR_ERRORS} request(s) answered 5xx by the emulator itself and tried again")
    if a.json_out:
        with open(a.json_out, "a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
