#!/usr/bin/env python3
"""The peers a user would pick instead of this trainer, timed on the same model and batch shape.

  eager : a minimal LLaMA LoRA loop in plain PyTorch, written here: frozen base in the given
          dtype, fp32 LoRA (rank r, alpha) on q, k, v, o, gate, up, down, RMSNorm, RoPE,
          scaled_dot_product_attention, SwiGLU, full-vocabulary logits, cross-entropy on the
          labelled positions, AdamW on the adapters.
  compiled : the same loop (same model, LoRA, batch, AdamW) with the loss function (model,
          logits, cross-entropy) under torch.compile (inductor backend, SDPA attention); the
          compilation runs in the warm-up step, is left out of the step times and reported as
          compile_s (the warm-up steps' time above median steps). --check first runs the eager and
          the compiled loss function side by side from the same weights and adapters and fails
          unless the first --check-steps (1) steps' losses and adapter gradients agree (bf16:
          1e-3 relative loss, 5e-2 relative gradient norm; fp32: 1e-5, 1e-4).
  hf    : Hugging Face transformers' LlamaForCausalLM + PEFT LoRA (same targets, r, alpha,
          dropout 0), same dtype, same batch, AdamW.

All read the model directory's config.json and model.safetensors. The batch is fixed random
token ids [batch, seq] with the last `--labels` positions of each row labelled (the trainer's
rows are prompt + short target). Prints one JSON line: step times (after warm-up), median, min.

--batches FILE (real data) replaces the fixed batch: the examples `more_bench batches` wrote (the
ones the trainer's first steps draw, same micro-batches, same order; one JSON line per micro-batch
with its step), each micro-batch padded as a user of these peers pads it: to its own longest
example (dynamic padding, as transformers' DataCollatorWithPadding / DataCollatorForSeq2Seq do,
no pad_to_multiple_of), on the right, labels -100 off the target positions. The eager and compiled
loops need no attention mask for that (causal attention: a real position never sees the pads to
its right); hf gets the attention_mask a collator makes. The first --warmup steps of the file are
warm-up, the next --steps are timed; the JSON line adds real (non-pad) and padded tokens per step
and real tokens/s (all timed real tokens / all timed seconds). Under torch.compile each new
sequence length may recompile (the default dynamic=None marks the length dynamic after the first
recompilation): graphs compiled during the timed steps are reported as timed_recompiles.
Usage: peer_bench.py {eager,compiled,hf} MODEL_DIR [--batch 8 --seq 256 | --batches FILE] [--steps 5
                     --warmup 1 --threads 2 --dtype bfloat16 --rank 8 --alpha 16 --check]
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


def eager_loss_fn(model, ids, labels):
    """The loss of one batch: full-vocabulary logits, cross-entropy on the labelled positions."""
    logits = model(ids)[:, :-1].float()                               # [B, S-1, V]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100)


def build_eager(a, cfg, weights, dtype):
    """The model and its loss function of one micro-batch: loss_fn(ids, labels, attention_mask)."""
    torch.manual_seed(1)  # the LoRA A init: the same for every model built here
    model = EagerLlama(cfg, weights, dtype, a.rank, a.alpha)
    return model, (lambda ids, labels, mask=None: eager_loss_fn(model, ids, labels))


def build_compiled(a, cfg, weights, dtype):
    model, _ = build_eager(a, cfg, weights, dtype)
    fn = torch.compile(eager_loss_fn, backend="inductor")
    return model, (lambda ids, labels, mask=None: fn(model, ids, labels))


def read_batches(path, pad_id):
    """[steps] lists of micro-batches (ids [B, S], labels [B, S], attention_mask [B, S], real tokens)
    from more_bench batches' JSON lines, each padded on the right to its longest example."""
    steps = []
    for line in open(path):
        if not line.strip():
            continue
        mb = json.loads(line)
        rows, targets = mb["ids"], mb["targets"]
        s = max(len(r) for r in rows)
        ids = torch.full((len(rows), s), pad_id, dtype=torch.long)      # [B, S]
        labels = torch.full((len(rows), s), -100, dtype=torch.long)     # [B, S]
        mask = torch.zeros((len(rows), s), dtype=torch.long)            # [B, S]
        for b, (r, t) in enumerate(zip(rows, targets)):
            ids[b, :len(r)] = torch.tensor(r)
            mask[b, :len(r)] = 1
            labels[b, t] = ids[b, t]
        while len(steps) <= mb["step"]:
            steps.append([])
        steps[mb["step"]].append((ids, labels, mask, sum(len(r) for r in rows)))
    return steps


