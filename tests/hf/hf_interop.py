"""Checks this project's exports against the real Hugging Face libraries (transformers, peft).

Run by tests/integration/hf_interop.sh, which trains tiny runs, exports them and writes the
project's own logits (more_logits) into a manifest; this script recomputes every one of them
with transformers / peft from the exported directories and compares:
  base      LlamaForCausalLM(base dir)                      vs the project's base forward
  peft      PeftModel.from_pretrained(base, peft/<task>)    vs the project's adapter forward for the task
  uniform   the same with peft-uniform/<task>               (zero-padded, no rank_pattern)
  merged    LlamaForCausalLM(merged/<task>)                 vs the project's adapter forward
  import    PEFT adapter of one run vs a run started from it (adapter.init_from)
plus the tokenizer files of the merged and PEFT directories (AutoTokenizer loads them and
encodes as SentencePiece does). Tolerance: max |diff| <= TOL * max |reference| (float32 both).
"""
import json
import sys

import torch

TOL = 2e-5


def load_logits(path):
    shape = json.load(open(path + ".json"))["shape"]
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.float32).reshape(shape)


def main():
    man = json.load(open(sys.argv[1]))
    from peft import PeftModel
    from transformers import AutoTokenizer, LlamaForCausalLM
    import sentencepiece as spm

    torch.manual_seed(0)
    ids = torch.tensor(man["ids"], dtype=torch.long)
    base_dir = man["base"]
    report, failures = [], []

    def hf_base():
        m = LlamaForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
        return m.eval()

    @torch.no_grad()
    def logits_of(model):
        return model(input_ids=ids).logits.float()

    def check(what, got, ref, min_effect=None):
        err = (got - ref).abs().max().item()
        scale = ref.abs().max().item()
        line = f"{what}: max|diff| {err:.3g} (max|ref| {scale:.3g}, rel {err / scale:.3g})"
        ok = err <= TOL * scale
        if min_effect is not None:  # the adapter must change the output far beyond the tolerance
            line += f"; adapter effect {min_effect:.3g}"
            ok = ok and min_effect > 100 * TOL * scale
        report.append(("ok   " if ok else "FAIL ") + line)
        if not ok:
            failures.append(line)

    base_ref = load_logits(man["base_logits"])
    base_hf = logits_of(hf_base())
    check("base: transformers vs project", base_hf, base_ref)

    for run in man["runs"]:
        ex = run["export"]
        for task, path in run["logits"].items():
            ref = load_logits(path)
            effect = (ref - base_ref).abs().max().item()
            cfg = json.load(open(f"{ex}/peft/{task}/adapter_config.json"))
            assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM", cfg
            if run.get("expect_mixed_ranks"):
                ranks = set(cfg["rank_pattern"].values())
                assert len(ranks) > 1, f"{run['name']}/{task}: all modules chose rank {ranks}"
            m = PeftModel.from_pretrained(hf_base(), f"{ex}/peft/{task}").eval()
            check(f"{run['name']}/{task} peft (ranks {sorted(set(cfg['rank_pattern'].values()))})",
                  logits_of(m), ref, effect)
            if run.get("uniform"):
                m = PeftModel.from_pretrained(hf_base(), f"{ex}/peft-uniform/{task}").eval()
                check(f"{run['name']}/{task} peft-uniform", logits_of(m), ref, effect)
            if run.get("merged"):
                m = LlamaForCausalLM.from_pretrained(f"{ex}/merged/{task}", dtype=torch.float32,
                                                     attn_implementation="eager").eval()
                check(f"{run['name']}/{task} merged", logits_of(m), ref, effect)

    for imp in man.get("imports", []):
        m = PeftModel.from_pretrained(hf_base(), imp["peft"]).eval()
        ref = logits_of(m)
        check(f"import: run started from {imp['peft'].split('/')[-3]}/peft/{imp['peft'].split('/')[-1]}",
              load_logits(imp["logits"]), ref, (ref - base_hf).abs().max().item())

    # tokenizer files: AutoTokenizer must load them and encode as SentencePiece does
    sp = spm.SentencePieceProcessor(model_file=f"{base_dir}/tokenizer.model")
    text = "the movie was great answer:"
    bos = json.load(open(f"{base_dir}/config.json"))["bos_token_id"]
    for d in man["tokenizer_dirs"]:
        tok = AutoTokenizer.from_pretrained(d)
        got = tok(text)["input_ids"]
        want = [bos] + sp.encode(text)
        ok = got == want and tok.bos_token_id == bos
        line = f"tokenizer {d.split('/')[-2]}/{d.split('/')[-1]}: {got[:8]}... vs SentencePiece {want[:8]}..."
        report.append(("ok   " if ok else "FAIL ") + line)
        if not ok:
            failures.append(line)

    print("\n".join(report))
    print(f"{len(report) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
