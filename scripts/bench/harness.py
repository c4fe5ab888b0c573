"""What every system in `make bench` shares: reading a prepared workload, evaluating
its JSON filters exactly as squash does, recall@k against the exact answer, and the
"best QPS at recall >= x" summary. Pure Python here (numpy only inside the functions
that take arrays), so `make test` checks it with the system Python."""

import json
import math
import os


def recall_at(found, truth, k):
    """recall@k: the share of the first min(k, |truth|) true neighbours that appear
    among the first k found ids (1 when the exact answer is empty). Same definition as
    squash_bench::groundtruth::recall_at."""
    want = min(k, len(truth))
    if want == 0:
        return 1.0
    true_ids = set(int(t) for t in truth[:want])
    return sum(1 for f in list(found)[:k] if int(f) in true_ids) / want


def mean_recall(found_lists, truths, k):
    """Mean recall@k over queries; the lists must pair up."""
    if len(found_lists) != len(truths):
        raise ValueError(f"{len(found_lists)} answers for {len(truths)} ground-truth lines")
    if not truths:
        raise ValueError("no queries")
    return sum(recall_at(f, t, k) for f, t in zip(found_lists, truths)) / len(truths)


def median(values):
    s = sorted(values)
    if not s:
        raise ValueError("median of nothing")
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def percentile(sorted_values, p):
    """Same rule as squash's bench: the value at round((n - 1) * p)."""
    if not sorted_values:
        return 0.0
    i = int(round((len(sorted_values) - 1) * p))
    return sorted_values[min(i, len(sorted_values) - 1)]


def best_qps(points, threshold):
    """The point with the highest QPS among `points` (dicts with recall and qps) whose
    recall reaches `threshold`; None when none does."""
    ok = [p for p in points if p["recall"] >= threshold]
    return max(ok, key=lambda p: p["qps"]) if ok else None


def summary_table(points, thresholds=(0.90, 0.95, 0.99)):
    """Markdown: best QPS at each recall threshold per dataset, case and system.
    `points` are JSON-lines records with system, dataset, label, recall, qps."""
    groups = {}
    for p in points:
        groups.setdefault((p["dataset"], p["label"], p["system"]), []).append(p)
    head = "| dataset | case | system | " + " | ".join(f"QPS @ recall {t:.2f}" for t in thresholds) + " | best recall |"
    lines = [head, "|---|---|---|" + "---:|" * (len(thresholds) + 1)]
    for dataset, label, system in sorted(groups, key=lambda g: (g[0], case_order(g[1]), g[2])):
        pts = groups[(dataset, label, system)]
        cells = []
        for t in thresholds:
            b = best_qps(pts, t)
            cells.append(f"{b['qps']:.0f}" if b else "–")
        top = max(p["recall"] for p in pts)
        lines.append(f"| {dataset} | {label} | {system} | " + " | ".join(cells) + f" | {top:.3f} |")
    return "\n".join(lines) + "\n"


def case_order(label):
    """100% first, then falling selectivity, then named cases."""
    if label.endswith("%"):
        try:
            return (0, -float(label[:-1]))
        except ValueError:
            pass
    return (1, label)


def load_workload(path):
    with open(os.path.join(path, "workload.json")) as f:
        return json.load(f)


def read_json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_truth(path, limit=None):
    rows = read_json_lines(path)
    if limit is not None:
        rows = rows[:limit]
    return [r["ids"] for r in rows]


_OPS = ("$eq", "$ne", "$lt", "$lte", "$gt", "$gte", "$in", "$nin", "$exists")


def _check_number(v, where):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where}: expected a finite number, got {v!r}")
    return float(v)


def matches(flt, row):
    """Does `row` (dict name -> float) match JSON filter `flt`? The reference semantics,
    one row at a time (the numpy evaluator `mask` is tested against it)."""
    if flt is None or flt == {}:
        return True
    results = []
    for key, cond in flt.items():
        if key == "$and":
            results.append(all(matches(c, row) for c in cond))
        elif key == "$or":
            results.append(any(matches(c, row) for c in cond))
        elif key == "$not":
            results.append(not matches(cond, row))
        elif key.startswith("$"):
            raise ValueError(f"unknown operator {key}")
        else:
            v = row[key]
            if not isinstance(cond, dict):
                cond = {"$eq": cond}
            for op, x in cond.items():
                if op not in _OPS:
                    raise ValueError(f"filter.{key}: unknown operator {op}")
                if op == "$exists":
                    # A missing value is NaN.
                    results.append((not math.isnan(v)) == bool(x))
                    continue
                if op in ("$in", "$nin"):
                    hit = v in [_check_number(y, key) for y in x]
                    results.append(hit if op == "$in" else not hit)
                    continue
                x = _check_number(x, key)
                results.append(
                    {
                        "$eq": v == x,
                        "$ne": v != x,
                        "$lt": v < x,
                        "$lte": v <= x,
                        "$gt": v > x,
                        "$gte": v >= x,
                    }[op]
                )
    return all(results)


