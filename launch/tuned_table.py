"""Tabulates `launch/experiment.sh tuned`: every config at every learning rate (runs
<config>-lr<lr>-s<seed>). Prints the mean score (mean ± sample std over seeds) per config and lr;
each config at its best lr (the highest mean over seeds) per task; and per seed, the difference
of each config at its best lr from the first config (the reference, LoRA r8 by default) at its
best lr, on the seeds both have.
Usage: python3 launch/tuned_table.py EXP_DIR --configs C [C ...] --lrs LR [LR ...] [--seeds S ...]
(--seeds: only these seeds, e.g. to compare learning rates on the seeds every lr has)"""
import argparse
import glob
import os
import re
import statistics

from exp_table import final_eval, fmt


def runs(exp, config, lr, seeds=None):
    """{seed: final eval line} of one config at one lr (only `seeds`, when given)."""
    out = {}
    for m in glob.glob(os.path.join(exp, f"{config}-lr{lr}-s*", "metrics.jsonl")):
        e = final_eval(m)
        seed = int(re.search(r"-s(\d+)$", os.path.dirname(m)).group(1))
        if e and (not seeds or seed in seeds):
            out[int(re.search(r"-s(\d+)$", os.path.dirname(m)).group(1))] = e
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("exp")
    ap.add_argument("--configs", nargs="+", required=True)
    ap.add_argument("--lrs", nargs="+", required=True)
    ap.add_argument("--seeds", nargs="+", type=int)
    a = ap.parse_args()
    grid = {(c, lr): runs(a.exp, c, lr, a.seeds) for c in a.configs for lr in a.lrs}
    if not any(grid.values()):
        raise SystemExit(f"no finished tuned runs under {a.exp}")
    print("Mean score by learning rate (mean ± std over seeds, number of seeds):\n")
    print("| config | " + " | ".join(f"lr {lr}" for lr in a.lrs) + " |")
    print("|---" * (len(a.lrs) + 1) + "|")
    best = {}
    for c in a.configs:
        cells = []
        for lr in a.lrs:
            r = grid[(c, lr)]
            cells.append(f"{fmt([e['mean'] for e in r.values()])} ({len(r)})" if r else "-")
        done = [lr for lr in a.lrs if grid[(c, lr)]]
        if done:
            best[c] = max(done, key=lambda lr: statistics.mean(e["mean"] for e in grid[(c, lr)].values()))
        print(f"| {c} | " + " | ".join(cells) + " |")
    if not best:
        return
    tasks = next(iter(next(r for r in grid.values() if r).values()))["task_names"]
    print("\nEach config at its best learning rate:\n")
    print("| config | best lr | seeds | " + " | ".join(tasks) + " | mean |")
    print("|---" * (len(tasks) + 4) + "|")
    for c, lr in best.items():
        r = grid[(c, lr)]
        cols = [fmt([e["scores"][t]["score"] for e in r.values()]) for t in tasks]
        print(f"| {c} | {lr} | {len(r)} | " + " | ".join(cols) + f" | {fmt([e['mean'] for e in r.values()])} |")
    ref = a.configs[0]
    if ref not in best:
        return
    rr = grid[(ref, best[ref])]
    print(f"\nPaired by seed, each at its best lr: mean score minus {ref}'s:\n")
    print("| config | " + " | ".join(f"seed {s}" for s in sorted(rr)) + " | mean difference |")
    print("|---" * (len(rr) + 2) + "|")
    for c, lr in best.items():
        if c == ref:
            continue
        r = grid[(c, lr)]
        diffs = {s: r[s]["mean"] - rr[s]["mean"] for s in rr if s in r}
        cells = [f"{diffs[s]:+.3f}" if s in diffs else "-" for s in sorted(rr)]
        print(f"| {c} | " + " | ".join(cells) + f" | {fmt(list(diffs.values()))} |")


if __name__ == "__main__":
    main()
