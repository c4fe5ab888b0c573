#!/usr/bin/env python3
"""Upsert throughput through the local stack's HTTP route (make up): copies the rows of a
workload's base (.npy, float32) as new ids past its end, in calls of --batch vectors, and
reports vectors per second; then deletes them again (ids per second).

    scripts/http-upsert.py --index synth-1m --data data/bench/synth-1m --rows 20000 --batch 500
"""
import argparse, json, struct, sys, time, urllib.error, urllib.request


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def npy_rows(path, count):
    with open(path, "rb") as f:
        head = f.read(10)
        hlen = struct.unpack("<H", head[8:10])[0]
        header = f.read(hlen).decode()
        shape = tuple(int(x) for x in header.split("'shape': (")[1].split(")")[0].split(",") if x.strip())
        dim = shape[1]
        n = min(count, shape[0])
        data = struct.unpack(f"<{n * dim}f", f.read(n * dim * 4))
        return shape[0], [list(data[i * dim:(i + 1) * dim]) for i in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--data", required=True, help="workload directory with base.npy")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--port", type=int, default=9000)
    a = ap.parse_args()
    total, rows = npy_rows(f"{a.data}/base.npy", a.rows)
    base = f"http://127.0.0.1:{a.port}/lambda-url/squash-coordinator/v1/indexes/{a.index}"
    ids = [total + i for i in range(len(rows))]
    t0 = time.time()
    for s in range(0, len(rows), a.batch):
        body = {"vectors": [{"id": ids[i], "vector": rows[i]} for i in range(s, min(s + a.batch, len(rows)))]}
        status, reply = post(f"{base}/upsert", body)
        if status != 200:
            sys.exit(f"upsert: HTTP {status}: {reply}")
    up = time.time() - t0
    t0 = time.time()
    for s in range(0, len(ids), 10000):
        status, reply = post(f"{base}/delete", {"ids": ids[s:s + 10000]})
        if status != 200:
            sys.exit(f"delete: HTTP {status}: {reply}")
    down = time.time() - t0
    print(json.dumps({"index": a.index, "vectors": len(rows), "batch": a.batch,
                      "upsert_per_s": round(len(rows) / up, 1), "delete_per_s": round(len(ids) / down, 1),
                      "version": reply.get("version")}))


if __name__ == "__main__":
    main()
