"""Checks this project's exports against the real Hugging Face libraries (transformers, peft),
and against the trainer's own evaluation of the trained state.

Run by tests/integration/hf_interop.sh, which trains tiny runs with eval.dump on and exports them;
this script recomputes with transformers / peft from the exported directories and compares:
  evals     every sequence the trainer scored in its final evaluation (its log-likelihood, as
            written by the training processes: <run>/eval/step-N.jsonl) against the same
            log-likelihood from
              peft                   PeftModel.from_pretrained(base, peft/<task>)
              peft_no_alpha_pattern  the same directory with "alpha_pattern" deleted from its
                                     adapter_config.json (a loader that ignores it)
              uniform                peft-uniform/<task> (zero-padded, no rank_pattern)
              merged                 LlamaForCausalLM(merged/<task>)
            and requires every per-rank directory's alpha_pattern to be empty
  import    a run started from a PEFT adapter (adapter.init_from): its step-0 evaluation
            against that adapter in peft
  logits    LlamaForCausalLM(base) and the peft adapters against more_logits (the project's
            forward of the base and of an export)
plus the tokenizer files of the merged and PEFT directories (AutoTokenizer loads them and
encodes as SentencePiece does). Tolerance: max |diff| <= TOL * max |reference| (float32 both);
the adapter must move the reference by more than 100x the tolerance (else the check is void).
"""
import json
import os
import shutil
import sys
import tempfile

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

    # --- against the trainer's own evaluation ---
    def load_dump(path):
        rows = [json.loads(line) for line in open(path)]
        assert rows, f"{path}: no scored sequences"
        return rows

    @torch.no_grad()
    def seq_ll(model, rows):
        """log-likelihood of each row's tokens from row["start"] on (right-padded batch)."""
        n = max(len(r["ids"]) for r in rows)
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r["ids"])] = torch.tensor(r["ids"])
        logp = torch.log_softmax(model(input_ids=ids).logits.double(), -1)
        out = []
        for i, r in enumerate(rows):
            t = torch.arange(r["start"], len(r["ids"]))
            out.append(logp[i, t - 1, ids[i, t]].sum().item())
        return torch.tensor(out, dtype=torch.float64)

    def without_alpha_pattern(peft_dir):
        d = tempfile.mkdtemp()
        for f in os.listdir(peft_dir):
            shutil.copy(os.path.join(peft_dir, f), d)
        cfg = json.load(open(os.path.join(d, "adapter_config.json")))
        del cfg["alpha_pattern"]
        json.dump(cfg, open(os.path.join(d, "adapter_config.json"), "w"))
        return d

    base_model = hf_base()
    for ev in man.get("evals", []):
        rows = load_dump(ev["dump"])
        by_task = {}
        for r in rows:
            by_task.setdefault(r["task"], []).append(r)
        ex = ev["export"]
        for task, trows in by_task.items():
            ref = torch.tensor([r["ll"] for r in trows], dtype=torch.float64)  # the trainer's
            effect = (ref - seq_ll(base_model, trows)).abs().max().item()
            pdir = f"{ex}/peft/{task}"
            cfg = json.load(open(f"{pdir}/adapter_config.json"))
            ok = cfg.get("alpha_pattern") == {}
            line = f"{ev['name']}/{task}: alpha_pattern is {cfg.get('alpha_pattern')!r} (lora_alpha {cfg['lora_alpha']})"
            report.append(("ok   " if ok else "FAIL ") + line)
            if not ok:
                failures.append(line)
            for variant in ev["variants"]:
                tmp = None
                if variant == "peft":
                    m = PeftModel.from_pretrained(hf_base(), pdir)
                elif variant == "peft_no_alpha_pattern":
                    tmp = without_alpha_pattern(pdir)
                    m = PeftModel.from_pretrained(hf_base(), tmp)
                elif variant == "uniform":
                    m = PeftModel.from_pretrained(hf_base(), f"{ex}/peft-uniform/{task}")
                else:
                    m = LlamaForCausalLM.from_pretrained(f"{ex}/merged/{task}", dtype=torch.float32,
                                                         attn_implementation="eager")
                got = seq_ll(m.eval(), trows)
                if tmp:
                    shutil.rmtree(tmp)
                check(f"{ev['name']}/{task} {variant} vs the trainer's evaluation ({len(trows)} sequences)",
                      got, ref, effect)

    for imp in man.get("imports", []):
        rows = load_dump(imp["dump"])
        ref = torch.tensor([r["ll"] for r in rows], dtype=torch.float64)  # the trainer at step 0
        m = PeftModel.from_pretrained(hf_base(), imp["peft"]).eval()
        got = seq_ll(m, rows)
        check(f"import: step-0 evaluation of the run started from .../peft/{imp['task']} vs that adapter in peft",
              ref, got, (got - seq_ll(base_model, rows)).abs().max().item())

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
