#!/usr/bin/env python3
"""Figures from MoRE training runs (numpy + matplotlib only).

Usage:
  python3 launch/plot.py loss RUN_DIR [RUN_DIR ...] --out loss.png [--labels a,b] [--smooth 5]
      One panel per task: training gen_loss vs step, one curve per run
      (centred moving average over --smooth logged points, raw points faint), plus a last
      panel with the eval mean score.
      A train line mixes micro-batches of several tasks and only logs one gen_loss, so a line
      counts for task t when t is among its "tasks" (the loss is that of the mixed step).
  python3 launch/plot.py ranks RUN_DIR --out ranks.png [--step N]
      Rank chosen per task (rows) and adapted module (columns, layer then q k v o gate up down)
      from the last eval line (or the one at step N); MoRE runs only (exit 2 for LoRA).
  python3 launch/plot.py embeddings CKPT_DIR --out emb.png [--names a,b,c]
      Task embeddings: every module's E row of a task is L2-normalised and the rows of all
      modules are concatenated into the task's full embedding. Left: PCA to 2-D (SVD of the
      centred task x feature matrix). Right: cosine similarity between full embeddings (the
      mean of the per-module cosines). CKPT_DIR holds adapters.stage-*.safetensors (a
      checkpoint) or adapters.safetensors (an export). Task names: --names, else state.json /
      adapter_config.json, else the run's metrics.jsonl, else task0..taskN.
  python3 launch/plot.py all RUN_DIR --out-dir DIR [--ckpt-dir D] [--smooth 5]
      loss.png, ranks.png (MoRE) and embeddings.png (newest step-* under --ckpt-dir, else
      RUN_DIR/checkpoints, else the ckpt.dir of RUN_DIR/config.resolved.toml) into DIR.

RUN_DIR is a run's out_dir (holding metrics.jsonl) or the metrics.jsonl file itself.
Exit codes: 0 ok, 1 missing/bad input, 2 not a MoRE run (no task_ranks / no E tensors).
numpy and matplotlib come from Debian apt: run with /usr/bin/python3 if another python3 lacks them.
"""
import argparse
import glob
import json
import math
import os
import re
import struct
import sys

import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import BoundaryNorm  # noqa: E402

KIND_ORDER = ["q", "k", "v", "o", "gate", "up", "down"]
LAYERS_PER_ROW = 8  # ranks figure: layers per heatmap row
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class PlotError(Exception):
    """A user-facing error: printed to stderr, exit with `code`."""

    def __init__(self, msg, code=1):
        super().__init__(msg)
        self.code = code


# ----------------------------------------------------------------------------- inputs
def metrics_path(run):
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise PlotError(f"no metrics file: {path}")
    return path


def read_metrics(run):
    """(train lines, eval lines), each sorted by step; a repeated step (resume) keeps the last."""
    lines = {"train": {}, "eval": {}}
    with open(metrics_path(run)) as f:
        for n, text in enumerate(f, 1):
            text = text.strip()
            if not text:
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError:
                print(f"warning: {run}: line {n} is not JSON, skipped", file=sys.stderr)
                continue
            if isinstance(rec, dict) and rec.get("type") in lines and "step" in rec:
                lines[rec["type"]][rec["step"]] = rec
    return tuple([d[s] for s in sorted(d)] for d in (lines["train"], lines["eval"]))


def task_names_of(evals):
    for rec in reversed(evals):
        if rec.get("task_names"):
            return list(rec["task_names"])
    return []


def module_key(name):
    """Sort key for "layers.<i>.<kind>": layer number, then q k v o gate up down."""
    m = re.match(r"layers\.(\d+)\.(\w+)$", name)
    if not m:
        return (math.inf, len(KIND_ORDER), name)
    kind = m.group(2)
    order = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return (int(m.group(1)), order, kind)


