#!/usr/bin/python3
"""Independent float64 reference forward of the Hugging Face LLaMA architecture.

Written from the architecture's definition, sharing no code with the C++ trainer (nor with
transformers, which is not installed here): it parses config.json and the safetensors file(s)
itself (JSON header + numpy.frombuffer), converts every weight to float64 and computes

  x = embed_tokens[ids]                                            # [B, L, D]
  for each layer:
    x = x + o_proj(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   with n = rmsnorm(x)
    x = x + down_proj(silu(gate_proj(n)) * up_proj(n))                   with n = rmsnorm(x)
  h = rmsnorm(x) with model.norm.weight                            # [B, L, D]
  logits = h @ lm_head.weight^T  (embed_tokens.weight when tie_word_embeddings)   # [B, L, V]

  rmsnorm(x) = x * rsqrt(mean(x^2, -1) + eps) * w
  rope (HF LlamaRotaryEmbedding): inv_freq = 1 / theta^(arange(0, hd, 2) / hd),
    emb = cat(freqs, freqs) with freqs = pos x inv_freq; x*cos(emb) + rotate_half(x)*sin(emb),
    rotate_half(x) = cat(-x2, x1) on the two halves of head_dim
  attention: grouped-query (query head h reads kv head h // (H / KV)), causal mask,
    softmax(q k^T / sqrt(hd)); positions are 0..L-1 (no padding, no KV cache).

Usage:
  /usr/bin/python3 tests/golden/llama_ref.py --model DIR --ids "1,5,9,3;1,7,2,8" --out OUT.bin \
      [--hidden-out HIDDEN.bin]
Rows are separated by ';' and must all have the same length. OUT.bin holds float32
little-endian logits [B, L, V] (row-major) and OUT.bin.json {"shape": [B, L, V]}; --hidden-out
writes the final-norm hidden states [B, L, D] the same way.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

# safetensors dtype name -> (numpy dtype of the raw bytes, converter to float64)
def _bf16_to_f64(raw):
    # bf16 is the top half of an IEEE float32: shift the 16 bits up and reinterpret
    return (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


_DTYPES = {
    "F64": (np.dtype("<f8"), lambda a: a.astype(np.float64)),
    "F32": (np.dtype("<f4"), lambda a: a.astype(np.float64)),
    "F16": (np.dtype("<f2"), lambda a: a.astype(np.float64)),
    "BF16": (np.dtype("<u2"), _bf16_to_f64),
}


def read_safetensors(path):
    """Returns {name: float64 numpy array} for every tensor of one .safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise SystemExit(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise SystemExit(f"{path}: header length {n} exceeds the file")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in _DTYPES:
            raise SystemExit(f"{path}: tensor {name} has unsupported dtype {dtype}")
        raw_dtype, conv = _DTYPES[dtype]
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * raw_dtype.itemsize or 8 + n + end > len(blob):
            raise SystemExit(f"{path}: tensor {name} offsets [{begin}, {end}] do not match {dtype} {shape}")
        raw = np.frombuffer(data[begin:end], dtype=raw_dtype, count=count)
        out[name] = conv(raw).reshape(shape)
    return out


def load_weights(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        weights = {}
        for fname in sorted(set(weight_map.values())):
            shard = read_safetensors(os.path.join(model_dir, fname))
            for name, file_of in weight_map.items():
                if file_of == fname:
                    weights[name] = shard[name]
        return weights
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    files = [f for f in os.listdir(model_dir) if f.endswith(".safetensors")]
    if len(files) != 1:
        raise SystemExit(f"{model_dir}: expected model.safetensors, an index, or one *.safetensors file")
    return read_safetensors(os.path.join(model_dir, files[0]))


def rmsnorm(x, w, eps):
    # x: [B, L, D], w: [D]
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((-x2, x1), dim=-1)


def forward(cfg, W, ids):
    """ids: LongTensor [B, L] -> (logits [B, L, V], final hidden [B, L, D]), float64."""
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    hd = D // H
    eps = cfg.get("rms_norm_eps", 1e-5)
    theta = cfg.get("rope_theta", 10000.0)
    n_layers = cfg["num_hidden_layers"]
    tied = cfg.get("tie_word_embeddings", False)
    if cfg.get("rope_scaling") is not None:
        raise SystemExit("rope_scaling is not supported by this reference")
    B, L = ids.shape
    t = lambda name: torch.from_numpy(W[name])  # float64

    x = t("model.embed_tokens.weight")[ids]  # [B, L, D]

    # rotary tables, [L, hd]
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))  # [hd/2]
    pos = torch.arange(L, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freq)  # [L, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [L, hd]
    cos, sin = emb.cos(), emb.sin()
    causal = torch.ones(L, L, dtype=torch.bool).tril()  # [L, L], True = may attend

    for i in range(n_layers):
        p = f"model.layers.{i}."
        n = rmsnorm(x, t(p + "input_layernorm.weight"), eps)
        q = (n @ t(p + "self_attn.q_proj.weight").T).view(B, L, H, hd).transpose(1, 2)   # [B, H, L, hd]
        k = (n @ t(p + "self_attn.k_proj.weight").T).view(B, L, KV, hd).transpose(1, 2)  # [B, KV, L, hd]
        v = (n @ t(p + "self_attn.v_proj.weight").T).view(B, L, KV, hd).transpose(1, 2)  # [B, KV, L, hd]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = H // KV
        kv_of_head = torch.tensor([h // group for h in range(H)])
        k = k[:, kv_of_head]  # [B, H, L, hd]
        v = v[:, kv_of_head]
        scores = q @ k.transpose(-1, -2) / (hd ** 0.5)  # [B, H, L, L]
        scores = scores.masked_fill(~causal, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        attn = (probs @ v).transpose(1, 2).reshape(B, L, H * hd)  # [B, L, H*hd]
        x = x + attn @ t(p + "self_attn.o_proj.weight").T

        n = rmsnorm(x, t(p + "post_attention_layernorm.weight"), eps)
        gate = n @ t(p + "mlp.gate_proj.weight").T  # [B, L, I]
        up = n @ t(p + "mlp.up_proj.weight").T
        x = x + (torch.nn.functional.silu(gate) * up) @ t(p + "mlp.down_proj.weight").T

    h = rmsnorm(x, t("model.norm.weight"), eps)  # [B, L, D]
    head = t("model.embed_tokens.weight") if tied else t("lm_head.weight")  # [V, D]
    return h @ head.T, h


def write_f32(path, array):
    a = np.ascontiguousarray(array.astype("<f4"))
    with open(path, "wb") as f:
        f.write(a.tobytes())
    with open(path + ".json", "w") as f:
        json.dump({"shape": list(a.shape)}, f)


def parse_ids(text):
    rows = [[int(tok) for tok in row.split(",") if tok.strip()] for row in text.split(";") if row.strip()]
    if not rows or any(len(r) != len(rows[0]) for r in rows) or not rows[0]:
        raise SystemExit(f"--ids: need ';'-separated rows of ','-separated ids, all the same length: {text!r}")
    return torch.tensor(rows, dtype=torch.long)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF LLaMA directory (config.json + safetensors)")
    ap.add_argument("--ids", required=True, help='token ids, e.g. "1,5,9,3;1,7,2,8"')
    ap.add_argument("--out", required=True, help="logits output (float32 [B, L, V])")
    ap.add_argument("--hidden-out", help="final-norm hidden states output (float32 [B, L, D])")
    args = ap.parse_args(argv)

    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    ids = parse_ids(args.ids)
    if int(ids.min()) < 0 or int(ids.max()) >= cfg["vocab_size"]:
        raise SystemExit(f"--ids: ids must lie in [0, {cfg['vocab_size']})")
    W = load_weights(args.model)
    with torch.no_grad():
        logits, hidden = forward(cfg, W, ids)
    write_f32(args.out, logits.numpy())
    if args.hidden_out:
        write_f32(args.hidden_out, hidden.numpy())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
