#!/usr/bin/env python3
"""Summary of `bash launch/bench.sh realdata` (docs/benchmarks.md, "Real data").

Reads the JSON lines of results.jsonl from line FIRST on with tags rd_<shape>_<set>_<side> (one
line per run; the k-th run of a tag is round k) and prints, per shape and data set, a Markdown
table: real (non-pad) tokens/s per side (fastest and median over the rounds: each run's real
tokens/s is its timed steps' real tokens over their seconds), padding fraction, and the ratios
the targets of issue 25 name, each as fastest/fastest, median/median and the median of the
per-round ratios (sides paired by round: the same minutes of a noisy machine). It also checks
that every side trained on the same examples (the same real tokens in every timed step) and
names the host's CPU: every ratio holds for that CPU only.
Usage: realdata_summary.py RESULTS.jsonl [FIRST_LINE=1]
"""
import json, statistics, sys

SIDE_NAMES = {
    "padded": "trainer MoRE r8, padded (data.bucket=16)",
    "packed": "trainer MoRE r8, packed (data.packing=true)",
    "packed_long": "trainer MoRE r8, packed into longer rows (data.pack_len)",
    "packed_b1": "trainer MoRE r8, packed, row length not rounded (data.bucket=1)",
    "padded_b1": "trainer MoRE r8, padded to the longest (data.bucket=1)",
    "padded_lora": "trainer LoRA r8, padded",
    "packed_lora": "trainer LoRA r8, packed",
    "eager": "eager PyTorch LoRA r8, dynamic padding",
    "compiled": "torch.compile LoRA r8, dynamic padding",
    "hf": "transformers + PEFT LoRA r8, dynamic padding",
}
# (numerator, denominator, what it is): "x faster" = real tokens/s of the first over the second
RATIOS = [("packed", "padded", "packed / padded (MoRE)"), ("packed_long", "padded", "packed (pack_len) / padded (MoRE)"),
          ("packed_long", "packed", "packed (pack_len) / packed (MoRE)"),
          ("packed_b1", "padded", "packed (bucket 1) / padded (MoRE)"), ("packed_b1", "packed", "packed (bucket 1) / packed (MoRE)"), ("packed_lora", "padded_lora", "packed / padded (LoRA)"),
          ("packed", "compiled", "packed MoRE / compiled"), ("packed_lora", "compiled", "packed LoRA / compiled"),
          ("padded", "compiled", "padded MoRE / compiled"), ("padded_b1", "compiled", "padded (bucket 1) MoRE / compiled"), ("padded_lora", "compiled", "padded LoRA / compiled"),
          ("packed", "eager", "packed MoRE / eager"), ("padded", "eager", "padded MoRE / eager"),
          ("padded_lora", "eager", "padded LoRA / eager"), ("packed_lora", "eager", "packed LoRA / eager"),
          ("compiled", "eager", "compiled / eager")]


def host_cpu():
    info = open("/proc/cpuinfo").read().splitlines()
    cpu = next((l.split(":", 1)[1].strip() for l in info if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in info if l.startswith("flags")), [])
    n = sum(1 for l in info if l.startswith("processor"))
    return (f"{cpu}, {n} logical CPUs, {'AMX' if 'amx_bf16' in flags else 'no AMX'}, "
            f"{'AVX512-BF16' if 'avx512_bf16' in flags else 'no AVX512-BF16'}")


def main():
    path, first = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
    runs = {}  # (shape, set) -> side -> [json]
    for line in open(path).read().splitlines()[first - 1:]:
        if '"rd_' not in line:
            continue
        j = json.loads(line.split("BENCH ", 1)[-1])
        tag = j.get("tag", "")
        if not tag.startswith("rd_"):
            continue
        _, shape, dset, side = tag.split("_", 3)
        runs.setdefault((shape, dset), {}).setdefault(side, []).append(j)
    print(f"host CPU: {host_cpu()}")
    ok = True
    for (shape, dset), sides in runs.items():
        rate = {s: [r["real_tokens_per_s"] for r in rs] for s, rs in sides.items()}
        ref = next(iter(sides.values()))[0]["step_tokens"]
        same = all(r["step_tokens"] == ref for rs in sides.values() for r in rs)
        ok &= same
        n = min(len(v) for v in rate.values())
        print(f"\n### {shape}, {dset}: {len(ref)} timed steps, {sum(ref)} real tokens per run, "
              f"{n}-{max(len(v) for v in rate.values())} rounds; same examples on every side: "
              f"{'yes' if same else 'NO (step_tokens differ)'}\n")
        print("| side | real tokens/s fastest | median | positions/s median | padding |")
        print("|---|---|---|---|---|")
        for s in SIDE_NAMES:
            if s not in sides:
                continue
            pad = statistics.median(r["pad_fraction"] for r in sides[s])
            pos = statistics.median(r["padded_tokens_per_s"] for r in sides[s])
            extra = ""
            if s == "compiled":
                rc = [r.get("timed_recompiles", 0) for r in sides[s]]
                if any(rc):
                    extra = f" ({sum(rc)} recompilations in timed steps)"
            print(f"| {SIDE_NAMES[s]}{extra} | {max(rate[s]):.0f} | {statistics.median(rate[s]):.0f} | "
                  f"{pos:.0f} | {100 * pad:.0f}% |")
        print("\n| ratio (real tokens/s) | fastest / fastest | median / median | median of per-round ratios |")
        print("|---|---|---|---|")
        for a, b, name in RATIOS:
            if a in rate and b in rate:
                paired = [x / y for x, y in zip(rate[a], rate[b])]
                print(f"| {name} | {max(rate[a]) / max(rate[b]):.2f}x | "
                      f"{statistics.median(rate[a]) / statistics.median(rate[b]):.2f}x | "
                      f"{statistics.median(paired):.2f}x |")
    if not runs:
        print("no rd_* results after line", first)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
