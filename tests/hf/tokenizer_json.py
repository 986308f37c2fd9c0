"""tokenizer.json models through launch/hf_tokenize.py and shard_data (tests/integration/tokenizer_json.sh).

  make DIR MANIFEST        write a tiny Llama-3-like tokenizer into DIR: a byte-level BPE trained with
                           the `tokenizers` library on the manifest's train files, the special tokens
                           appended after the merges (as Llama 3's 128000+), a post-processor adding
                           BOS, and tokenizer_config.json with a Llama-3-style chat template.
                           Prints the vocabulary size (len(AutoTokenizer)).
  check MODEL MANIFEST SHARDS H5POKE MODE [EOS_TOKEN]
                           every row of every task of the train split in SHARDS (read with h5poke,
                           not with the project's reader) must equal what AutoTokenizer gives for the
                           text rows (MODE plain: BOS + input, " " + target + EOS; MODE chat: the chat
                           template's prompt and assistant turn); candidate ids, special ids,
                           vocab_size and tokenizer_hash (FNV-1a 64 of tokenizer.json) likewise.
  sp MANIFEST TOK.model OUT
                           the text manifest encoded with the sentencepiece package, written as a
                           pre-tokenized manifest (shard_data must shard it exactly as the text).
"""
import json
import os
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def task_rows(manifest, split):
    base = os.path.dirname(os.path.abspath(manifest))
    with open(manifest) as f:
        man = json.load(f)
    for t in man["tasks"]:
        with open(os.path.join(base, t[split])) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        yield t, rows


def make(out, manifest):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    texts = [r[k] for _, rows in task_rows(manifest, "train") for r in rows for k in ("input", "target")]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator(texts, trainer)
    tk.add_special_tokens(SPECIALS)
    bos = tk.token_to_id(SPECIALS[0])
    tk.post_processor = processors.TemplateProcessing(single=f"{SPECIALS[0]} $A", pair=f"{SPECIALS[0]} $A $B",
                                                      special_tokens=[(SPECIALS[0], bos)])
    os.makedirs(out, exist_ok=True)
    tk.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIALS[0], "eos_token": SPECIALS[1],
                   "clean_up_tokenization_spaces": False, "model_max_length": 131072,
                   "chat_template": CHAT_TEMPLATE}, f, indent=1)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.bos_token_id == bos and tok.convert_ids_to_tokens(len(tok) - 1) == SPECIALS[-1], "specials not last"
    print(len(tok))