def mask(flt, columns, rows):
    """Boolean numpy mask of the rows matching `flt`; `columns` maps attribute name to a
    float64 array (float64 so thresholds compare as squash compares them)."""
    import numpy as np

    if flt is None or flt == {}:
        return np.ones(rows, dtype=bool)
    out = np.ones(rows, dtype=bool)
    for key, cond in flt.items():
        if key == "$and":
            for c in cond:
                out &= mask(c, columns, rows)
        elif key == "$or":
            m = np.zeros(rows, dtype=bool)
            for c in cond:
                m |= mask(c, columns, rows)
            out &= m
        elif key == "$not":
            out &= ~mask(cond, columns, rows)
        elif key.startswith("$"):
            raise ValueError(f"unknown operator {key}")
        else:
            v = columns[key]
            if not isinstance(cond, dict):
                cond = {"$eq": cond}
            if isinstance(v, ListColumn):
                for op, x in cond.items():
                    out &= v.mask(op, x, key)
                continue
            for op, x in cond.items():
                if op == "$exists":
                    out &= ~np.isnan(v) if x else np.isnan(v)
                    continue
                if op in ("$in", "$nin"):
                    m = np.isin(v, [_check_number(y, key) for y in x])
                    out &= m if op == "$in" else ~m
                    continue
                if op not in _OPS:
                    raise ValueError(f"filter.{key}: unknown operator {op}")
                x = _check_number(x, key)
                out &= {
                    "$eq": np.equal,
                    "$ne": np.not_equal,
                    "$lt": np.less,
                    "$lte": np.less_equal,
                    "$gt": np.greater,
                    "$gte": np.greater_equal,
                }[op](v, x)
    return out


class ListColumn:
    """A list attribute (squash's `tags: [...]`): for each element value the rows holding
    it, and which rows have a list at all. Filters on it mean "some element matches"
    (`$ne` / `$nin`: no element does), as in squash."""

    def __init__(self, rows):
        import numpy as np

        self.rows = rows
        self.present = np.zeros(rows, dtype=bool)
        self.where = {}
        self.values = [None] * rows

    def add(self, row, elements):
        if elements is None:
            return
        self.values[row] = list(elements)
        self.present[row] = True
        for e in set(elements):
            self.where.setdefault(e, []).append(row)

    def freeze(self):
        import numpy as np

        self.where = {k: np.asarray(v, dtype=np.int64) for k, v in self.where.items()}

    def _some(self, values):
        import numpy as np

        m = np.zeros(self.rows, dtype=bool)
        for x in values:
            rows = self.where.get(x)
            if rows is not None:
                m[rows] = True
        return m

    def mask(self, op, x, key):
        if op == "$exists":
            return self.present if x else ~self.present
        if op in ("$eq", "$contains"):
            return self._some([x])
        if op in ("$in", "$containsAny"):
            return self._some(x)
        if op == "$containsAll":
            import numpy as np

            m = np.ones(self.rows, dtype=bool)
            for y in x:
                m &= self._some([y])
            return m
        if op == "$ne":
            return ~self._some([x])
        if op == "$nin":
            return ~self._some(x)
        raise ValueError(f"filter.{key}: operator {op} is not supported on a list attribute here")


def _literal(x):
    if isinstance(x, str):
        return "'" + x.replace("'", "''") + "'"
    return repr(float(x))


def _list_sql(key, op, x):
    """One operator on a list column, in LanceDB's SQL (DataFusion's array functions)."""
    if op == "$exists":
        return f"{key} IS {'NOT ' if x else ''}NULL"
    values = x if isinstance(x, list) else [x]
    arr = "[" + ", ".join(_literal(v) for v in values) + "]"
    if op in ("$eq", "$contains", "$in", "$containsAny"):
        return f"array_has_any({key}, {arr})"
    if op == "$containsAll":
        return f"array_has_all({key}, {arr})"
    if op in ("$ne", "$nin"):
        return f"(NOT array_has_any({key}, {arr}) OR {key} IS NULL)"
    raise ValueError(f"filter.{key}: operator {op} is not supported on a list attribute here")


def sql(flt, lists=()):
    """The filter as a SQL predicate (LanceDB's `where`); floats written with repr so
    they round-trip exactly. `lists` names the list attributes."""
    if flt is None or flt == {}:
        return None
    parts = []
    for key, cond in flt.items():
        if key == "$and":
            parts.append("(" + " AND ".join(sql(c, lists) for c in cond) + ")")
        elif key == "$or":
            parts.append("(" + " OR ".join(sql(c, lists) for c in cond) + ")")
        elif key == "$not":
            parts.append(f"(NOT {sql(cond, lists)})")
        elif key.startswith("$"):
            raise ValueError(f"unknown operator {key}")
        else:
            if not isinstance(cond, dict):
                cond = {"$eq": cond}
            if key in lists:
                parts.extend(_list_sql(key, op, x) for op, x in cond.items())
                continue
            # A string operand is a key's value (`tenant = 'u000042'`).
            def lit(y):
                return _literal(y) if isinstance(y, str) else repr(_check_number(y, key))

            for op, x in cond.items():
                if op == "$exists":
                    # A missing number is NaN in the table.
                    parts.append(f"{'NOT ' if x else ''}isnan({key})")
                    continue
                if op in ("$in", "$nin"):
                    vals = ", ".join(lit(y) for y in x)
                    parts.append(f"{key} {'IN' if op == '$in' else 'NOT IN'} ({vals})")
                    continue
                sym = {"$eq": "=", "$ne": "!=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}.get(op)
                if sym is None:
                    raise ValueError(f"filter.{key}: unknown operator {op}")
                parts.append(f"{key} {sym} {lit(x)}")
    return " AND ".join(parts)
