"""The report of `make bench`: gathers target/bench/squash-*.jsonl and peers.jsonl into
results.jsonl, writes table.md (best QPS at recall@10 >= 0.90 / 0.95 / 0.99 per dataset,
case and system, then the build numbers, the cost table and the machine) and one PNG of
recall vs QPS per dataset with a panel per case under plots/."""

import argparse
import glob
import json
import os
import platform
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

BUILD_LINE = re.compile(
    r"built (\d+) vectors × (\d+) \((\w+)\) into (\d+) partitions, ([\d.]+) MiB, in ([\d.]+) s, peak RSS (\d+) MiB"
)


def load_points(bench):
    points, skipped = [], []
    files = sorted(glob.glob(os.path.join(bench, "squash-*.jsonl"))) + [os.path.join(bench, "peers.jsonl")]
    for path in files:
        if not os.path.exists(path):
            continue
        for rec in harness.read_json_lines(path):
            (skipped if "skipped" in rec else points).append(rec)
    return points, skipped


def build_table(builds_dir, datasets):
    """Build time and peak RSS from the `squash build` lines kept beside each index
    (`NAME-index.build.txt`), for the datasets of this run (glove for glove-50)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(builds_dir, "**", "*-index.build.txt"), recursive=True)):
        name = os.path.basename(path)[: -len("-index.build.txt")]
        if not any(d == name or d.startswith(name + "-") for d in datasets):
            continue
        with open(path) as f:
            m = BUILD_LINE.search(f.read())
        if m:
            n, d, metric, parts, mib, secs, rss = m.groups()
            rows.append(f"| {name} | {int(n):,} × {d} ({metric}) | {parts} | {float(mib):,.0f} | {float(secs):.1f} | {int(rss):,} |")
    if not rows:
        return ""
    head = "| dataset | vectors | partitions | index MiB | build s | peak RSS MiB |\n|---|---|---:|---:|---:|---:|\n"
    return head + "\n".join(rows) + "\n"


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}"


def plots(points, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    written = []
    for dataset in sorted({p["dataset"] for p in points}):
        pts = [p for p in points if p["dataset"] == dataset]
        cases = sorted({p["label"] for p in pts}, key=harness.case_order)
        fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 4), squeeze=False)
        for ax, case in zip(axes[0], cases):
            for system in sorted({p["system"] for p in pts}):
                s = sorted((p for p in pts if p["label"] == case and p["system"] == system), key=lambda p: p["recall"])
                if not s:
                    continue
                front = pareto(s)
                style = dict(marker="o", linewidth=2.2) if system == "squash" else dict(marker=".", linewidth=1)
                ax.plot([p["recall"] for p in front], [p["qps"] for p in front], label=system, **style)
            ax.set_yscale("log")
            ax.set_xlabel("recall@10")
            ax.set_title(f"{dataset} · {case}")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel("queries per second (1 core)")
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = os.path.join(out_dir, f"{dataset}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def pareto(points):
    """Points not beaten on both recall and QPS, by rising recall."""
    front = []
    for p in sorted(points, key=lambda p: (-p["recall"], -p["qps"])):
        if not front or p["qps"] > front[-1]["qps"]:
            front.append(p)
    return sorted(front, key=lambda p: p["recall"])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--bench", default="target/bench", help="directory of the bench's JSON lines")
    ap.add_argument("--builds", default="data", help="where the *-index.build.txt lines are")
    ap.add_argument("--check", action="store_true", help="fail unless the run is complete and faiss-flat is exact")
    a = ap.parse_args()
    points, skipped = load_points(a.bench)
    if not points:
        raise SystemExit(f"no benchmark points under {a.bench}")
    with open(os.path.join(a.bench, "results.jsonl"), "w") as f:
        for p in points + skipped:
            f.write(json.dumps(p) + "\n")
    text = ["# squash bench", "", f"Machine: {machine()}", ""]
    versions = {p["system"].split("-")[0]: p.get("version") for p in points if p.get("version")}
    if versions:
        text += ["Peers: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())), ""]
    queries = sorted({p["queries"] for p in points})
    text += [f"Queries per point: {queries}; k = 10; one core; median of the timed passes.", ""]
    text += ["## Best QPS at a recall target", "", harness.summary_table(points)]
    if skipped:
        text += ["Points abandoned for time (over 4 × the per-point budget):", ""]
        text += [f"- {s['dataset']} {s['label']} {s['system']} {s['params']}: {s['skipped']}" for s in skipped]
        text += [""]
    builds = build_table(a.builds, {p['dataset'] for p in points})
    if builds:
        text += ["## Build", "", builds]
    cost = os.path.join(a.bench, "cost.md")
    if os.path.exists(cost):
        with open(cost) as f:
            text += ["## Cost", "", f.read()]
    written = plots(points, os.path.join(a.bench, "plots"))
    text += ["## Plots", ""] + [f"- {os.path.relpath(p, a.bench)}" for p in written] + [""]
    with open(os.path.join(a.bench, "table.md"), "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))
    if a.check:
        problems = check(points, a.bench, written)
        if problems:
            raise SystemExit("bench check failed:\n  " + "\n  ".join(problems))
        print(f"bench check: {len(points)} points, every system and case present, faiss-flat exact")


SYSTEMS = ("squash", "faiss-flat", "faiss-ivf", "faiss-ivfsq8", "hnswlib", "lancedb-ivfpq", "lancedb-hnswsq")


def check(points, bench, plots_written):
    """What a complete run must show: every system on every dataset and case, the exact
    baseline scoring 1 (the harness's filters and recall agree with squash's ground
    truth), the cost table and one plot per dataset."""
    problems = []
    for dataset in sorted({p["dataset"] for p in points}):
        cases = {p["label"] for p in points if p["dataset"] == dataset}
        for system in SYSTEMS:
            for case in sorted(cases):
                pts = [p for p in points if (p["dataset"], p["label"], p["system"]) == (dataset, case, system)]
                if not pts:
                    problems.append(f"{dataset} {case}: no {system} point")
                elif system == "faiss-flat" and min(p["recall"] for p in pts) < 0.999:
                    problems.append(f"{dataset} {case}: faiss-flat (exact) recall {min(p['recall'] for p in pts):.4f}")
        if not any(p.endswith(f"{dataset}.png") for p in plots_written):
            problems.append(f"{dataset}: no plot")
    if not os.path.exists(os.path.join(bench, "cost.md")):
        problems.append("no cost.md")
    return problems


if __name__ == "__main__":
    main()