def fnv1a64_hex(path):
    # FNV-1a 64 as src/core/hash.cpp computes it: its offset basis is 1469598103934665603, not the
    # standard 14695981039346656037 (one digit short); the prime is the standard one
    h = 1469598103934665603
    with open(path, "rb") as f:
        for b in f.read():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def check(model, manifest, shards, h5poke, mode, eos_token=None):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model)
    raw = Tokenizer.from_file(os.path.join(model, "tokenizer.json"))  # the library itself, no transformers
    bos = tok.bos_token_id
    eos = tok.convert_tokens_to_ids(eos_token) if eos_token else tok.eos_token_id
    files = sorted(f for f in os.listdir(shards) if f.startswith("train-") and f.endswith(".h5"))
    assert len(files) == 1, files
    shard = os.path.join(shards, files[0])

    def attr(name):
        return subprocess.run([h5poke, "attr", shard, name], check=True, capture_output=True, text=True).stdout.strip()

    def dump(ds):
        out = subprocess.run([h5poke, "dump", shard, ds], check=True, capture_output=True, text=True).stdout
        return [[int(x) for x in line.split()] for line in out.splitlines()]

    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    expect(attr("tokenizer_hash") == fnv1a64_hex(os.path.join(model, "tokenizer.json")), "tokenizer_hash")
    expect(int(attr("vocab_size")) == len(tok), f"vocab_size {attr('vocab_size')} != {len(tok)}")
    expect(int(attr("bos_id")) == bos and int(attr("eos_id")) == eos, "bos_id / eos_id")
    stored_tasks = json.loads(attr("tasks"))

    def chat_split(text, target):
        msgs = [{"role": "user", "content": text}]
        p_text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        f_text = tok.apply_chat_template(msgs + [{"role": "assistant", "content": target}], tokenize=False)
        p = tok(p_text, add_special_tokens=False)["input_ids"]
        full = tok(f_text, add_special_tokens=False)["input_ids"]
        assert full[:len(p)] == p
        return p, full[len(p):]

    rows_checked = 0
    for ti, (t, rows) in enumerate(task_rows(manifest, "train")):
        name = t["name"]
        ids = dump(f"/tasks/{name}/input_ids")
        lengths = [r[0] for r in dump(f"/tasks/{name}/lengths")]
        prompts = [r[0] for r in dump(f"/tasks/{name}/prompt_lengths")]
        masks = dump(f"/tasks/{name}/target_mask")
        expect(len(ids) == len(rows), f"{name}: {len(ids)} rows stored, {len(rows)} in the file")
        cands = t.get("candidates", [])
        for c, stored in zip(cands, stored_tasks[ti]["candidate_ids"]):
            want = tok(" " + c, add_special_tokens=False)["input_ids"] if mode == "plain" else chat_split("", c)[1][:-1]
            expect(stored == want, f"{name}: candidate '{c}' ids {stored} != {want}")
        for i, r in enumerate(rows[:len(ids)]):
            if mode == "plain":
                prompt = tok(r["input"])["input_ids"]  # AutoTokenizer's own BOS (post-processor)
                expect(prompt == raw.encode(r["input"]).ids, f"{name} row {i}: transformers != tokenizers")
                target = tok(" " + r["target"], add_special_tokens=False)["input_ids"] + [eos]
            else:
                prompt, target = chat_split(r["input"], r["target"])
            want = prompt + target
            n = lengths[i]
            if ids[i][:n] != want or prompts[i] != len(prompt) or masks[i][:n] != [0] * len(prompt) + [1] * len(target):
                failures.append(f"{name} row {i}: stored {ids[i][:n]} (prompt {prompts[i]}) != {want} (prompt {len(prompt)})")
            rows_checked += 1
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures[:20]) + (f"\n  ... {len(failures)} in all" if len(failures) > 20 else ""))
        sys.exit(1)
    print(f"ok: {rows_checked} rows of {len(stored_tasks)} tasks equal AutoTokenizer's ids ({mode})")


def sp_manifest(manifest, tok_model, out):
    """The text manifest encoded with SentencePiece (the reference library) as a pre-tokenized
    manifest: shard_data must make the same shards from it as from the text with --tokenizer."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=tok_model)
    bos, eos = sp.bos_id(), sp.eos_id()
    assert (bos, eos) == (1, 2) and sp.pad_id() < 0, "the fixture's LLaMA ids (no pad piece: pad 0)"
    os.makedirs(out, exist_ok=True)
    tasks = []
    for split in ("train", "eval"):
        for t, rows in task_rows(manifest, split):
            fname = f"{t['name']}.{split}.jsonl"
            with open(os.path.join(out, fname), "w") as f:
                for r in rows:
                    label = r.get("label")
                    row = {"input_ids": [bos] + sp.encode(r["input"]), "target_ids": sp.encode(r["target"]) + [eos],
                           "label": label if isinstance(label, str) else r["target"]}
                    if isinstance(label, (int, float)):
                        row["value"] = label
                    f.write(json.dumps(row) + "\n")
            if split == "train":
                tasks.append({k: v for k, v in t.items() if k not in ("train", "eval")})
                tasks[-1]["candidate_ids"] = [sp.encode(c) for c in t.get("candidates", [])]
            next(x for x in tasks if x["name"] == t["name"])[split] = fname
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"tokenizer": {"file": os.path.abspath(tok_model), "vocab_size": sp.get_piece_size(),
                                 "bos_id": bos, "eos_id": eos, "pad_id": 0}, "tasks": tasks}, f)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "check":
        check(*sys.argv[2:])
    elif sys.argv[1] == "sp":
        sp_manifest(*sys.argv[2:])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
