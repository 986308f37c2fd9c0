"""How many adapted modules choose task-dependent ranks (not the same rank for every trained
task), read from the "ranks" lines the trainer writes to metrics.jsonl at step 0 and at every
log step. Prints two Markdown tables: per config, the mean and per-seed counts at each step;
and the mean over modules and seeds of the number of distinct ranks the trained tasks choose.
Usage: python3 launch/rank_counts.py EXP_DIR CONFIG [CONFIG ...] [--steps 0 60 600 2000]"""
import argparse
import glob
import os
import statistics

from exp_table import metric_rows  # same folder: the shared metrics.jsonl reader


def counts(path):
    out = {}
    for j in metric_rows(path, "ranks"):
        tasks = j["trained_tasks"]
        distinct = [len({r[t] for t in tasks}) for r in j["task_ranks"].values()]
        out[j["step"]] = (j["task_dependent_modules"], j["modules"], sum(distinct) / len(distinct))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exp")
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--steps", nargs="+", type=int, default=[0, 60, 600, 2000])
    a = ap.parse_args()
    rows = []
    for c in a.configs:
        runs = sorted(glob.glob(os.path.join(a.exp, f"{c}-s*", "metrics.jsonl")))
        per_run = [counts(r) for r in runs]
        per_run = [p for p in per_run if p]
        if not per_run:
            continue
        modules = next(iter(per_run[0].values()))[1]
        cells, dcells = [], []
        for s in a.steps:
            xs = [p[s][0] for p in per_run if s in p]
            cells.append(f"{statistics.mean(xs):.1f} ({', '.join(map(str, xs))})" if xs else "-")
            ds = [p[s][2] for p in per_run if s in p]
            dcells.append(f"{statistics.mean(ds):.2f}" if ds else "-")
        rows.append((c, len(per_run), modules, cells, dcells))
    if not rows:
        return
    print(f"\nModules with task-dependent ranks, mean (per seed), of all adapted modules:\n")
    print("| config | seeds | modules | " + " | ".join(f"step {s}" for s in a.steps) + " |")
    print("|---" * (len(a.steps) + 3) + "|")
    for c, n, m, cells, _ in rows:
        print(f"| {c} | {n} | {m} | " + " | ".join(cells) + " |")
    print(f"\nDistinct ranks chosen by the trained tasks, mean over modules and seeds:\n")
    print("| config | " + " | ".join(f"step {s}" for s in a.steps) + " |")
    print("|---" * (len(a.steps) + 1) + "|")
    for c, n, m, _, dcells in rows:
        print(f"| {c} | " + " | ".join(dcells) + " |")


if __name__ == "__main__":
    main()
