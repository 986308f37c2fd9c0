#!/usr/bin/env bash
# The capacity task mix (shard_data/capacity/generate.py, issue 24 item 5), checked from its files
# alone: the same seed gives byte-identical files and another seed another table; keyword's
# label is "yes" exactly when "apple" is a word of the input; every lookup key has one colour in
# train and eval together, occurs --reps times in train and twice in eval, eval keys are all in
# train, no input is in both splits, the two tables' keys are disjoint and each table uses
# several colours; then shard_data trains a tokenizer on it and builds both splits with the
# expected row counts. Bad input (docs/reliability.md row 119): the generator refuses out-of-range
# sizes, and experiment.sh / bundled_data.sh refuse an unknown task set, each naming it.
# Usage: capacity_data.sh BUILD [DATA]
set -euo pipefail
BUILD=$1
SRC=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT
GEN=(python3 "$SRC/shard_data/capacity/generate.py" --few 6 --many 40 --values 5 --reps 4 --keyword-rows 100)
"${GEN[@]}" "$OUT/a"
"${GEN[@]}" "$OUT/b"
"${GEN[@]}" "$OUT/c" --seed 2
diff -r "$OUT/a" "$OUT/b" > /dev/null || { echo "FAIL: same seed, different files"; exit 1; }
python3 - "$OUT/a" "$OUT/c" <<'PY'
import json, os, sys
def rows(d, task, split):
    return [json.loads(l) for l in open(os.path.join(d, task, split + ".jsonl"))]
def table(d, task, reps):
    """{key: colour} read back from the inputs ("... code KEY ..."), checking consistency."""
    seen, count = {}, {}
    for split, per_key in (("train", reps), ("eval", 2)):
        n = {}
        for r in rows(d, task, split):
            w = r["input"].split()
            assert w[0] == task + ":" and w[-2:] == ["?", "answer:"], r
            key = w[w.index("code") + 1]
            assert seen.setdefault(key, r["target"]) == r["target"], f"{task}: key {key} has two colours"
            n[key] = n.get(key, 0) + 1
        assert set(n.values()) == {per_key}, f"{task} {split}: rows per key {sorted(set(n.values()))}"
        count[split] = n
    assert set(count["eval"]) == set(count["train"]), f"{task}: eval keys not all in train"
    return seen
d, other = sys.argv[1], sys.argv[2]
m = json.load(open(os.path.join(d, "tasks.json")))
assert [t["name"] for t in m["tasks"]] == ["keyword", "fewkeys", "manykeys"], m
assert all(t["metric"] == "accuracy" for t in m["tasks"]), m
cands = {t["name"]: t["candidates"] for t in m["tasks"]}
for t in ("keyword", "fewkeys", "manykeys"):
    tr, ev = {r["input"] for r in rows(d, t, "train")}, {r["input"] for r in rows(d, t, "eval")}
    assert not tr & ev, f"{t}: {len(tr & ev)} inputs in both splits"
    assert all(r["target"] in cands[t] for s in ("train", "eval") for r in rows(d, t, s)), t
kw = rows(d, "keyword", "train") + rows(d, "keyword", "eval")
assert len(kw) == 120, len(kw)
for r in kw:
    assert r["target"] == ("yes" if "apple" in r["input"].split() else "no"), r
yes = sum(r["target"] == "yes" for r in kw)
assert 30 <= yes <= 90, f"keyword: {yes} of 120 yes"
few, many = table(d, "fewkeys", 4), table(d, "manykeys", 4)
assert len(few) == 6 and len(many) == 40, (len(few), len(many))
assert not set(few) & set(many), "the two tables share keys"
assert len(cands["manykeys"]) == 5 and len(set(many.values())) >= 4, sorted(set(many.values()))
many2 = table(other, "manykeys", 4)
assert many2 != many, "seed 2 gave the same table"
print(f"ok: keyword {yes}/120 yes, fewkeys {len(few)} keys, manykeys {len(many)} keys "
      f"over {len(set(many.values()))} colours")
PY
"$BUILD/shard_data" tokenizer --manifest "$OUT/a/tasks.json" --out-prefix "$OUT/tok" --vocab-size 256 > /dev/null
"$BUILD/shard_data" build --manifest "$OUT/a/tasks.json" --tokenizer "$OUT/tok.model" --out "$OUT/shards" \
  --max-len 64 > "$OUT/build.log"
# rows per task and split in shard_data's summary: keyword 100/20, fewkeys 6*4/6*2, manykeys 40*4/40*2
for want in "keyword 100 20" "fewkeys 24 12" "manykeys 160 80"; do
  set -- $want
  [ "$(grep -E "^ +$1 " "$OUT/build.log" | awk '{print $2}' | tr '\n' ' ')" = "$2 $3 " ] || {
    cat "$OUT/build.log"; echo "FAIL: $1 should have $2 train and $3 eval rows"; exit 1; }
done
ls "$OUT"/shards/train-*.h5 "$OUT"/shards/eval-*.h5 > /dev/null
refuses() {  # expected message, command...: a non-zero exit whose stderr has the message
  local want=$1; shift
  if "$@" > "$OUT/err" 2>&1; then echo "FAIL: accepted: $*"; exit 1; fi
  grep -qF -- "$want" "$OUT/err" || { cat "$OUT/err"; echo "FAIL: no '$want' from: $*"; exit 1; }
}
refuses "--values must be 2-12" "${GEN[@]}" "$OUT/bad" --values 13
refuses "--few and --many must be >= 1" "${GEN[@]}" "$OUT/bad" --many 0
refuses "--reps must be >= 1" "${GEN[@]}" "$OUT/bad" --reps 0
refuses "unknown TASKSET 'nope'" env TASKSET=nope bash "$SRC/launch/experiment.sh" table1
refuses "unknown task set 'nope'" bash -c "cd '$SRC' && bash launch/bundled_data.sh '$OUT/bad' nope"
echo "capacity_data: ok"