def check_compiled(a, cfg, weights, dtype, steps):
    """The compiled loss function against the eager one at the same weights and adapters, for
    `steps` AdamW steps: each step's loss and the adapter gradients must agree (bf16 tolerance: the
    two run the same GEMMs, but inductor fuses and reorders the elementwise work). The eager side
    takes the optimizer step and its adapters are copied into the compiled side's, so each step
    compares the two functions at one point. In bf16 only the first step (B = 0) is comparable:
    once the adapters are non-zero their term is far below a bf16 ulp of the base output; eager
    rounds y + adapter to bf16 before the residual add, while inductor keeps the intermediates of
    its fused elementwise chains in fp32 (most likely why, at the 100m shape, the compiled loss
    after one AdamW step is ~1% lower than eager's at the same adapters). In fp32 any number of
    steps agrees to ~1e-7."""
    em, ef_ = build_eager(a, cfg, weights, dtype)
    cm, cf_ = build_compiled(a, cfg, weights, dtype)
    ef, cf = (lambda: ef_(a.ids, a.labels_t)), (lambda: cf_(a.ids, a.labels_t))
    eo = torch.optim.AdamW([p for p in em.parameters() if p.requires_grad], lr=a.lr)
    low = dtype in (torch.bfloat16, torch.float16)
    loss_tol, grad_tol = (1e-3, 5e-2) if low else (1e-5, 1e-4)
    worst_loss = worst_grad = 0.0
    for i in range(steps):
        el, cl = ef(), cf()
        el.backward(); cl.backward()
        dl = abs(el.item() - cl.item()) / max(1.0, abs(el.item()))
        ge = torch.cat([p.grad.flatten() for p in em.parameters() if p.grad is not None])
        gc = torch.cat([p.grad.flatten() for p in cm.parameters() if p.grad is not None])
        dg = ((ge - gc).norm() / ge.norm()).item()   # all adapter gradients as one vector
        print(f"check step {i}: loss eager {el.item():.5f} compiled {cl.item():.5f} (rel {dl:.2e}); "
              f"adapter gradients rel diff {dg:.2e} (norm {ge.norm().item():.3e})", file=sys.stderr)
        worst_loss, worst_grad = max(worst_loss, dl), max(worst_grad, dg)
        eo.step(); eo.zero_grad(set_to_none=True)
        with torch.no_grad():
            for pe, pc in zip(em.parameters(), cm.parameters()):
                pc.copy_(pe); pc.grad = None
    ok = worst_loss <= loss_tol and worst_grad <= grad_tol
    print(f"check {'ok' if ok else 'FAILED'}: compiled vs eager over {steps} steps, "
          f"loss rel diff {worst_loss:.2e} (tolerance {loss_tol}), adapter grad rel diff {worst_grad:.2e} "
          f"(tolerance {grad_tol})", file=sys.stderr)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("peer", choices=["eager", "compiled", "hf"])
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
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--check", action="store_true", help="compiled only: check against eager first")
    ap.add_argument("--check-steps", type=int, default=1)
    ap.add_argument("--batches", help="real data: more_bench batches' JSON lines (replaces --batch/--seq)")
    ap.add_argument("--pad-id", type=int, default=0, help="with --batches: the id padded positions get")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    if a.check and a.peer != "compiled":
        ap.error("--check applies to the compiled peer only")
    if a.peer == "compiled" and a.warmup < 1:
        ap.error("the compiled peer needs --warmup >= 1 (the compilation runs in the first step)")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    if a.batches:  # real data: the trainer's micro-batches, each padded to its longest example
        data = read_batches(a.batches, a.pad_id)
        if len(data) < a.warmup + a.steps:
            ap.error(f"{a.batches} holds {len(data)} steps, fewer than --warmup {a.warmup} + --steps {a.steps}")
        data = data[:a.warmup + a.steps]
    else:  # [steps] of one micro-batch: the same fixed random batch every step
        ids = torch.randint(0, cfg["vocab_size"], (a.batch, a.seq))      # [B, S]
        labels = torch.full_like(ids, -100)
        labels[:, -a.labels:] = ids[:, -a.labels:]
        data = [[(ids, labels, None, a.batch * a.seq)]] * (a.warmup + a.steps)  # no padding: no mask
    a.ids, a.labels_t = data[0][0][0], data[0][0][1]  # --check's batch

    extra = {}
    if a.peer in ("eager", "compiled"):
        from safetensors.torch import load_file
        weights = load_file(os.path.join(a.model, "model.safetensors"))
        if a.check:
            if not check_compiled(a, cfg, weights, dtype, a.check_steps):
                return 1
            torch._dynamo.reset()  # compile again below, so that compile_s is this run's compilation
        model, loss_fn = (build_eager if a.peer == "eager" else build_compiled)(a, cfg, weights, dtype)
        version = f"torch {torch.__version__}"
        if a.peer == "compiled":
            version += ", torch.compile inductor"
            extra["checked_against_eager"] = a.check
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import transformers, peft
        base = transformers.LlamaForCausalLM.from_pretrained(a.model, dtype=dtype)
        model = peft.get_peft_model(base, peft.LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0,
                                                          target_modules=TARGETS, task_type="CAUSAL_LM"))
        model.train()
        loss_fn = lambda ids, labels, mask: model(input_ids=ids, attention_mask=mask, labels=labels).loss
        version = f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}"
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and all(p.dtype == torch.float32 for p in params), "adapters must be fp32"
    opt = torch.optim.AdamW(params, lr=a.lr)
    times, warm, real, padded = [], [], [], []
    graphs = lambda: torch._dynamo.utils.counters["stats"]["unique_graphs"] if a.peer == "compiled" else 0
    for i, step in enumerate(data):
        if i == a.warmup:
            graphs0 = graphs()
        t0 = time.perf_counter()
        for ids, labels, mask, _ in step:  # gradient accumulation over the step's micro-batches
            loss = loss_fn(ids, labels, mask)
            (loss / len(step)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        (times if i >= a.warmup else warm).append(dt)
        if i >= a.warmup:
            real.append(sum(m[3] for m in step))
            padded.append(sum(m[0].numel() for m in step))
    if a.peer == "compiled":
        extra["timed_recompiles"] = graphs() - graphs0
    if a.batches:
        extra.update({"batches": a.batches, "step_tokens": real, "step_padded_tokens": padded,
                      "real_tokens_per_s": sum(real) / sum(times), "padded_tokens_per_s": sum(padded) / sum(times),
                      "pad_fraction": 1 - sum(real) / sum(padded)})
    srt = sorted(times)
    if a.peer == "compiled":  # the compilation (forward and backward graphs) runs in the warm-up steps
        extra["first_step_s"] = warm[0]
        # with --batches the warm-up steps may recompile for new lengths: their time above a median
        # step (approximate there, since their batches differ in size)
        extra["compile_s"] = sum(warm) - len(warm) * srt[len(srt) // 2]
    print(json.dumps({"mode": "peer", "peer": a.peer, "tag": a.tag, "model": a.model, "dtype": a.dtype,
                      "batch": None if a.batches else a.batch, "seq": None if a.batches else a.seq,
                      "threads": a.threads, "versions": version,
                      "adapter_params": sum(p.numel() for p in params), "loss": loss.item(),
                      "step_s": times, "step_s_median": srt[len(srt) // 2], "step_s_min": srt[0],
                      "tokens_per_s": sum(real) / sum(times) if a.batches else a.batch * a.seq / srt[len(srt) // 2],
                      **extra}))


if __name__ == "__main__":
    sys.exit(main())
