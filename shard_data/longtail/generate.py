#!/usr/bin/env python3
"""A long-tailed length mix for the real-data benchmark (docs/benchmarks.md, "Real data").

Writes a pre-tokenized manifest (docs/data.md#pre-tokenized-input) of TASKS classification tasks
whose examples' total lengths (BOS + prompt + one target token + EOS) are drawn log-uniformly
from [MIN, MAX] tokens (default 10-256): equal probability mass in every octave (10-20, 20-40, ...,
160-256), median sqrt(MIN * MAX) = 51, mean (MAX - MIN) / ln(MAX / MIN) = 76 tokens. Why this
distribution: multi-task fine-tuning sets mix short classification prompts (SST-2, CoLA: ~10-30
tokens) with sentence pairs and short paragraphs (MNLI, QQP, RTE: 40-250 tokens), and their
length histograms are heavy on the short side with a long right tail, roughly log-normal. A
log-uniform draw is the simplest documented stand-in that covers the whole 10-256 range with that
shape; per-batch padding pads such a mix to its longest example (the expected maximum of 8 draws
is ~190 tokens), which is the case packing is for.

The token ids are uniform random over [3, vocab) (only the lengths matter for throughput; the
bench models are random too). Deterministic for a given --seed.
Usage: generate.py OUT_DIR --tokenizer FILE --vocab-size V [--bos 1 --eos 2 --pad 0]
                   [--tasks 4 --examples 2000 --min 10 --max 256 --seed 1]
"""
import argparse, json, math, os, random, sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tokenizer", required=True, help="the file the ids belong to (hashed into the shards)")
    ap.add_argument("--vocab-size", type=int, required=True)
    ap.add_argument("--bos", type=int, default=1)
    ap.add_argument("--eos", type=int, default=2)
    ap.add_argument("--pad", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--examples", type=int, default=2000, help="per task")
    ap.add_argument("--min", type=int, default=10)
    ap.add_argument("--max", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    if not 4 <= a.min <= a.max:
        ap.error("need 4 <= --min <= --max (BOS + >= 1 prompt token + target + EOS)")
    if a.vocab_size <= 5:
        ap.error("--vocab-size must be > 5")
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    cands = [3, 4]  # two candidate target tokens per task
    tasks, lengths = [], []
    for t in range(a.tasks):
        name = f"longtail{t}"
        with open(os.path.join(a.out, name + ".train.jsonl"), "w") as f:
            for _ in range(a.examples):
                # log-uniform over [min, max], rounded to a whole token count
                n = min(a.max, max(a.min, round(math.exp(rng.uniform(math.log(a.min), math.log(a.max))))))
                lab = rng.randrange(2)
                prompt = [rng.randrange(3, a.vocab_size) for _ in range(n - 3)]
                f.write(json.dumps({"input_ids": [a.bos] + prompt, "target_ids": [cands[lab], a.eos],
                                    "label": ["no", "yes"][lab]}) + "\n")
                lengths.append(n)
        tasks.append({"name": name, "metric": "accuracy", "candidates": ["no", "yes"],
                      "candidate_ids": [[c] for c in cands], "train": name + ".train.jsonl"})
    manifest = {"tokenizer": {"file": os.path.abspath(a.tokenizer), "vocab_size": a.vocab_size,
                              "bos_id": a.bos, "eos_id": a.eos, "pad_id": a.pad}, "tasks": tasks}
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    lengths.sort()
    print(f"{len(lengths)} examples in {a.tasks} tasks, lengths {lengths[0]}-{lengths[-1]}, "
          f"median {lengths[len(lengths) // 2]}, mean {sum(lengths) / len(lengths):.1f}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
