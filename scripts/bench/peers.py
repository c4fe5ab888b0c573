"""Runs the peer systems of `make bench` on a prepared squash workload: the same base
vectors, held-out queries, filters and exact answers that `squash bench` uses.

  faiss-flat      IndexFlatL2 + IDSelectorBitmap (exact; the recall check of the harness)
  faiss-ivf       IVF-Flat + IDSelectorBitmap, nprobe sweep
  faiss-ivfsq8    IVF-SQ8 (dimensions zero-padded to a multiple of 16) + IDSelectorBitmap
  hnswlib         HNSW with a filter callback, ef sweep
  lancedb-ivfpq   IVF_PQ, prefilter, nprobes x refine_factor sweep
  lancedb-hnswsq  IVF_HNSW_SQ, prefilter, ef sweep (LanceDB 0.25 has no plain IVF_SQ)

Queries run one at a time on one thread (run this under `taskset -c 0`); the filter is
evaluated inside the timed region (a bitmap from the attribute columns for faiss and
hnswlib, a SQL `where` for LanceDB), as a user of each system would do per query.
With --free-mask, faiss and hnswlib also run every point with the bitmap built before the
timed region (their search alone), as `<system>+freemask`. Indexes are built once and
kept under --cache. One JSON line per (system, case, knob).
"""

import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Data:
    def __init__(self, path, limit):
        self.path = path
        self.w = harness.load_workload(path)
        self.metric = self.w["metric"]
        self.base = np.load(os.path.join(path, self.w["base"]), mmap_mode="r")
        q = np.load(os.path.join(path, self.w["queries"]))[:limit].astype(np.float32)
        if self.metric == "cosine":
            # Cosine ranking == L2 ranking of unit vectors: every peer gets unit vectors.
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        self.queries = np.ascontiguousarray(q)
        attrs = np.load(os.path.join(path, self.w["attrs"]))
        self.columns = {n: attrs[:, i].astype(np.float64) for i, n in enumerate(self.w["attr_names"])}
        self.rows, self.dim = self.base.shape
        # Attributes of `extra_attrs` (JSON lines): element -> rows, for the masks. A
        # list attribute (`tags`) is held as it is; a single string (`tenant`, a key) as
        # a one-element list, whose masks mean the same; `keys` names those.
        self.lists = set()
        self.keys = set()
        for extra in self.w.get("extra_attrs", []):
            cols = {}
            with open(os.path.join(path, extra)) as f:
                for row, line in enumerate(f):
                    for name, value in json.loads(line).items():
                        if name not in cols:
                            cols[name] = harness.ListColumn(self.rows)
                        if isinstance(value, list):
                            cols[name].add(row, value)
                        elif value is not None:
                            self.keys.add(name)
                            cols[name].add(row, [value])
            for name, col in cols.items():
                col.freeze()
                self.columns[name] = col
                if name not in self.keys:
                    self.lists.add(name)
        self.cases = []
        for c in self.w["cases"]:
            filters = harness.read_json_lines(os.path.join(path, c["filters"]))[:limit]
            truth = harness.read_truth(os.path.join(path, c["groundtruth"]), limit)
            self.cases.append((c["label"], filters, truth))

    def base_f32(self, pad_to=None, chunk=262144):
        """The base as one float32 array (unit rows under cosine), optionally zero-padded."""
        d = self.dim if pad_to is None else pad_to
        out = np.zeros((self.rows, d), dtype=np.float32)
        for s in range(0, self.rows, chunk):
            x = np.asarray(self.base[s : s + chunk], dtype=np.float32)
            if self.metric == "cosine":
                x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)
            out[s : s + chunk, : self.dim] = x
        return out

    def check_filters(self):
        """Every exact neighbour must pass the harness's filter evaluation: the peers'
        filters then select exactly what squash's ground truth filtered."""
        for label, filters, truth in self.cases:
            for i, (f, t) in enumerate(zip(filters, truth)):
                if f is None or not t:
                    continue
                m = harness.mask(f, self.columns, self.rows)
                bad = [x for x in t if not m[x]]
                if bad:
                    raise SystemExit(f"case {label} query {i}: exact neighbours {bad[:5]} fail the harness filter")


class OverBudget(Exception):
    pass


class FreeMask:
    """A filter whose bitmap (and faiss's packed bits) were built before the timed region."""

    def __init__(self, f, data):
        self.m = harness.mask(f, data.columns, data.rows)
        self.bits = np.packbits(self.m, bitorder="little")


