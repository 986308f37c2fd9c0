"""Tabulates launch/experiment.sh runs: the final eval of every <config>-s<seed>/metrics.jsonl,
as a Markdown table of mean +- sample std over seeds per task and for the mean score.
Usage: python3 launch/exp_table.py EXP_DIR CONFIG [CONFIG ...]"""
import glob
import json
import os
import statistics
import sys


def metric_rows(path, kind):
    """The rows of one type ("eval", "ranks", ...) of a metrics.jsonl, skipping a torn line."""
    with open(path) as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("type") == kind:
                yield j


def final_eval(path):
    last = None
    for j in metric_rows(path, "eval"):
        last = j
    return last


def fmt(xs):
    if not xs:
        return "-"
    m = statistics.mean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.3f} ± {sd:.3f}"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    exp, configs = sys.argv[1], sys.argv[2:]
    tasks, rows = None, []
    for c in configs:
        runs = sorted(glob.glob(os.path.join(exp, f"{c}-s*", "metrics.jsonl")))
        evals = [e for e in (final_eval(r) for r in runs) if e]
        if not evals:
            continue
        tasks = tasks or evals[0]["task_names"]
        cols = [fmt([e["scores"][t]["score"] for e in evals]) for t in tasks]
        rows.append((c, len(evals), evals[0]["step"], cols, fmt([e["mean"] for e in evals])))
    if not rows:
        sys.exit(f"no finished runs under {exp}")
    print("| config | seeds | steps | " + " | ".join(tasks) + " | mean |")
    print("|---" * (len(tasks) + 4) + "|")
    for c, n, step, cols, mean in rows:
        print(f"| {c} | {n} | {step} | " + " | ".join(cols) + f" | {mean} |")


if __name__ == "__main__":
    main()
