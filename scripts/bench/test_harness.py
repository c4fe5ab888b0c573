"""`make bench-test` (part of `make test`): the bench harness against known answers, so
the table cannot lie. Needs numpy only for the vectorised filter and the end-to-end
check; `make bench-test` runs it in a small venv that has it."""

import json
import os
import random
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import numpy as np  # noqa: E402


class Recall(unittest.TestCase):
    def test_same_cases_as_the_rust_definition(self):
        self.assertAlmostEqual(harness.recall_at([1, 2, 3], [3, 2, 9], 3), 2 / 3)
        self.assertEqual(harness.recall_at([], [], 10), 1.0)
        self.assertEqual(harness.recall_at([5], [5], 10), 1.0)
        self.assertEqual(harness.recall_at([1, 2], [3, 4, 5], 2), 0.0)

    def test_only_the_first_k_count_on_both_sides(self):
        # The 11th found id is not counted even though it is a true neighbour, and the
        # truth's 11th id is not wanted.
        truth = list(range(20))
        found = [100 + i for i in range(10)] + [0]
        self.assertEqual(harness.recall_at(found, truth, 10), 0.0)
        self.assertEqual(harness.recall_at(list(range(10, 20)), truth, 10), 0.0)
        self.assertEqual(harness.recall_at(list(reversed(range(10))), truth, 10), 1.0)

    def test_duplicates_and_numpy_ids(self):
        self.assertEqual(harness.recall_at([1, 1, 1], [1, 2, 3], 3), 1.0)
        self.assertEqual(harness.recall_at(np.array([3, 2, 1]), [1, 2, 3], 3), 1.0)

    def test_mean_recall_pairs_and_refuses_mismatch(self):
        self.assertAlmostEqual(harness.mean_recall([[1], [9]], [[1], [2]], 1), 0.5)
        with self.assertRaises(ValueError):
            harness.mean_recall([[1]], [[1], [2]], 1)


class Summary(unittest.TestCase):
    def points(self):
        mk = lambda system, recall, qps, label="100%": {  # noqa: E731
            "system": system,
            "dataset": "d",
            "label": label,
            "recall": recall,
            "qps": qps,
        }
        return [
            mk("a", 0.89, 5000),
            mk("a", 0.93, 3000),
            mk("a", 0.96, 1000),
            mk("a", 0.995, 100),
            mk("b", 0.97, 700),
            mk("b", 0.99, 800),
            mk("b", 0.5, 1, "0.1%"),
        ]

    def test_best_qps_takes_the_fastest_point_that_reaches_the_target(self):
        pts = [p for p in self.points() if p["system"] == "a"]
        self.assertEqual(harness.best_qps(pts, 0.90)["qps"], 3000)
        self.assertEqual(harness.best_qps(pts, 0.95)["qps"], 1000)
        self.assertEqual(harness.best_qps(pts, 0.99)["qps"], 100)
        self.assertIsNone(harness.best_qps(pts, 0.999))

    def test_table_rows(self):
        lines = harness.summary_table(self.points()).splitlines()
        self.assertIn("| d | 100% | a | 3000 | 1000 | 100 | 0.995 |", lines)
        self.assertIn("| d | 100% | b | 800 | 800 | 800 | 0.990 |", lines)
        self.assertIn("| d | 0.1% | b | – | – | – | 0.500 |", lines)
        # 100% before 0.1%.
        self.assertLess(lines.index("| d | 100% | a | 3000 | 1000 | 100 | 0.995 |"), lines.index("| d | 0.1% | b | – | – | – | 0.500 |"))


