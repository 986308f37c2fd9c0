#!/usr/bin/env python3
"""The peers a user would pick instead of this trainer, timed on the same model and batch shape.

  eager : a minimal LLaMA LoRA loop in plain PyTorch, written here: frozen base in the given
          dtype, fp32 LoRA (rank r, alpha) on q, k, v, o, gate, up, down, RMSNorm, RoPE,
          scaled_dot_product_attention, SwiGLU, full-vocabulary logits, cross-entropy on the
          labelled positions, AdamW on the adapters.
  hf    : Hugging Face transformers' LlamaForCausalLM + PEFT LoRA (same targets, r, alpha,
          dropout 0), same dtype, same batch, AdamW.

Both read the model directory's config.json and model.safetensors. The batch is fixed random
token ids [batch, seq] with the last `--labels` positions of each row labelled (the trainer's
rows are prompt + short target). Prints one JSON line: step times (after warm-up), median, min.
Usage: peer_bench.py {eager,hf} MODEL_DIR [--batch 8 --seq 256 --steps 5 --warmup 1 --threads 2
                                           --dtype bfloat16 --rank 8 --alpha 16]
"""
import argparse, json, math, os, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraLinear(nn.Module):
    def __init__(self, w, r, alpha):
        super().__init__()
        self.w = w                                                    # [out, in], frozen
        self.a = nn.Parameter(torch.randn(r, w.shape[1]) / math.sqrt(w.shape[1]))  # [r, in] fp32
        self.b = nn.Parameter(torch.zeros(w.shape[0], r))             # [out, r] fp32
        self.scale = alpha / r

    def forward(self, x):
        y = F.linear(x, self.w)
        return y + (F.linear(F.linear(x.float(), self.a), self.b) * self.scale).to(y.dtype)


class EagerLlama(nn.Module):
    def __init__(self, cfg, weights, dtype, r, alpha):
        super().__init__()
        g = lambda k: weights[k].to(dtype)
        self.cfg = cfg
        self.embed = g("model.embed_tokens.weight")
        self.norm = g("model.norm.weight")
        self.head = g("lm_head.weight") if "lm_head.weight" in weights else self.embed
        self.layers = nn.ModuleList()
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            layer = nn.Module()
            for name in TARGETS:
                sub = "self_attn." if name in TARGETS[:4] else "mlp."
                setattr(layer, name, LoraLinear(g(p + sub + name + ".weight"), r, alpha))
            layer.ln1 = g(p + "input_layernorm.weight")
            layer.ln2 = g(p + "post_attention_layernorm.weight")
            self.layers.append(layer)
        self.heads = cfg["num_attention_heads"]
        self.kv = cfg.get("num_key_value_heads", self.heads)
        self.hd = cfg["hidden_size"] // self.heads
        inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (torch.arange(0, self.hd, 2).float() / self.hd))
        t = torch.outer(torch.arange(cfg["max_position_embeddings"]).float(), inv)
        emb = torch.cat([t, t], -1)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)
        self.eps = cfg.get("rms_norm_eps", 1e-6)

    def rms(self, x, w):
        xf = x.float()
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def rope(self, x, s):
        c, sn = self.cos[:s], self.sin[:s]
        x1, x2 = x.chunk(2, -1)
        return x * c + torch.cat([-x2, x1], -1) * sn

    def forward(self, ids):
        b, s = ids.shape
        h = F.embedding(ids, self.embed)
        for l in self.layers:
            n = self.rms(h, l.ln1)
            q = l.q_proj(n).view(b, s, self.heads, self.hd).transpose(1, 2)
            k = l.k_proj(n).view(b, s, self.kv, self.hd).transpose(1, 2)
            v = l.v_proj(n).view(b, s, self.kv, self.hd).transpose(1, 2)
            q, k = self.rope(q, s), self.rope(k, s)
            if self.kv != self.heads:
                k = k.repeat_interleave(self.heads // self.kv, 1)
                v = v.repeat_interleave(self.heads // self.kv, 1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            h = h + l.o_proj(a.transpose(1, 2).reshape(b, s, -1))
            n = self.rms(h, l.ln2)
            h = h + l.down_proj(F.silu(l.gate_proj(n)) * l.up_proj(n))
        return F.linear(self.rms(h, self.norm), self.head)        # [B, S, V]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peer", choices=["eager", "hf"])
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--labels", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    ids = torch.randint(0, cfg["vocab_size"], (a.batch, a.seq))
    labels = torch.full_like(ids, -100)
    labels[:, -a.labels:] = ids[:, -a.labels:]

    if a.peer == "eager":
        from safetensors.torch import load_file
        model = EagerLlama(cfg, load_file(os.path.join(a.model, "model.safetensors")), dtype, a.rank, a.alpha)
        def loss_fn():
            logits = model(ids)[:, :-1].float()
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100)
        version = f"torch {torch.__version__}"
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers, peft
        base = transformers.LlamaForCausalLM.from_pretrained(a.model, dtype=dtype)
        model = peft.get_peft_model(base, peft.LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0,
                                                          target_modules=TARGETS, task_type="CAUSAL_LM"))
        model.train()
        loss_fn = lambda: model(input_ids=ids, labels=labels).loss
        version = f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(p.dtype == torch.float32 for p in params), "adapters must be fp32"
    opt = torch.optim.AdamW(params, lr=1e-4)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    srt = sorted(times)
    print(json.dumps({"mode": "peer", "peer": a.peer, "tag": a.tag, "model": a.model, "dtype": a.dtype,
                      "batch": a.batch, "seq": a.seq, "threads": a.threads, "versions": version,
                      "adapter_params": sum(p.numel() for p in params), "loss": loss.item(),
                      "step_s": times, "step_s_median": srt[len(srt) // 2], "step_s_min": srt[0],
                      "tokens_per_s": a.batch * a.seq / srt[len(srt) // 2]}))


if __name__ == "__main__":
    sys.exit(main())