def mask_of(f, data):
    """The boolean row mask of filter `f`: precomputed for a FreeMask, else built now."""
    return f.m if isinstance(f, FreeMask) else harness.mask(f, data.columns, data.rows)


def run_point(search, queries, filters, truth, k, repeats, budget_s):
    """Untimed pass for recall (and warm-up), then timed passes; a point whose first
    pass took longer than budget_s is timed by that pass alone, and one that would take
    more than 4 x budget_s is abandoned (OverBudget)."""
    found = []
    t0 = time.perf_counter()
    first = []
    for i, (q, f) in enumerate(zip(queries, filters)):
        t = time.perf_counter()
        found.append(search(q, f))
        first.append(time.perf_counter() - t)
        spent = time.perf_counter() - t0
        if spent / (i + 1) * len(queries) > 4 * budget_s and i >= 4:
            raise OverBudget(f"{i + 1} queries took {spent:.1f} s, the pass would take over {4 * budget_s:.0f} s")
    first_total = time.perf_counter() - t0
    recall = harness.mean_recall(found, truth, k)
    if first_total > budget_s:
        lat = sorted(first)
        return recall, [len(queries) / first_total], lat, 1
    qps, lat = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for q, f in zip(queries, filters):
            t = time.perf_counter()
            search(q, f)
            lat.append(time.perf_counter() - t)
        qps.append(len(queries) / (time.perf_counter() - t0))
    return recall, qps, sorted(lat), repeats


# --- systems: each returns (build_seconds, [(knobs, search(q, filter) -> ids)]) ---------


def faiss_systems(data, cache, which):
    import faiss

    faiss.omp_set_num_threads(1)
    nlist = int(max(16, round(np.sqrt(data.rows))))
    pad = -(-data.dim // 16) * 16

    def selector_params(f, ivf_nprobe=None):
        if f is None:
            sel = None
        else:
            bits = f.bits if isinstance(f, FreeMask) else np.packbits(mask_of(f, data), bitorder="little")
            sel = (faiss.IDSelectorBitmap(data.rows, faiss.swig_ptr(bits)), bits)
        if ivf_nprobe is None:
            p = faiss.SearchParameters()
        else:
            p = faiss.SearchParametersIVF()
            p.nprobe = ivf_nprobe
        if sel is not None:
            p.sel = sel[0]
        return p, sel

    def searcher(index, nprobe, d):
        def search(q, f):
            p, keep = selector_params(f, nprobe)
            qq = q if d == data.dim else np.pad(q, (0, d - data.dim))
            _, ids = index.search(qq.reshape(1, -1), K, params=p)
            del keep
            return [int(i) for i in ids[0] if i >= 0]

        return search

    def load_or_build(name, make, d):
        path = os.path.join(cache, f"{name}.faiss")
        if os.path.exists(path):
            return faiss.read_index(path), 0.0
        t = time.perf_counter()
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        x = data.base_f32(None if d == data.dim else d)
        index = make(d)
        if not index.is_trained:
            sample = x[np.random.default_rng(1).choice(len(x), min(len(x), nlist * 64), replace=False)]
            index.train(sample)
        index.add(x)
        faiss.omp_set_num_threads(1)
        built = time.perf_counter() - t
        faiss.write_index(index, path)
        return index, built

    out = {}
    if "faiss-flat" in which:
        idx, b = load_or_build("flat", lambda d: faiss.IndexFlatL2(d), data.dim)
        out["faiss-flat"] = (b, [({}, searcher(idx, None, data.dim))])
    probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= nlist]
    if "faiss-ivf" in which:
        idx, b = load_or_build(
            f"ivf{nlist}", lambda d: faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist), data.dim
        )
        out["faiss-ivf"] = (b, [({"nlist": nlist, "nprobe": p}, searcher(idx, p, data.dim)) for p in probes])
    if "faiss-ivfsq8" in which:
        idx, b = load_or_build(
            f"ivfsq8-{nlist}-{pad}",
            lambda d: faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(d), d, nlist, faiss.ScalarQuantizer.QT_8bit),
            pad,
        )
        out["faiss-ivfsq8"] = (
            b,
            [({"nlist": nlist, "nprobe": p, "padded_dim": pad}, searcher(idx, p, pad)) for p in probes],
        )
    return out


