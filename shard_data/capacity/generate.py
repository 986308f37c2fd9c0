#!/usr/bin/env python3
"""A task mix whose capacity needs differ by construction (issue 24 item 5; docs/results.md).

Three small synthetic tasks, written in the bundled set's format (one {"input", "target"} JSONL
object per line, train and eval files per task, a tasks.json manifest; shard_data/bundled):

  keyword   yes/no: does the sentence contain the word "apple"?                  accuracy
  fewkeys   a lookup: FEW made-up keys, each mapped to one of VALUES colours     accuracy
  manykeys  the same lookup with MANY keys (a separate table, disjoint keys)      accuracy

Why each needs the capacity it does:
- keyword is one feature. The answer depends on one fixed token being present anywhere in the
  input, which one attention direction (or one MLP direction) can carry to the answer position.
  A single rank-1 update per module is enough in principle, and the bundled tasks of this kind
  (topic) are solved by a rank-1 LoRA (docs/results.md, Table 1).
- fewkeys and manykeys are arbitrary tables. Each key is three syllables drawn from 16 (so the
  key is spread over several tokens) and its colour is drawn at random, independently of the
  key's spelling, from a fixed seeded table. Nothing in the input predicts the answer except the
  key's identity, so the adapter has to store the table: K keys x log2(VALUES) bits, 3 bits per
  key with 8 colours. The answer position has to tell K keys apart and move the output towards
  VALUES different answers, which a rank-r update per module can do only in r directions per
  module. fewkeys (K = FEW) is a small table; manykeys (K = MANY) is the large one, sized so
  that a rank-1 LoRA does not fit it in the experiment's step budget while rank 8 does
  (the calibration is in docs/results.md, "Issue 24 item 5").
- Every key occurs REPS times in train and twice in eval, each time with different filler words
  around it, so eval inputs never repeat a train input while every eval key was seen in training:
  the eval measures recall of the table, not generalisation to new keys.

Inputs are lower-case, space-tokenised and end with "answer:"; targets are one word.
Deterministic: the same --seed gives byte-identical files (fixed streams, sorted keys, no set
iteration). Run:  python3 generate.py OUT_DIR [--seed 1] [--few 16] [--many 128] [--values 8]
                  [--reps 16] [--keyword-rows 1000]
"""
import argparse
import json
import os
import random

SYLLABLES = ["ka", "lo", "mi", "ru", "te", "zo", "fi", "na", "pe", "su", "vo", "gu", "bi", "do",
             "xa", "ye"]
COLOURS = ["red", "green", "blue", "black", "white", "brown", "pink", "gray", "gold", "purple",
           "orange", "silver"]
KEYWORD = "apple"
# the keyword task's sentences: random words from this pool, plus "apple" in half of them
WORDS = ["the", "a", "man", "woman", "dog", "cat", "house", "car", "tree", "river", "book",
         "table", "chair", "window", "door", "bread", "milk", "pear", "lemon", "grape", "city",
         "road", "park", "shop", "friend", "child", "old", "new", "big", "small", "red", "green",
         "saw", "ate", "bought", "found", "near", "under", "with", "today"]
FILLER = ["please", "tell", "me", "now", "quickly", "again", "friend", "today", "here", "then",
          "so", "well", "ok", "next", "first", "also"]
EVAL_REPS = 2


def keyword_row(rng):
    n = rng.randint(4, 9)
    words = [rng.choice(WORDS) for _ in range(n)]
    yes = rng.random() < 0.5
    if yes:
        words.insert(rng.randrange(n + 1), KEYWORD)
    return "keyword: " + " ".join(words) + " . answer:", "yes" if yes else "no"


def lookup_input(rng, task, key):
    pre = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 3)))
    post = " ".join(rng.choice(FILLER) for _ in range(rng.randint(0, 3)))
    return " ".join(w for w in [task + ":", pre, "code", key, post, "colour ? answer:"] if w)


def lookup_rows(rng, task, table, reps):
    """All (input, target) rows for one table: every key `reps` times, inputs distinct."""
    rows, seen = [], set()
    for key in sorted(table):
        for _ in range(reps):
            for _attempt in range(1000):
                inp = lookup_input(rng, task, key)
                if inp not in seen:
                    break
            else:
                raise SystemExit(f"{task}: cannot make {reps} distinct inputs for key {key}")
            seen.add(inp)
            rows.append({"input": inp, "target": table[key]})
    return rows


def make_tables(seed, few, many, values):
    """The two lookup tables {key: colour}: disjoint keys, colours drawn independently."""
    rng = random.Random(seed)
    combos = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]
    keys = rng.sample(combos, few + many)
    colours = COLOURS[:values]
    return ({k: rng.choice(colours) for k in keys[:few]},
            {k: rng.choice(colours) for k in keys[few:]})


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--few", type=int, default=16, help="keys of fewkeys")
    ap.add_argument("--many", type=int, default=128, help="keys of manykeys")
    ap.add_argument("--values", type=int, default=8, help=f"colours (2-{len(COLOURS)})")
    ap.add_argument("--reps", type=int, default=16, help="train rows per key")
    ap.add_argument("--keyword-rows", type=int, default=1000, help="keyword's train rows (eval: 1/5)")
    a = ap.parse_args()
    if not 2 <= a.values <= len(COLOURS):
        ap.error(f"--values must be 2-{len(COLOURS)}")
    if a.few < 1 or a.many < 1 or a.few + a.many > len(SYLLABLES) ** 3:
        ap.error(f"--few and --many must be >= 1 and sum to at most {len(SYLLABLES) ** 3}")
    if a.reps < 1 or a.keyword_rows < 5:
        ap.error("--reps must be >= 1 and --keyword-rows >= 5")
    few_table, many_table = make_tables(a.seed, a.few, a.many, a.values)
    manifest = {"tasks": []}
    for i, name in enumerate(["keyword", "fewkeys", "manykeys"]):
        rng = random.Random(a.seed * 1000 + i + 1)  # one stream per task
        if name == "keyword":
            cands, seen, rows = ["no", "yes"], set(), []
            n_eval = a.keyword_rows // 5
            while len(rows) < a.keyword_rows + n_eval:  # train and eval inputs disjoint
                inp, tgt = keyword_row(rng)
                if inp not in seen:
                    seen.add(inp)
                    rows.append({"input": inp, "target": tgt})
            train, evals = rows[:a.keyword_rows], rows[a.keyword_rows:]
        else:
            table = few_table if name == "fewkeys" else many_table
            cands = COLOURS[:a.values]
            rows = lookup_rows(rng, name, table, a.reps + EVAL_REPS)
            # per key: the first `reps` rows train, the rest eval; then shuffle the train order
            per = a.reps + EVAL_REPS
            train = [r for j, r in enumerate(rows) if j % per < a.reps]
            evals = [r for j, r in enumerate(rows) if j % per >= a.reps]
            rng.shuffle(train)
        os.makedirs(os.path.join(a.out, name), exist_ok=True)
        write_jsonl(os.path.join(a.out, name, "train.jsonl"), train)
        write_jsonl(os.path.join(a.out, name, "eval.jsonl"), evals)
        manifest["tasks"].append({"name": name, "metric": "accuracy", "candidates": cands,
                                  "train": f"{name}/train.jsonl", "eval": f"{name}/eval.jsonl"})
    with open(os.path.join(a.out, "tasks.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
