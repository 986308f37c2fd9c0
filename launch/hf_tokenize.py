#!/usr/bin/env python3
"""Task JSONL -> pre-tokenized JSONL with a model's own Hugging Face tokenizer (docs/data.md).

Run it with the pinned venv (transformers' AutoTokenizer, i.e. the `tokenizers` library that
transformers itself uses; nothing here encodes text by hand):

  .venv/bin/python launch/hf_tokenize.py --model DIR --manifest M.json --out OUT
      [--splits train,eval] [--chat-template] [--system TEXT] [--target-prefix " "]
      [--bos-token TOKEN] [--eos-token TOKEN]

DIR is a model directory with tokenizer.json (+ tokenizer_config.json), e.g. Llama 3.x,
Mistral, Qwen2.5. M is the text manifest of docs/data.md. OUT receives manifest.json (a
pre-tokenized manifest) and one <task>.<split>.jsonl per task and split, rows
  {"input_ids": [BOS, prompt...], "target_ids": [target..., EOS], "label": str[, "value": number]}
which `shard_data build --manifest OUT/manifest.json --out SHARDS --max-len L` shards.

Rows:
  plain:  input_ids  = [BOS] + encode(input)
          target_ids = encode(target_prefix + target) + [EOS]
  --chat-template: prompt = apply_chat_template([system?, user: input], add_generation_prompt)
          input_ids  = prompt ids ([BOS] prepended if the template does not start with it)
          target_ids = ids the template adds for the assistant turn (target), up to and
                       including the first EOS (EOS appended if it emits none)
  encode() is the tokenizer without special tokens; BOS/EOS are the tokenizer's bos/eos tokens
  (or --bos-token / --eos-token). Each task's candidates are encoded the way its targets are
  (candidate_ids = target_ids without the EOS): the evaluator scores prompt + candidate + EOS.
"""
import argparse
import json
import os
import sys


class InputError(Exception):
    pass


def read_task_file(path):
    """(line, input, target, label) of a .jsonl or .tsv task file (docs/data.md)."""
    if not os.path.exists(path):
        raise InputError(f"cannot read task file '{path}' (hint: check the paths in the manifest)")
    rows = []
    tsv = path.endswith(".tsv")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip(" \t"):
                continue
            where = f"{path}:{n}"
            if tsv:
                cols = line.split("\t")
                if len(cols) not in (2, 3):
                    raise InputError(f"{where}: {len(cols)} tab-separated columns, expected input<TAB>target[<TAB>label]")
                rows.append((n, cols[0], cols[1], cols[2] if len(cols) == 3 else None))
                continue
            try:
                j = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: bad JSON: {e}")
            if not isinstance(j, dict):
                raise InputError(f"{where}: the line is not a JSON object")
            for key in ("input", "target"):
                if key not in j:
                    raise InputError(f"{where}: missing field '{key}'")
                if not isinstance(j[key], str):
                    raise InputError(f"{where}: field '{key}' must be a string, got {type(j[key]).__name__}")
            label = j.get("label")
            if label is not None and (isinstance(label, bool) or not isinstance(label, (str, int, float))):
                raise InputError(f"{where}: field 'label' must be a string or a number, got {type(label).__name__}")
            rows.append((n, j["input"], j["target"], label))
    return rows


