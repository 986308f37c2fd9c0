#!/usr/bin/env python3
"""Deterministic generator of the bundled few-shot transfer task (python3 stdlib only).

One new task for the few-shot domain transfer demo (docs/method.md, "Few-shot domain
transfer"): "review", binary sentiment of product reviews, scored with F1 (the second
candidate, "positive", is the positive class). It shares the label words and most adjectives
with the bundled "sentiment" task but not its subjects or sentence template, so a MoRE run can
start it from the sentiment task's embeddings:
  --transfer.from=<checkpoint> --transfer.tasks=review=sentiment
Train: SHOTS rows per class (few-shot); eval: 120 rows. Run: python3 generate.py [OUT_DIR]
(default: this dir). The output is byte-identical on every run.
"""
import json
import os
import random
import sys

SEED = 20251130
SHOTS = 8  # train rows per class
EVAL = 120

PRODUCTS = ["the phone", "the laptop", "the camera", "the blender", "the charger", "the headphones",
            "the kettle", "the keyboard", "the lamp", "the backpack"]
POSITIVE = ["wonderful", "great", "excellent", "lovely", "amazing", "superb", "brilliant", "good"]
NEGATIVE = ["terrible", "awful", "poor", "horrible", "bad", "disappointing", "weak", "annoying"]
FRAMES = ["review: i bought {p} and it is {a} . answer:",
          "review: after a week {p} feels {a} . answer:",
          "review: honestly {p} is {a} for the price . answer:"]


def rows(rng, n_per_class, seen):
    out = []
    for label, adjs in (("negative", NEGATIVE), ("positive", POSITIVE)):
        k = 0
        while k < n_per_class:
            text = rng.choice(FRAMES).format(p=rng.choice(PRODUCTS), a=rng.choice(adjs))
            if text in seen:
                continue
            seen.add(text)
            out.append({"input": text, "target": label})
            k += 1
    rng.shuffle(out)
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(SEED)
    seen = set()
    train = rows(rng, SHOTS, seen)
    ev = rows(rng, EVAL // 2, seen)
    os.makedirs(os.path.join(out_dir, "review"), exist_ok=True)
    for name, data in (("train", train), ("eval", ev)):
        with open(os.path.join(out_dir, "review", name + ".jsonl"), "w") as f:
            for r in data:
                f.write(json.dumps(r, sort_keys=True) + "\n")
    manifest = {"tasks": [{"name": "review", "metric": "f1", "candidates": ["negative", "positive"],
                           "train": "review/train.jsonl", "eval": "review/eval.jsonl"}]}
    with open(os.path.join(out_dir, "tasks.json"), "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")


if __name__ == "__main__":
    main()