def read_safetensors(path):
    dtypes = {"F32": np.float32, "F64": np.float64, "F16": np.float16}
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise PlotError(f"{path}: not a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data, out = raw[8 + n:], {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(data[begin:end], "<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in dtypes:
            arr = np.frombuffer(data[begin:end], np.dtype(dtypes[info["dtype"]]).newbyteorder("<"))
        else:
            continue  # integer tensors are of no use here
        out[name] = arr.astype(np.float32).reshape(info["shape"])
    return out


def load_adapters(ckpt):
    files = sorted(glob.glob(os.path.join(ckpt, "adapters.stage-*.safetensors")))
    files = files or glob.glob(os.path.join(ckpt, "adapters.safetensors"))
    if not files:
        raise PlotError(f"no adapters.stage-*.safetensors or adapters.safetensors in {ckpt}")
    tensors = {}
    for path in files:
        tensors.update(read_safetensors(path))
    return tensors


def resolve(path):
    """A path from a config: relative to the cwd, else to the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(REPO_ROOT, path)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ckpt_task_names(ckpt, count):
    state = load_json(os.path.join(ckpt, "state.json")) or {}
    export = load_json(os.path.join(ckpt, "adapter_config.json")) or {}
    # the adapter record (checkpoints and exports since it exists), then the older fields
    candidates = [state.get("adapter_record", {}).get("tasks"), export.get("adapter_record", {}).get("tasks"),
                  state.get("task_names"), export.get("tasks")]
    out_dir = state.get("config", {}).get("train", {}).get("out_dir")
    runs = ([resolve(out_dir)] if out_dir else []) + [os.path.join(ckpt, "..", ".."),
                                                     os.path.join(ckpt, "..")]
    for run in runs:
        if os.path.isfile(os.path.join(run, "metrics.jsonl")):
            candidates.append(task_names_of(read_metrics(run)[1]))
    for names in candidates:
        if names and len(names) == count:
            return list(names)
    return [f"task{i}" for i in range(count)]


def find_checkpoint(run, ckpt_dir=None):
    """The newest step-* checkpoint (or ckpt_dir itself when it holds adapters)."""
    roots = [ckpt_dir] if ckpt_dir else [os.path.join(run, "checkpoints")]
    if not ckpt_dir:
        toml = os.path.join(run, "config.resolved.toml")
        if os.path.isfile(toml):
            section = None
            for line in open(toml):
                m = re.match(r"\s*\[(\w+)\]", line)
                section = m.group(1) if m else section
                m = re.match(r'\s*dir\s*=\s*"([^"]+)"', line)
                if section == "ckpt" and m:
                    roots.append(resolve(m.group(1)))
    for root in roots:
        if glob.glob(os.path.join(root, "adapters*.safetensors")):
            return root
        steps = [d for d in glob.glob(os.path.join(root, "step-*")) if os.path.isdir(d)]
        steps = [d for d in steps if re.search(r"step-(\d+)$", d)]
        if steps:
            return max(steps, key=lambda d: int(re.search(r"step-(\d+)$", d).group(1)))
    raise PlotError(f"no checkpoint found (looked in: {', '.join(roots)})")


# ----------------------------------------------------------------------------- figures
def moving_average(y, window):
    """Centred mean over `window` points (truncated at the ends), same length as y."""
    y = np.asarray(y, float)
    c = np.cumsum(np.insert(y, 0, 0.0))
    window = max(1, window)
    idx = np.arange(len(y))
    lo = np.maximum(idx - window // 2, 0)
    hi = np.minimum(idx - window // 2 + window, len(y))
    return (c[hi] - c[lo]) / (hi - lo)


def plot_loss(runs, out, labels=None, smooth=5):
    labels = labels or [os.path.basename(os.path.normpath(r)) or r for r in runs]
    if len(labels) != len(runs):
        raise PlotError(f"--labels has {len(labels)} names for {len(runs)} runs")
    data, tasks = [], []
    for run in runs:
        train, evals = read_metrics(run)
        names = task_names_of(evals)
        per_task = {}
        for rec in train:
            if "gen_loss" not in rec or not rec.get("tasks") or rec.get("skipped"):
                continue
            for t in sorted(set(rec["tasks"])):
                name = names[t] if t < len(names) else f"task{t}"
                per_task.setdefault(name, []).append((rec["step"], rec["gen_loss"]))
        tasks += [t for t in (names or sorted(per_task)) if t not in tasks]
        tasks += [t for t in sorted(per_task) if t not in tasks]
        data.append((per_task, [(e["step"], e["mean"]) for e in evals if "mean" in e]))
    if not tasks and not any(d[1] for d in data):
        raise PlotError("no train or eval lines in " + ", ".join(runs))
    n = len(tasks) + 1
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False,
                             layout="constrained")
    axes = axes.ravel()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, task in enumerate(tasks + ["__eval__"]):
        ax = axes[i]
        for j, (per_task, evals) in enumerate(data):
            color = colors[j % len(colors)]
            pts = evals if task == "__eval__" else per_task.get(task, [])
            if not pts:
                continue
            x, y = np.array(pts, float).T
            if task == "__eval__":
                ax.plot(x, y, "o-", color=color, label=labels[j], ms=4)
            else:
                ax.plot(x, y, ".", color=color, alpha=0.45, ms=6)
                ax.plot(x, moving_average(y, smooth), "-", color=color, label=labels[j])
        ax.set_title("eval mean score" if task == "__eval__" else f"{task}: train gen_loss")
        ax.set_xlabel("step")
        ax.set_ylabel("mean score" if task == "__eval__" else "gen_loss")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    steps = [s for per_task, ev in data for pts in list(per_task.values()) + [ev] for s, _ in pts]
    pad = 0.03 * max(max(steps) - min(steps), 10)
    for ax in axes[:n]:
        ax.set_xlim(min(steps) - pad, max(steps) + pad)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle("Per-task training loss (dots: logged steps; lines: centred moving average"
                 f" over {smooth})")
    save(fig, out)


def plot_ranks(run, out, step=None):
    _, evals = read_metrics(run)
    evals = [e for e in evals if e.get("task_ranks")]
    if not evals:
        raise PlotError(f"{run}: no task_ranks in any eval line (not a MoRE run?)", code=2)
    if step is not None:
        match = [e for e in evals if e["step"] == step]
        if not match:
            raise PlotError(f"no eval line with task_ranks at step {step}; steps: "
                            + ", ".join(str(e["step"]) for e in evals))
        evals = match
    rec = evals[-1]
    modules = sorted(rec["task_ranks"], key=module_key)
    grid = np.array([rec["task_ranks"][m] for m in modules], float).T  # [T, M]
    tasks = list(rec.get("task_names") or [f"task{i}" for i in range(grid.shape[0])])
    rmax = int(max(grid.max(), 1))
    norm = BoundaryNorm(np.arange(0.5, rmax + 1.5), plt.get_cmap("viridis").N)
    layers = [module_key(m)[0] for m in modules]
    starts = [i for i in range(len(layers)) if i == 0 or layers[i] != layers[i - 1]]
    chunks = [(starts[i], (starts + [len(layers)])[min(i + LAYERS_PER_ROW, len(starts))])
              for i in range(0, len(starts), LAYERS_PER_ROW)]  # module ranges, one per panel
    width = max(e - s for s, e in chunks)
    fig, axes = plt.subplots(len(chunks), 1, squeeze=False, figsize=(
        max(6.0, 0.4 * width + 3.5), (1.2 + 0.45 * len(tasks)) * len(chunks) + 0.4))
    for ax, (lo, hi) in zip(axes[:, 0], chunks):
        im = ax.imshow(grid[:, lo:hi], cmap="viridis", norm=norm, aspect="auto")
        for (t, m), v in np.ndenumerate(grid[:, lo:hi]):
            ax.text(m, t, f"{int(v)}", ha="center", va="center", fontsize=8,
                    color="black" if v > 0.6 * rmax else "white")
        ax.set_xticks(range(hi - lo), [module_key(m)[2] for m in modules[lo:hi]],
                      rotation=90, fontsize=8)
        ax.set_yticks(range(len(tasks)),
                      [f"{t} (mean {r:.1f})" for t, r in zip(tasks, grid.mean(1))])
        ax.set_xlim(-0.5, width - 0.5)
        ax.spines[:].set_visible(False)
        first = [i - lo for i in starts if lo <= i < hi]
        for i in first[1:]:
            ax.axvline(i - 0.5, color="white", lw=2)
        top = ax.secondary_xaxis("top")
        top.set_xticks([(s + e - 1) / 2 for s, e in zip(first, first[1:] + [hi - lo])],
                       [f"layer {layers[lo + s]}" for s in first], fontsize=8)
        top.tick_params(length=0)
        cbar = fig.colorbar(im, ax=ax, ticks=range(1, rmax + 1), pad=0.01)
        cbar.set_label("chosen rank")
    axes[0, 0].set_title(f"Rank allocated per task and module (eval at step {rec['step']};"
                         " row label: mean over modules)", pad=22)
    save(fig, out)


def plot_embeddings(ckpt, out, names=None):
    if not os.path.isdir(ckpt):
        raise PlotError(f"no checkpoint directory: {ckpt}")
    tensors = load_adapters(ckpt)
    modules = sorted((k[:-2] for k in tensors if k.endswith(".E")), key=module_key)
    if not modules:
        raise PlotError(f"{ckpt}: no task embeddings (.E tensors); not a MoRE checkpoint?", code=2)
    blocks = []
    for m in modules:
        e = tensors[m + ".E"].astype(np.float64)
        blocks.append(e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12))
    full = np.concatenate(blocks, axis=1)  # [T, sum d_in]
    count = full.shape[0]
    if names and len(names) != count:
        raise PlotError(f"--names has {len(names)} names, the checkpoint has {count} tasks")
    names = names or ckpt_task_names(ckpt, count)
    centred = full - full.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    xy = np.zeros((count, 2))
    k = min(2, len(s))
    xy[:, :k] = u[:, :k] * s[:k]
    var = np.zeros(2)
    var[:k] = s[:k] ** 2 / max((s ** 2).sum(), 1e-30) * 100
    unit = full / np.linalg.norm(full, axis=1, keepdims=True)
    cos = unit @ unit.T
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 5.2))
    a0.scatter(xy[:, 0], xy[:, 1], c=[f"C{i % 10}" for i in range(count)], s=70)
    for i, name in enumerate(names):
        a0.annotate(name, xy[i], textcoords="offset points", xytext=(6, 6), fontsize=9)
    a0.set_xlabel(f"PC1 ({var[0]:.0f}% of variance)")
    a0.set_ylabel(f"PC2 ({var[1]:.0f}% of variance)")
    a0.set_title(f"Task embeddings, PCA ({len(modules)} modules, rows L2-normalised)")
    a0.margins(0.25)
    a0.grid(alpha=0.3)
    im = a1.imshow(cos, cmap="RdBu_r", vmin=-1, vmax=1)
    for (i, j), v in np.ndenumerate(cos):
        a1.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                color="white" if abs(v) > 0.6 else "black")
    a1.set_xticks(range(count), names, rotation=45, ha="right")
    a1.set_yticks(range(count), names)
    a1.set_title("Cosine similarity of task embeddings")
    fig.colorbar(im, ax=a1, fraction=0.046, pad=0.04)
    fig.suptitle(os.path.normpath(ckpt))
    save(fig, out)


def save(fig, out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if not fig.get_constrained_layout():
        fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")


def plot_all(run, out_dir, ckpt_dir=None, smooth=5):
    plot_loss([run], os.path.join(out_dir, "loss.png"), smooth=smooth)
    jobs = {"ranks": lambda out: plot_ranks(run, out),
            "embeddings": lambda out: plot_embeddings(find_checkpoint(run, ckpt_dir), out)}
    for name, make in jobs.items():
        try:
            make(os.path.join(out_dir, name + ".png"))
        except PlotError as e:
            print(f"skipped {name}.png: {e}", file=sys.stderr)


# ----------------------------------------------------------------------------- CLI
def main(argv=None):
    p = argparse.ArgumentParser(prog="plot.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("loss", help="per-task train loss curves + eval mean")
    s.add_argument("runs", nargs="+", metavar="RUN_DIR")
    s.add_argument("--out", required=True)
    s.add_argument("--labels", help="comma-separated legend names, one per RUN_DIR")
    s.add_argument("--smooth", type=int, default=5, help="moving-average window (logged points)")
    s = sub.add_parser("ranks", help="rank chosen per task and module (MoRE)")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--out", required=True)
    s.add_argument("--step", type=int, help="eval step (default: the last)")
    s = sub.add_parser("embeddings", help="task embedding PCA + cosine similarity (MoRE)")
    s.add_argument("ckpt", metavar="CKPT_DIR")
    s.add_argument("--out", required=True)
    s.add_argument("--names", help="comma-separated task names")
    s = sub.add_parser("all", help="loss.png, ranks.png, embeddings.png")
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--ckpt-dir", help="checkpoint dir (a step-* dir or the dir holding them)")
    s.add_argument("--smooth", type=int, default=5)
    a = p.parse_args(argv)
    split = lambda v: [x.strip() for x in v.split(",")] if v else None  # noqa: E731
    try:
        if a.cmd == "loss":
            plot_loss(a.runs, a.out, split(a.labels), a.smooth)
        elif a.cmd == "ranks":
            plot_ranks(a.run, a.out, a.step)
        elif a.cmd == "embeddings":
            plot_embeddings(a.ckpt, a.out, split(a.names))
        else:
            plot_all(a.run, a.out_dir, a.ckpt_dir, a.smooth)
    except PlotError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