class Filters(unittest.TestCase):
    def test_mask_matches_the_row_by_row_reference_and_sql_renders(self):
        rng = random.Random(4)
        rows = 500
        cols = {f"a{i}": np.array([rng.random() for _ in range(rows)]) for i in range(3)}
        cols["label"] = np.array([float(rng.randrange(5)) for _ in range(rows)])
        for _ in range(200):
            f = {}
            for name in rng.sample(sorted(cols), rng.randrange(1, 4)):
                op = rng.choice(["$lt", "$lte", "$gt", "$gte", "$eq", "$ne", "$in"])
                if name == "label":
                    x = [float(rng.randrange(5)) for _ in range(2)] if op == "$in" else float(rng.randrange(5))
                else:
                    # Thresholds equal to a stored value exercise the boundary.
                    x = [float(cols[name][rng.randrange(rows)])] if op == "$in" else float(cols[name][rng.randrange(rows)])
                f[name] = {op: x}
            if rng.random() < 0.3:
                f = {"$or": [f, {"a0": {"$lt": 0.1}}]}
            m = harness.mask(f, cols, rows)
            want = [harness.matches(f, {k: float(v[i]) for k, v in cols.items()}) for i in range(rows)]
            self.assertEqual(m.tolist(), want, f)
        self.assertEqual(
            harness.sql({"a0": {"$gte": 0.1, "$lt": 0.25}, "label": {"$eq": 3}}),
            "a0 >= 0.1 AND a0 < 0.25 AND label = 3.0",
        )
        self.assertIsNone(harness.sql(None))
        with self.assertRaises(ValueError):
            harness.mask({"a0": {"$near": 1}}, cols, rows)

    def test_exists_on_a_number_means_not_missing(self):
        pop = np.array([1.0, float("nan"), 7.0, float("nan")])
        cols = {"pop": pop}
        self.assertEqual(harness.mask({"pop": {"$exists": True}}, cols, 4).tolist(), [True, False, True, False])
        self.assertEqual(harness.mask({"pop": {"$exists": False}}, cols, 4).tolist(), [False, True, False, True])
        for i in range(4):
            self.assertEqual(harness.matches({"pop": {"$exists": True}}, {"pop": float(pop[i])}), i % 2 == 0)
        self.assertEqual(harness.sql({"pop": {"$exists": True}}), "NOT isnan(pop)")

    def test_list_attributes_mean_some_element(self):
        col = harness.ListColumn(4)
        for row, tags in enumerate([["a", "b"], [], None, ["b", "b"]]):
            col.add(row, tags)
        col.freeze()
        cols = {"tags": col, "p": np.array([1.0, 2.0, 3.0, 4.0])}
        cases = [
            ({"tags": "b"}, [True, False, False, True]),
            ({"tags": {"$containsAny": ["a", "zz"]}}, [True, False, False, False]),
            ({"tags": {"$containsAll": ["a", "b"]}}, [True, False, False, False]),
            ({"tags": {"$nin": ["a"]}}, [False, True, True, True]),
            ({"tags": {"$ne": "b"}}, [False, True, True, False]),
            ({"tags": {"$exists": True}, "p": {"$gt": 1}}, [False, True, False, True]),
        ]
        for flt, want in cases:
            self.assertEqual(harness.mask(flt, cols, 4).tolist(), want, flt)
        self.assertEqual(
            harness.sql({"tags": {"$containsAny": ["a", "it's"]}, "p": {"$gt": 1}}, {"tags"}),
            "array_has_any(tags, ['a', 'it''s']) AND p > 1.0",
        )
        self.assertEqual(harness.sql({"tags": {"$nin": ["a"]}}, {"tags"}), "(NOT array_has_any(tags, ['a']) OR tags IS NULL)")
        # A key (a single string per row): its masks as a one-element list, SQL with literals.
        key = harness.ListColumn(4)
        for row, v in enumerate(["u1", "u2", None, "u1"]):
            if v is not None:
                key.add(row, [v])
        key.freeze()
        self.assertEqual(harness.mask({"tenant": "u1"}, {"tenant": key}, 4).tolist(), [True, False, False, True])
        self.assertEqual(harness.sql({"tenant": "u1"}), "tenant = 'u1'")
        self.assertEqual(harness.sql({"tenant": {"$in": ["u1", "o'k"]}}), "tenant IN ('u1', 'o''k')")

    def test_float32_attributes_compare_at_double_precision(self):
        # A float32 value and a double threshold just above it: squash compares in f64.
        v = np.float32(0.1)
        col = {"a": np.array([v], dtype=np.float32).astype(np.float64)}
        self.assertTrue(harness.mask({"a": {"$lt": 0.1}}, col, 1)[0] == (float(v) < 0.1))


class EndToEnd(unittest.TestCase):
    def test_a_known_workload_scores_as_it_should(self):
        """An exact filtered search scores 1, a search returning the 2nd..11th true
        neighbours scores 0.9, on a workload written in the on-disk layout."""
        rng = np.random.default_rng(9)
        base = rng.normal(size=(400, 8)).astype(np.float32)
        queries = rng.normal(size=(6, 8)).astype(np.float32)
        attrs = rng.random(size=(400, 1)).astype(np.float32)
        filters = [None, {"a0": {"$lt": 0.5}}, {"a0": {"$gte": 0.2, "$lt": 0.7}}] * 2
        cols = {"a0": attrs[:, 0].astype(np.float64)}
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "gt.jsonl"), "w") as f:
                for q, flt in zip(queries, filters):
                    m = harness.mask(flt, cols, len(base))
                    dist = ((base - q) ** 2).sum(axis=1)
                    ids = [int(i) for i in np.argsort(dist) if m[i]][:100]
                    f.write(json.dumps({"ids": ids, "distances": [float(dist[i]) for i in ids]}) + "\n")
            truth = harness.read_truth(os.path.join(d, "gt.jsonl"))

        def exact(q, flt):
            m = harness.mask(flt, cols, len(base))
            dist = np.where(m, ((base - q) ** 2).sum(axis=1), np.inf)
            return list(np.argsort(dist, kind="stable")[:10])

        def off_by_one(q, flt):
            m = harness.mask(flt, cols, len(base))
            dist = np.where(m, ((base - q) ** 2).sum(axis=1), np.inf)
            return list(np.argsort(dist, kind="stable")[1:11])

        found = [exact(q, f) for q, f in zip(queries, filters)]
        self.assertEqual(harness.mean_recall(found, truth, 10), 1.0)
        found = [off_by_one(q, f) for q, f in zip(queries, filters)]
        self.assertAlmostEqual(harness.mean_recall(found, truth, 10), 0.9)


if __name__ == "__main__":
    unittest.main()
