"""Does MoRE's gate find each task's best rank? For MoRE runs of launch/experiment.sh, each
task's chosen rank over the adapted modules (the "ranks" lines of metrics.jsonl) at the given
steps, next to the task's best single-task LoRA rank from `launch/experiment.sh table1`
(launch/table1.py). Prints per config: mean chosen rank over modules and seeds (the per-seed
means in brackets) at each step, the share of modules that change their choice between the
first and the last step, and the Spearman correlation over tasks between the final mean chosen
rank and the best single-task rank.
Usage: python3 launch/rank_vs_best.py EXP_DIR CONFIG [CONFIG ...] [--table1 DIR] [--steps 0 200 600]"""
import argparse
import glob
import os
import statistics

from exp_table import metric_rows  # same folder: the shared metrics.jsonl reader
from table1 import best_ranks, near_best


def rank_lines(path):
    """{step: {module: [rank per task of the shards]}}"""
    out = {}
    for j in metric_rows(path, "ranks"):
        out[j["step"]] = j["task_ranks"]
    return out


def spearman(xs, ys):
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):  # average ranks of ties
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2.0
            i = j + 1
        return r
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return num / den if den else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exp")
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--table1", help="directory of the table1 runs (default: EXP_DIR)")
    ap.add_argument("--steps", nargs="+", type=int, default=[0, 200, 400, 600])
    a = ap.parse_args()
    tasks = None  # (name, column of task_ranks) of the trained tasks, from the first run found
    for c in a.configs:
        for r in sorted(glob.glob(os.path.join(a.exp, f"{c}-s*", "metrics.jsonl"))):
            j = next(metric_rows(r, "ranks"), None)
            if j:
                tasks = tasks or [(j["task_names"][i], i) for i in j["trained_tasks"]]
    if tasks is None:
        raise SystemExit(f"no MoRE runs with ranks lines under {a.exp}")
    scores, best = best_ranks(a.table1 or a.exp, [t for t, _ in tasks], [1, 2, 4, 8])
    tied = near_best(scores, best)
    label = {t: f"{best[t]}" + (f" (tied: {','.join(map(str, tied[t]))})" if len(tied[t]) > 1 else "") for t in best}
    print("| config | task | best single-task rank (ranks within 1 std) | " + " | ".join(f"chosen, step {s}" for s in a.steps) +
          " | modules that changed |")
    print("|---" * (len(a.steps) + 4) + "|")
    corr = {}
    for c in a.configs:
        per_run = [rank_lines(r) for r in sorted(glob.glob(os.path.join(a.exp, f"{c}-s*", "metrics.jsonl")))]
        per_run = [p for p in per_run if p]
        if not per_run:
            continue
        finals = []
        for t, col in tasks:
            cells = []
            for s in a.steps:
                seed_means = [statistics.mean(r[col] for r in p[s].values()) for p in per_run if s in p]
                cells.append(f"{statistics.mean(seed_means):.2f} ({', '.join(f'{m:.1f}' for m in seed_means)})"
                             if seed_means else "-")
            changed = []
            for p in per_run:
                lo, hi = min(p), max(p)
                changed.append(sum(p[lo][m][col] != p[hi][m][col] for m in p[lo]) / len(p[lo]))
            last = max(s for s in a.steps if all(s in p for p in per_run))
            finals.append(statistics.mean(statistics.mean(r[col] for r in p[last].values()) for p in per_run))
            print(f"| {c} | {t} | {label.get(t, '-')} | " + " | ".join(cells) +
                  f" | {100 * statistics.mean(changed):.0f}% |")
        if all(t in best for t, _ in tasks):
            corr[c] = spearman(finals, [best[t] for t, _ in tasks])
    print()
    for c, r in corr.items():
        print(f"- {c}: Spearman over tasks between the final mean chosen rank and the best single-task rank "
              f"(lowest of ties): {r:+.2f}")


if __name__ == "__main__":
    main()