def hnswlib_system(data, cache):
    import hnswlib

    path = os.path.join(cache, "hnsw-M16-ef100.bin")
    index = hnswlib.Index(space="l2", dim=data.dim)
    built = 0.0
    if os.path.exists(path):
        index.load_index(path, max_elements=data.rows)
    else:
        t = time.perf_counter()
        index.init_index(max_elements=data.rows, ef_construction=100, M=16, random_seed=1)
        x = data.base_f32()
        index.add_items(x, np.arange(data.rows), num_threads=os.cpu_count() or 1)
        built = time.perf_counter() - t
        index.save_index(path)
    index.set_num_threads(1)

    def make(ef):
        def search(q, f):
            index.set_ef(max(ef, K))
            flt = None
            if f is not None:
                flt = mask_of(f, data).item
            try:
                ids, _ = index.knn_query(q.reshape(1, -1), k=K, num_threads=1, filter=flt)
                return [int(i) for i in ids[0]]
            except RuntimeError:
                # Fewer than k matches reachable: hnswlib refuses the whole answer.
                return []

        return search

    return {"hnswlib": (built, [({"M": 16, "ef": ef}, make(ef)) for ef in (10, 20, 40, 80, 160, 320)])}


def lancedb_systems(data, cache, which):
    import lancedb
    import pyarrow as pa

    out = {}
    for system, kind in (("lancedb-ivfpq", "IVF_PQ"), ("lancedb-hnswsq", "IVF_HNSW_SQ")):
        if system not in which:
            continue
        path = os.path.join(cache, f"lance-{kind}")
        built = 0.0
        nparts = int(max(16, round(np.sqrt(data.rows))))
        if not os.path.isdir(path):
            # Built under a temporary name: an interrupted build is never reused.
            tmp = path + ".tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            db = lancedb.connect(tmp)
            t = time.perf_counter()
            x = data.base_f32()
            cols = {
                "id": pa.array(np.arange(data.rows, dtype=np.int64)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), data.dim),
            }
            scalars = [n for n in data.columns if n not in data.lists and n not in data.keys]
            for n in scalars:
                cols[n] = pa.array(data.columns[n])
            for n in data.keys:
                cols[n] = pa.array([v[0] if v else None for v in data.columns[n].values], type=pa.string())
            for n in data.lists:
                values = data.columns[n].values
                sample = next((v for v in values if v), [""])
                element = pa.string() if isinstance(sample[0], str) else pa.float64()
                cols[n] = pa.array(values, type=pa.list_(element))
            table = db.create_table("v", pa.table(cols))
            kw = {}
            if kind == "IVF_PQ":
                # Sub-vectors of 8 dimensions where the dimension allows (16 for 128-d), else 5.
                width = next(w for w in (8, 5, 4, 2, 1) if data.dim % w == 0)
                kw["num_sub_vectors"] = data.dim // width
            table.create_index(metric="l2", num_partitions=nparts, index_type=kind, **kw)
            for n in scalars:
                table.create_scalar_index(n, index_type="BTREE")
            for n in data.lists:
                table.create_scalar_index(n, index_type="LABEL_LIST")
            for n in data.keys:
                table.create_scalar_index(n, index_type="BITMAP")
            built = time.perf_counter() - t
            del table, db
            os.rename(tmp, path)
        table = lancedb.connect(path).open_table("v")

        def make(nprobes, refine, ef):
            def search(q, f):
                s = table.search(q).limit(K).select(["id", "_distance"]).nprobes(nprobes)
                if refine:
                    s = s.refine_factor(refine)
                if ef:
                    s = s.ef(ef)
                w = harness.sql(f, data.lists)
                if w is not None:
                    s = s.where(w, prefilter=True)
                return s.to_arrow()["id"].to_pylist()

            return search

        # LanceDB answers a query in milliseconds of fixed overhead (Python, the
        # query planner) even on small data, so its sweep is short.
        points = []
        if kind == "IVF_PQ":
            for nprobes, refine in ((8, None), (8, 10), (32, 10), (64, 50)):
                points.append(({"nprobes": nprobes, "refine_factor": refine}, make(nprobes, refine, None)))
        else:
            for nprobes, ef in ((8, 40), (32, 160)):
                points.append(({"nprobes": nprobes, "ef": ef}, make(nprobes, None, ef)))
        out[system] = (built, points)
    return out


K = 10


