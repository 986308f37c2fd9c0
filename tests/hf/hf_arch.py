"""The LLaMA-family architectures the trainer supports, checked against the real transformers.

Run by tests/integration/hf_arch.sh in two steps:

  hf_arch.py make OUT ARCH...
      builds a tiny random model of ARCH (llama3, mistral, qwen2; llama_linear: linear rope
      scaling, checked on its base logits only) with transformers' own config
      and model classes and save_pretrained (safetensors, float32) into OUT/ARCH: the config as
      transformers 5 writes it (rope_parameters). OUT/ARCH-v4 holds the same weights with the
      config in the 4.x layout (top-level rope_theta and rope_scaling).
  hf_arch.py check MANIFEST
      recomputes with transformers / peft every logits file the project wrote (more_logits) and
      compares:
        base      ARCH by transformers           vs more_logits on 1 rank, on the 4.x-layout
                                                    config, and under tp=2 x pp=2
        peft      PeftModel.from_pretrained(base, peft/<task>)   vs the adapter forward
        merged    AutoModelForCausalLM(merged/<task>)            vs the adapter forward
      and that what makes the architecture differ from LLaMA-2 matters: the reference with that
      feature switched off (rope scaling type default, rope_theta 10000, q/k/v biases zero)
      differs from it by far more than the tolerance, so a loader ignoring it would fail.

Tolerance (TOL of tests/hf/hf_interop.py): max |diff| <= TOL * max |reference| (float32).
"""
import json
import os
import shutil
import sys

import torch

from hf_interop import TOL, load_logits  # the tolerance and logits format of the LLaMA-2 checks

VOCAB = 512  # the test shards' SentencePiece vocabulary (tests/make_testdata.sh)


def config_of(arch):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, bos_token_id=1,
                  eos_token_id=2, max_position_embeddings=256)
    if arch == "llama3":  # Llama 3.2 style: head_dim 32 != 64 / 4, llama3 rope scaling, tied head
        return LlamaConfig(**common, head_dim=32, tie_word_embeddings=True,
                           rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 16})
    if arch == "llama_linear":  # linear rope scaling (base logits only)
        return LlamaConfig(**common, rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0})
    if arch == "mistral":  # v0.3 style: no sliding window, rope_theta 1e6
        return MistralConfig(**common, sliding_window=None,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    if arch == "qwen2":  # bias on q, k, v (not o)
        return Qwen2Config(**common, tie_word_embeddings=False,
                           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    raise SystemExit(f"unknown architecture {arch}")


def to_v4_layout(cfg):
    """The same config as transformers 4.x writes it: rope_theta and rope_scaling at the top."""
    cfg = dict(cfg)
    rp = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rp.pop("rope_theta")
    cfg["rope_scaling"] = None if rp.get("rope_type", "default") == "default" else rp
    cfg.pop("layer_types", None)
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["transformers_version"] = "4.46.0"
    return cfg


def make(out, arch):
    from transformers import AutoModelForCausalLM
    torch.manual_seed({"llama3": 1, "mistral": 2, "qwen2": 3, "llama_linear": 4}[arch])
    model = AutoModelForCausalLM.from_config(config_of(arch), dtype=torch.float32)
    with torch.no_grad():  # large enough weights that every part of the model moves the logits
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    d = f"{out}/{arch}"
    model.save_pretrained(d, safe_serialization=True)
    cfg = json.load(open(f"{d}/config.json"))
    assert "rope_parameters" in cfg and "rope_theta" not in cfg, cfg  # the 5.x layout
    v4 = f"{d}-v4"
    os.makedirs(v4, exist_ok=True)
    json.dump(to_v4_layout(cfg), open(f"{v4}/config.json", "w"), indent=2)
    shutil.copy(f"{d}/model.safetensors", f"{v4}/model.safetensors")
    names = sorted(json.loads(open(f"{d}/model.safetensors", "rb").read()[8:][:int.from_bytes(
        open(f"{d}/model.safetensors", "rb").read(8), "little")]).keys())
    print(f"{arch}: {d} ({sum(p.numel() for p in model.parameters())} parameters; "
          f"{len(names) - 1} tensors, lm_head.weight {'present' if 'lm_head.weight' in names else 'absent (tied)'})")


def check(manifest):
    man = json.load(open(manifest))
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM

    ids = torch.tensor(man["ids"], dtype=torch.long)
    report, failures = [], []

    def model_of(d, **overrides):
        cfg = AutoConfig.from_pretrained(d)
        for k, v in overrides.items():
            setattr(cfg, k, v)
        m = AutoModelForCausalLM.from_pretrained(d, config=cfg, dtype=torch.float32, attn_implementation="eager")
        return m.eval()

    @torch.no_grad()
    def logits_of(model):
        return model(input_ids=ids).logits.float()

    def compare(what, got, ref, min_effect=None):
        err = (got - ref).abs().max().item()
        scale = ref.abs().max().item()
        line = f"{what}: max|diff| {err:.3g} (max|ref| {scale:.3g}, rel {err / scale:.3g})"
        ok = err <= TOL * scale
        if min_effect is not None:  # what is checked must change the output far beyond the tolerance
            line += f"; effect {min_effect:.3g}"
            ok = ok and min_effect > 100 * TOL * scale
        report.append(("ok   " if ok else "FAIL ") + line)
        if not ok:
            failures.append(line)

    for a in man["archs"]:
        name, base = a["name"], a["base"]
        ref = logits_of(model_of(base))
        # the feature that sets the architecture apart, switched off: the reference must move
        if name == "llama3":
            off = model_of(base, rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
            what = "llama3 rope scaling"
        elif name == "llama_linear":
            off = model_of(base, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
            what = "linear rope scaling"
        elif name == "mistral":
            off = model_of(base, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
            what = "rope_theta 1e6"
        else:
            off = model_of(base)
            with torch.no_grad():
                for layer in off.model.layers:
                    for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                        proj.bias.zero_()
            what = "q/k/v biases"
        feature = (logits_of(off) - ref).abs().max().item()
        compare(f"{name} base: transformers vs more_logits (1 rank) [{what} matters]",
                load_logits(a["logits"]), ref, feature)
        compare(f"{name} base: 4.x-layout config vs transformers", load_logits(a["logits_v4"]), ref)
        if "export" not in a:  # a base-only variant
            continue
        compare(f"{name} base: tp=2 x pp=2 vs transformers", load_logits(a["logits_tp2pp2"]), ref)
        ex = a["export"]
        for task, path in a["tasks"].items():
            got = load_logits(path)
            effect = (got - ref).abs().max().item()
            m = PeftModel.from_pretrained(model_of(base), f"{ex}/peft/{task}").eval()
            compare(f"{name}/{task} peft", got, logits_of(m), effect)
            merged = f"{ex}/merged/{task}"
            assert json.load(open(f"{merged}/config.json"))["model_type"] == json.load(
                open(f"{base}/config.json"))["model_type"]
            compare(f"{name}/{task} merged", got, logits_of(model_of(merged)), effect)

    print("\n".join(report))
    print(f"{len(report) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "make":
        for arch in sys.argv[3:]:
            make(sys.argv[2], arch)
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    else:
        raise SystemExit("usage: hf_arch.py make OUT ARCH... | check MANIFEST")