class Encoder:
    def __init__(self, tok, args):
        self.tok = tok
        self.chat = args.chat_template
        self.system = args.system
        self.target_prefix = args.target_prefix if args.target_prefix is not None else ("" if self.chat else " ")
        self.bos_id = self.special_id(args.bos_token, tok.bos_token, "BOS", "--bos-token")
        self.eos_id = self.special_id(args.eos_token, tok.eos_token, "EOS", "--eos-token")
        if self.chat and not getattr(tok, "chat_template", None):
            raise InputError(f"--chat-template: the tokenizer of '{args.model}' has no chat template "
                             "(hint: tokenizer_config.json or chat_template.jinja holds it; drop --chat-template)")

    def special_id(self, given, default, what, flag):
        token = given if given is not None else default
        if token is None:
            raise InputError(f"the tokenizer defines no {what} token, and every shard row starts with a BOS and "
                             f"ends with an EOS (hint: name one with {flag} TOKEN, a token of its vocabulary)")
        tid = self.tok.convert_tokens_to_ids(token)
        if tid is None or (tid == self.tok.unk_token_id and token != self.tok.unk_token):
            raise InputError(f"{flag} '{token}' is not a token of this tokenizer")
        return int(tid)

    def encode(self, text):
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def template(self, messages, generation_prompt):
        out = self.tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt,
                                           return_dict=False)
        if isinstance(out, dict) or hasattr(out, "keys"):
            out = out["input_ids"]
        return [int(i) for i in out]

    def messages(self, text):
        m = [{"role": "system", "content": self.system}] if self.system is not None else []
        return m + [{"role": "user", "content": text}]

    def prompt(self, text):
        if not self.chat:
            return [self.bos_id] + self.encode(text)
        ids = self.template(self.messages(text), True)
        return ids if ids and ids[0] == self.bos_id else [self.bos_id] + ids

    def target(self, prompt_text, target_text, prompt_ids=None):
        if not self.chat:
            return self.encode(self.target_prefix + target_text) + [self.eos_id]
        msgs = self.messages(prompt_text)
        p = self.template(msgs, True)
        full = self.template(msgs + [{"role": "assistant", "content": self.target_prefix + target_text}], False)
        if full[:len(p)] != p:
            raise InputError("the chat template changes the prompt's tokens when the assistant turn is added: "
                             "prompt and target cannot be split (hint: use the plain format without --chat-template)")
        rest = full[len(p):]
        return rest[:rest.index(self.eos_id) + 1] if self.eos_id in rest else rest + [self.eos_id]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model directory with tokenizer.json (and tokenizer_config.json)")
    ap.add_argument("--manifest", required=True, help="text manifest (docs/data.md)")
    ap.add_argument("--out", required=True, help="output directory: manifest.json + <task>.<split>.jsonl")
    ap.add_argument("--splits", default="train,eval")
    ap.add_argument("--chat-template", action="store_true", help="wrap each row in the tokenizer's chat template")
    ap.add_argument("--system", default=None, help="system message for --chat-template")
    ap.add_argument("--target-prefix", default=None,
                    help="text put before each target and candidate; default ' ' (plain), '' (chat)")
    ap.add_argument("--bos-token", default=None, help="BOS token to use (default: the tokenizer's bos_token)")
    ap.add_argument("--eos-token", default=None, help="EOS token to use (default: the tokenizer's eos_token)")
    args = ap.parse_args()
    try:
        run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def run(args):
    tok_file = os.path.join(args.model, "tokenizer.json")
    if not os.path.isfile(tok_file):
        raise InputError(f"no tokenizer.json in '{args.model}' (hint: for a SentencePiece tokenizer.model use "
                         "`shard_data build --tokenizer DIR/tokenizer.model` on the text manifest)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoTokenizer
    try:
        tok = AutoTokenizer.from_pretrained(args.model)
    except Exception as e:  # noqa: BLE001 (any load failure is the user's files)
        raise InputError(f"cannot load the tokenizer of '{args.model}': {type(e).__name__}: {e}")
    if not getattr(tok, "is_fast", False):
        raise InputError(f"'{args.model}': AutoTokenizer did not load tokenizer.json (got {type(tok).__name__})")
    enc = Encoder(tok, args)
    try:
        with open(args.manifest, encoding="utf-8") as f:
            man = json.load(f)
    except OSError as e:
        raise InputError(f"cannot read manifest '{args.manifest}': {e}")
    except json.JSONDecodeError as e:
        raise InputError(f"manifest '{args.manifest}' is not valid JSON: {e}")
    if not isinstance(man, dict) or not isinstance(man.get("tasks"), list):
        raise InputError(f"manifest '{args.manifest}' has no \"tasks\" array")
    if "tokenizer" in man:
        raise InputError(f"manifest '{args.manifest}' is already pre-tokenized: pass it to shard_data build")
    splits = [s for s in args.splits.split(",") if s]
    base = os.path.dirname(os.path.abspath(args.manifest))
    os.makedirs(args.out, exist_ok=True)
    out_tasks = []
    for i, t in enumerate(man["tasks"]):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise InputError(f"manifest '{args.manifest}', task #{i}: missing \"name\"")
        name = t["name"]
        cands = t.get("candidates", [])
        if not isinstance(cands, list) or not all(isinstance(c, str) for c in cands):
            raise InputError(f"manifest '{args.manifest}', task #{i}: field 'candidates' must be an array of strings")
        cand_ids = [enc.target("", c)[:-1] for c in cands]
        o = {"name": name, "metric": t.get("metric", "accuracy"), "candidates": cands, "candidate_ids": cand_ids}
        for split in splits:
            if not isinstance(t.get(split), str):
                raise InputError(f"manifest '{args.manifest}': task '{name}' has no \"{split}\" file "
                                 "(hint: every task needs a file for every split in --splits)")
            src = t[split] if os.path.isabs(t[split]) else os.path.join(base, t[split])
            rows = read_task_file(src)
            dst_name = f"{name}.{split}.jsonl"
            tmp = os.path.join(args.out, dst_name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for n, text, target, label in rows:
                    where = f"{src}:{n}"
                    try:
                        p = enc.prompt(text)
                        g = enc.target(text, target)
                    except InputError as e:
                        raise InputError(f"{where}: {e}")
                    if target in cands and g[:-1] != cand_ids[cands.index(target)]:
                        raise InputError(f"{where}: the target '{target}' gets other tokens after this prompt than "
                                         "its candidate gets alone; the evaluator scores the candidate's tokens "
                                         "(hint: use the plain format, or a template whose assistant turn does not "
                                         "depend on the prompt)")
                    # label: the candidate (the text label if it is a string, else the target);
                    # value: a numeric label (pearson/spearman), as docs/data.md's text rows
                    row = {"input_ids": p, "target_ids": g, "label": label if isinstance(label, str) else target}
                    if isinstance(label, (int, float)):
                        row["value"] = label
                    f.write(json.dumps(row, separators=(",", ":")) + "\n")
            os.replace(tmp, os.path.join(args.out, dst_name))
            o[split] = dst_name
        out_tasks.append(o)
    out_man = {
        "tokenizer": {"file": os.path.abspath(tok_file), "vocab_size": len(tok), "bos_id": enc.bos_id,
                      "eos_id": enc.eos_id,
                      "pad_id": int(tok.pad_token_id) if tok.pad_token_id is not None else 0},
        "tasks": out_tasks,
    }
    tmp = os.path.join(args.out, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out_man, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(args.out, "manifest.json"))
    print(f"tokenize: {len(out_tasks)} task(s), splits {','.join(splits)}, vocabulary {len(tok)}, "
          f"bos {enc.bos_id}, eos {enc.eos_id}{', chat template' if enc.chat else ''} -> {args.out}/manifest.json")


if __name__ == "__main__":
    main()
