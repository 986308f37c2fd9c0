"""Tabulates `launch/experiment.sh table1` (single-task LoRA at several ranks, the paper's Table 1):
rows = ranks, columns = tasks, the final eval score as mean ± sample std over seeds (the best
mean per task in bold; runs that have not reached the last eval step are left out), then each task's best rank, the ranks within one std of it, and the mean
score at every eval step (did the runs converge?).
Usage: python3 launch/table1.py EXP_DIR [--tasks T ...] [--ranks 1 2 4 8] [--json OUT]"""
import argparse
import glob
import json
import os
import statistics

from exp_table import metric_rows  # same folder: the shared metrics.jsonl reader


def evals(path, task):
    """{step: score of `task`} of one run's eval lines."""
    return {j["step"]: j["scores"][task]["score"] for j in metric_rows(path, "eval") if task in j["scores"]}


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def best_ranks(exp, tasks, ranks):
    """{task: {rank: [final score per seed]}} and {task: best rank by mean} (the lower rank on ties)."""
    scores, best = {}, {}
    runs = {(t, r): [evals(m, t) for m in sorted(glob.glob(os.path.join(exp, f"t1_{t}_r{r}-s*", "metrics.jsonl")))]
            for t in tasks for r in ranks}
    # the final step is the last eval step any run reached: a run still going (or stopped early)
    # has not reached it and is left out
    last = max((max(e) for es in runs.values() for e in es if e), default=None)
    for t in tasks:
        scores[t] = {}
        for r in ranks:
            finals = [e[last] for e in runs[(t, r)] if last in e]
            if finals:
                scores[t][r] = finals
        if scores[t]:
            best[t] = max(scores[t], key=lambda r: (round(statistics.mean(scores[t][r]), 6), -r))
    return scores, best


def near_best(scores, best):
    """{task: ranks whose mean score is within one std (of the best rank's seeds, or 0.005 with
    one seed) of the best mean}: the ranks the runs do not separate from the best."""
    out = {}
    for t, r_best in best.items():
        m, sd = mean_sd(scores[t][r_best])
        out[t] = [r for r in sorted(scores[t]) if statistics.mean(scores[t][r]) >= m - max(sd, 0.005)]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exp")
    ap.add_argument("--tasks", nargs="+", default=["sentiment", "topic", "nli", "acceptability", "similarity"])
    ap.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--json", help="also write {task: best rank} here")
    a = ap.parse_args()
    scores, best = best_ranks(a.exp, a.tasks, a.ranks)
    tasks = [t for t in a.tasks if scores[t]]
    if not tasks:
        raise SystemExit(f"no finished table1 runs under {a.exp}")
    print("| rank | " + " | ".join(tasks) + " |")
    print("|---" * (len(tasks) + 1) + "|")
    for r in a.ranks:
        cells = []
        for t in tasks:
            if r not in scores[t]:
                cells.append("-")
                continue
            m, sd = mean_sd(scores[t][r])
            cell = f"{m:.3f} ± {sd:.3f} ({len(scores[t][r])})"
            cells.append(f"**{cell}**" if best[t] == r else cell)
        print(f"| {r} | " + " | ".join(cells) + " |")
    print("| best rank | " + " | ".join(str(best[t]) for t in tasks) + " |")
    tied = near_best(scores, best)
    print("| within 1 std of best | " + " | ".join(",".join(map(str, tied[t])) for t in tasks) + " |")
    # convergence: mean over ranks and seeds of each eval step
    steps = sorted({s for t in tasks for r in scores[t]
                    for m in glob.glob(os.path.join(a.exp, f"t1_{t}_r{r}-s*", "metrics.jsonl")) for s in evals(m, t)})
    print("\nMean score over ranks and seeds at each eval step (convergence):\n")
    print("| step | " + " | ".join(tasks) + " |")
    print("|---" * (len(tasks) + 1) + "|")
    for s in steps:
        cells = []
        for t in tasks:
            es = [evals(m, t) for r in scores[t] for m in glob.glob(os.path.join(a.exp, f"t1_{t}_r{r}-s*", "metrics.jsonl"))]
            xs = [e[s] for e in es if s in e and steps[-1] in e]  # finished runs only
            cells.append(f"{statistics.mean(xs):.3f}" if xs else "-")
        print(f"| {s} | " + " | ".join(cells) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(best, f)


if __name__ == "__main__":
    main()