def main():
    global K
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="prepared workload directory (with ground truth)")
    ap.add_argument("--dataset", help="name in the JSON lines (default: directory name)")
    ap.add_argument("--out", required=True, help="JSON lines file to append to")
    ap.add_argument("--cache", required=True, help="directory where built indexes are kept")
    ap.add_argument("--systems", default="faiss-flat,faiss-ivf,faiss-ivfsq8,hnswlib,lancedb-ivfpq,lancedb-hnswsq")
    ap.add_argument("--cases", default="", help="only these case labels")
    ap.add_argument("--queries", type=int, default=200, help="first N queries of the workload")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-points", type=int, help="at most this many knob settings per system (spread over the sweep)")
    ap.add_argument("--pin", type=int, help="after building the indexes, run on this CPU core only")
    ap.add_argument("--point-budget-s", type=float, default=15.0, help="time one pass only when it takes longer")
    ap.add_argument("--free-mask", action="store_true", help="also run faiss and hnswlib with bitmaps built untimed")
    a = ap.parse_args()
    K = a.k
    which = set(a.systems.split(","))
    data = Data(a.data, a.queries)
    data.check_filters()
    dataset = a.dataset or os.path.basename(os.path.normpath(a.data))
    cache = os.path.join(a.cache, dataset)
    os.makedirs(cache, exist_ok=True)
    systems = {}
    if which & {"faiss-flat", "faiss-ivf", "faiss-ivfsq8"}:
        systems.update(faiss_systems(data, cache, which))
    if "hnswlib" in which:
        systems.update(hnswlib_system(data, cache))
    if which & {"lancedb-ivfpq", "lancedb-hnswsq"}:
        systems.update(lancedb_systems(data, cache, which))
    if a.max_points:
        for name, (built, points) in systems.items():
            if len(points) > a.max_points:
                step = (len(points) - 1) / max(1, a.max_points - 1)
                keep = sorted({round(i * step) for i in range(a.max_points)})
                systems[name] = (built, [points[i] for i in keep])
    if a.pin is not None:
        pin_all_threads(a.pin)
    versions = package_versions()
    cases = [c for c in data.cases if not a.cases or c[0] in a.cases.split(",")]
    runs = [(system, built, points, False) for system, (built, points) in systems.items()]
    if a.free_mask:
        runs += [
            (system + "+freemask", 0.0, points, True)
            for system, (built, points) in systems.items()
            if not system.startswith("lancedb")
        ]
    with open(a.out, "a") as out:
        for system, built, points, free in runs:
            if built:
                log(f"{system}: built in {built:.1f} s")
            for label, filters, truth in cases:
                if free:
                    filters = [None if f is None else FreeMask(f, data) for f in filters]
                for knobs, search in points:
                    try:
                        recall, qps, lat, reps = run_point(
                            search, data.queries, filters, truth, a.k, a.repeats, a.point_budget_s
                        )
                    except OverBudget as e:
                        rec = {"system": system, "dataset": dataset, "label": label, "params": knobs, "skipped": str(e)}
                        out.write(json.dumps(rec) + "\n")
                        log(f"  {system} {label} {knobs}: skipped, {e}")
                        continue
                    rec = {
                        "system": system,
                        "dataset": dataset,
                        "label": label,
                        "params": knobs,
                        "queries": len(data.queries),
                        "recall": recall,
                        "qps": harness.median(qps),
                        "p50_ms": harness.percentile(lat, 0.5) * 1e3,
                        "p99_ms": harness.percentile(lat, 0.99) * 1e3,
                        "repeats": reps,
                        "threads": 1,
                        "build_s": built or None,
                        "version": versions.get(system.split("-")[0]),
                    }
                    out.write(json.dumps(rec) + "\n")
                    out.flush()
                    log(f"  {system} {label} {knobs}: recall {recall:.4f}, {rec['qps']:.0f} QPS")


def pin_all_threads(core):
    """Pins every thread of this process (LanceDB's runtime and OpenMP pools included,
    which sched_setaffinity(0) alone would miss) to one core."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except OSError:
            pass


def package_versions():
    from importlib.metadata import version

    out = {}
    for name, dist in (("faiss", "faiss-cpu"), ("hnswlib", "hnswlib"), ("lancedb", "lancedb")):
        try:
            out[name] = version(dist)
        except Exception:
            out[name] = None
    return out


if __name__ == "__main__":
    main()
